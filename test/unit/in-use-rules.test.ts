import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ScannedDevice } from '../../agent/backend.js';
import { commandHandlers, type HandlerContext } from '../../agent/command-handlers.js';
import { DeviceRecords } from '../../agent/device-records.js';
import { RecordingRunner } from '../../agent/linux/command-runner.js';
import { guestPhyDisks, splitLvmName } from '../../agent/linux/host-usage.js';
import { LinuxHost } from '../../agent/linux/linux-host.js';
import { xenCoAssignmentGroups } from '../../agent/linux/sysfs-scan.js';
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

function xenHost(spec: FixtureHostSpec = XEN_HOST()): { fx: FixtureHost; host: LinuxHost } {
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
  return { fx, host: new LinuxHost({ root: fx.root, runner, toolstack: 'xl', onSysfsWrite: fx.kernel.observer }) };
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
