import type { HostInventory } from '../schemas/inventory.js';
import type { HostBackend } from './backend.js';
import type { DeviceRecords } from './device-records.js';
import { effectiveHidden, parseModprobeConf } from './modprobe-conf.js';
import { parseGuestConfig } from './xen-guest-config.js';

export const AGENT_VERSION = '0.1.0';

/**
 * The host as the agent reports it: the kernel's view (scan) joined with the files that decide the
 * next boot (modprobe hide list, guest configs) and the agent's own records (original drivers).
 */
export async function readInventory(hostId: string, backend: HostBackend, records: DeviceRecords): Promise<HostInventory> {
  const scan = await backend.scan();
  const { file, dialect } = backend.modprobe();
  const hidden = effectiveHidden(parseModprobeConf((await backend.files.read(file)) ?? '', dialect));
  const guests = await Promise.all(
    scan.guests.map(async (g) => {
      const text = await backend.files.read(backend.guestConfigPath(g.name));
      return { ...g, configDevices: text === null ? [] : [...parseGuestConfig(text).devices] };
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
  };
}
