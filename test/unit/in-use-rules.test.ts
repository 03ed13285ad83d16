import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ScannedDevice } from '../../agent/backend.js';
import { commandHandlers, type HandlerContext } from '../../agent/command-handlers.js';
import { DeviceRecords } from '../../agent/device-records.js';
import { type CannedCommand, RecordingRunner } from '../../agent/linux/command-runner.js';
import { guestPhyDisks, parseZpoolStatus, readOpenGpuNodes, splitLvmName } from '../../agent/linux/host-usage.js';
import { HostTree } from '../../agent/linux/host-tree.js';
import { LinuxHost } from '../../agent/linux/linux-host.js';
import { conventionalBehind, xenCoAssignmentGroups } from '../../agent/linux/sysfs-scan.js';
import { configSpace } from '../../agent/sim/sim-tree.js';
import { chooseStrategy, iommuCompanions } from '../../policy/passthrough-policy.js';
import type { PciDevice } from '../../schemas/inventory.js';
import { ErrorCode, isPtcError } from '../../schemas/errors.js';
import type { PciAddress } from '../../schemas/pci-address.js';
import { buildFixtureHost, type FixtureHost, type FixtureHostSpec } from '../helpers/sysfs-fixture.js';

/**
 * The in-use rules of DESIGN §4 rule 1 that take guests down when missed (a NIC under a guests'
 * bridge, a controller whose disks are held or are guests' phy: disks, the console), the
 * transactional bind of rule 14 and Xen co-assignment from topology, each on a fixture tree.
 */

const XL_LIST = `Name                                        ID   Mem VCPUs\tState\tTime(s)
Domain-0                                     0  1024     2     r-----     105.5
vm-web                                       3   512     1     -b----       3.2
`;

const guestConfig = (disk: string): string => `name = "vm-web"\n# ptctl-os: debian 12\nmemory = 512\ndisk = [ '${disk},xvda,w' ]\nvif = [ 'bridge=br0' ]\n`;

const XEN_HOST = (guestDisk = 'phy:/dev/sdd'): FixtureHostSpec => ({
  osRelease: 'ID=debian\nVERSION_ID="12"\n',
  xen: true,
  kernelRelease: '6.1.0-56-amd64',
  pciback: { slots: [] },
  devices: [
    { bdf: '0000:00:02.0', vendor: '102b', device: '0532', class: '030000', bootVga: true },
    { bdf: '0000:00:03.0', vendor: '1234', device: '1111', class: '030000', bootVga: false, driver: 'bochs-drm' },
    { bdf: '0000:00:04.0', vendor: '8086', device: '100e', class: '020000', driver: 'e1000', net: ['eth0'] },
    { bdf: '0000:00:05.0', vendor: '8086', device: '100e', class: '020000', driver: 'e1000', net: ['eth1'] },
    { bdf: '0000:00:06.0', vendor: '8086', device: '100e', class: '020000', driver: 'e1000', net: ['eth2'] },
    { bdf: '0000:00:07.0', vendor: '8086', device: '2922', class: '010601', driver: 'ahci', disks: [{ name: 'sda', dev: '8:0', partitions: ['sda1'] }] },
    { bdf: '0000:00:08.0', vendor: '1000', device: '0072', class: '010700', driver: 'mpt2sas', disks: [{ name: 'sdb', dev: '8:16' }] },
    { bdf: '0000:00:09.0', vendor: '1000', device: '0072', class: '010700', driver: 'mpt2sas', disks: [{ name: 'sdd', dev: '8:48' }] },
    { bdf: '0000:00:0a.0', vendor: '1000', device: '0072', class: '010700', driver: 'mpt2sas', disks: [{ name: 'sde', dev: '8:64' }] },
    { bdf: '0000:00:0b.0', vendor: '10de', device: '1eb8', class: '030000', bootVga: false },
  ],
  interfaces: {
    eth0: { operstate: 'up' },
    // eth1: no address, a port of br0, which carries vm-web's vif3.0.
    eth1: { operstate: 'up', master: 'br0' },
    br0: { operstate: 'up', bridge: true },
    'vif3.0': { operstate: 'up', master: 'br0' },
    // eth2: a port of a bridge no guest uses.
    eth2: { operstate: 'up', master: 'br1' },
    br1: { operstate: 'up', bridge: true },
  },
  routes: [['eth0', 'default']],
  mounts: [['/dev/sda1', '/', 'ext4']],
  // sdb is the PV of VG vg0, whose LV is not mounted in dom0.
  deviceMappers: [{ name: 'dm-1', mapperName: 'vg0-lv--a', uuid: 'LVM-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', slaves: ['sdb'], devLinks: ['/dev/vg0/lv-a'] }],
  framebuffers: { fb0: '0000:00:03.0' },
  files: { '/usr/sbin/xl': '' },
  guests: { 'vm-web': guestConfig(guestDisk) },
});

