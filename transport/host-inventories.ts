import { Kvm, KvWatchInclude } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { ErrorCode, PtcError } from '../schemas/errors.js';
import { HOSTS_BUCKET } from '../schemas/agent-protocol.js';
import { HostInventory } from '../schemas/inventory.js';

/** How long reading the bucket's last values may take before the reader gives up (100,000 hosts read in seconds). */
const LIST_TIMEOUT_MS = 120_000;

/**
 * Every host's last reported inventory from KV `ptc_hosts`, one per host, sorted by host id; malformed
 * records are skipped. One watch over the bucket's last values (a single consumer streaming them), not a
 * get per key: at 10,000 hosts that was 10,000 round trips. The watch ends at the last value it was
 * created with; heartbeats written meanwhile are newer values of hosts already read, so a busy fleet
 * cannot keep the listing from ending. `onProgress` sees the count every 1,000 hosts (activities heartbeat
 * with it; `ptctl plan` and `ptctl apply` show it on stderr, see FleetProgress).
 */
export async function readHostInventories(nc: NatsConnection, onProgress?: (hosts: number) => void): Promise<HostInventory[]> {
  const kv = await new Kvm(nc).open(HOSTS_BUCKET);
  if ((await kv.status()).values === 0) return [];
  const latest = new Map<string, HostInventory>();
  const watch = await kv.watch({ include: KvWatchInclude.LastValue });
  let timedOut = false;
  const guard = setTimeout(() => {
    timedOut = true;
    watch.stop();
  }, LIST_TIMEOUT_MS);
  let seen = 0;
  try {
    for await (const entry of watch) {
      seen += 1;
      if (entry.operation === 'PUT') {
        const inv = HostInventory.safeParse(entry.json());
        if (inv.success) latest.set(entry.key, inv.data);
        else latest.delete(entry.key);
      } else {
        latest.delete(entry.key);
      }
      if (seen % 1000 === 0) onProgress?.(seen);
      // The watch marks the last of the values it started with, and everything after it, as updates.
      if (entry.isUpdate) break;
    }
  } finally {
    clearTimeout(guard);
    watch.stop();
  }
  if (timedOut) throw new PtcError(ErrorCode.NOT_CONNECTED, `reading the host inventories from KV ${HOSTS_BUCKET} did not finish within ${LIST_TIMEOUT_MS / 1000} s (${seen} read); is the NATS server overloaded?`);
  return [...latest.values()].sort((a, b) => a.hostId.localeCompare(b.hostId));
}
