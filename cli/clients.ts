import type { Client, Connection as TemporalConnection } from '@temporalio/client';
import { currentTracing } from '../observability/tracing-state.js';
import type { NatsConnection } from '@nats-io/transport-node';
import { ErrorCode, PtcError } from '../schemas/errors.js';
import { connectNats } from '../transport/nats-connection.js';
import type { Connection } from './connection.js';

export async function openTemporal(conn: Connection): Promise<{ client: Client; close: () => Promise<void> }> {
  // Loaded here, not at the top: `ptctl hosts` and the agent use this module and never talk to Temporal.
  const { Client, Connection: TemporalConnection } = await import('@temporalio/client');
  let connection: TemporalConnection;
  try {
    connection = await TemporalConnection.connect({ address: conn.temporalAddress, connectTimeout: 5000 });
  } catch (err) {
    throw new PtcError(ErrorCode.NOT_CONNECTED, `cannot reach Temporal at ${conn.temporalAddress}: ${(err as Error).message}; is \`ptctl dev\` running?`, { cause: err });
  }
  // With tracing on, starts and signals carry the trace context into the workflows.
  const interceptors = currentTracing() ? { interceptors: { workflow: [new (await import('@temporalio/interceptors-opentelemetry')).OpenTelemetryWorkflowClientInterceptor()] } } : {};
  return { client: new Client({ connection, namespace: conn.temporalNamespace, ...interceptors }), close: () => connection.close() };
}

export async function openNats(conn: Connection, name = 'ptctl'): Promise<NatsConnection> {
  return connectNats({ servers: conn.natsUrl, seedFile: conn.natsCreds, name });
}

export { readHostInventories } from '../transport/host-inventories.js';

export const workflowUiLink = (conn: Connection, workflowId: string): string | null =>
  conn.temporalUi ? `${conn.temporalUi}/namespaces/${encodeURIComponent(conn.temporalNamespace)}/workflows/${encodeURIComponent(workflowId)}` : null;
