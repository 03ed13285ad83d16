import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseModprobeConf, renderModprobeConf, withHidden } from '../../agent/modprobe-conf.js';
import { KERNEL_HOTPLUG_LIMIT, KERNEL_HOTPLUG_WINDOW_MS, SimHost, type SimFaultsInput } from '../../agent/sim/sim-host.js';
import { SIM_PROFILES } from '../../agent/sim/profiles.js';
import { DeviceRecords } from '../../agent/device-records.js';
import { readInventory } from '../../agent/host-inventory.js';
import { ErrorCode, isPtcError } from '../../schemas/errors.js';
import { HostInventory } from '../../schemas/inventory.js';

const UPLINK = '0000:01:00.0';
const ROOT_DISK = '0000:03:00.0';
const BDF = '0000:09:00.0';
const E1000E = '0000:0b:00.0';

// The RHEL 5 host's own /etc/modprobe.conf, spelled out from the profile of DESIGN §5.
const RHEL5_MODPROBE_CONF =
  'alias eth0 bnx2\nalias eth2 bnx2\nalias eth3 e1000\nalias eth4 e1000e\nalias eth5 e1000\nalias eth6 e1000e\nalias scsi_hostadapter megaraid_sas\nalias scsi_hostadapter1 mpt2sas\nalias usb-controller ehci-hcd\n';

// ---------------------------------------------------------------------------------------------
// Harness: one temp dir per host, a clock the test moves, everything closed and removed at the end.
// ---------------------------------------------------------------------------------------------

// Every simulated kernel call is a durable (fsync'd) state write and the hotplug storms below make
// ~1000 of them: on tmpfs when the machine has one, so the file stays fast on a busy disk.
const TMP = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
const dirs: string[] = [];
const hosts: SimHost[] = [];

