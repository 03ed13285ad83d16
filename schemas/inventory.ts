import { z } from 'zod';
import { DriverName, GuestName, HostId } from './ids.js';
import { PciAddress } from './pci-address.js';

export const OsRelease = z.object({
  name: z.string().min(1).max(32).describe('distribution, e.g. "rhel" or "debian"'),
  version: z.string().regex(/^\d+(\.\d+)*$/, 'a version like 5.4').describe('release, e.g. "5.4"'),
});
export type OsRelease = z.infer<typeof OsRelease>;

export const Hypervisor = z.enum(['xen', 'kvm']);
export type Hypervisor = z.infer<typeof Hypervisor>;

/**
 * The driver that holds a device for a guest: Xen's pciback, the kernel's vfio-pci on KVM. "Bound to
 * pciback" in the protocol (`verify expect pciback`) means bound to this driver.
 */
export const STUB_DRIVER = { xen: 'pciback', kvm: 'vfio-pci' } as const satisfies Record<Hypervisor, string>;
export type StubDriver = (typeof STUB_DRIVER)[Hypervisor];

/** What the host's agent can do to bind a device: decides which bind strategies `auto` may pick. */
export const HostCapability = z.enum(['dynamic-bind', 'reload', 'reboot', 'hotplug']);
export type HostCapability = z.infer<typeof HostCapability>;

export const PciDevice = z.object({
  bdf: PciAddress,
  vendor: z.string().regex(/^[0-9a-f]{4}$/),
  device: z.string().regex(/^[0-9a-f]{4}$/),
  class: z.string().regex(/^[0-9a-f]{4,6}$/).describe('PCI class code, e.g. 0200 for Ethernet'),
  description: z.string().max(200),
  driver: DriverName.nullable().describe('driver bound now (the sysfs driver link); null when unbound'),
  hostDriver: DriverName.nullable().describe('the driver the host uses for this device when it is not passed through'),
  iommuGroup: z.number().int().nonnegative().nullable(),
  netdev: z.string().max(32).nullable().describe('network interface name when the device is a NIC bound to its host driver'),
  inUse: z.string().max(300).nullable().describe('why the host uses this device (uplink, mounted filesystems…); null when idle'),
  hidden: z.boolean().describe('kept from its host driver at boot: in the pciback hide= configuration (Xen), in ptctl\'s vfio-pci override rules (KVM)'),
  assignedTo: GuestName.nullable().describe('guest holding the device, live or in its config'),
  resettable: z
    .boolean()
    .nullable()
    .optional()
    .describe('the kernel can reset the device between guests (sysfs `reset`; its methods in `reset_method`); null when the host does not say. Absent from older agents'),
  sriovPf: PciAddress.nullable()
    .optional()
    .describe('an SR-IOV virtual function\'s physical function; null for other devices. Absent from older agents'),
  sriovVfs: z.array(PciAddress).optional().describe('an SR-IOV physical function\'s virtual functions; absent when it has none and from older agents'),
  lastGuest: GuestName.nullable()
    .optional()
    .describe('the guest that last held the device since the host booted; a device that cannot be reset keeps that guest\'s data for the next one. Absent from older agents'),
});
export type PciDevice = z.infer<typeof PciDevice>;

export const GuestVirt = z.enum(['hvm', 'pv', 'kvm']);
export type GuestVirt = z.infer<typeof GuestVirt>;

export const GuestState = z.enum(['running', 'stopped', 'paused']);
export type GuestState = z.infer<typeof GuestState>;

export const Guest = z.object({
  name: GuestName,
  virt: GuestVirt,
  os: OsRelease,
  state: GuestState,
  liveDevices: z.array(PciAddress).describe('devices hotplugged into the running guest'),
  configDevices: z.array(PciAddress).describe('devices in the guest config (pci = [...]), used at its next boot'),
  acpiphp: z.boolean().describe('acpiphp loaded in the guest (needed for hotplug into KVM RHEL 5 guests)'),
  configProblem: z
    .string()
    .max(500)
    .nullable()
    .optional()
    .describe('why the guest config cannot be read safely; such a guest is refused for attach and its configDevices are every address its file names (fail closed). Absent from older agents'),
});
export type Guest = z.infer<typeof Guest>;

/** The record an agent keeps in KV `ptc_hosts` under its host id (DESIGN §2). */
export const HostInventory = z.object({
  hostId: HostId,
  bootId: z.string().min(1).max(64),
  agentVersion: z.string().max(32),
  os: OsRelease,
  hypervisor: Hypervisor,
  iommu: z.boolean(),
  capabilities: z.array(HostCapability),
  devices: z.array(PciDevice),
  guests: z.array(Guest),
  seenAt: z.iso.datetime(),
  machineId: z.string().max(64).nullable().optional().describe('/etc/machine-id of the machine the agent runs on (rule 16); absent from older agents'),
  agentInstance: z.string().max(64).optional().describe('random id of the running agent process: two agents answering for one host show as two instances'),
});
export type HostInventory = z.infer<typeof HostInventory>;
