import type { GuestState, GuestVirt, HostCapability, Hypervisor, OsRelease } from '../../schemas/inventory.js';

/** What a simulated host looks like when it is created. */
export interface SimProfile {
  name: string;
  os: OsRelease;
  hypervisor: Hypervisor;
  iommu: boolean;
  capabilities: HostCapability[];
  /** Which module name this host's kernel uses for pciback and where its modprobe reads. */
  pcibackModule: 'pciback' | 'xen-pciback';
  modprobeFile: string;
  devices: SimDeviceSpec[];
  guests: SimGuestSpec[];
  /** Initial /etc/modprobe.conf content (the host's own lines, which ptctl must keep). */
  modprobeConf: string;
}

export interface SimDeviceSpec {
  bdf: string;
  vendor: string;
  device: string;
  class: string;
  description: string;
  driver: string;
  iommuGroup: number;
  netdev: string | null;
  /** Why the host needs it: the simulated kernel reports these as in use. */
  role: 'uplink' | 'root-disk' | null;
}

export interface SimGuestSpec {
  name: string;
  virt: GuestVirt;
  os: OsRelease;
  state: GuestState;
  acpiphp: boolean;
}

const RHEL5_DEVICES: SimDeviceSpec[] = [
  { bdf: '0000:01:00.0', vendor: '14e4', device: '164c', class: '0200', description: 'Broadcom NetXtreme II BCM5708 (eth0)', driver: 'bnx2', iommuGroup: 1, netdev: 'eth0', role: 'uplink' },
  { bdf: '0000:03:00.0', vendor: '1000', device: '0060', class: '0104', description: 'LSI MegaRAID SAS 1078 (root disk)', driver: 'megaraid_sas', iommuGroup: 3, netdev: null, role: 'root-disk' },
  { bdf: '0000:09:00.0', vendor: '14e4', device: '164c', class: '0200', description: 'Broadcom NetXtreme II BCM5708 (eth2)', driver: 'bnx2', iommuGroup: 9, netdev: 'eth2', role: null },
  { bdf: '0000:0a:04.0', vendor: '8086', device: '107c', class: '0200', description: 'Intel 82541PI Gigabit (eth5)', driver: 'e1000', iommuGroup: 10, netdev: 'eth5', role: null },
  { bdf: '0000:0a:04.1', vendor: '8086', device: '107c', class: '0200', description: 'Intel 82541PI Gigabit (eth3)', driver: 'e1000', iommuGroup: 10, netdev: 'eth3', role: null },
  { bdf: '0000:0b:00.0', vendor: '8086', device: '10d3', class: '0200', description: 'Intel 82574L Gigabit (eth4)', driver: 'e1000e', iommuGroup: 11, netdev: 'eth4', role: null },
];

const RHEL5_MODPROBE_CONF = [
  'alias eth0 bnx2',
  'alias eth2 bnx2',
  'alias eth3 e1000',
  'alias eth4 e1000e',
  'alias eth5 e1000',
  'alias scsi_hostadapter megaraid_sas',
  'alias usb-controller ehci-hcd',
  '',
].join('\n');

const XEN_GUESTS: SimGuestSpec[] = [
  { name: 'vm-hvm', virt: 'hvm', os: { name: 'rhel', version: '5.4' }, state: 'running', acpiphp: true },
  { name: 'vm-pv', virt: 'pv', os: { name: 'rhel', version: '5' }, state: 'running', acpiphp: true },
  { name: 'vm-pv6', virt: 'pv', os: { name: 'rhel', version: '6' }, state: 'running', acpiphp: true },
];

const rhel5Xen: SimProfile = {
  name: 'rhel5-xen',
  os: { name: 'rhel', version: '5.4' },
  hypervisor: 'xen',
  iommu: true,
  capabilities: ['dynamic-bind', 'reload', 'reboot', 'hotplug'],
  pcibackModule: 'pciback',
  modprobeFile: '/etc/modprobe.conf',
  devices: RHEL5_DEVICES,
  guests: XEN_GUESTS,
  modprobeConf: RHEL5_MODPROBE_CONF,
};

export const SIM_PROFILES: Readonly<Record<string, SimProfile>> = {
  'rhel5-xen': rhel5Xen,
  'rhel5-xen-noiommu': { ...rhel5Xen, name: 'rhel5-xen-noiommu', iommu: false },
  // An older dom0 kernel whose pciback cannot take devices at run time: only a reboot binds them.
  'rhel5-xen-rebootonly': { ...rhel5Xen, name: 'rhel5-xen-rebootonly', capabilities: ['reboot', 'hotplug'] },
};

export const DEFAULT_PROFILE = 'rhel5-xen';

/** Renders a guest's xm config as a RHEL 5 host would have it. */
export function initialGuestConfig(guest: SimGuestSpec): string {
  const lines = [`name = "${guest.name}"`, 'memory = 1024', 'vcpus = 1'];
  if (guest.virt === 'hvm') lines.push('builder = "hvm"', 'kernel = "/usr/lib/xen/boot/hvmloader"', 'boot = "c"');
  else lines.push('bootloader = "/usr/bin/pygrub"');
  lines.push(`disk = [ 'phy:/dev/VolGroup00/${guest.name},xvda,w' ]`, "vif = [ 'bridge=xenbr0' ]", 'on_reboot = "restart"', '');
  return lines.join('\n');
}
