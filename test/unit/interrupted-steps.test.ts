import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeviceRecords } from '../../agent/device-records.js';
import { fixtureHandlerContext } from '../helpers/handler-context.js';
import { commandHandlers, type HandlerContext, repairInterrupted } from '../../agent/command-handlers.js';
import { RecordingRunner } from '../../agent/linux/command-runner.js';
import type { SysfsWrite } from '../../agent/linux/host-tree.js';
import { LinuxHost } from '../../agent/linux/linux-host.js';
import { TOOLSTACK_TIMEOUTS_MS, XenToolstack } from '../../agent/linux/xen-toolstack.js';
import { ErrorCode, isPtcError } from '../../schemas/errors.js';
import { buildFixtureHost, type FixtureHost, type FixtureHostSpec } from '../helpers/sysfs-fixture.js';

const NIC = '0000:00:04.0';
const SPEC: FixtureHostSpec = {
  osRelease: 'ID=debian\nVERSION_ID="12"\n',
  xen: true,
  kernelRelease: '6.1.0-56-amd64',
  pciback: { slots: [] },
  devices: [
    { bdf: '0000:00:00.0', vendor: '8086', device: '29c0', class: '060000' },
    { bdf: NIC, vendor: '8086', device: '100e', class: '020000', driver: 'e1000', net: ['eth0'] },
  ],
  interfaces: { eth0: { operstate: 'down' } },
  files: { '/usr/sbin/xl': '' },
};

const cleanup: string[] = [];
const hosts: LinuxHost[] = [];
after(async () => {
  for (const h of hosts) await h.close();
  for (const d of cleanup) rmSync(d, { recursive: true, force: true });
});

interface SetupOptions {
  onWrite?: (w: SysfsWrite, fx: FixtureHost) => void;
  sysfsWriteTimeoutMs?: number;
  isolateSysfsWrites?: boolean;
  /** Reuse a host tree and state dir: the same machine after an agent restart. */
  restartOf?: { fx: FixtureHost; stateDir: string };
}

async function setup({ onWrite, sysfsWriteTimeoutMs, isolateSysfsWrites, restartOf }: SetupOptions = {}): Promise<{ fx: FixtureHost; host: LinuxHost; ctx: HandlerContext; stateDir: string }> {
  const fx = restartOf?.fx ?? buildFixtureHost(SPEC);
  cleanup.push(fx.root);
  const runner = new RecordingRunner([
    { match: ['ip', '-o', 'addr', 'show'], result: { stdout: '' } },
    { match: ['xl', 'info'], result: { stdout: 'virt_caps : hvm hvm_directio\n' } },
    { match: ['xl', 'list'], result: { stdout: 'Name ID Mem VCPUs State Time(s)\nDomain-0 0 1024 2 r----- 5.5\n' } },
    { match: ['xl', 'pci-assignable-list'], result: { stdout: '' } },
  ]);
  const host = new LinuxHost({
    root: fx.root,
    runner,
    toolstack: 'xl',
    onSysfsWrite: (w) => (onWrite ? onWrite(w, fx) : fx.kernel.observer(w)),
    ...(sysfsWriteTimeoutMs === undefined ? {} : { sysfsWriteTimeoutMs }),
    ...(isolateSysfsWrites === undefined ? {} : { isolateSysfsWrites }),
  });
  hosts.push(host);
  const stateDir = restartOf?.stateDir ?? mkdtempSync(join(tmpdir(), 'ptctl-steps-'));
  cleanup.push(stateDir);
  const ctx = await fixtureHandlerContext(host, stateDir, { opId: 'op-1' });
  return { fx, host, ctx, stateDir };
}

void describe('a bind interrupted between its writes, and repair at the next start', () => {
  void it('records the intent before the first write; a crash after unbind leaves no driver; the next start rebinds e1000', async () => {
    // The process "dies" at pciback/bind: unbind and new_slot happened, bind never did, and nothing
    // after it happens either (a dead process does not roll back: every later write fails too).
    let crashed = false;
    const { fx, ctx, stateDir } = await setup({
      onWrite: (w, f) => {
        if (crashed || w.path.endsWith('/pciback/bind')) {
          crashed = true;
          throw new Error('agent killed here');
        }
        f.kernel.observer(w);
      },
    });
    await assert.rejects(commandHandlers.bind(ctx, { bdf: NIC, strategy: 'dynamic' }));
    assert.ok(crashed);
    assert.equal(fx.kernel.driverOf(NIC), null, 'the crash left the NIC on no driver');
    // The next agent start: fresh records from disk, a backend that obeys.
    const { ctx: restarted } = await setup({ restartOf: { fx, stateDir } });
    assert.deepEqual(Object.keys(restarted.records.intents), [NIC]);
    const repairs = await repairInterrupted(restarted);
    assert.deepEqual(repairs.map((r) => [r.bdf, r.action, r.driver, r.opId]), [[NIC, 'rebound', 'e1000', 'op-1']]);
    assert.equal(fx.kernel.driverOf(NIC), 'e1000');
    assert.deepEqual(fx.kernel.slots(), [], 'the half-made pciback slot is gone');
    assert.deepEqual((await DeviceRecords.open(stateDir)).intents, {}, 'the intent is cleared once repaired');
  });

  void it('a finished bind leaves no intent, and repair then does nothing', async () => {
    const { fx, ctx } = await setup();
    await commandHandlers.bind(ctx, { bdf: NIC, strategy: 'dynamic' });
    assert.equal(fx.kernel.driverOf(NIC), 'pciback');
    assert.deepEqual(ctx.records.intents, {});
    assert.deepEqual(await repairInterrupted(ctx), []);
    assert.equal(fx.kernel.driverOf(NIC), 'pciback');
  });
});

