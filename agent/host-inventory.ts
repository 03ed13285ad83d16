import { type HostInventory, STUB_DRIVER } from '../schemas/inventory.js';
import type { PciAddress } from '../schemas/pci-address.js';
import type { HostBackend, HostScan, ScannedDevice } from './backend.js';
import type { DeviceRecords } from './device-records.js';

/** Which agent process, on which machine, answers for the host (rule 16). */
export interface AgentIdentity {
  machineId: string | null;
  agentInstance: string;
}

export const AGENT_VERSION = '0.1.0';

/**
 * The host as the agent reports it: the kernel's view (scan) joined with the files that decide the
 * next boot (modprobe hide list, guest configs) and the agent's own records (original drivers).
 * `scan`, when given, is one this command took a moment ago and whose kernel state no effect has
 * changed since; the files and records are read fresh either way.
 */
export async function readInventory(hostId: string, backend: HostBackend, records: DeviceRecords, from: { identity?: AgentIdentity; scan?: HostScan | undefined } = {}): Promise<HostInventory> {
  const { identity } = from;
  const scan = from.scan ?? (await backend.scan());
  const hideConfig = backend.hideConfig();
  const hidden = hideConfig.hidden((await backend.files.read(hideConfig.file)) ?? '');
  const guests = await Promise.all(
    scan.guests.map(async (g) => ({ ...g, ...((await backend.guestConfigDevices(g.name)) ?? { configDevices: [], configProblem: null }) })),
  );
  const bootId = await backend.bootId();
  const holder = (bdf: string): string | null => guests.find((g) => g.liveDevices.includes(bdf) || g.configDevices.includes(bdf))?.name ?? null;
  const stub = STUB_DRIVER[scan.hypervisor];
  return {
    hostId,
    bootId,
    agentVersion: AGENT_VERSION,
    os: scan.os,
    hypervisor: scan.hypervisor,
    iommu: scan.iommu,
    capabilities: scan.capabilities,
    // The scan's stub-driver details are for `verify`; the inventory adds what the files and records know.
    devices: scan.devices.map(({ inPcibackSlots: _slots, assignable: _assignable, ...d }) => ({
      ...d,
      inUse: withVfUse(d.inUse, d.sriovVfs ?? [], scan.devices, stub, holder),
      hostDriver: records.originalDriver(d.bdf) ?? d.hostDriver,
      hidden: hidden.includes(d.bdf),
      assignedTo: holder(d.bdf),
      lastGuest: records.lastTenant(d.bdf, bootId),
    })),
    guests,
    seenAt: new Date().toISOString(),
    ...(identity ? { machineId: identity.machineId, agentInstance: identity.agentInstance } : {}),
  };
}

/**
 * Rule 1 for an SR-IOV physical function: its driver owns the VFs, so taking it from the host
 * destroys every VF, under the host driver that uses one or the guest that holds one. A VF the
 * stub driver holds for nobody does not keep its PF. The PF's own reason, when it has one, comes first.
 */
function withVfUse(inUse: string | null, vfs: readonly PciAddress[], devices: readonly ScannedDevice[], stub: string, holder: (bdf: string) => string | null): string | null {
  const reasons = inUse === null ? [] : [inUse];
  for (const vf of vfs) {
    const driver = devices.find((d) => d.bdf === vf)?.driver ?? null;
    const guest = holder(vf);
    if (guest !== null) reasons.push(`its SR-IOV VF ${vf} is assigned to guest ${guest}`);
    else if (driver !== null && driver !== stub) reasons.push(`its SR-IOV VF ${vf} is bound to host driver ${driver}`);
  }
  if (reasons.length === 0) return null;
  const text = reasons.join('; ');
  return text.length <= 300 ? text : `${text.slice(0, 299)}…`;
}
