import type { GuestState, GuestVirt, OsRelease } from '../../schemas/inventory.js';
import type { HostPciDevice, HostSpec } from './host-spec.js';

/** A guest of a simulated host: its config file is rendered from this, its domain runs under the fake toolstack. */
export interface SimGuestSpec {
  name: string;
  /** Domain id while it runs: the `vifN.0` interfaces of the spec use it. */
  domId: number;
  virt: GuestVirt;
  os: OsRelease;
  state: GuestState;
  /** Bridge its `vif` is on. */
  bridge: string;
}

/** What a simulated host is: the declarative host (its tree), and the few facts only its kernel and toolstack know. */
export interface SimProfile {
  name: string;
  spec: HostSpec;
  /** The pciback module's name on this kernel: it decides where modprobe reads (RHEL 5: /etc/modprobe.conf). */
  pcibackModule: 'pciback' | 'xen-pciback';
  /** `virt_caps` has hvm_directio. */
  iommu: boolean;
  /** pciback is loaded before every other driver at boot (built in, or from the initrd). */
  pcibackAtBoot?: boolean;
  guests: SimGuestSpec[];
  /**
   * Which devices the host needs, and what for (uplink, root-disk, guests-network, guests-storage,
   * console). Not read by the simulated kernel, which only has the facts above: a test checks that the
   * linux backend's detection finds exactly these, and fixtures without I/O use them.
   */
  inUse: Readonly<Record<string, string>>;
}

const XEN_GUESTS: SimGuestSpec[] = [
  { name: 'vm-hvm', domId: 1, virt: 'hvm', os: { name: 'rhel', version: '5.4' }, state: 'running', bridge: 'xenbr0' },
  { name: 'vm-pv', domId: 2, virt: 'pv', os: { name: 'rhel', version: '5' }, state: 'running', bridge: 'xenbr1' },
  { name: 'vm-pv6', domId: 3, virt: 'pv', os: { name: 'rhel', version: '6' }, state: 'running', bridge: 'xenbr0' },
];

/** Renders a guest's xm config as a RHEL 5 host would have it: its disk is an LV of VG `guests`. */
export function initialGuestConfig(guest: SimGuestSpec): string {
  const lines = [`name = "${guest.name}"`, `# ptctl-os: ${guest.os.name} ${guest.os.version}`, 'memory = 1024', 'vcpus = 1'];
  if (guest.virt === 'hvm') lines.push('builder = "hvm"', 'kernel = "/usr/lib/xen/boot/hvmloader"', 'boot = "c"');
  else lines.push('bootloader = "/usr/bin/pygrub"');
  lines.push(`disk = [ 'phy:/dev/guests/${guest.name},xvda,w' ]`, `vif = [ 'bridge=${guest.bridge}' ]`, 'on_reboot = "restart"', '');
  return lines.join('\n');
}

const RHEL5_DEVICES: HostPciDevice[] = [
  // The boot VGA: vgacon drives it without a PCI driver.
  { bdf: '0000:00:02.0', vendor: '102b', device: '0532', class: '030000', driver: null, bootVga: true },
  { bdf: '0000:01:00.0', vendor: '14e4', device: '164c', class: '020000', driver: 'bnx2', net: ['eth0'] },
  { bdf: '0000:03:00.0', vendor: '1000', device: '0060', class: '010400', driver: 'megaraid_sas', disks: [{ name: 'sda', dev: '8:0', partitions: ['sda1', 'sda2'] }] },
  { bdf: '0000:04:00.0', vendor: '1000', device: '0072', class: '010700', driver: 'mpt2sas', disks: [{ name: 'sdb', dev: '8:16' }] },
  { bdf: '0000:09:00.0', vendor: '14e4', device: '164c', class: '020000', driver: 'bnx2', net: ['eth2'] },
  // Two functions of one endpoint without FLR: Xen can only give them away together.
  { bdf: '0000:0a:04.0', vendor: '8086', device: '107c', class: '020000', driver: 'e1000', net: ['eth5'] },
  { bdf: '0000:0a:04.1', vendor: '8086', device: '107c', class: '020000', driver: 'e1000', net: ['eth3'] },
  { bdf: '0000:0b:00.0', vendor: '8086', device: '10d3', class: '020000', driver: 'e1000e', net: ['eth4'] },
  { bdf: '0000:0c:00.0', vendor: '8086', device: '10d3', class: '020000', driver: 'e1000e', net: ['eth6'] },
  // A GPU no dom0 driver claims.
  { bdf: '0000:0d:00.0', vendor: '10de', device: '1eb8', class: '030200', driver: null },
];