after(async () => {
  for (const h of hosts) await h.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

class Clock {
  t = Date.UTC(2024, 0, 1);
  readonly now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

async function openHost(faults: SimFaultsInput = {}, clock = new Clock(), hostDir?: string, profile?: string): Promise<{ host: SimHost; clock: Clock; dir: string }> {
  const dir = hostDir ?? mkdtempSync(join(TMP, 'ptctl-sim-'));
  if (hostDir === undefined) dirs.push(dir);
  const host = await SimHost.open({ hostDir: dir, hostId: 'h1', faults, now: clock.now, ...(profile === undefined ? {} : { profile }) });
  hosts.push(host);
  return { host, clock, dir };
}

async function driverOf(host: SimHost, bdf: string): Promise<string | null> {
  const d = (await host.scan()).devices.find((x) => x.bdf === bdf);
  assert.ok(d, `no device ${bdf} in the scan`);
  return d.driver;
}

async function drivers(host: SimHost): Promise<Record<string, string | null>> {
  return Object.fromEntries((await host.scan()).devices.map((d) => [d.bdf, d.driver]));
}

async function liveDevices(host: SimHost, guest: string): Promise<string[]> {
  const g = (await host.scan()).guests.find((x) => x.name === guest);
  assert.ok(g, `no guest ${guest}`);
  return g.liveDevices;
}

/** Hides `bdf` in the host's modprobe file through the agent's own editor; `install` keeps or drops the install line. */
async function hideInFile(host: SimHost, bdf: string, driver: string, install = true): Promise<string> {
  const { file, dialect } = host.modprobe();
  const conf = withHidden(parseModprobeConf((await host.files.read(file)) ?? '', dialect), bdf, driver);
  const text = renderModprobeConf(install ? conf : { ...conf, managed: { ...conf.managed, drivers: [] } }, dialect);
  await host.files.writeAtomic(file, text);
  return text;
}

/** Read through a function: TypeScript would otherwise keep the narrowing of an earlier assert. */
function kernelFailure(host: SimHost): string | null {
  return host.kernel.facts.failure;
}

function commandFailed(pattern: RegExp, code: ErrorCode = ErrorCode.COMMAND_FAILED): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(isPtcError(err), `expected a PtcError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, pattern);
    return true;
  };
}

// ---------------------------------------------------------------------------------------------

void describe('SimHost: files and first boot', () => {
  void it('creates etc/modprobe.conf and the guest configs as real files with the RHEL 5 content', async () => {
    const { host, dir } = await openHost();
    assert.deepEqual(host.modprobe(), { file: '/etc/modprobe.conf', dialect: { module: 'pciback', modprobe: '/sbin/modprobe' } });
    assert.equal(readFileSync(join(dir, 'etc', 'modprobe.conf'), 'utf8'), RHEL5_MODPROBE_CONF);
    for (const [name, marker] of [
      ['vm-hvm', 'builder = "hvm"'],
      ['vm-pv', 'bootloader = "/usr/bin/pygrub"'],
      ['vm-pv6', 'bootloader = "/usr/bin/pygrub"'],
    ] as const) {
      assert.equal(host.guestConfigPath(name), `/etc/xen/${name}`);
      const path = join(dir, 'etc', 'xen', name);
      assert.ok(existsSync(path), `${path} missing`);
      const text = readFileSync(path, 'utf8');
      assert.ok(text.split('\n').includes(`name = "${name}"`), text);
      assert.ok(text.includes(marker), text);
      assert.ok(text.includes(`phy:/dev/guests/${name}`), text);
      assert.doesNotMatch(text, /^\s*pci\s*=/m, 'no device is passed through at first');
      assert.equal(await host.files.read(`/etc/xen/${name}`), text);
    }
    assert.equal(existsSync(join(dir, 'etc', 'xen', 'vm-kvm5')), false, 'vm-kvm5 exists on KVM profiles only');
  });

  void it('boots with every device on its host driver, pciback not loaded, the host answering', async () => {
    const { host } = await openHost();
    assert.deepEqual(await drivers(host), {
      '0000:00:02.0': null,
      [UPLINK]: 'bnx2',
      [ROOT_DISK]: 'megaraid_sas',
      '0000:04:00.0': 'mpt2sas',
      [BDF]: 'bnx2',
      '0000:0a:04.0': 'e1000',
      '0000:0a:04.1': 'e1000',
      [E1000E]: 'e1000e',
      '0000:0c:00.0': 'e1000e',
      '0000:0d:00.0': null,
    });
    const scan = await host.scan();
    assert.deepEqual(scan.os, { name: 'rhel', version: '5.4' });
    assert.equal(scan.iommu, true);
    assert.ok(scan.devices.find((d) => d.bdf === UPLINK)?.inUse, 'the uplink is in use');
    assert.ok(scan.devices.find((d) => d.bdf === ROOT_DISK)?.inUse, 'the root disk controller is in use');
    assert.equal(scan.devices.find((d) => d.bdf === BDF)?.inUse, null);
    assert.equal(host.kernel.facts.pcibackLoaded, false);
    assert.equal(host.kernel.facts.bootCount, 1);
    assert.equal(host.kernel.facts.failure, null);
    assert.equal(host.responsive(), true);
  });
});

void describe('SimHost: hide= and driver reload', () => {
  void it('a hide= line in modprobe.conf does not move the device by itself', async () => {
    const { host } = await openHost();
    const bootId = await host.bootId();
    const text = await hideInFile(host, BDF, 'bnx2');
    assert.ok(text.includes('options pciback hide=(0000:09:00.0)'), text);
    assert.equal(await driverOf(host, BDF), 'bnx2');
    assert.equal(host.kernel.facts.pcibackLoaded, false);
    assert.deepEqual(host.kernel.facts.pcibackSlots, []);
    assert.equal(await host.bootId(), bootId);
  });

  void it('reloadDriver(bnx2) moves the hidden 09:00.0 to pciback but drops the uplink: silent for uplinkDropMs', async () => {
    const { host, clock } = await openHost({ uplinkDropMs: 5000 });
    await hideInFile(host, BDF, 'bnx2');
    assert.equal(host.responsive(), true);
    await host.reloadDriver('bnx2');
    assert.equal(await driverOf(host, BDF), 'pciback');
    assert.ok(host.kernel.facts.pcibackLoaded);
    assert.deepEqual(host.kernel.facts.pcibackSlots, [BDF]);
    // The uplink came back on bnx2, but the host lost its connection for a while.
    assert.equal(await driverOf(host, UPLINK), 'bnx2');
    assert.equal(host.responsive(), false);
    clock.advance(4999);
    assert.equal(host.responsive(), false, 'still silent 1 ms before uplinkDropMs');
    clock.advance(1);
    assert.equal(host.responsive(), true, 'answers again once uplinkDropMs has passed');
    // Other drivers' devices were not touched.
    assert.equal(await driverOf(host, E1000E), 'e1000e');
    assert.equal(await driverOf(host, ROOT_DISK), 'megaraid_sas');
  });

  void it('reloadDriver without an install line still moves a hidden device: the linux backend loads pciback between -r and load', async () => {
    // busybox ignores install lines, so the linux backend never relies on one for a reload.
    const { host } = await openHost();
    await hideInFile(host, BDF, 'bnx2', false);
    await host.reloadDriver('bnx2');
    assert.equal(await driverOf(host, BDF), 'pciback');
    assert.equal(host.kernel.facts.pcibackLoaded, true);
    assert.equal(await driverOf(host, UPLINK), 'bnx2', 'the uplink came back on bnx2');
    assert.equal(host.responsive(), false, 'the reload still dropped the uplink');
  });

  void it('reloadDriver of a driver without an uplink keeps the host answering', async () => {
    const { host } = await openHost();
    await hideInFile(host, E1000E, 'e1000e');
    await host.reloadDriver('e1000e');
    assert.equal(await driverOf(host, E1000E), 'pciback');
    assert.equal(host.responsive(), true);
    await assert.rejects(host.reloadDriver('ixgbe'), commandFailed(/ixgbe/));
  });

  void it('a reload takes reloadMs and a hotplug attach attachMs (the bench\'s realistic latencies); a detach takes neither', async () => {
    // The attach's latency is far above anything a detach could take on a loaded machine, so "neither" holds there too.
    const { host } = await openHost({ reloadMs: 400, attachMs: 1500 });
    await hideInFile(host, E1000E, 'e1000e');
    const timed = async (work: () => Promise<void>): Promise<number> => {
      const started = performance.now();
      await work();
      return performance.now() - started;
    };
    assert.ok((await timed(() => host.reloadDriver('e1000e'))) >= 400);
    assert.equal(await driverOf(host, E1000E), 'pciback');
    assert.ok((await timed(() => host.hotplug('vm-hvm', E1000E))) >= 1500);
    assert.ok((await timed(() => host.hotunplug('vm-hvm', E1000E))) < 1500);
  });
});

void describe('SimHost: reboots', () => {
  void it('a hidden device without an install line for its driver stays on the host driver after a reboot', async () => {
    const { host } = await openHost();
    await hideInFile(host, BDF, 'bnx2', false);
    await host.reboot();
    await host.powerCycle();
    assert.equal(await driverOf(host, BDF), 'bnx2');
    assert.equal(host.kernel.facts.pcibackLoaded, false);
  });

  void it('a hidden device with the install line goes to pciback at boot; the others stay on their drivers', async () => {
    const { host } = await openHost();
    await hideInFile(host, BDF, 'bnx2');
    await host.reboot();
    await host.powerCycle();
    assert.equal(await driverOf(host, BDF), 'pciback');
    assert.deepEqual(host.kernel.facts.pcibackSlots, [BDF]);
    assert.equal(await driverOf(host, UPLINK), 'bnx2');
    assert.equal(await driverOf(host, E1000E), 'e1000e');
    assert.equal(host.responsive(), true);
  });

  void it('reboot gives a new bootId and bootCount+1, exactly once', async () => {
    const { host, clock } = await openHost({ rebootMs: 30 });
    const before = await host.bootId();
    let boots = 0;
    host.onBoot(() => boots++);
    await host.reboot();
    assert.equal(host.responsive(), false, 'silent while rebooting');
    assert.equal(await host.bootId(), before, 'the boot id changes when the boot completes');
    clock.advance(30);
    await host.powerCycle();
    const after1 = await host.bootId();
    assert.notEqual(after1, before);
    assert.equal(host.kernel.facts.bootCount, 2);
    assert.equal(host.responsive(), true);
    assert.equal(boots, 1);
    // The reboot's own timer must not boot the host a second time after the power cycle finished it.
    await sleep(80);
    assert.equal(host.kernel.facts.bootCount, 2, 'a pending reboot timer booted the host again');
    assert.equal(await host.bootId(), after1);
    assert.equal(boots, 1);
  });

  void it('a reboot completes by itself after rebootMs', async () => {
    const { host } = await openHost({ rebootMs: 0 });
    const before = await host.bootId();
    let boots = 0;
    host.onBoot(() => boots++);
    await host.reboot();
    // The simulator's boot timer is unref'd (it must not keep an agent alive): wait with a ref'd one.
    // A boot rebuilds the host's /sys and /proc, which takes a while on a loaded machine: poll, bounded.
    for (let i = 0; i < 100 && boots === 0; i++) await sleep(20);
    assert.equal(boots, 1);
    assert.notEqual(await host.bootId(), before);
    assert.equal(host.kernel.facts.bootCount, 2);
    assert.equal(host.responsive(), true);
  });

  void it('rebootHangs leaves the host silent until a power cycle', async () => {
    const { host, clock } = await openHost({ rebootHangs: true, rebootMs: 10 });
    const before = await host.bootId();
    await host.reboot();
    clock.advance(24 * 60 * 60_000);
    await sleep(30);
    assert.equal(host.responsive(), false);
    assert.equal(await host.bootId(), before);
    assert.equal(host.kernel.facts.bootCount, 1);
    await host.powerCycle();
    assert.equal(host.responsive(), true);
    assert.notEqual(await host.bootId(), before);
    assert.equal(host.kernel.facts.bootCount, 2);
  });
});

void describe('SimHost: dynamic bind', () => {
  void it('bindPciback works without any config and does not survive a reboot', async () => {
    const { host } = await openHost();
    await host.bindStub(BDF);
    assert.equal(await driverOf(host, BDF), 'pciback');
    const scanned = (await host.scan()).devices.find((d) => d.bdf === BDF);
    assert.equal(scanned?.inPcibackSlots, true);
    assert.equal(scanned?.assignable, true);
    assert.equal(await host.files.read('/etc/modprobe.conf'), RHEL5_MODPROBE_CONF, 'no file was touched');
    assert.equal(host.responsive(), true, 'no driver reload, no uplink drop');
    assert.equal(await driverOf(host, UPLINK), 'bnx2');
    await host.powerCycle();
    assert.equal(await driverOf(host, BDF), 'bnx2');
    assert.deepEqual(host.kernel.facts.pcibackSlots, []);
  });

  void it('bindHostDriver gives the device back and leaves pciback slots', async () => {
    const { host } = await openHost();
    await host.bindStub(BDF);
    await host.bindHostDriver(BDF, 'bnx2');
    assert.equal(await driverOf(host, BDF), 'bnx2');
    assert.ok(!host.kernel.facts.pcibackSlots.includes(BDF));
  });
});

void describe('SimHost: hotplug', () => {
  void it('refuses to hotplug a device that is not on pciback', async () => {
    const { host } = await openHost();
    await assert.rejects(host.hotplug('vm-hvm', BDF), commandFailed(/not assignable|bnx2/));
    assert.deepEqual(await liveDevices(host, 'vm-hvm'), []);
    await assert.rejects(host.hotunplug('vm-hvm', BDF), commandFailed(/not attached/));
  });

  void it('hotplug and hotunplug move a pciback device in and out of a running guest', async () => {
    const { host } = await openHost();
    await host.bindStub(BDF);
    await host.hotplug('vm-hvm', BDF);
    assert.deepEqual(await liveDevices(host, 'vm-hvm'), [BDF]);
    await host.hotunplug('vm-hvm', BDF);
    assert.deepEqual(await liveDevices(host, 'vm-hvm'), []);
    assert.equal(host.kernel.facts.hotplugs[BDF]?.length, 2);
  });

  void it(`more than ${KERNEL_HOTPLUG_LIMIT} hotplugs of a device within 60 s fail the kernel until a power cycle`, async () => {
    assert.equal(KERNEL_HOTPLUG_LIMIT, 512);
    assert.equal(KERNEL_HOTPLUG_WINDOW_MS, 60_000);
    const { host, clock } = await openHost();
    await host.bindStub(BDF);
    for (let i = 0; i < KERNEL_HOTPLUG_LIMIT; i++) {
      clock.advance(1);
      if (i % 2 === 0) await host.hotplug('vm-hvm', BDF);
      else await host.hotunplug('vm-hvm', BDF);
    }
    assert.equal(host.kernel.facts.failure, null, `${KERNEL_HOTPLUG_LIMIT} calls are still within the limit`);
    assert.equal(host.responsive(), true);
    clock.advance(1);
    await assert.rejects(host.hotplug('vm-hvm', BDF), commandFailed(/stopped answering/));
    const failure = kernelFailure(host);
    assert.ok(failure !== null && failure.includes(BDF), String(failure));
    assert.equal(host.responsive(), false);
    clock.advance(10 * 60_000);
    assert.equal(host.responsive(), false, 'a failed kernel does not recover with time');
    await host.powerCycle();
    assert.equal(host.kernel.facts.failure, null);
    assert.equal(host.responsive(), true);
    assert.deepEqual(host.kernel.facts.hotplugs, {});
  });

  void it('the same number of hotplugs spread over more than 60 s does not fail the kernel', async () => {
    const { host, clock } = await openHost();
    await host.bindStub(BDF);
    // 513 calls 118 ms apart span 60.5 s; no 60 s window holds more than 509 of them.
    const calls = KERNEL_HOTPLUG_LIMIT + 1;
    for (let i = 0; i < calls; i++) {
      clock.advance(118);
      if (i % 2 === 0) await host.hotplug('vm-hvm', BDF);
      else await host.hotunplug('vm-hvm', BDF);
    }
    assert.equal(host.kernel.facts.failure, null);
    assert.equal(host.responsive(), true);
    const inWindow = host.kernel.facts.hotplugs[BDF]?.length ?? 0;
    assert.ok(inWindow > 500 && inWindow <= KERNEL_HOTPLUG_LIMIT, `old entries leave the window: ${inWindow} left`);
  });

  void it('attachFailureProbability 1 makes every hotplug fail and leaves the guest without the device', async () => {
    const { host } = await openHost({ attachFailureProbability: 1 });
    await host.bindStub(BDF);
    // xm exits 1, which the linux backend reports as COMMAND_FAILED (the agent's handler makes it ATTACH_FAILED).
    await assert.rejects(host.hotplug('vm-hvm', BDF), commandFailed(/xm pci-attach vm-hvm 0000:09:00.0 failed .*injected fault/));
    await assert.rejects(host.hotplug('vm-hvm', BDF), commandFailed(/injected fault/));
    assert.deepEqual(await liveDevices(host, 'vm-hvm'), []);
    // A failed attempt still touched the kernel's interrupt tracking.
    assert.equal(host.kernel.facts.hotplugs[BDF]?.length, 2);
    assert.equal(await driverOf(host, BDF), 'pciback');
  });
});

void describe('SimHost: persistence', () => {
  void it('a second SimHost on the same dir sees the same bootId, drivers and live devices', async () => {
    const { host, clock, dir } = await openHost();
    await hideInFile(host, E1000E, 'e1000e');
    await host.reloadDriver('e1000e');
    await host.bindStub(BDF);
    await host.hotplug('vm-hvm', BDF);
    const reopened = (await openHost({}, clock, dir)).host;
    assert.equal(await reopened.bootId(), await host.bootId());
    assert.deepEqual(await drivers(reopened), await drivers(host));
    assert.equal(await driverOf(reopened, BDF), 'pciback');
    assert.equal(await driverOf(reopened, E1000E), 'pciback');
    assert.deepEqual(await liveDevices(reopened, 'vm-hvm'), [BDF]);
    assert.deepEqual(reopened.kernel.facts.pcibackSlots, host.kernel.facts.pcibackSlots);
    assert.equal(reopened.kernel.facts.bootCount, 1);
    // The files are not recreated over the edited ones.
    assert.ok((await reopened.files.read('/etc/modprobe.conf'))?.includes('hide=(0000:0b:00.0)'));
  });

  void it('a reboot in progress survives a restart', async () => {
    const { host, clock, dir } = await openHost({ rebootHangs: true });
    await host.reboot();
    const reopened = (await openHost({ rebootHangs: true }, clock, dir)).host;
    assert.equal(reopened.responsive(), false);
    await reopened.powerCycle();
    assert.equal(reopened.responsive(), true);
    assert.equal(reopened.kernel.facts.bootCount, 2);
  });
});

void describe('SimHost: one model, detected by the linux backend', () => {
  void it('the linux backend finds exactly the devices the profile says the host needs, and the 0a:04 functions as one group', async () => {
    const { host } = await openHost();
    const profile = SIM_PROFILES['rhel5-xen'];
    assert.ok(profile);
    const scan = await host.scan();
    assert.deepEqual(scan.devices.filter((d) => d.inUse !== null).map((d) => d.bdf), Object.keys(profile.inUse).sort());
    const groups = scan.devices.filter((d) => d.iommuGroup !== null).map((d) => [d.bdf, d.iommuGroup]);
    assert.deepEqual(groups, [
      ['0000:0a:04.0', 0x0a20],
      ['0000:0a:04.1', 0x0a20],
    ]);
    assert.deepEqual(scan.capabilities, ['dynamic-bind', 'reload', 'reboot', 'hotplug']);
  });

  void it('unbinding the uplink NIC through sysfs silences the host (no policy in the way at this level)', async () => {
    const { host, clock } = await openHost({ uplinkDropMs: 1000 });
    await host.bindStub(UPLINK);
    assert.equal(host.responsive(), false);
    clock.advance(1000);
    assert.equal(host.responsive(), true);
  });

  void it('a reboot-only host (early pciback without new_slot) offers only reboot, and binds a hidden device at boot', async () => {
    const { host } = await openHost({}, new Clock(), undefined, 'rhel5-xen-rebootonly');
    assert.deepEqual((await host.scan()).capabilities, ['reboot', 'hotplug']);
    await hideInFile(host, BDF, 'bnx2');
    await host.reboot();
    await host.powerCycle();
    assert.equal(await driverOf(host, BDF), 'pciback');
    assert.equal(await driverOf(host, UPLINK), 'bnx2');
    assert.deepEqual(host.kernel.facts.pcibackSlots, [BDF]);
  });
});

void describe('SimHost: refused writes (fleet-file fault)', () => {
  void it('refuseWrites makes the kernel refuse a sysfs write once; the linux backend rolls the bind back, the retry binds', async () => {
    const { host } = await openHost({ refuseWrites: [{ path: '/pciback/bind', code: 'EBUSY' }] });
    await assert.rejects(host.bindStub(BDF), commandFailed(/EBUSY.*rolled back: 0000:09:00\.0 is on bnx2 again/));
    assert.equal(await driverOf(host, BDF), 'bnx2');
    assert.deepEqual(host.kernel.facts.pcibackSlots, []);
    await host.bindStub(BDF);
    assert.equal(await driverOf(host, BDF), 'pciback');
  });
});

void describe('SimHost: the debian12-xen profile holds the real-host cases', () => {
  void it('the linux backend finds exactly the devices the profile says the host needs, and groups the two devices behind the conventional bridge', async () => {
    const { host } = await openHost({}, new Clock(), undefined, 'debian12-xen');
    const profile = SIM_PROFILES['debian12-xen'];
    assert.ok(profile);
    // The inventory, not the bare scan: a PF's use through its VFs' guests is known once the guests' configs are read.
    const records = mkdtempSync(join(TMP, 'ptctl-records-'));
    dirs.push(records);
    const scan = await readInventory('h1', host, await DeviceRecords.open(records));
    // What the agent publishes must pass the schema, with the new SR-IOV fields.
    HostInventory.parse(scan);
    const used = Object.fromEntries(scan.devices.filter((d) => d.inUse !== null).map((d) => [d.bdf, d.inUse]));
    assert.deepEqual(Object.keys(used).sort(), Object.keys(profile.inUse).sort(), JSON.stringify(used, null, 1));
    assert.match(used['0000:00:02.0'] ?? '', /BMC's VGA \(ASPEED\)/);
    assert.match(used['0000:03:00.0'] ?? '', /^its SR-IOV VF 0000:03:10\.0 is bound to host driver igbvf; its SR-IOV VF 0000:03:10\.4 is assigned to guest vm-db$/);
    assert.equal(used['0000:06:00.0'], "eno4 is a port of Open vSwitch bridge br-guests, which carries guests' interfaces vif2.0 (vm-db)");
    assert.match(used['0000:07:00.0'] ?? '', /^it controls nvme0c0n1 \(a path of NVMe multipath head nvme0n1\), mounted on \/ and \/boot\/efi, a physical volume of LVM volume group guests/);
    assert.equal(used['0000:09:00.0'], 'its device node /dev/dri/card1 is open by process 1312 (Xorg)');
    assert.deepEqual(scan.devices.filter((d) => d.iommuGroup !== null).map((d) => [d.bdf, d.iommuGroup]), [
      ['0000:05:00.0', 0xf0],
      ['0000:05:01.0', 0xf0],
    ]);
    assert.deepEqual(scan.devices.find((d) => d.bdf === '0000:04:10.0')?.sriovPf, '0000:04:00.0');
  });

  void it('with pciback built in, hiding a device refuses NOT_HIDDEN naming the kernel command line', async () => {
    const { host } = await openHost({}, new Clock(), undefined, 'debian12-xen-builtin');
    const [winner] = await host.winningHideSources('0000:0a:00.0');
    assert.equal(winner?.source, '/proc/cmdline');
    assert.match(winner?.reason ?? '', /xen-pciback is built into this kernel \(modules\.builtin\)/);
  });
});
