import type { HostInventory } from '../schemas/inventory.js';
import type { HostBackend } from './backend.js';
import type { DeviceRecords } from './device-records.js';
import { effectiveHidden, parseModprobeConf } from './modprobe-conf.js';
import { addressesMentioned, parseGuestConfig } from './xen-guest-config.js';

/** Which agent process, on which machine, answers for the host (rule 16). */
export interface AgentIdentity {
  machineId: string | null;
  agentInstance: string;
}

/**
 * The devices a guest's config holds. A config ptctl cannot parse fences only that guest: it is
 * reported with the problem, and every address its file names counts as held (fail closed), so the
 * device cannot be handed to a second guest.
 */
export function guestConfigDevices(text: string | null): { configDevices: string[]; configProblem: string | null } {
  if (text === null) return { configDevices: [], configProblem: null };
  try {
    return { configDevices: [...parseGuestConfig(text).devices], configProblem: null };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    return { configDevices: addressesMentioned(text), configProblem: message.slice(0, 500) };
  }
}

export const AGENT_VERSION = '0.1.0';

/**
 * The host as the agent reports it: the kernel's view (scan) joined with the files that decide the
 * next boot (modprobe hide list, guest configs) and the agent's own records (original drivers).
 */
export async function readInventory(hostId: string, backend: HostBackend, records: DeviceRecords, identity?: AgentIdentity): Promise<HostInventory> {
  const scan = await backend.scan();
  const { file, dialect } = backend.modprobe();
  const hidden = effectiveHidden(parseModprobeConf((await backend.files.read(file)) ?? '', dialect));
  const guests = await Promise.all(
    scan.guests.map(async (g) => {
      const text = await backend.files.read(backend.guestConfigPath(g.name));
      return { ...g, ...guestConfigDevices(text) };
    }),
  );
  const holder = (bdf: string): string | null => guests.find((g) => g.liveDevices.includes(bdf) || g.configDevices.includes(bdf))?.name ?? null;
  return {
    hostId,
    bootId: await backend.bootId(),
    agentVersion: AGENT_VERSION,
    os: scan.os,
    hypervisor: scan.hypervisor,
    iommu: scan.iommu,
    capabilities: scan.capabilities,
    // The scan's pciback details are for `verify`; the inventory adds what the files and records know.
    devices: scan.devices.map(({ inPcibackSlots: _slots, assignable: _assignable, ...d }) => ({
      ...d,
      hostDriver: records.originalDriver(d.bdf) ?? d.hostDriver,
      hidden: hidden.includes(d.bdf),
      assignedTo: holder(d.bdf),
    })),
    guests,
    seenAt: new Date().toISOString(),
    ...(identity ? { machineId: identity.machineId, agentInstance: identity.agentInstance } : {}),
  };
}
