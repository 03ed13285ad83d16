import type { Client, Connection as TemporalConnection } from '@temporalio/client';
import { currentTracing } from '../observability/tracing-state.js';
import type { NatsConnection } from '@nats-io/transport-node';
import { ErrorCode, PtcError } from '../schemas/errors.js';
import { readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { connectNats, credsIdentityName } from '../transport/nats-connection.js';
import { identityOfCredsFile } from '../transport/nats-permissions.js';
import { Requester } from '../schemas/ids.js';
import type { Connection } from './connection.js';
import { temporalConnectOptions } from './temporal-connection.js';

export async function openTemporal(conn: Connection): Promise<{ client: Client; close: () => Promise<void> }> {
  // Loaded here, not at the top: `ptctl hosts` and the agent use this module and never talk to Temporal.
  const { Client, Connection: TemporalConnection } = await import('@temporalio/client');
  let connection: TemporalConnection;
  const options = await temporalConnectOptions(conn);
  try {
    connection = await TemporalConnection.connect({ ...options, connectTimeout: 5000 });
  } catch (err) {
    throw new PtcError(ErrorCode.NOT_CONNECTED, `cannot reach Temporal at ${conn.temporalAddress}: ${(err as Error).message}; is \`ptctl dev\` running?`, { cause: err });
  }
  // With tracing on, starts and signals carry the trace context into the workflows.
  const interceptors = currentTracing() ? { interceptors: { workflow: [new (await import('@temporalio/interceptors-opentelemetry')).OpenTelemetryWorkflowClientInterceptor()] } } : {};
  return { client: new Client({ connection, namespace: conn.temporalNamespace, ...interceptors }), close: () => connection.close() };
}

export async function openNats(conn: Connection, name = 'ptctl'): Promise<NatsConnection> {
  return connectNats({ servers: conn.natsUrl, seedFile: conn.natsCreds, name, tls: conn.natsTls });
}

export { readHostInventories } from '../transport/host-inventories.js';

/**
 * Who this CLI acts as, for the record: the identity its NATS credentials name (e.g.
 * `operator-alice`), then `@` the OS user that ran it. Not an authentication: the servers enforce what
 * the identity may do; this says who did it.
 */
export async function requesterOf(conn: Connection): Promise<string> {
  const text = await readFile(conn.natsCreds, 'utf8').catch(() => '');
  const identity = credsIdentityName(text) ?? identityOfCredsFile(conn.natsCreds)?.identity ?? 'unknown';
  let user = '';
  try {
    user = userInfo().username.replace(/[^A-Za-z0-9_.-]/g, '_');
  } catch {
    user = '';
  }
  const who = user ? `${identity}@${user}` : identity;
  return Requester.safeParse(who).success ? who : identity;
}
