import type { HostInventory } from '../../schemas/inventory.js';
import { SIM_PROFILES } from '../../agent/sim/profiles.js';

/** The inventory an agent reports for a fresh `rhel5-xen` simulated host (DESIGN §5), without I/O. */
export function rhel5XenInventory(hostId = 'h1', overrides: Partial<HostInventory> = {}): HostInventory {
  const profile = SIM_PROFILES['rhel5-xen'];
  if (!profile) throw new Error('rhel5-xen profile missing');
  return {
    hostId,
    bootId: 'boot-1',
    agentVersion: 'test',
    os: profile.os,
    hypervisor: profile.hypervisor,
    iommu: profile.iommu,
    capabilities: [...profile.capabilities],
    devices: profile.devices.map((d) => ({
      bdf: d.bdf,
      vendor: d.vendor,
      device: d.device,
      class: d.class,
      description: d.description,
      driver: d.driver,
      hostDriver: d.driver,
      iommuGroup: d.iommuGroup,
      netdev: d.netdev,
      inUse: d.role === null ? null : `${d.role} in use`,
      hidden: false,
      assignedTo: null,
    })),
    guests: profile.guests.map((g) => ({ name: g.name, virt: g.virt, os: g.os, state: g.state, acpiphp: g.acpiphp, liveDevices: [], configDevices: [] })),
    seenAt: new Date(0).toISOString(),
    ...overrides,
  };
}
