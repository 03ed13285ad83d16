import Table from 'cli-table3';
import type { HostInventory, PciDevice } from '../../schemas/inventory.js';
import { ErrorCode, PtcError } from '../../schemas/errors.js';
import { openNats, readHostInventories } from '../clients.js';
import { type ConnectionFlags, resolveConnection } from '../connection.js';
import { streamJson } from '../output.js';

export interface HostsOptions extends ConnectionFlags {
  host?: string | undefined;
  json: boolean;
}

export function deviceState(d: PciDevice): string {
  if (d.inUse) return `in use: ${d.inUse}`;
  if (d.assignedTo) return `assigned to ${d.assignedTo}`;
  if (d.hidden) return 'hidden';
  return 'idle';
}

export function renderHostsTable(hosts: readonly HostInventory[]): string {
  const table = new Table({ head: ['HOST', 'BDF', 'DRIVER', 'NETDEV', 'IOMMU', 'STATE'], style: { head: [], border: [] } });
  for (const h of hosts) {
    for (const d of h.devices) table.push([h.hostId, d.bdf, d.driver ?? '-', d.netdev ?? '-', d.iommuGroup ?? '-', deviceState(d)]);
  }
  return table.toString();
}

/** `ptctl hosts`: the inventory every agent keeps in KV, as a table or as the raw records. */
export async function hostsCommand(opts: HostsOptions): Promise<void> {
  const conn = await resolveConnection(opts, process.env, 'viewer');
  const nc = await openNats(conn);
  try {
    let hosts = await readHostInventories(nc);
    if (opts.host) {
      hosts = hosts.filter((h) => h.hostId === opts.host);
      if (hosts.length === 0) throw new PtcError(ErrorCode.HOST_NOT_FOUND, `no agent has reported host ${opts.host}; \`ptctl hosts\` lists the known hosts`);
    }
    if (opts.json) {
      // Thousands of inventories: written as the reader takes them, not built as one string first.
      await streamJson(hosts);
      return;
    }
    if (hosts.length === 0) {
      process.stdout.write('no hosts have reported yet\n');
      return;
    }
    for (const h of hosts) {
      process.stdout.write(`${h.hostId}: ${h.os.name} ${h.os.version}, ${h.hypervisor}, IOMMU ${h.iommu ? 'on' : 'off'}, boot ${h.bootId.slice(0, 8)}, seen ${h.seenAt}; guests: ${h.guests.map((g) => `${g.name} (${g.virt}, ${g.state})`).join(', ')}\n`);
    }
    process.stdout.write(renderHostsTable(hosts) + '\n');
  } finally {
    await nc.close();
  }
}
