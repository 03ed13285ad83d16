import type { HostInventory } from '../../schemas/inventory.js';
import { SIM_PROFILES } from '../../agent/sim/profiles.js';
import { xenCoAssignmentGroups } from '../../agent/linux/sysfs-scan.js';

/**
 * The inventory an agent reports for a fresh `rhel5-xen` simulated host (DESIGN §5), without I/O: from
 * the same profile the simulated kernel is built from. sim-host.test checks that the linux backend's
 * scan of that host agrees with it (in use exactly where the profile says, the same groups).
 */
export function rhel5XenInventory(hostId = 'h1', overrides: Partial<HostInventory> = {}): HostInventory {
  const profile = SIM_PROFILES['rhel5-xen'];
  if (!profile) throw new Error('rhel5-xen profile missing');
  const devices = profile.spec.devices;
  const groups = xenCoAssignmentGroups(devices.map((d) => ({ bdf: d.bdf, class: d.class.slice(0, 4), resetMethod: d.resetMethod ?? null })));
  return {
    hostId,
    bootId: 'boot-1',
    agentVersion: 'test',
    os: { name: 'rhel', version: '5.4' },
    hypervisor: 'xen',
    iommu: profile.iommu,
    capabilities: ['dynamic-bind', 'reload', 'reboot', 'hotplug'],
    devices: devices.map((d) => ({
      bdf: d.bdf,
      vendor: d.vendor,
      device: d.device,
      class: d.class.slice(0, 4),
      description: `PCI device ${d.vendor}:${d.device}${d.net?.[0] ? ` (${d.net[0]})` : ''}`,
      driver: d.driver ?? null,
      hostDriver: d.driver ?? null,
      iommuGroup: groups.get(d.bdf) ?? null,
      netdev: d.net?.[0] ?? null,
      inUse: profile.inUse[d.bdf] === undefined ? null : `${profile.inUse[d.bdf]} in use`,
      hidden: false,
      assignedTo: null,
    })),
    guests: profile.guests.map((g) => ({ name: g.name, virt: g.virt, os: g.os, state: g.state, acpiphp: true, liveDevices: [], configDevices: [] })),
    seenAt: new Date(0).toISOString(),
    ...overrides,
  };
}
