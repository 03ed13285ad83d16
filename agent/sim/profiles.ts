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
  /** Bridge its `vif` (Xen) or `vnet` (KVM) is on. */
  bridge: string;
  /** KVM: the guest runs the QEMU guest agent, through which the host can ask about acpiphp. */
  guestAgent?: boolean;
  /** KVM: acpiphp is loaded in the guest (RHEL 5 needs it for hotplug). */
  acpiphp?: boolean;
}

/** What a simulated host is: the declarative host (its tree), and the few facts only its kernel and toolstack know. */
export interface SimProfile {
  name: string;
  spec: HostSpec;
  /** The pciback module's name on this kernel: it decides where modprobe reads (RHEL 5: /etc/modprobe.conf). */
  pcibackModule: 'pciback' | 'xen-pciback';
  /** Xen: `virt_caps` has hvm_directio. KVM: the kernel has IOMMU groups (the spec's devices carry them). */
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

/** The guest interface libvirt names for a domain's first NIC. */
export const vnetOf = (guest: SimGuestSpec): string => `vnet${guest.domId - 1}`;

/**
 * A libvirt domain definition as virt-install writes it: the OS in libosinfo metadata, an LV as its
 * block disk, one NIC on a bridge, the guest agent's channel when it has one.
 */
export function initialDomainXml(guest: SimGuestSpec): string {
  const osId = guest.os.name === 'rhel' ? `http://redhat.com/rhel/${guest.os.version}` : `http://${guest.os.name}.org/${guest.os.name}/${guest.os.version}`;
  return [
    "<domain type='kvm'>",
    `  <name>${guest.name}</name>`,
    '  <metadata>',
    "    <libosinfo:libosinfo xmlns:libosinfo='http://libosinfo.org/xmlns/libvirt/domain/1.0'>",
    `      <libosinfo:os id='${osId}'/>`,
    '    </libosinfo:libosinfo>',
    '  </metadata>',
    "  <memory unit='KiB'>2097152</memory>",
    '  <vcpu>2</vcpu>',
    "  <os><type arch='x86_64' machine='q35'>hvm</type></os>",
    '  <devices>',
    "    <disk type='block' device='disk'>",
    `      <source dev='/dev/guests/${guest.name}'/>`,
    "      <target dev='vda' bus='virtio'/>",
    '    </disk>',
    "    <interface type='bridge'>",
    `      <source bridge='${guest.bridge}'/>`,
    "      <model type='virtio'/>",
    '    </interface>',
    ...(guest.guestAgent ? ["    <channel type='unix'>", "      <target type='virtio' name='org.qemu.guest_agent.0'/>", '    </channel>'] : []),
    '  </devices>',
    '</domain>',
    '',
  ].join('\n');
}

const KVM_GUESTS: SimGuestSpec[] = [
  { name: 'vm-kvm', domId: 1, virt: 'kvm', os: { name: 'rhel', version: '9.2' }, state: 'running', bridge: 'br0', guestAgent: true, acpiphp: true },
  // The seed's KVM warning: a RHEL 5 guest without acpiphp cannot take a hotplug.
  { name: 'vm-kvm5', domId: 2, virt: 'kvm', os: { name: 'rhel', version: '5.11' }, state: 'running', bridge: 'br1', guestAgent: true, acpiphp: false },
];

const RHEL9_KERNEL = '5.14.0-284.11.1.el9_2.x86_64';

/**
 * A RHEL 9 KVM host with libvirt. IOMMU groups as a desktop-class chipset without ACS makes them: the
 * GPU and its audio function share group 1 with their root port (a companion pair; the port stays on
 * pcieport); two Intel 82574L NICs with the same ids as the uplink (a `new_id` for them would claim
 * each other); a bridge `br0` carrying vm-kvm's vnet0 over eno3.
 */
const RHEL9_KVM_DEVICES: HostPciDevice[] = [
  { bdf: '0000:00:00.0', vendor: '8086', device: '3e30', class: '060000', driver: null, iommuGroup: 0 },
  { bdf: '0000:00:01.0', vendor: '8086', device: '1901', class: '060400', driver: 'pcieport', iommuGroup: 1, driverOverride: null },
  { bdf: '0000:01:00.0', vendor: '10de', device: '1eb8', class: '030200', driver: null, iommuGroup: 1, driverOverride: null, resetMethod: 'flr bus' },
  { bdf: '0000:01:00.1', vendor: '10de', device: '10f9', class: '040300', driver: 'snd_hda_intel', iommuGroup: 1, driverOverride: null, resetMethod: 'bus' },
  { bdf: '0000:00:17.0', vendor: '8086', device: 'a352', class: '010601', driver: 'ahci', iommuGroup: 10, driverOverride: null, disks: [{ name: 'sda', dev: '8:0', partitions: ['sda1', 'sda2'] }] },
  { bdf: '0000:02:00.0', vendor: '8086', device: '10d3', class: '020000', driver: 'e1000e', iommuGroup: 11, driverOverride: null, net: ['eno1'], resetMethod: 'flr bus' },
  { bdf: '0000:03:00.0', vendor: '8086', device: '1533', class: '020000', driver: 'igb', iommuGroup: 12, driverOverride: null, net: ['eno2'], resetMethod: 'flr bus' },
  { bdf: '0000:04:00.0', vendor: '8086', device: '1533', class: '020000', driver: 'igb', iommuGroup: 13, driverOverride: null, net: ['eno3'], resetMethod: 'flr bus' },
  { bdf: '0000:05:00.0', vendor: '8086', device: '10d3', class: '020000', driver: 'e1000e', iommuGroup: 14, driverOverride: null, net: ['eno4'], resetMethod: 'flr bus' },
  // A USB 3 controller without FLR or any other reset: what one guest leaves in it, the next one sees.
  { bdf: '0000:06:00.0', vendor: '1912', device: '0014', class: '0c0330', driver: 'xhci_hcd', iommuGroup: 15, driverOverride: null, resetMethod: '' },
];

const RHEL9_KVM_SPEC: HostSpec = {
  osRelease: 'NAME="Red Hat Enterprise Linux"\nVERSION="9.2 (Plow)"\nID="rhel"\nVERSION_ID="9.2"\n',
  kernelRelease: RHEL9_KERNEL,
  modules: ['vfio/pci/vfio-pci', 'net/ethernet/intel/e1000e/e1000e', 'net/ethernet/intel/igb/igb', 'ata/ahci', 'sound/pci/hda/snd-hda-intel', 'usb/host/xhci-pci'].map((m) => `/lib/modules/${RHEL9_KERNEL}/kernel/drivers/${m}.ko.xz`),
  cmdline: 'BOOT_IMAGE=(hd0,gpt2)/vmlinuz ro root=/dev/mapper/rhel-root intel_iommu=on',
  machineId: '8c2f0a6e1b7d4e5f9a3c6b2d1e0f4a57',
  devices: RHEL9_KVM_DEVICES,
  drivers: ['pcieport'],
  interfaces: {
    eno1: { operstate: 'up', addresses: ['10.1.0.21/24'] },
    eno2: { operstate: 'down' },
    eno3: { operstate: 'up', master: 'br0' },
    eno4: { operstate: 'down' },
    br0: { operstate: 'up', bridge: true },
    vnet0: { operstate: 'up', master: 'br0' },
    // vm-kvm5's bridge has no physical port: nothing of the host's to cut off.
    br1: { operstate: 'up', bridge: true },
    vnet1: { operstate: 'up', master: 'br1' },
  },
  routes: [
    ['eno1', '10.1.0.0/24'],
    ['eno1', 'default'],
  ],
  deviceMappers: [
    { name: 'dm-0', mapperName: 'rhel-root', uuid: 'LVM-rhelroot000000000000000000000000000000', slaves: ['sda2'], devLinks: ['/dev/rhel/root'] },
    { name: 'dm-1', mapperName: 'guests-vm--kvm', uuid: 'LVM-guestsVG0000000000000000000000000001', slaves: ['sda2'], devLinks: ['/dev/guests/vm-kvm'] },
    { name: 'dm-2', mapperName: 'guests-vm--kvm5', uuid: 'LVM-guestsVG0000000000000000000000000002', slaves: ['sda2'], devLinks: ['/dev/guests/vm-kvm5'] },
  ],
  mounts: [
    ['/dev/mapper/rhel-root', '/', 'xfs'],
    ['/dev/sda1', '/boot', 'xfs'],
  ],
  files: { '/usr/bin/virsh': '', ...Object.fromEntries(KVM_GUESTS.map((g) => [`/etc/libvirt/qemu/${g.name}.xml`, initialDomainXml(g)])) },
};

const rhel9Kvm: SimProfile = {
  name: 'rhel9-kvm',
  spec: RHEL9_KVM_SPEC,
  // Not read on KVM (no pciback); kmod's name, for the modprobe dialect.
  pcibackModule: 'xen-pciback',
  iommu: true,
  guests: KVM_GUESTS,
  inUse: { '0000:00:00.0': 'platform', '0000:00:01.0': 'platform', '0000:00:17.0': 'root-disk', '0000:02:00.0': 'uplink', '0000:04:00.0': 'guests-network' },
};

const DEBIAN12_KERNEL = '6.1.0-28-amd64';

const DEBIAN12_GUESTS: SimGuestSpec[] = [
  { name: 'vm-web', domId: 1, virt: 'hvm', os: { name: 'debian', version: '12' }, state: 'running', bridge: 'xenbr0' },
  { name: 'vm-db', domId: 2, virt: 'hvm', os: { name: 'debian', version: '12' }, state: 'running', bridge: 'br-guests' },
];

/**
 * A current Debian 12 Xen dom0 on server hardware, holding the real-host cases the RHEL 5 host
 * cannot show: the BMC's ASPEED VGA as the console; an SR-IOV PF whose VFs are on igbvf and in
 * vm-db's config, and one whose only VF is idle on pciback; a NIC on an Open vSwitch bridge carrying
 * vm-db's vif; the root and the guests' VG on an NVMe multipath head over two controllers; a GPU
 * that Xorg holds open; two devices behind a conventional PCI bridge (one group); an idle GPU.
 */
const DEBIAN12_DEVICES: HostPciDevice[] = [
  { bdf: '0000:00:02.0', vendor: '1a03', device: '2000', class: '030000', driver: 'ast', bootVga: true, resetMethod: 'bus' },
  { bdf: '0000:00:19.0', vendor: '8086', device: '10d3', class: '020000', driver: 'e1000e', net: ['eno1'], resetMethod: 'flr' },
  { bdf: '0000:00:1c.0', vendor: '8086', device: '2940', class: '060400', driver: 'pcieport' },
  { bdf: '0000:00:1e.0', vendor: '8086', device: '244e', class: '060401', driver: null, pcie: false },
  { bdf: '0000:03:00.0', vendor: '8086', device: '1521', class: '020000', driver: 'igb', net: ['eno2'], resetMethod: 'flr bus', sriovVfs: ['0000:03:10.0', '0000:03:10.4'] },
  { bdf: '0000:03:10.0', vendor: '8086', device: '1520', class: '020000', driver: 'igbvf', net: ['eno2v0'], resetMethod: 'flr' },
  { bdf: '0000:03:10.4', vendor: '8086', device: '1520', class: '020000', driver: 'pciback', resetMethod: 'flr' },
  { bdf: '0000:04:00.0', vendor: '8086', device: '10fb', class: '020000', driver: 'ixgbe', net: ['eno3'], resetMethod: 'flr', sriovVfs: ['0000:04:10.0'] },
  { bdf: '0000:04:10.0', vendor: '8086', device: '10ed', class: '020000', driver: 'pciback', resetMethod: 'flr' },
  { bdf: '0000:05:00.0', vendor: '8086', device: '100e', class: '020000', driver: 'e1000', net: ['eth1'], parent: '0000:00:1e.0', pcie: false },
  { bdf: '0000:05:01.0', vendor: '1102', device: '0002', class: '040100', driver: null, parent: '0000:00:1e.0', pcie: false },
  { bdf: '0000:06:00.0', vendor: '8086', device: '10d3', class: '020000', driver: 'e1000e', net: ['eno4'], parent: '0000:00:1c.0', resetMethod: 'flr' },
  { bdf: '0000:07:00.0', vendor: '144d', device: 'a808', class: '010802', driver: 'nvme', disks: [{ name: 'nvme0c0n1', dev: '259:1' }], resetMethod: 'flr' },
  { bdf: '0000:08:00.0', vendor: '144d', device: 'a808', class: '010802', driver: 'nvme', disks: [{ name: 'nvme0c1n1', dev: '259:2' }], resetMethod: 'flr' },
  { bdf: '0000:09:00.0', vendor: '10de', device: '1eb8', class: '030000', driver: 'nouveau', bootVga: false, drm: ['card1', 'renderD128'], resetMethod: 'bus' },
  { bdf: '0000:0a:00.0', vendor: '10de', device: '1eb8', class: '030200', driver: null, resetMethod: 'bus' },
];

const debianLv = (n: number, name: string): NonNullable<HostSpec['deviceMappers']>[number] => ({
  name: `dm-${n}`,
  mapperName: `guests-${name.replace(/-/g, '--')}`,
  uuid: `LVM-guestsVGdebian00000000000000000000${n}`,
  slaves: ['nvme0n1p3'],
  devLinks: [`/dev/guests/${name}`],
});

const DEBIAN12_SPEC: HostSpec = {
  osRelease: 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n',
  xen: true,
  kernelRelease: DEBIAN12_KERNEL,
  modules: ['xen/xen-pciback/xen-pciback', 'net/ethernet/intel/e1000e/e1000e', 'net/ethernet/intel/e1000/e1000', 'net/ethernet/intel/igb/igb', 'net/ethernet/intel/igbvf/igbvf', 'net/ethernet/intel/ixgbe/ixgbe', 'nvme/host/nvme', 'gpu/drm/nouveau/nouveau', 'gpu/drm/ast/ast'].map(
    (m) => `kernel/drivers/${m}.ko`,
  ),
  pciback: { slots: ['0000:03:10.4', '0000:04:10.0'] },
  cmdline: 'BOOT_IMAGE=/vmlinuz-6.1.0-28-amd64 root=/dev/nvme0n1p2 ro quiet',
  machineId: '3b9d7e2a4c1f4a8e9d6b5c7a1e2f3d40',
  devices: DEBIAN12_DEVICES,
  drivers: ['pcieport'],
  interfaces: {
    eno1: { operstate: 'up', addresses: ['10.2.0.31/24'] },
    eno2: { operstate: 'down' },
    eno2v0: { operstate: 'up', addresses: ['192.168.50.2/24'] },
    eno3: { operstate: 'down' },
    eth1: { operstate: 'down' },
    eno4: { operstate: 'up', master: 'ovs-system', ovsBridge: 'br-guests' },
    'ovs-system': { operstate: 'down' },
    'vif2.0': { operstate: 'up', master: 'ovs-system', ovsBridge: 'br-guests' },
    xenbr0: { operstate: 'up', bridge: true },
    'vif1.0': { operstate: 'up', master: 'xenbr0' },
  },
  routes: [
    ['eno1', '10.2.0.0/24'],
    ['eno1', 'default'],
    ['eno2v0', '192.168.50.0/24'],
  ],
  nvmeHeads: [{ name: 'nvme0n1', dev: '259:0', paths: ['nvme0c0n1', 'nvme0c1n1'], partitions: ['nvme0n1p1', 'nvme0n1p2', 'nvme0n1p3'] }],
  deviceMappers: [debianLv(1, 'vm-web'), debianLv(2, 'vm-db')],
  mounts: [
    ['/dev/nvme0n1p2', '/', 'ext4'],
    ['/dev/nvme0n1p1', '/boot/efi', 'vfat'],
  ],
  processes: [{ pid: 1312, comm: 'Xorg', open: ['/dev/null', '/dev/dri/card1'] }],
  files: { '/usr/sbin/xl': '', '/dev/null': '' },
  guests: {
    'vm-web': initialGuestConfig(DEBIAN12_GUESTS[0] as SimGuestSpec),
    'vm-db': `${initialGuestConfig(DEBIAN12_GUESTS[1] as SimGuestSpec)}pci = [ '0000:03:10.4' ]\n`,
  },
};

const debian12Xen: SimProfile = {
  name: 'debian12-xen',
  spec: DEBIAN12_SPEC,
  pcibackModule: 'xen-pciback',
  iommu: true,
  guests: DEBIAN12_GUESTS,
  inUse: {
    '0000:00:02.0': 'console',
    '0000:00:19.0': 'uplink',
    '0000:00:1c.0': 'platform',
    '0000:00:1e.0': 'platform',
    '0000:03:00.0': 'sriov-pf',
    '0000:03:10.0': 'host-network',
    '0000:06:00.0': 'guests-network',
    '0000:07:00.0': 'root-disk',
    '0000:08:00.0': 'root-disk',
    '0000:09:00.0': 'open-gpu',
  },
};

export const SIM_PROFILES: Readonly<Record<string, SimProfile>> = {
  'rhel5-xen': rhel5Xen,
  'rhel5-xen-noiommu': { ...rhel5Xen, name: 'rhel5-xen-noiommu', iommu: false },
  // An older dom0 kernel whose pciback is loaded early and has no new_slot: only a boot with hide= binds.
  'rhel5-xen-rebootonly': { ...rhel5Xen, name: 'rhel5-xen-rebootonly', pcibackAtBoot: true, spec: { ...RHEL5_SPEC, pciback: { slots: [], newSlot: false, removeSlot: false } } },
  'rhel9-kvm': rhel9Kvm,
  'debian12-xen': debian12Xen,
  // The same host with pciback built into the kernel: only xen-pciback.hide= on the command line hides.
  'debian12-xen-builtin': { ...debian12Xen, name: 'debian12-xen-builtin', pcibackAtBoot: true, spec: { ...DEBIAN12_SPEC, builtinModules: ['kernel/drivers/xen/xen-pciback/xen-pciback.ko'], modules: (DEBIAN12_SPEC.modules ?? []).filter((m) => !m.includes('pciback')) } },
};

export const DEFAULT_PROFILE = 'rhel5-xen';