void describe('a sysfs write that never returns', () => {
  void it('fails after its timeout instead of wedging the agent, and the next command runs', async () => {
    const { fx, host } = await setup({ sysfsWriteTimeoutMs: 300 });
    // A FIFO without a reader: open(2) blocks in the kernel, as a write into a hung driver's probe does.
    const bind = fx.path('/sys/bus/pci/drivers/pciback/bind');
    unlinkSync(bind);
    execFileSync('mkfifo', [bind]);
    const started = Date.now();
    try {
      await assert.rejects(host.bindStub(NIC), (e) => isPtcError(e, ErrorCode.COMMAND_FAILED) && /did not return within 0.3 s/.test(e.message));
      assert.ok(Date.now() - started < 5000);
      const scan = await host.scan();
      assert.ok(scan.devices.some((d) => d.bdf === NIC), 'the agent still scans');
    } finally {
      // Let the blocked thread finish so the test process can exit.
      const reader = openSync(bind, constants.O_RDONLY | constants.O_NONBLOCK);
      await new Promise((r) => setTimeout(r, 50));
      closeSync(reader);
    }
  });
});

void describe('sysfs writes in a supervised child (real hosts)', () => {
  void it('a write that never returns holds only the writer process: it fails after its timeout, and the next write gets a new writer', async () => {
    const { fx, host } = await setup({ sysfsWriteTimeoutMs: 500, isolateSysfsWrites: true });
    const bind = fx.path('/sys/bus/pci/drivers/pciback/bind');
    unlinkSync(bind);
    execFileSync('mkfifo', [bind]);
    const started = Date.now();
    await assert.rejects(host.bindStub(NIC), (e) => isPtcError(e, ErrorCode.COMMAND_FAILED) && /did not return within 0.5 s/.test(e.message));
    assert.ok(Date.now() - started < 5000);
    // Nothing to unblock here (the writer was killed); the device went back to e1000 through a new writer.
    assert.equal(fx.kernel.driverOf(NIC), 'e1000');
    unlinkSync(bind);
    execFileSync('touch', [bind]);
    await host.bindStub(NIC);
    assert.equal(fx.kernel.driverOf(NIC), 'pciback');
  });

  void it('reports the kernel\'s refusal from the child as the in-process write does', async () => {
    const { host } = await setup({ isolateSysfsWrites: true });
    await assert.rejects(host.bindHostDriver('0000:00:04.0', 'no-such-driver'), (e) => isPtcError(e, ErrorCode.COMMAND_FAILED));
    const { fx, host: h2 } = await setup({ isolateSysfsWrites: true });
    unlinkSync(fx.path('/sys/bus/pci/drivers/pciback/bind'));
    await assert.rejects(h2.bindStub(NIC), (e) => isPtcError(e, ErrorCode.COMMAND_FAILED) && /failed: ENOENT/.test(e.message));
  });
});

void describe('per-verb toolstack timeouts', () => {
  void it('gives xl save, restore and migrate minutes, not the 60 s default', async () => {
    const runner = new RecordingRunner([{ match: () => true, result: {} }]);
    const xl = new XenToolstack(runner, 'xl');
    await xl.save('g1', '/var/lib/ptctl/saved/g1.save');
    await xl.restore('/var/lib/ptctl/saved/g1.save');
    await xl.migrate('g1', 'host-b');
    await xl.attach('g1', NIC);
    await xl.domains().catch(() => []);
    assert.deepEqual(runner.options.map((o) => o?.timeoutMs), [TOOLSTACK_TIMEOUTS_MS.save, TOOLSTACK_TIMEOUTS_MS.restore, TOOLSTACK_TIMEOUTS_MS.migrate, TOOLSTACK_TIMEOUTS_MS.pciAttach, undefined]);
    assert.ok(TOOLSTACK_TIMEOUTS_MS.save >= 10 * 60_000 && TOOLSTACK_TIMEOUTS_MS.migrate >= TOOLSTACK_TIMEOUTS_MS.save);
  });
});