const fixtures: FixtureHost[] = [];
const dirs: string[] = [];
after(() => {
  for (const f of fixtures) f.cleanup();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function xenHost(spec: FixtureHostSpec = XEN_HOST(), extra: CannedCommand[] = []): { fx: FixtureHost; host: LinuxHost; runner: RecordingRunner } {
  const fx = buildFixtureHost(spec);
  fixtures.push(fx);
  const pcibackDevices = (): string => spec.devices.filter((d) => fx.kernel.driverOf(d.bdf) === 'pciback').map((d) => `${d.bdf}\n`).join('');
  const runner = new RecordingRunner([
    { match: ['ip', '-o', 'addr', 'show'], result: { stdout: '2: eth0    inet 10.0.0.4/24 brd 10.0.0.255 scope global eth0\n' } },
    { match: ['xl', 'info'], result: { stdout: 'virt_caps              : hvm hvm_directio\n' } },
    { match: ['xl', 'list'], result: { stdout: XL_LIST } },
    { match: (a) => a[0] === 'xl' && a[1] === 'pci-list', result: { stdout: '' } },
    { match: ['xl', 'pci-assignable-list'], result: () => ({ stdout: pcibackDevices() }) },
  ]);
  for (const c of extra) runner.on(c.match, c.result, c.times);
  return { fx, host: new LinuxHost({ root: fx.root, runner, toolstack: 'xl', onSysfsWrite: fx.kernel.observer }), runner };
}

async function handlerCtx(spec: FixtureHostSpec, extra: CannedCommand[] = []): Promise<{ fx: FixtureHost; ctx: HandlerContext; runner: RecordingRunner }> {
  const { fx, host, runner } = xenHost(spec, extra);
  const dir = mkdtempSync(join(tmpdir(), 'ptctl-records-'));
  dirs.push(dir);
  return { fx, runner, ctx: { hostId: 'h1', backend: host, records: await DeviceRecords.open(dir), hotplugCap: { max: 10, windowMs: 60_000 }, now: Date.now, emit: async () => {}, checkpoint: () => {} } };
}

async function scanned(host: LinuxHost, bdf: string): Promise<ScannedDevice> {
  const d = (await host.scan()).devices.find((x) => x.bdf === bdf);
  assert.ok(d, `scan has no ${bdf}`);
  return d;
}

void describe('in use through a bridge that carries guests’ interfaces', () => {
  void it('a NIC with no dom0 address under a bridge with a guest vif is in use, naming the bridge and the guest', async () => {
    const { host } = xenHost();
    assert.equal((await scanned(host, '0000:00:05.0')).inUse, "eth1 is a port of bridge br0, which carries guests' interfaces vif3.0 (vm-web)");
  });

  void it('a NIC under a bridge no guest uses, with no address, is idle', async () => {
    const { host } = xenHost();
    assert.equal((await scanned(host, '0000:00:06.0')).inUse, null);
  });
});

void describe('in use through block holders and guests’ phy: disks', () => {
  void it('a controller whose disk is an LVM physical volume is in use, naming the volume group, though nothing is mounted', async () => {
    const { host } = xenHost();
    assert.equal((await scanned(host, '0000:00:08.0')).inUse, 'it controls sdb, a physical volume of LVM volume group vg0 (logical volumes lv-a)');
  });

  void it('a controller whose disk is a guest’s phy: disk is in use, naming the guest', async () => {
    const { host } = xenHost();
    assert.equal((await scanned(host, '0000:00:09.0')).inUse, 'it controls sdd, backing phy: disks of guest vm-web');
    assert.equal((await scanned(host, '0000:00:0a.0')).inUse, null, 'a controller nothing uses is idle');
  });

  void it('a guest’s phy: disk through an LV is traced through device-mapper to its controller', async () => {
    const { host } = xenHost(XEN_HOST('phy:/dev/vg0/lv-a'));
    assert.match((await scanned(host, '0000:00:08.0')).inUse ?? '', /backing phy: disks of guest vm-web$/);
    assert.equal((await scanned(host, '0000:00:09.0')).inUse, null);
  });

  void it('fails closed: a phy: disk that cannot be traced makes every storage controller in use, and no NIC', async () => {
    const { host } = xenHost(XEN_HOST('phy:/dev/disk/by-id/wwn-0x5000c500a1b2c3d4'));
    for (const bdf of ['0000:00:08.0', '0000:00:09.0', '0000:00:0a.0']) {
      assert.match((await scanned(host, bdf)).inUse ?? '', /guest vm-web's phy: disk \/dev\/disk\/by-id\/wwn-0x5000c500a1b2c3d4 cannot be traced to a controller, so every storage controller counts as in use/);
    }
    assert.equal((await scanned(host, '0000:00:06.0')).inUse, null);
  });

  void it('parses phy: disks of xm/xl configs and LVM device-mapper names', () => {
    assert.deepEqual(guestPhyDisks('g', "disk = [ 'phy:/dev/vg/g,xvda,w', \"phy:sdb1,xvdb,r\", 'file:/img,xvdc,w' ]"), [
      { guest: 'g', path: '/dev/vg/g' },
      { guest: 'g', path: '/dev/sdb1' },
    ]);
    assert.deepEqual(splitLvmName('guests-vm--hvm'), ['guests', 'vm-hvm']);
    assert.deepEqual(splitLvmName('my--vg-root'), ['my-vg', 'root']);
    assert.equal(splitLvmName('mpatha'), null);
  });
});

void describe('in use as the console', () => {
  void it('the boot VGA is in use even without a PCI driver (vgacon); a framebuffer’s device too; another VGA is idle', async () => {
    const { host } = xenHost();
    assert.equal((await scanned(host, '0000:00:02.0')).inUse, "it is the boot VGA device, which shows the host's console");
    assert.equal((await scanned(host, '0000:00:03.0')).inUse, "it drives framebuffer fb0, the host's console");
    assert.equal((await scanned(host, '0000:00:0b.0')).inUse, null);
  });
});

void describe('transactional bind (rule 14)', () => {
  const NIC = '0000:00:06.0';

  void it('a pciback bind the kernel refuses part-way puts the device back on its driver before failing', async () => {
    const { fx, host } = xenHost();
    fx.kernel.refusals.push({ path: '/sys/bus/pci/drivers/pciback/bind', code: 'EBUSY' });
    await assert.rejects(host.bindStub(NIC), (err: unknown) => {
      assert.ok(isPtcError(err) && err.code === ErrorCode.COMMAND_FAILED, String(err));
      assert.match(err.message, /EBUSY.*rolled back: 0000:00:06\.0 is on e1000 again/);
      return true;
    });
    assert.equal(fx.kernel.driverOf(NIC), 'e1000');
    assert.deepEqual(fx.kernel.slots(), [], 'the slot it got is removed again');
  });

  void it('a driver_override left by driverctl does not win over pciback: ptctl writes driver_override=pciback first, and clears it on release', async () => {
    const spec = XEN_HOST();
    spec.devices = spec.devices.map((d) => (d.bdf === NIC ? { ...d, driverOverride: 'e1000' } : d));
    const { fx, host } = xenHost(spec);
    await host.bindStub(NIC);
    assert.equal(fx.kernel.driverOf(NIC), 'pciback');
    assert.equal(fx.kernel.writes[0]?.path, `/sys/bus/pci/devices/${NIC}/driver_override`, 'the override is written before the unbind');
    await host.bindHostDriver(NIC, 'e1000');
    assert.equal(fx.kernel.driverOf(NIC), 'e1000');
    assert.equal(fx.kernel.override(NIC), null, 'ptctl’s override is gone');
  });

  void it('a retry never overwrites the recorded original driver with null, and unbind gives a stranded device its driver back', async () => {
    const { fx, host } = xenHost();
    const dir = mkdtempSync(join(tmpdir(), 'ptctl-records-'));
    dirs.push(dir);
    const records = await DeviceRecords.open(dir);
    const ctx: HandlerContext = { hostId: 'h1', backend: host, records, hotplugCap: { max: 10, windowMs: 60_000 }, now: Date.now, emit: async () => {}, checkpoint: () => {} };
    // A bind that failed and could not roll back (a kernel that refuses the rebind too) leaves the device driverless.
    fx.kernel.refusals.push({ path: '/sys/bus/pci/drivers/pciback/bind', code: 'EBUSY' }, { path: '/sys/bus/pci/drivers/e1000/bind', code: 'EIO' }, { path: '/sys/bus/pci/drivers_probe', code: 'EIO' });
    await assert.rejects(commandHandlers.bind(ctx, { bdf: NIC, strategy: 'dynamic' }), /rolling back failed: 0000:00:06\.0 is on no driver, was on e1000/);
    assert.equal(fx.kernel.driverOf(NIC), null);
    assert.equal(records.originalDriver(NIC), 'e1000');
    // The retry sees no driver: the record keeps e1000.
    fx.kernel.refusals.push({ path: '/sys/bus/pci/drivers/pciback/bind', code: 'EBUSY' });
    await assert.rejects(commandHandlers.bind(ctx, { bdf: NIC, strategy: 'dynamic' }));
    assert.equal(records.originalDriver(NIC), 'e1000', 'the retry did not record "no driver"');
    // The saga's undo: unbind gives the stranded device back to the recorded driver.
    const r = await commandHandlers.unbind(ctx, { bdf: NIC, driver: null });
    assert.deepEqual(r, { bdf: NIC, changed: true, driver: 'e1000' });
    assert.equal(fx.kernel.driverOf(NIC), 'e1000');
  });
});

void describe('devices no host driver holds', () => {
  void it('hide of a driverless GPU writes hide= without an install line; dynamic bind and release leave it as it was', async () => {
    const { fx, host } = xenHost();
    const GPU = '0000:00:0b.0' as PciAddress;
    const dir = mkdtempSync(join(tmpdir(), 'ptctl-records-'));
    dirs.push(dir);
    const ctx: HandlerContext = { hostId: 'h1', backend: host, records: await DeviceRecords.open(dir), hotplugCap: { max: 10, windowMs: 60_000 }, now: Date.now, emit: async () => {}, checkpoint: () => {} };
    const hidden = await commandHandlers.hide(ctx, { bdf: GPU });
    assert.deepEqual(hidden, { bdf: GPU, changed: true, file: '/etc/modprobe.d/ptctl-pciback.conf', driver: null });
    const conf = fx.read('/etc/modprobe.d/ptctl-pciback.conf') ?? '';
    assert.ok(conf.includes(`options xen-pciback hide=(${GPU})`), conf);
    assert.ok(!conf.includes('install '), conf);
    assert.deepEqual(await commandHandlers.bind(ctx, { bdf: GPU, strategy: 'dynamic' }), { bdf: GPU, changed: true, driver: 'pciback', originalDriver: null });
    assert.deepEqual(await commandHandlers.verify(ctx, { bdf: GPU, expect: 'pciback' }), { bdf: GPU, driver: 'pciback', inPcibackSlots: true, assignable: true });
    assert.deepEqual(await commandHandlers.unbind(ctx, { bdf: GPU, driver: null }), { bdf: GPU, changed: true, driver: null });
    assert.deepEqual(await commandHandlers.verify(ctx, { bdf: GPU, expect: 'host' }), { bdf: GPU, driver: null, inPcibackSlots: false, assignable: false });
  });
});

void describe('Xen co-assignment from topology', () => {
  const fn = (bdf: string, resetMethod: string | null = null, cls = '0200'): { bdf: PciAddress; class: string; resetMethod: string | null } => ({ bdf: bdf, class: cls, resetMethod });

  void it('groups the functions of a multi-function endpoint without FLR; with FLR, single functions and bridges stay alone', () => {
    const groups = xenCoAssignmentGroups([
      fn('0000:0a:04.0'),
      fn('0000:0a:04.1'),
      fn('0000:0b:00.0', 'flr bus\n'),
      fn('0000:0b:00.1', 'flr bus\n'),
      fn('0000:0c:00.0'),
      fn('0000:00:1c.0', null, '0604'),
      fn('0000:00:1c.1', null, '0604'),
    ]);
    assert.deepEqual([...groups], [
      ['0000:0a:04.0', 0x0a20],
      ['0000:0a:04.1', 0x0a20],
    ]);
  });

  void it('a Xen dom0 scan reports the functions of the endpoint as one group (no iommu_groups in sysfs)', async () => {
    const spec = XEN_HOST();
    spec.devices = [...spec.devices, { bdf: '0000:01:00.0', vendor: '8086', device: '10c9', class: '020000', driver: 'igb', net: ['eth4'] }, { bdf: '0000:01:00.1', vendor: '8086', device: '10c9', class: '020000', driver: 'igb', net: ['eth5'] }];
    const { host } = xenHost(spec);
    const devices = (await host.scan()).devices;
    assert.deepEqual(devices.filter((d) => d.iommuGroup !== null).map((d) => [d.bdf, d.iommuGroup]), [
      ['0000:01:00.0', 0x0100],
      ['0000:01:00.1', 0x0100],
    ]);
  });
});

void describe('the effective hide list (rule 15): another source that wins is refused', () => {
  const NIC = '0000:00:06.0';
  const hideCtx = async (spec: FixtureHostSpec): Promise<{ fx: FixtureHost; ctx: HandlerContext }> => {
    const { fx, host } = xenHost(spec);
    const dir = mkdtempSync(join(tmpdir(), 'ptctl-records-'));
    dirs.push(dir);
    return { fx, ctx: { hostId: 'h1', backend: host, records: await DeviceRecords.open(dir), hotplugCap: { max: 10, windowMs: 60_000 }, now: Date.now, emit: async () => {}, checkpoint: () => {} } };
  };

  void it('a modprobe.d file sorting after ptctl’s with its own hide= makes hide NOT_HIDDEN, and ptctl writes nothing', async () => {
    const spec = XEN_HOST();
    spec.files = { ...spec.files, '/etc/modprobe.d/zz-local.conf': 'options xen-pciback hide=(0000:00:0b.0)\n', '/etc/modprobe.d/aa-early.conf': 'options xen-pciback hide=(0000:00:0a.0)\n' };
    const { fx, ctx } = await hideCtx(spec);
    await assert.rejects(commandHandlers.hide(ctx, { bdf: NIC }), (err: unknown) => {
      assert.ok(isPtcError(err) && err.code === ErrorCode.NOT_HIDDEN, String(err));
      assert.match(err.message, /^\/etc\/modprobe\.d\/zz-local\.conf sets pciback's hide= list \(0000:00:0b\.0\) and is read after \/etc\/modprobe\.d\/ptctl-pciback\.conf, so it wins/);
      return true;
    });
    assert.equal(fx.read('/etc/modprobe.d/ptctl-pciback.conf'), null);
  });

  void it('the kernel command line’s xen-pciback.hide= wins too; one that already lists the device does not block', async () => {
    const spec = XEN_HOST();
    spec.cmdline = 'root=/dev/sda1 xen-pciback.hide=(0000:00:0b.0)';
    const { ctx } = await hideCtx(spec);
    await assert.rejects(commandHandlers.hide(ctx, { bdf: NIC }), /\/proc\/cmdline sets pciback's hide= list/);
    const listed = XEN_HOST();
    listed.cmdline = `root=/dev/sda1 xen-pciback.hide=(0000:00:0b.0)(${NIC})`;
    const ok = await hideCtx(listed);
    assert.equal((await commandHandlers.hide(ok.ctx, { bdf: NIC })).changed, true);
  });
});

/** XEN_HOST with more devices, interfaces and facts: each real-host case below adds its own. */
function withCase(extra: Partial<FixtureHostSpec> & { devices?: FixtureHostSpec['devices'] }): FixtureHostSpec {
  const base = XEN_HOST();
  return {
    ...base,
    ...extra,
    devices: [...base.devices, ...(extra.devices ?? [])],
    interfaces: { ...base.interfaces, ...extra.interfaces },
    files: { ...base.files, ...extra.files },
    deviceMappers: [...(base.deviceMappers ?? []), ...(extra.deviceMappers ?? [])],
    mounts: [...(base.mounts ?? []), ...(extra.mounts ?? [])],
    guests: { ...base.guests, ...extra.guests },
  };
}

async function inventoryDevice(ctx: HandlerContext, bdf: string): Promise<PciDevice> {
  const d = (await commandHandlers.inspect(ctx, {})).devices.find((x) => x.bdf === bdf);
  assert.ok(d, `inventory has no ${bdf}`);
  return d;
}

void describe('SR-IOV: a PF while its VFs are used, reload of a PF, VFs and the reboot strategy', () => {
  const PF = '0000:02:00.0';
  const IDLE_PF = '0000:03:00.0';
  const SRIOV = (): FixtureHostSpec =>
    withCase({
      devices: [
        { bdf: PF, vendor: '8086', device: '1521', class: '020000', driver: 'igb', net: ['eth4'], sriovVfs: ['0000:02:10.0', '0000:02:11.0', '0000:02:12.0'] },
        { bdf: '0000:02:10.0', vendor: '8086', device: '1520', class: '020000', driver: 'igbvf', net: ['eth10'] },
        { bdf: '0000:02:11.0', vendor: '8086', device: '1520', class: '020000', driver: 'pciback' },
        { bdf: '0000:02:12.0', vendor: '8086', device: '1520', class: '020000', driver: 'pciback' },
        { bdf: IDLE_PF, vendor: '8086', device: '10fb', class: '020000', driver: 'ixgbe', net: ['eth5'], sriovVfs: ['0000:03:10.0'] },
        { bdf: '0000:03:10.0', vendor: '8086', device: '10ed', class: '020000', driver: 'pciback' },
      ],
      interfaces: { eth4: { operstate: 'down' }, eth5: { operstate: 'down' }, eth10: { operstate: 'down' } },
      guests: { 'vm-web': `${guestConfig('phy:/dev/sdd')}pci = [ '0000:02:11.0' ]\n` },
    });

  void it('a PF is in use while a VF is on a host driver or assigned to a guest, and hide refuses it; one whose VFs are idle on pciback is not', async () => {
    const { ctx } = await handlerCtx(SRIOV());
    const pf = await inventoryDevice(ctx, PF);
    assert.equal(pf.inUse, 'its SR-IOV VF 0000:02:10.0 is bound to host driver igbvf; its SR-IOV VF 0000:02:11.0 is assigned to guest vm-web');
    assert.deepEqual(pf.sriovVfs, ['0000:02:10.0', '0000:02:11.0', '0000:02:12.0']);
    await assert.rejects(commandHandlers.hide(ctx, { bdf: PF }), (err: unknown) => isPtcError(err) && err.code === ErrorCode.DEVICE_IN_USE);
    assert.equal((await inventoryDevice(ctx, IDLE_PF)).inUse, null);
    assert.equal((await inventoryDevice(ctx, '0000:03:10.0')).sriovPf, IDLE_PF);
  });

  void it('reloading a PF’s driver would remove its VFs (RELOAD_UNSAFE); a VF refuses the reboot strategy (STRATEGY_UNSUPPORTED), also when auto would pick it', async () => {
    const { ctx } = await handlerCtx(SRIOV());
    const inv = await commandHandlers.inspect(ctx, {});
    const pf = inv.devices.find((d) => d.bdf === IDLE_PF);
    const vf = inv.devices.find((d) => d.bdf === '0000:03:10.0');
    assert.ok(pf && vf);
    const reload = chooseStrategy(inv, pf, 'reload');
    assert.ok(!reload.ok && reload.code === ErrorCode.RELOAD_UNSAFE, JSON.stringify(reload));
    assert.match(reload.message, /would remove the SR-IOV VFs 0000:03:10\.0 of 0000:03:00\.0/);
    const reboot = chooseStrategy(inv, vf, 'reboot');
    assert.ok(!reboot.ok && reboot.code === ErrorCode.STRATEGY_UNSUPPORTED, JSON.stringify(reboot));
    assert.match(reboot.message, /SR-IOV VF of 0000:03:00\.0/);
    const auto = chooseStrategy({ ...inv, capabilities: ['reboot', 'hotplug'] }, vf, 'auto');
    assert.ok(!auto.ok && auto.code === ErrorCode.STRATEGY_UNSUPPORTED);
    assert.deepEqual(chooseStrategy(inv, vf, 'dynamic'), { ok: true, strategy: 'dynamic' });
  });
});

void describe('Open vSwitch: a port of a bridge that carries guests’ interfaces', () => {
  const OVS = (): FixtureHostSpec =>
    withCase({
      devices: [
        { bdf: '0000:00:0c.0', vendor: '8086', device: '100e', class: '020000', driver: 'e1000', net: ['eth3'] },
        { bdf: '0000:00:0d.0', vendor: '8086', device: '100e', class: '020000', driver: 'e1000', net: ['eth7'] },
      ],
      // Every OVS port's master is the datapath device, whatever its bridge.
      interfaces: { 'ovs-system': { operstate: 'down' }, eth3: { operstate: 'up', master: 'ovs-system' }, eth7: { operstate: 'up', master: 'ovs-system' }, 'vif3.1': { operstate: 'up', master: 'ovs-system' } },
    });
  const VSCTL: CannedCommand[] = [
    { match: ['ovs-vsctl', 'list-br'], result: { stdout: 'br-ex\nbr-idle\n' } },
    { match: ['ovs-vsctl', 'list-ports', 'br-ex'], result: { stdout: 'eth3\nvif3.1\n' } },
    { match: ['ovs-vsctl', 'list-ports', 'br-idle'], result: { stdout: 'eth7\n' } },
  ];

  void it('a NIC on an OVS bridge with a guest vif is in use, naming the bridge and the guest; one on a bridge without guests is idle', async () => {
    const { host } = xenHost(OVS(), VSCTL);
    assert.equal((await scanned(host, '0000:00:0c.0')).inUse, "eth3 is a port of Open vSwitch bridge br-ex, which carries guests' interfaces vif3.1 (vm-web)");
    assert.equal((await scanned(host, '0000:00:0d.0')).inUse, null);
  });

  void it('fails closed: when ovs-vsctl is missing or fails, every OVS port is in use', async () => {
    const { host } = xenHost(OVS(), [{ match: ['ovs-vsctl', 'list-br'], result: { code: 127, stderr: 'spawn ovs-vsctl ENOENT' } }]);
    for (const bdf of ['0000:00:0c.0', '0000:00:0d.0']) {
      assert.match((await scanned(host, bdf)).inUse ?? '', /is a port of Open vSwitch and its bridge cannot be read \(ovs-vsctl list-br failed: spawn ovs-vsctl ENOENT\), so it counts as in use/);
    }
    assert.equal((await scanned(host, '0000:00:06.0')).inUse, null, 'a NIC outside OVS is not affected');
  });
});

void describe('macvtap: the lower device of a guest’s macvtap', () => {
  void it('a NIC under a macvtap is in use naming it, also when the macvtap was renamed (its macvtap/tapN device says what it is)', async () => {
    const spec = withCase({
      devices: [
        { bdf: '0000:00:0e.0', vendor: '8086', device: '100e', class: '020000', driver: 'e1000', net: ['eth8'] },
        { bdf: '0000:00:0f.0', vendor: '8086', device: '100e', class: '020000', driver: 'e1000', net: ['eth9'] },
      ],
      interfaces: { eth8: { operstate: 'up' }, eth9: { operstate: 'up' }, macvtap0: { operstate: 'up', lower: 'eth8', macvtap: true }, 'mvt-web': { operstate: 'up', lower: 'eth9', macvtap: true } },
    });
    const { host } = xenHost(spec);
    assert.equal((await scanned(host, '0000:00:0e.0')).inUse, "eth8 carries macvtap0, a guest's interface");
    assert.equal((await scanned(host, '0000:00:0f.0')).inUse, "eth9 carries mvt-web, a guest's interface");
  });

  void it('a NIC under a macvlan moved into a container’s network namespace is in use; one under an idle macvlan of the host is not', async () => {
    const spec = withCase({
      devices: [
        { bdf: '0000:00:0e.0', vendor: '8086', device: '100e', class: '020000', driver: 'e1000', net: ['eth8'] },
        { bdf: '0000:00:0f.0', vendor: '8086', device: '100e', class: '020000', driver: 'e1000', net: ['eth9'] },
      ],
      interfaces: { eth8: { operstate: 'up' }, eth9: { operstate: 'up' }, mvl0: { operstate: 'up', lower: 'eth8', otherNetns: true }, mvl1: { operstate: 'down', lower: 'eth9' } },
    });
    const { host } = xenHost(spec);
    assert.equal((await scanned(host, '0000:00:0e.0')).inUse, "eth8 carries mvl0, which is in another network namespace (a container's or a guest's), so it counts as in use");
    assert.equal((await scanned(host, '0000:00:0f.0')).inUse, null);
  });
});

void describe('NVMe multipath, ZFS and btrfs members', () => {
  const STORAGE = (): FixtureHostSpec =>
    withCase({
      devices: [
        { bdf: '0000:00:10.0', vendor: '144d', device: 'a808', class: '010802', driver: 'nvme', disks: [{ name: 'nvme0c0n1', dev: '259:1' }] },
        { bdf: '0000:00:11.0', vendor: '144d', device: 'a808', class: '010802', driver: 'nvme', disks: [{ name: 'nvme0c1n1', dev: '259:2' }] },
        { bdf: '0000:00:12.0', vendor: '1000', device: '0072', class: '010700', driver: 'mpt2sas', disks: [{ name: 'sdf', dev: '8:80', partitions: ['sdf1', 'sdf9'] }, { name: 'sdg', dev: '8:96', partitions: ['sdg1', 'sdg9'] }] },
        { bdf: '0000:00:13.0', vendor: '1000', device: '0072', class: '010700', driver: 'mpt2sas', disks: [{ name: 'sdh', dev: '8:112' }, { name: 'sdi', dev: '8:128' }] },
      ],
      nvmeHeads: [{ name: 'nvme0n1', dev: '259:0', paths: ['nvme0c0n1', 'nvme0c1n1'], partitions: ['nvme0n1p1', 'nvme0n1p2'] }],
      deviceMappers: [{ name: 'dm-2', mapperName: 'vg1-data', uuid: 'LVM-vg1data000000000000000000000000000000', slaves: ['nvme0n1p2'], devLinks: ['/dev/vg1/data'] }],
      mounts: [
        ['/dev/nvme0n1p1', '/srv', 'xfs'],
        ['/dev/sdh', '/mnt/pool', 'btrfs'],
      ],
      zfsPools: ['tank'],
      btrfs: [{ uuid: '5f0c3a2e-8b1d-4e6f-9a7c-2d4b6e8f0a1c', label: 'pool', devices: ['sdh', 'sdi'] }],
    });
  const ZPOOL = `  pool: tank
 state: ONLINE
config:

\tNAME           STATE     READ WRITE CKSUM
\ttank           ONLINE       0     0     0
\t  mirror-0     ONLINE       0     0     0
\t    /dev/sdf1  ONLINE       0     0     0
\t    /dev/sdg1  ONLINE       0     0     0

errors: No known data errors
`;
  const zpool = (result: CannedCommand['result']): CannedCommand[] => [{ match: ['zpool', 'status', '-P'], result }];

  void it('every controller with a path of an NVMe multipath head is in use when the head is mounted or held', async () => {
    const { host } = xenHost(STORAGE(), zpool({ stdout: ZPOOL }));
    for (const [bdf, path] of [
      ['0000:00:10.0', 'nvme0c0n1'],
      ['0000:00:11.0', 'nvme0c1n1'],
    ] as const) {
      assert.equal((await scanned(host, bdf)).inUse, `it controls ${path} (a path of NVMe multipath head nvme0n1), mounted on /srv, a physical volume of LVM volume group vg1 (logical volumes data)`);
    }
  });

  void it('a controller with a ZFS pool’s vdevs is in use (zpool status -P); when zpool fails every storage controller is', async () => {
    const ok = xenHost(STORAGE(), zpool({ stdout: ZPOOL }));
    assert.equal((await scanned(ok.host, '0000:00:12.0')).inUse, 'it controls sdf, a member of ZFS pool tank; sdg, a member of ZFS pool tank');
    assert.equal((await scanned(ok.host, '0000:00:0a.0')).inUse, null);
    const failed = xenHost(STORAGE(), zpool({ code: 1, stderr: 'The ZFS modules are not loaded.' }));
    for (const bdf of ['0000:00:12.0', '0000:00:0a.0']) {
      assert.match((await scanned(failed.host, bdf)).inUse ?? '', /ZFS pool tank \(its vdevs could not be listed: zpool status -P exited 1: The ZFS modules are not loaded\.\) cannot be traced to a controller, so every storage controller counts as in use/);
    }
  });

  void it('every member disk of a mounted btrfs filesystem is in use, not only the one /proc/mounts names', async () => {
    const { host } = xenHost(STORAGE(), zpool({ stdout: ZPOOL }));
    assert.equal((await scanned(host, '0000:00:13.0')).inUse, 'it controls sdh, mounted on /mnt/pool, a member of mounted btrfs filesystem pool; sdi, a member of mounted btrfs filesystem pool');
  });

  void it('parses zpool status -P', () => {
    assert.deepEqual([...parseZpoolStatus(ZPOOL)], [['tank', ['/dev/sdf1', '/dev/sdg1']]]);
  });
});

void describe('GPUs with open device nodes, and the BMC’s VGA', () => {
  const GPUS = (): FixtureHostSpec =>
    withCase({
      devices: [
        { bdf: '0000:00:14.0', vendor: '10de', device: '1eb8', class: '030000', bootVga: false, driver: 'nouveau', drm: ['card1', 'renderD129'] },
        { bdf: '0000:00:15.0', vendor: '10de', device: '1eb8', class: '030200', driver: 'nvidia' },
        { bdf: '0000:00:16.0', vendor: '10de', device: '1eb8', class: '030000', bootVga: false, driver: 'nouveau', drm: ['card2'] },
        { bdf: '0000:00:17.0', vendor: '1a03', device: '2000', class: '030000', bootVga: false, driver: 'ast' },
        {
          bdf: '0000:00:1d.0',
          vendor: '8086',
          device: 'a36d',
          class: '0c0330',
          driver: 'xhci_hcd',
          usb: [
            { bus: 1, port: '3', idVendor: '046b', idProduct: 'ff01', product: 'Virtual Hub' },
            { bus: 1, port: '3.1', idVendor: '046b', idProduct: 'ffb0', product: 'Virtual Ethernet' },
          ],
        },
        { bdf: '0000:00:1d.1', vendor: '8086', device: 'a36d', class: '0c0330', driver: 'xhci_hcd', usb: [{ bus: 2, port: '1', idVendor: '0781', idProduct: '5581', product: 'Ultra' }] },
      ],
      processes: [
        { pid: 4242, comm: 'Xorg', open: ['/dev/null', '/dev/dri/card1'] },
        { pid: 977, comm: 'ollama', open: ['/dev/dri/renderD129'] },
        { pid: 5150, comm: 'python3', open: ['/dev/nvidiactl'] },
      ],
      files: { '/proc/driver/nvidia/gpus/0000:00:15.0/information': 'Model: \t\t Tesla T4\nDevice Minor: \t 0\n', '/dev/nvidia0': '', '/dev/nvidiactl': '', '/dev/null': '' },
    });

  void it('a GPU whose DRM or nvidia nodes a process holds open is in use naming the processes; one whose nodes nobody opened is idle', async () => {
    const { host } = xenHost(GPUS());
    assert.equal((await scanned(host, '0000:00:14.0')).inUse, 'its device node /dev/dri/card1 is open by process 4242 (Xorg); its device node /dev/dri/renderD129 is open by process 977 (ollama)');
    assert.equal((await scanned(host, '0000:00:15.0')).inUse, 'its device node /dev/nvidiactl is open by process 5150 (python3)');
    assert.equal((await scanned(host, '0000:00:16.0')).inUse, null);
  });

  void it('fails closed: a process whose open files cannot be read makes every GPU with a device node in use', async () => {
    const fx = buildFixtureHost(GPUS());
    fixtures.push(fx);
    class Unreadable extends HostTree {
      override async listReadable(hostPath: string): Promise<string[] | null> {
        return hostPath === '/proc/977/fd' ? null : super.listReadable(hostPath);
      }
    }
    const nodes = await readOpenGpuNodes(new Unreadable(fx.root));
    assert.equal(nodes.get('0000:00:16.0'), 'its device node /dev/dri/card2 exists and the open files of process 977 cannot be read, so it counts as in use');
    assert.equal(nodes.get('0000:00:14.0'), 'its device node /dev/dri/card1 is open by process 4242 (Xorg)');
  });

  void it('the BMC’s ASPEED VGA is in use as the remote console, though it is not the boot VGA', async () => {
    const { host } = xenHost(GPUS());
    assert.equal((await scanned(host, '0000:00:17.0')).inUse, "it is the BMC's VGA (ASPEED), the host's remote console");
  });

  void it('a USB controller carrying the BMC’s virtual USB devices (AMI 046b) is in use; one with a USB stick is not', async () => {
    const { host } = xenHost(GPUS());
    assert.equal((await scanned(host, '0000:00:1d.0')).inUse, "it carries the BMC's virtual USB devices 046b:ff01 (Virtual Hub), 046b:ffb0 (Virtual Ethernet) (remote keyboard, media or LAN over USB)");
    assert.equal((await scanned(host, '0000:00:1d.1')).inUse, null);
  });
});

void describe('Xen co-assignment behind a conventional PCI bridge', () => {
  void it('the devices behind a PCI-to-PCI bridge without a PCI Express capability form one group; behind a PCIe root port they stay alone', async () => {
    const spec = withCase({
      devices: [
        { bdf: '0000:00:1e.0', vendor: '8086', device: '244e', class: '060401', driver: null, pcie: false },
        { bdf: '0000:05:00.0', vendor: '8086', device: '100e', class: '020000', driver: 'e1000', net: ['eth11'], parent: '0000:00:1e.0', pcie: false },
        { bdf: '0000:05:01.0', vendor: '1102', device: '0002', class: '040100', driver: null, parent: '0000:00:1e.0', pcie: false },
        { bdf: '0000:00:1c.0', vendor: '8086', device: '2940', class: '060400', driver: 'pcieport' },
        { bdf: '0000:06:00.0', vendor: '8086', device: '10d3', class: '020000', driver: 'e1000e', net: ['eth12'], parent: '0000:00:1c.0' },
      ],
      interfaces: { eth11: { operstate: 'down' }, eth12: { operstate: 'down' } },
    });
    const { ctx } = await handlerCtx(spec);
    const inv = await commandHandlers.inspect(ctx, {});
    assert.deepEqual(inv.devices.filter((d) => d.iommuGroup !== null).map((d) => [d.bdf, d.iommuGroup]), [
      ['0000:05:00.0', 0xf0],
      ['0000:05:01.0', 0xf0],
    ]);
    const nic = inv.devices.find((d) => d.bdf === '0000:05:00.0');
    assert.ok(nic);
    assert.deepEqual(iommuCompanions(inv, nic).map((d) => d.bdf), ['0000:05:01.0']);
  });

  void it('SR-IOV VFs sharing a slot are not companions (every VF has FLR by the SR-IOV specification), even where the kernel does not list reset methods', () => {
    const vf = (bdf: string): { bdf: PciAddress; class: string; resetMethod: null; sriovVf: boolean } => ({ bdf: bdf, class: '0200', resetMethod: null, sriovVf: true });
    assert.deepEqual([...xenCoAssignmentGroups([vf('0000:03:10.0'), vf('0000:03:10.4')])], []);
  });

  void it('reads conventional PCI from the capability list in config space: no PCI Express capability, or a PCI Express-to-PCI bridge; unreadable counts as conventional', () => {
    const bridge = { vendor: '8086', device: '244e', class: '060400' };
    assert.equal(conventionalBehind(configSpace({ ...bridge, pcie: false })), true);
    assert.equal(conventionalBehind(configSpace(bridge)), false);
    const toPci = configSpace(bridge);
    toPci.writeUInt16LE(0x0002 | (0x7 << 4), 0x42);
    assert.equal(conventionalBehind(toPci), true);
    assert.equal(conventionalBehind(null), true);
  });
});

void describe('the effective hide list (rule 15): a built-in pciback and a pciback loaded from the initramfs', () => {
  const NIC = '0000:00:06.0';
  const BUILTIN = ['kernel/drivers/xen/xen-pciback/xen-pciback.ko'];

  void it('a built-in pciback reads only the kernel command line: hide is NOT_HIDDEN naming it, unless the command line lists the device', async () => {
    const { fx, ctx } = await handlerCtx(withCase({ builtinModules: BUILTIN, modules: [] }));
    await assert.rejects(commandHandlers.hide(ctx, { bdf: NIC }), (err: unknown) => {
      assert.ok(isPtcError(err) && err.code === ErrorCode.NOT_HIDDEN, String(err));
      assert.match(err.message, /^host h1: xen-pciback is built into this kernel \(modules\.builtin\), so it ignores \/etc\/modprobe\.d\/ptctl-pciback\.conf and only xen-pciback\.hide= on the kernel command line hides devices; add 0000:00:06\.0 to xen-pciback\.hide=/);
      return true;
    });
    assert.equal(fx.read('/etc/modprobe.d/ptctl-pciback.conf'), null);
    const listed = await handlerCtx(withCase({ builtinModules: BUILTIN, modules: [], cmdline: `root=/dev/sda1 xen-pciback.hide=(${NIC})` }));
    assert.equal((await commandHandlers.hide(listed.ctx, { bdf: NIC })).changed, true);
  });

  void it('pciback loaded from the initramfs (initramfs-tools or dracut): hide refuses naming the rebuild, until the image is newer than a file that lists the device', async () => {
    const tools = await handlerCtx(withCase({ files: { '/etc/initramfs-tools/modules': '# modules for the initramfs\nxen-pciback\n' } }));
    await assert.rejects(commandHandlers.hide(tools.ctx, { bdf: NIC }), /host h1: xen-pciback loads from the initramfs \(\/etc\/initramfs-tools\/modules\).*run `update-initramfs -u`, then retry/);
    assert.equal(tools.fx.read('/etc/modprobe.d/ptctl-pciback.conf'), null);
    const dracut = await handlerCtx(withCase({ files: { '/etc/dracut.conf.d/xen.conf': 'add_drivers+=" xen-pciback "\n' } }));
    await assert.rejects(commandHandlers.hide(dracut.ctx, { bdf: NIC }), /loads from the initramfs \(\/etc\/dracut\.conf\.d\/xen\.conf\).*run `dracut -f`/);
    // The operator listed the device and rebuilt the image afterwards.
    const rebuilt = await handlerCtx(
      withCase({ files: { '/etc/initramfs-tools/modules': 'xen-pciback\n', '/etc/modprobe.d/ptctl-pciback.conf': `options xen-pciback hide=(${NIC})\n`, '/boot/initrd.img-6.1.0-56-amd64': '' } }),
    );
    const past = new Date(Date.now() - 60_000);
    utimesSync(rebuilt.fx.path('/etc/modprobe.d/ptctl-pciback.conf'), past, past);
    await commandHandlers.hide(rebuilt.ctx, { bdf: NIC });
  });
});
