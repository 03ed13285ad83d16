import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCode } from '../../schemas/errors.js';
import { type TestStack, runCli, snapshotFiles, startTestStack } from '../helpers/stack.js';
import { quietTemporalRuntime } from '../helpers/temporal-env.js';

/**
 * Issue 10's acceptance on a real `ptctl dev` stack: the simulated rhel5-xen host is the linux
 * backend over a simulated kernel, so what is refused here is found by the real detection code
 * (bridge ports, block holders and guests' phy: disks, the boot VGA), not by a flag.
 */
void describe('devices the guests or the console need, through the CLI on the sim (rhel5-xen)', () => {
  let t: TestStack;
  const cliEnv: NodeJS.ProcessEnv = { PTC_NATS_URL: '', PTC_NATS_CREDS: '', PTC_TEMPORAL_ADDRESS: '' };
  before(async () => {
    quietTemporalRuntime();
    t = await startTestStack({ simHosts: 1 });
  });
  after(async () => {
    await t[Symbol.asyncDispose]();
  });

  const cases: Array<{ bdf: string; why: string; sentence: RegExp }> = [
    { bdf: '0000:0c:00.0', why: "eth6, no dom0 address, port of xenbr1 that carries vm-pv's vif2.0", sentence: /eth6 is a port of bridge xenbr1, which carries guests' interfaces vif2\.0 \(vm-pv\)/ },
    { bdf: '0000:04:00.0', why: "the disk of VG guests whose LVs are the guests' phy: disks, not mounted", sentence: /sdb, a physical volume of LVM volume group guests \(logical volumes vm-hvm, vm-pv, vm-pv6\), backing phy: disks of guests vm-hvm, vm-pv, vm-pv6/ },
    { bdf: '0000:00:02.0', why: 'the boot VGA', sentence: /it is the boot VGA device, which shows the host's console/ },
  ];
  for (const c of cases) {
    void it(`refuses ${c.bdf} (${c.why}) with DEVICE_IN_USE naming it, and the host stays byte-identical`, async () => {
      const beforeFiles = await snapshotFiles(t.hostRoot('sim-1'));
      const res = await runCli(['attach', '--dir', t.dir, '--host', 'sim-1', '--device', c.bdf, '--guest', 'vm-hvm', '--wait'], cliEnv);
      assert.notEqual(res.code, 0);
      const lines = res.stderr.trim().split('\n');
      assert.equal(lines.length, 1, res.stderr);
      assert.match(lines[0] ?? '', new RegExp(`^ptctl: ${ErrorCode.DEVICE_IN_USE}: ${c.bdf} is in use by host sim-1: `));
      assert.match(lines[0] ?? '', c.sentence);
      const afterFiles = await snapshotFiles(t.hostRoot('sim-1'));
      assert.ok(beforeFiles.has('etc/modprobe.conf') && beforeFiles.has(`sys/devices/pci${c.bdf.slice(0, 7)}/${c.bdf}/vendor`));
      for (const [path, bytes] of beforeFiles) {
        if (path.startsWith('var/lib/ptctl/')) continue;
        assert.equal(afterFiles.get(path), bytes, `${path} changed`);
      }
      assert.deepEqual([...afterFiles.keys()].filter((p) => !beforeFiles.has(p) && !p.startsWith('var/lib/ptctl/')), [], 'no file appeared');
    });
  }

  void it('passes 0000:0d:00.0 (a GPU no dom0 driver holds) through: hidden without an install line, on pciback, live in vm-hvm', async () => {
    const bdf = '0000:0d:00.0';
    const res = await runCli(['attach', '--dir', t.dir, '--host', 'sim-1', '--device', bdf, '--guest', 'vm-hvm', '--wait', '--json'], cliEnv);
    assert.equal(res.code, 0, res.stderr);
    const modprobe = await readFile(join(t.hostRoot('sim-1'), 'etc', 'modprobe.conf'), 'utf8');
    assert.ok(modprobe.split('\n').includes(`options pciback hide=(${bdf})`), modprobe);
    assert.ok(!modprobe.split('\n').some((l) => l.startsWith('install ')), `no install line for a device without a driver:\n${modprobe}`);
    const guestConf = await readFile(join(t.hostRoot('sim-1'), 'etc', 'xen', 'vm-hvm'), 'utf8');
    assert.ok(guestConf.split('\n').includes(`pci = [ '${bdf}' ]`), guestConf);
    // Verified by state: the sysfs driver link, pciback's slots, the toolstack's assignable list, the guest's devices.
    assert.equal(await readFile(join(t.hostRoot('sim-1'), 'sys', 'bus', 'pci', 'drivers', 'pciback', 'slots'), 'utf8'), `${bdf}\n`);
    const verified = (await t.agents.call('sim-1', 'verify', { bdf, expect: 'pciback' }, { opId: 'it-inuse-verify', timeoutMs: 10_000 })).result;
    assert.deepEqual(verified, { bdf, driver: 'pciback', inPcibackSlots: true, assignable: true });
    const inv = (await t.agents.call('sim-1', 'inspect', {}, { opId: 'it-inuse-inspect', timeoutMs: 10_000 })).result;
    assert.deepEqual(inv.guests.find((g) => g.name === 'vm-hvm')?.liveDevices, [bdf]);
    assert.equal(inv.devices.find((d) => d.bdf === bdf)?.assignedTo, 'vm-hvm');
  });
});