const RHEL5_MODPROBE_CONF = [
  'alias eth0 bnx2',
  'alias eth2 bnx2',
  'alias eth3 e1000',
  'alias eth4 e1000e',
  'alias eth5 e1000',
  'alias eth6 e1000e',
  'alias scsi_hostadapter megaraid_sas',
  'alias scsi_hostadapter1 mpt2sas',
  'alias usb-controller ehci-hcd',
  '',
].join('\n');

const RHEL5_KERNEL = '2.6.18-164.el5xen';

const lv = (n: number, name: string): NonNullable<HostSpec['deviceMappers']>[number] => ({
  name: `dm-${n}`,
  mapperName: `guests-${name.replace(/-/g, '--')}`,
  uuid: `LVM-guestsVG000000000000000000000000000${n}`,
  slaves: ['sdb'],
  devLinks: [`/dev/guests/${name}`],
});

const RHEL5_SPEC: HostSpec = {
  redhatRelease: 'Red Hat Enterprise Linux Server release 5.4 (Tikanga)',
  xen: true,
  kernelRelease: RHEL5_KERNEL,
  modules: ['xen/pciback/pciback', 'net/bnx2', 'net/e1000/e1000', 'net/e1000e/e1000e', 'scsi/megaraid/megaraid_sas', 'scsi/mpt2sas/mpt2sas'].map((m) => `/lib/modules/${RHEL5_KERNEL}/kernel/drivers/${m}.ko`),
  legacyNetLinks: true,
  cmdline: 'ro root=/dev/VolGroup00/LogVol00 rhgb quiet',
  machineId: '5f1c0e6b2a8d4c3e9b7a6d5c4b3a2910',
  devices: RHEL5_DEVICES,
  interfaces: {
    eth0: { operstate: 'up', addresses: ['10.0.0.11/24'] },
    eth2: { operstate: 'down' },
    eth3: { operstate: 'down' },
    eth4: { operstate: 'down' },
    eth5: { operstate: 'down' },
    // A guests-only bridge: the NIC has no dom0 address, the bridge none either.
    eth6: { operstate: 'up', master: 'xenbr1' },
    xenbr1: { operstate: 'up', bridge: true },
    'vif2.0': { operstate: 'up', master: 'xenbr1' },
    // A host-only bridge for the other guests.
    xenbr0: { operstate: 'up', bridge: true },
    'vif1.0': { operstate: 'up', master: 'xenbr0' },
    'vif3.0': { operstate: 'up', master: 'xenbr0' },
  },
  routes: [
    ['eth0', '10.0.0.0/24'],
    ['eth0', 'default'],
  ],
  deviceMappers: [{ name: 'dm-0', mapperName: 'VolGroup00-LogVol00', uuid: 'LVM-VolGroup00LogVol00000000000000000000', slaves: ['sda2'], devLinks: ['/dev/VolGroup00/LogVol00'] }, lv(2, 'vm-hvm'), lv(3, 'vm-pv'), lv(4, 'vm-pv6')],
  mounts: [
    ['/dev/mapper/VolGroup00-LogVol00', '/', 'ext3'],
    ['/dev/sda1', '/boot', 'ext3'],
  ],
  files: { '/etc/modprobe.conf': RHEL5_MODPROBE_CONF, '/usr/sbin/xm': '' },
  guests: Object.fromEntries(XEN_GUESTS.map((g) => [g.name, initialGuestConfig(g)])),
};

const RHEL5_IN_USE: Record<string, string> = {
  '0000:00:02.0': 'console',
  '0000:01:00.0': 'uplink',
  '0000:03:00.0': 'root-disk',
  '0000:04:00.0': 'guests-storage',
  '0000:0c:00.0': 'guests-network',
};

const rhel5Xen: SimProfile = { name: 'rhel5-xen', spec: RHEL5_SPEC, pcibackModule: 'pciback', iommu: true, guests: XEN_GUESTS, inUse: RHEL5_IN_USE };

export const SIM_PROFILES: Readonly<Record<string, SimProfile>> = {
  'rhel5-xen': rhel5Xen,
  'rhel5-xen-noiommu': { ...rhel5Xen, name: 'rhel5-xen-noiommu', iommu: false },
  // An older dom0 kernel whose pciback is loaded early and has no new_slot: only a boot with hide= binds.
  'rhel5-xen-rebootonly': { ...rhel5Xen, name: 'rhel5-xen-rebootonly', pcibackAtBoot: true, spec: { ...RHEL5_SPEC, pciback: { slots: [], newSlot: false, removeSlot: false } } },
};

export const DEFAULT_PROFILE = 'rhel5-xen';
