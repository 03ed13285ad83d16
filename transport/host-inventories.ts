import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { HOSTS_BUCKET } from '../schemas/agent-protocol.js';
import { HostInventory } from '../schemas/inventory.js';

/** Every host's last reported inventory from KV `ptc_hosts`, one per host, sorted by host id; malformed records are skipped. */
export async function readHostInventories(nc: NatsConnection): Promise<HostInventory[]> {
  const kv = await new Kvm(nc).open(HOSTS_BUCKET);
  // Agents write their key on every heartbeat, and a key written while the listing runs can be listed
  // again: without this set a host showed up twice (and a rollout worked on it twice).
  const keys = new Set<string>();
  for await (const key of await kv.keys()) keys.add(key);
  const out: HostInventory[] = [];
  for (const key of [...keys].sort()) {
    const entry = await kv.get(key);
    if (entry?.operation !== 'PUT') continue;
    const inv = HostInventory.safeParse(entry.json());
    if (inv.success) out.push(inv.data);
  }
  return out.sort((a, b) => a.hostId.localeCompare(b.hostId));
}
