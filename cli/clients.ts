import type { Client, Connection as TemporalConnection, TLSConfig } from '@temporalio/client';
import { currentTracing } from '../observability/tracing-state.js';
import type { NatsConnection } from '@nats-io/transport-node';
import { ErrorCode, PtcError } from '../schemas/errors.js';
import { readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { connectNats, credsIdentityName } from '../transport/nats-connection.js';
import { identityOfCredsFile } from '../transport/nats-permissions.js';
import { Requester } from '../schemas/ids.js';
import type { Connection } from './connection.js';

/** TLS/mTLS and API key settings for a Temporal connection (client or worker), files read now. */
export async function temporalConnectOptions(conn: Connection): Promise<{ address: string; tls?: TLSConfig; apiKey?: string }> {
  const read = async (file: string | undefined, what: string): Promise<Buffer | undefined> => {
    if (!file) return undefined;
    try {
      return await readFile(file);
    } catch (err) {
      throw new PtcError(ErrorCode.NOT_CONNECTED, `cannot read the Temporal ${what} ${file}: ${(err as Error).message}`, { cause: err });
    }
  };
  const t = conn.temporalTls;
  let tls: TLSConfig | undefined;
  if (t) {
    const ca = await read(t.caFile, 'CA file');
    const crt = await read(t.certFile, 'client certificate');
    const key = await read(t.keyFile, 'client key');
    if ((crt === undefined) !== (key === undefined)) throw new PtcError(ErrorCode.INVALID_INPUT, 'Temporal mTLS needs both a client certificate and its key (--temporal-cert and --temporal-key)');
    tls = { ...(ca ? { serverRootCACertificate: ca } : {}), ...(crt && key ? { clientCertPair: { crt, key } } : {}), ...(t.serverName ? { serverNameOverride: t.serverName } : {}) };
  }
  return { address: conn.temporalAddress, ...(tls ? { tls } : {}), ...(conn.temporalApiKey ? { apiKey: conn.temporalApiKey } : {}) };
}

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

export const workflowUiLink = (conn: Connection, workflowId: string): string | null =>
  conn.temporalUi ? `${conn.temporalUi}/namespaces/${encodeURIComponent(conn.temporalNamespace)}/workflows/${encodeURIComponent(workflowId)}` : null;

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
