import { Client, Connection as TemporalConnection } from '@temporalio/client';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { HOSTS_BUCKET } from '../schemas/agent-protocol.js';
import { ErrorCode, PtcError } from '../schemas/errors.js';
import { HostInventory } from '../schemas/inventory.js';
import { connectNats } from '../transport/nats-connection.js';
import type { Connection } from './connection.js';

export async function openTemporal(conn: Connection): Promise<{ client: Client; close: () => Promise<void> }> {
  let connection: TemporalConnection;
  try {
    connection = await TemporalConnection.connect({ address: conn.temporalAddress, connectTimeout: 5000 });
  } catch (err) {
    throw new PtcError(ErrorCode.NOT_CONNECTED, `cannot reach Temporal at ${conn.temporalAddress}: ${(err as Error).message}; is \`ptctl dev\` running?`, { cause: err });
  }
  return { client: new Client({ connection, namespace: conn.temporalNamespace }), close: () => connection.close() };
}

export async function openNats(conn: Connection, name = 'ptctl'): Promise<NatsConnection> {
  return connectNats({ servers: conn.natsUrl, seedFile: conn.natsCreds, name });
}

/** Every host's last reported inventory from KV `ptc_hosts`, sorted by host id. */
export async function readHostInventories(nc: NatsConnection): Promise<HostInventory[]> {
  const kv = await new Kvm(nc).open(HOSTS_BUCKET);
  const out: HostInventory[] = [];
  for await (const key of await kv.keys()) {
    const entry = await kv.get(key);
    if (entry?.operation !== 'PUT') continue;
    const inv = HostInventory.safeParse(entry.json());
    if (inv.success) out.push(inv.data);
  }
  return out.sort((a, b) => a.hostId.localeCompare(b.hostId));
}

export const workflowUiLink = (conn: Connection, workflowId: string): string | null =>
  conn.temporalUi ? `${conn.temporalUi}/namespaces/${encodeURIComponent(conn.temporalNamespace)}/workflows/${encodeURIComponent(workflowId)}` : null;
