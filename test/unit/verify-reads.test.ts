import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { renameSync, symlinkSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { commandHandlers } from '../../agent/command-handlers.js';
import { SIM_PROFILES } from '../../agent/sim/profiles.js';
import { STUB_DRIVER } from '../../schemas/inventory.js';
import { ErrorCode, isPtcError } from '../../schemas/errors.js';
import { fixtureHandlerContext } from '../helpers/handler-context.js';
import { simHostHarness } from '../helpers/sim-hosts.js';

// verify reads the one device it judges; every other command still scans the whole host afresh.

const sim = simHostHarness('ptctl-verify-reads');

void describe('fresh reads per command', () => {
  void it('a command after a change of the host decides on the host as it is now (rule 1: a fresh read per command)', async () => {
    const { host, dir } = await sim.open({ hostId: 'h1' });
    const ctx = await fixtureHandlerContext(host, join(dir, 'state'));
    const BDF = '0000:09:00.0';
    const before = (await commandHandlers.inspect(ctx, {})).devices.find((d) => d.bdf === BDF);
    assert.equal(before?.inUse, null, 'eth2 is idle on the default profile');
    // The root disk moves under 09:00.0 (its sysfs device path now runs through it): only links say so.
    const sys = join(dir, 'host', 'sys');
    const oldHost = join(sys, 'devices/pci0000:03/0000:03:00.0/host0');
    const newHost = join(sys, 'devices/pci0000:09/0000:09:00.0/host0');
    renameSync(oldHost, newHost);
    unlinkSync(join(sys, 'block/sda'));
    symlinkSync('../devices/pci0000:09/0000:09:00.0/host0/target0:0:0/0:0:0:0/block/sda', join(sys, 'block/sda'));
    await assert.rejects(
      () => commandHandlers.hide(ctx, { bdf: BDF }),
      (err: unknown) => isPtcError(err) && err.code === ErrorCode.DEVICE_IN_USE && /sda/.test(err.message),
    );
  });
});


void describe('stubState (what verify reads)', () => {
  // verify reads one device instead of scanning the host: it must report exactly what a scan reports
  // for that device, on every profile, before and after the device moves to the stub driver.
  for (const profile of Object.keys(SIM_PROFILES)) {
    void it(`equals the scan's driver, slots and assignable state for every device on ${profile}`, async () => {
      const { host } = await sim.open({ hostId: 'h1', profile });
      const compare = async (when: string): Promise<void> => {
        const scan = await host.scan();
        for (const d of scan.devices) {
          assert.deepEqual(await host.stubState(d.bdf), { hypervisor: scan.hypervisor, driver: d.driver, inPcibackSlots: d.inPcibackSlots, assignable: d.assignable }, `${d.bdf} ${when}`);
        }
        assert.equal(await host.stubState('0000:7f:1f.7'), null, 'an address the bus does not have');
      };
      await compare('at boot');
      const scan = await host.scan();
      const idle = scan.devices.filter((d) => d.inUse === null && d.driver !== null && d.driver !== STUB_DRIVER[scan.hypervisor]);
      if (scan.capabilities.includes('dynamic-bind')) {
        for (const d of idle) await host.bindStub(d.bdf);
        await compare('with the idle devices on the stub driver');
        const [first] = idle;
        if (first) {
          await host.bindHostDriver(first.bdf, first.driver);
          await compare(`with ${first.bdf} given back`);
        }
      }
    });
  }

  void it('verify refuses an address the host does not have with DEVICE_NOT_FOUND, as before', async () => {
    const { host, dir } = await sim.open({ hostId: 'h1' });
    const ctx = await fixtureHandlerContext(host, join(dir, 'state'));
    await assert.rejects(
      () => commandHandlers.verify(ctx, { bdf: '0000:7f:1f.7', expect: 'host' }),
      (err: unknown) => isPtcError(err) && err.code === ErrorCode.DEVICE_NOT_FOUND && err.message === 'host dom0 has no PCI device 0000:7f:1f.7; `ptctl hosts --host dom0` lists its devices',
    );
  });
});
