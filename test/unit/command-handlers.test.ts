import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commandHandlers, type HandlerContext } from '../../agent/command-handlers.js';
import { DeviceRecords } from '../../agent/device-records.js';
import { SimHost, type SimFaultsInput } from '../../agent/sim/sim-host.js';
import type { EventKind } from '../../schemas/agent-protocol.js';
import { ErrorCode, isPtcError } from '../../schemas/errors.js';

const UPLINK = '0000:01:00.0';
const ROOT_DISK = '0000:03:00.0';
const BDF = '0000:09:00.0';
const E1000E = '0000:0b:00.0';
const E1000_A = '0000:0a:04.0';
const MODPROBE = '/etc/modprobe.conf';

const dirs: string[] = [];
const hosts: SimHost[] = [];

after(async () => {
  for (const h of hosts) await h.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface Fixture {
  ctx: HandlerContext;
  host: SimHost;
  records: DeviceRecords;
  events: { kind: EventKind; detail: Record<string, unknown> }[];
  clock: { t: number };
  stateDir: string;
  hostDir: string;
  /** modprobe.conf right after SimHost.open. */
  originalModprobe: string;
  checkpoints: string[];
  modprobe(): Promise<string>;
  guestConfig(guest: string): Promise<string>;
  hotplugEvents(): Record<string, unknown>[];
  driverOf(bdf: string): Promise<string | null>;
}

async function setup(faults: SimFaultsInput = {}): Promise<Fixture> {
  const dir = mkdtempSync(join(tmpdir(), 'ptctl-handlers-'));
  dirs.push(dir);
  const hostDir = join(dir, 'hosts', 'h1');
  const stateDir = join(dir, 'agent-state');
  const clock = { t: Date.UTC(2024, 0, 1) };
  const now = (): number => clock.t;
  const host = await SimHost.open({ hostDir, hostId: 'h1', faults, now });
  hosts.push(host);
  const originalModprobe = readFileSync(join(hostDir, 'etc', 'modprobe.conf'), 'utf8');
  const records = await DeviceRecords.open(stateDir);
  const events: Fixture['events'] = [];
  const checkpoints: string[] = [];
  const ctx: HandlerContext = {
    hostId: 'h1',
    backend: host,
    records,
    hotplugCap: { max: 3, windowMs: 60_000 },
    now,
    emit: async (kind, detail) => {
      events.push({ kind, detail });
    },
    checkpoint: (step) => {
      checkpoints.push(step);
    },
  };
  const read = async (path: string): Promise<string> => {
    const text = await host.files.read(path);
    assert.ok(text !== null, `${path} missing`);
    return text;
  };
  return {
    ctx,
    host,
    records,
    events,
    clock,
    stateDir,
    hostDir,
    originalModprobe,
    checkpoints,
    modprobe: () => read(MODPROBE),
    guestConfig: (guest) => read(`/etc/xen/${guest}`),
    hotplugEvents: () => events.filter((e) => e.kind === 'hotplug').map((e) => e.detail),
    driverOf: async (bdf) => {
      const inv = await commandHandlers.inspect(ctx, {});
      const d = inv.devices.find((x) => x.bdf === bdf);
      assert.ok(d, `inspect has no ${bdf}`);
      return d.driver;
    },
  };
}

function ptcError(code: ErrorCode, ...mentions: string[]): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(isPtcError(err), `expected a PtcError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.ok(err.message.length > 0);
    for (const m of mentions) assert.ok(err.message.includes(m), `${code} message should mention ${m}: ${err.message}`);
    return true;
  };
}

/** hide + dynamic bind: the device is on pciback and ready to attach. */
async function prepare(f: Fixture, bdf = BDF): Promise<void> {
  await commandHandlers.hide(f.ctx, { bdf });
  await commandHandlers.bind(f.ctx, { bdf, strategy: 'dynamic' });
}

const attachArgs = (bdf: string, guest: string, mode: 'hot' | 'cold' | 'both', allowInsecurePV = false) => ({ bdf, guest, mode, allowInsecurePV });

// ---------------------------------------------------------------------------------------------

void describe('hide / unhide', () => {
  void it('refuses to hide the uplink with DEVICE_IN_USE and leaves modprobe.conf byte-identical', async () => {
    const f = await setup();
    await assert.rejects(commandHandlers.hide(f.ctx, { bdf: UPLINK }), ptcError(ErrorCode.DEVICE_IN_USE, UPLINK));
    await assert.rejects(commandHandlers.hide(f.ctx, { bdf: ROOT_DISK }), ptcError(ErrorCode.DEVICE_IN_USE, ROOT_DISK));
    assert.equal(readFileSync(join(f.hostDir, 'etc', 'modprobe.conf'), 'utf8'), f.originalModprobe);
    assert.deepEqual(f.checkpoints, [], 'nothing was written');
    assert.equal(await f.driverOf(UPLINK), 'bnx2');
  });

  void it('hides 09:00.0 once: the second hide changes nothing, byte for byte', async () => {
    const f = await setup();
    const first = await commandHandlers.hide(f.ctx, { bdf: BDF });
    assert.deepEqual(first, { bdf: BDF, changed: true, file: MODPROBE, driver: 'bnx2' });
    const text = await f.modprobe();
    const lines = text.split('\n');
    assert.ok(lines.includes('install bnx2 /sbin/modprobe pciback; /sbin/modprobe --first-time --ignore-install bnx2'), text);
    assert.ok(lines.includes('options pciback hide=(0000:09:00.0)'), text);
    assert.ok(text.startsWith(f.originalModprobe), 'the host lines are kept as they were');
    const second = await commandHandlers.hide(f.ctx, { bdf: BDF });
    assert.deepEqual(second, { bdf: BDF, changed: false, file: MODPROBE, driver: 'bnx2' });
    assert.equal(await f.modprobe(), text);
    // Hiding is configuration only: the device is still on its driver (DESIGN §5).
    assert.equal(await f.driverOf(BDF), 'bnx2');
    const inv = await commandHandlers.inspect(f.ctx, {});
    assert.equal(inv.devices.find((d) => d.bdf === BDF)?.hidden, true);
  });

  void it('unhide of a device that is not hidden changes nothing', async () => {
    const f = await setup();
    const r = await commandHandlers.unhide(f.ctx, { bdf: E1000E });
    assert.equal(r.changed, false);
    assert.equal(await f.modprobe(), f.originalModprobe);
  });
});

void describe('bind / unbind', () => {
  void it('bind dynamic records the original driver (bnx2) and says so; a second bind changes nothing', async () => {
    const f = await setup();
    await commandHandlers.hide(f.ctx, { bdf: BDF });
    const r = await commandHandlers.bind(f.ctx, { bdf: BDF, strategy: 'dynamic' });
    assert.deepEqual(r, { bdf: BDF, changed: true, driver: 'pciback', originalDriver: 'bnx2' });
    assert.equal(f.records.originalDriver(BDF), 'bnx2');
    // On disk, before the agent restarts (rule 11).
    assert.equal((await DeviceRecords.open(f.stateDir)).originalDriver(BDF), 'bnx2');
    assert.equal(await f.driverOf(BDF), 'pciback');
    assert.equal(f.host.responsive(), true, 'a dynamic bind does not drop the uplink');
    assert.ok(f.checkpoints.indexOf('bind:after-record') < f.checkpoints.indexOf('bind:after-effect'));
    const again = await commandHandlers.bind(f.ctx, { bdf: BDF, strategy: 'dynamic' });
    assert.deepEqual(again, { bdf: BDF, changed: false, driver: 'pciback', originalDriver: 'bnx2' });
  });

  void it('bind reload of 09:00.0 is refused with RELOAD_UNSAFE: bnx2 drives the uplink', async () => {
    const f = await setup();
    await commandHandlers.hide(f.ctx, { bdf: BDF });
    await assert.rejects(commandHandlers.bind(f.ctx, { bdf: BDF, strategy: 'reload' }), ptcError(ErrorCode.RELOAD_UNSAFE, UPLINK));
    assert.equal(f.host.responsive(), true, 'the driver was not reloaded');
    assert.equal(await f.driverOf(BDF), 'bnx2');
    assert.equal(f.records.originalDriver(BDF), undefined, 'nothing recorded for a refused bind');
  });

  void it('bind reload of 0a:04.0: NOT_HIDDEN before hide, pciback after', async () => {
    // e1000's other device is 0a:04.0's idle companion, so a reload is safe (e1000e's 0c:00.0 serves the guests' bridge).
    const f = await setup();
    await assert.rejects(commandHandlers.bind(f.ctx, { bdf: E1000_A, strategy: 'reload' }), ptcError(ErrorCode.NOT_HIDDEN, E1000_A));
    assert.equal(await f.driverOf(E1000_A), 'e1000');
    await commandHandlers.hide(f.ctx, { bdf: E1000_A });
    const r = await commandHandlers.bind(f.ctx, { bdf: E1000_A, strategy: 'reload' });
    assert.deepEqual(r, { bdf: E1000_A, changed: true, driver: 'pciback', originalDriver: 'e1000' });
    assert.equal(await f.driverOf(E1000_A), 'pciback');
    assert.equal(await f.driverOf('0000:0a:04.1'), 'e1000', 'the function that is not hidden goes back to e1000');
    assert.equal(f.host.responsive(), true, 'e1000 does not carry the uplink');
  });

  void it('bind refuses the uplink with DEVICE_IN_USE whatever the strategy', async () => {
    const f = await setup();
    await assert.rejects(commandHandlers.bind(f.ctx, { bdf: UPLINK, strategy: 'dynamic' }), ptcError(ErrorCode.DEVICE_IN_USE, UPLINK));
    assert.equal(await f.driverOf(UPLINK), 'bnx2');
  });

  void it('unbind while the device is live in a guest is refused with DEVICE_ASSIGNED', async () => {
    const f = await setup();
    await prepare(f);
    await commandHandlers.attach(f.ctx, attachArgs(BDF, 'vm-hvm', 'hot'));
    await assert.rejects(commandHandlers.unbind(f.ctx, { bdf: BDF, driver: null }), ptcError(ErrorCode.DEVICE_ASSIGNED, BDF, 'vm-hvm'));
    assert.equal(await f.driverOf(BDF), 'pciback');
    assert.equal(f.records.originalDriver(BDF), 'bnx2');
  });

  void it('unbind of a device that is not on pciback changes nothing', async () => {
    const f = await setup();
    assert.deepEqual(await commandHandlers.unbind(f.ctx, { bdf: BDF, driver: null }), { bdf: BDF, changed: false, driver: 'bnx2' });
  });
});

void describe('verify', () => {
  void it('expect pciback fails with VERIFY_FAILED before the bind and passes after', async () => {
    const f = await setup();
    await assert.rejects(commandHandlers.verify(f.ctx, { bdf: BDF, expect: 'pciback' }), ptcError(ErrorCode.VERIFY_FAILED, BDF));
    assert.deepEqual(await commandHandlers.verify(f.ctx, { bdf: BDF, expect: 'host' }), { bdf: BDF, driver: 'bnx2', inPcibackSlots: false, assignable: false });
    // Hidden in the file is not bound: still a failure (judged by state, rule 12).
    await commandHandlers.hide(f.ctx, { bdf: BDF });
    await assert.rejects(commandHandlers.verify(f.ctx, { bdf: BDF, expect: 'pciback' }), ptcError(ErrorCode.VERIFY_FAILED, BDF));
    await commandHandlers.bind(f.ctx, { bdf: BDF, strategy: 'dynamic' });
    assert.deepEqual(await commandHandlers.verify(f.ctx, { bdf: BDF, expect: 'pciback' }), { bdf: BDF, driver: 'pciback', inPcibackSlots: true, assignable: true });
    await assert.rejects(commandHandlers.verify(f.ctx, { bdf: BDF, expect: 'host' }), ptcError(ErrorCode.VERIFY_FAILED, BDF));
  });

  void it('refuses an unknown device', async () => {
    const f = await setup();
    await assert.rejects(commandHandlers.verify(f.ctx, { bdf: '0000:0e:00.0', expect: 'pciback' }), ptcError(ErrorCode.DEVICE_NOT_FOUND, '0000:0e:00.0'));
  });
});

void describe('attach / detach', () => {
  void it('attach both writes the pci line and hotplugs once; a second attach changes nothing', async () => {
    const f = await setup();
    await prepare(f);
    const before = await f.guestConfig('vm-hvm');
    const r = await commandHandlers.attach(f.ctx, attachArgs(BDF, 'vm-hvm', 'both'));
    assert.deepEqual(r, { bdf: BDF, guest: 'vm-hvm', hot: true, cold: true, changed: true, hotplugged: true, guestRebootNeeded: false });
    const config = await f.guestConfig('vm-hvm');
    assert.ok(config.split('\n').includes("pci = [ '0000:09:00.0' ]"), config);
    assert.ok(config.startsWith(before.replace(/\n$/, '')), 'the rest of the config is kept');
    assert.deepEqual(f.hotplugEvents(), [{ action: 'attach', bdf: BDF, guest: 'vm-hvm' }]);
    assert.equal(f.host.kernel.facts.hotplugs[BDF]?.length, 1);

    const again = await commandHandlers.attach(f.ctx, attachArgs(BDF, 'vm-hvm', 'both'));
    assert.deepEqual(again, { bdf: BDF, guest: 'vm-hvm', hot: true, cold: true, changed: false, hotplugged: false, guestRebootNeeded: false });
    assert.equal(await f.guestConfig('vm-hvm'), config);
    assert.equal(f.hotplugEvents().length, 1, 'no second hotplug');
    assert.equal(f.host.kernel.facts.hotplugs[BDF]?.length, 1, 'the kernel saw one hotplug');
  });

  void it('attach to vm-pv6 is refused with PV_UNSUPPORTED, even with allowInsecurePV', async () => {
    const f = await setup();
    await prepare(f);
    const before = await f.guestConfig('vm-pv6');
    for (const allow of [false, true]) {
      await assert.rejects(commandHandlers.attach(f.ctx, attachArgs(BDF, 'vm-pv6', 'both', allow)), ptcError(ErrorCode.PV_UNSUPPORTED, 'vm-pv6'));
    }
    assert.equal(await f.guestConfig('vm-pv6'), before);
    assert.deepEqual(f.hotplugEvents(), []);
  });

  void it('attach to vm-pv needs allowInsecurePV', async () => {
    const f = await setup();
    await prepare(f);
    await assert.rejects(commandHandlers.attach(f.ctx, attachArgs(BDF, 'vm-pv', 'both')), ptcError(ErrorCode.PV_INSECURE, 'vm-pv'));
    const r = await commandHandlers.attach(f.ctx, attachArgs(BDF, 'vm-pv', 'both', true));
    assert.equal(r.hot, true);
    assert.equal(r.cold, true);
  });

  void it('attach of a device that is not on pciback is refused with NOT_BOUND', async () => {
    const f = await setup();
    await commandHandlers.hide(f.ctx, { bdf: BDF });
    await assert.rejects(commandHandlers.attach(f.ctx, attachArgs(BDF, 'vm-hvm', 'both')), ptcError(ErrorCode.NOT_BOUND, BDF));
    assert.doesNotMatch(await f.guestConfig('vm-hvm'), /pci\s*=/);
    assert.deepEqual(f.hotplugEvents(), []);
  });

  void it('a device attached to one guest is refused for another with DEVICE_ASSIGNED', async () => {
    const f = await setup();
    await prepare(f);
    await commandHandlers.attach(f.ctx, attachArgs(BDF, 'vm-hvm', 'cold'));
    await assert.rejects(commandHandlers.attach(f.ctx, attachArgs(BDF, 'vm-pv', 'both', true)), ptcError(ErrorCode.DEVICE_ASSIGNED, BDF, 'vm-hvm'));
  });

  void it('a failed hotplug is reported as a failure and leaves the guest without the device', async () => {
    const f = await setup({ attachFailureProbability: 1 });
    await prepare(f);
    await assert.rejects(commandHandlers.attach(f.ctx, attachArgs(BDF, 'vm-hvm', 'hot')), (err: unknown) => isPtcError(err));
    const status = await commandHandlers['guest-status'](f.ctx, { guest: 'vm-hvm' });
    assert.deepEqual(status.liveDevices, []);
    assert.deepEqual(f.hotplugEvents(), [], 'no hotplug event for a hotplug that did not happen');
    // The attempt still counts against the agent's cap: it touched the kernel.
    assert.equal(f.records.recentHotplugs(BDF, f.clock.t, 60_000).length, 1);
  });

  void it('the agent refuses the 4th hotplug within its window with HOTPLUG_BUDGET (max 3)', async () => {
    const f = await setup();
    await prepare(f);
    await commandHandlers.attach(f.ctx, attachArgs(BDF, 'vm-hvm', 'hot'));
    f.clock.t += 1000;
    await commandHandlers.detach(f.ctx, attachArgs(BDF, 'vm-hvm', 'hot'));
    f.clock.t += 1000;
    await commandHandlers.attach(f.ctx, attachArgs(BDF, 'vm-hvm', 'hot'));
    f.clock.t += 1000;
    await assert.rejects(commandHandlers.detach(f.ctx, attachArgs(BDF, 'vm-hvm', 'hot')), ptcError(ErrorCode.HOTPLUG_BUDGET, BDF));
    // The refused hotplug never reached the kernel and the device stays where it was.
    assert.equal(f.host.kernel.facts.hotplugs[BDF]?.length, 3);
    assert.equal(f.hotplugEvents().length, 3);
    assert.deepEqual((await commandHandlers['guest-status'](f.ctx, { guest: 'vm-hvm' })).liveDevices, [BDF]);
    // Once the first hotplug has left the 60 s window (at +60 s), one more is allowed.
    f.clock.t += 56_999;
    await assert.rejects(commandHandlers.detach(f.ctx, attachArgs(BDF, 'vm-hvm', 'hot')), ptcError(ErrorCode.HOTPLUG_BUDGET));
    f.clock.t += 1;
    const r = await commandHandlers.detach(f.ctx, attachArgs(BDF, 'vm-hvm', 'hot'));
    assert.equal(r.hot, false);
    assert.equal(r.changed, true);
    assert.equal(r.hotplugged, true);
    assert.equal(f.hotplugEvents().length, 4);
  });

  void it('guest-status is pinned while a device is attached and not after detach', async () => {
    const f = await setup();
    assert.equal((await commandHandlers['guest-status'](f.ctx, { guest: 'vm-hvm' })).pinned, false);
    await prepare(f);
    await commandHandlers.attach(f.ctx, attachArgs(BDF, 'vm-hvm', 'both'));
    assert.deepEqual(await commandHandlers['guest-status'](f.ctx, { guest: 'vm-hvm' }), {
      guest: 'vm-hvm',
      state: 'running',
      liveDevices: [BDF],
      configDevices: [BDF],
      pinned: true,
    });
    assert.equal((await commandHandlers['guest-status'](f.ctx, { guest: 'vm-pv' })).pinned, false, 'only the guest holding it');
    const d = await commandHandlers.detach(f.ctx, attachArgs(BDF, 'vm-hvm', 'both'));
    assert.deepEqual(d, { bdf: BDF, guest: 'vm-hvm', hot: false, cold: false, changed: true, hotplugged: true, guestRebootNeeded: false });
    assert.deepEqual(await commandHandlers['guest-status'](f.ctx, { guest: 'vm-hvm' }), {
      guest: 'vm-hvm',
      state: 'running',
      liveDevices: [],
      configDevices: [],
      pinned: false,
    });
    await assert.rejects(commandHandlers['guest-status'](f.ctx, { guest: 'vm-gone' }), ptcError(ErrorCode.GUEST_NOT_FOUND, 'vm-gone'));
  });
});

void describe('the whole way back', () => {
  void it('detach, unbind and unhide give 09:00.0 back to bnx2 and restore modprobe.conf and the guest config byte for byte', async () => {
    const f = await setup();
    const guestBefore = await f.guestConfig('vm-hvm');
    await prepare(f);
    await commandHandlers.attach(f.ctx, attachArgs(BDF, 'vm-hvm', 'both'));
    // unhide is refused while a guest holds the device.
    await assert.rejects(commandHandlers.unhide(f.ctx, { bdf: BDF }), ptcError(ErrorCode.DEVICE_ASSIGNED, BDF));

    await commandHandlers.detach(f.ctx, attachArgs(BDF, 'vm-hvm', 'both'));
    assert.equal(await f.guestConfig('vm-hvm'), guestBefore);
    assert.deepEqual(
      f.hotplugEvents().map((e) => e['action']),
      ['attach', 'detach'],
    );

    const unbound = await commandHandlers.unbind(f.ctx, { bdf: BDF, driver: null });
    assert.deepEqual(unbound, { bdf: BDF, changed: true, driver: 'bnx2' });
    assert.equal(await f.driverOf(BDF), 'bnx2');
    assert.equal(f.records.originalDriver(BDF), undefined, 'the record is dropped once the driver is back');
    assert.deepEqual(await commandHandlers.verify(f.ctx, { bdf: BDF, expect: 'host' }), { bdf: BDF, driver: 'bnx2', inPcibackSlots: false, assignable: false });

    const unhidden = await commandHandlers.unhide(f.ctx, { bdf: BDF });
    assert.deepEqual(unhidden, { bdf: BDF, changed: true, file: MODPROBE, driver: 'bnx2' });
    assert.equal(await f.modprobe(), f.originalModprobe);
    assert.equal(readFileSync(join(f.hostDir, 'etc', 'modprobe.conf'), 'utf8'), f.originalModprobe);
    assert.equal((await commandHandlers.unhide(f.ctx, { bdf: BDF })).changed, false);
    assert.equal(f.host.responsive(), true);
  });

  void it('unhide keeps the install line a still-hidden device needs', async () => {
    const f = await setup();
    await commandHandlers.hide(f.ctx, { bdf: '0000:0a:04.0' });
    await commandHandlers.hide(f.ctx, { bdf: '0000:0a:04.1' });
    await commandHandlers.hide(f.ctx, { bdf: E1000E });
    await commandHandlers.unhide(f.ctx, { bdf: '0000:0a:04.0' });
    let lines = (await f.modprobe()).split('\n');
    assert.ok(lines.includes('options pciback hide=(0000:0a:04.1)(0000:0b:00.0)'), lines.join('\n'));
    assert.ok(lines.some((l) => l.startsWith('install e1000 ')), 'e1000 is still needed by 0a:04.1');
    await commandHandlers.unhide(f.ctx, { bdf: '0000:0a:04.1' });
    lines = (await f.modprobe()).split('\n');
    assert.ok(!lines.some((l) => l.startsWith('install e1000 ')), 'e1000 is no longer needed');
    assert.ok(lines.some((l) => l.startsWith('install e1000e ')));
    await commandHandlers.unhide(f.ctx, { bdf: E1000E });
    assert.equal(await f.modprobe(), f.originalModprobe);
  });
});
