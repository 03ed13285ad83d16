import { Client, Connection as TemporalConnection } from '@temporalio/client';
import { OpenTelemetryWorkflowClientInterceptor } from '@temporalio/interceptors-opentelemetry';
import { currentTracing } from '../observability/tracing.js';
import type { NatsConnection } from '@nats-io/transport-node';
import { ErrorCode, PtcError } from '../schemas/errors.js';
import { connectNats } from '../transport/nats-connection.js';
import type { Connection } from './connection.js';

export async function openTemporal(conn: Connection): Promise<{ client: Client; close: () => Promise<void> }> {
  let connection: TemporalConnection;
  try {
    connection = await TemporalConnection.connect({ address: conn.temporalAddress, connectTimeout: 5000 });
  } catch (err) {
    throw new PtcError(ErrorCode.NOT_CONNECTED, `cannot reach Temporal at ${conn.temporalAddress}: ${(err as Error).message}; is \`ptctl dev\` running?`, { cause: err });
  }
  // With tracing on, starts and signals carry the trace context into the workflows.
  const interceptors = currentTracing() ? { interceptors: { workflow: [new OpenTelemetryWorkflowClientInterceptor()] } } : {};
  return { client: new Client({ connection, namespace: conn.temporalNamespace, ...interceptors }), close: () => connection.close() };
}

export async function openNats(conn: Connection, name = 'ptctl'): Promise<NatsConnection> {
  return connectNats({ servers: conn.natsUrl, seedFile: conn.natsCreds, name });
}

export { readHostInventories } from '../transport/host-inventories.js';

export const workflowUiLink = (conn: Connection, workflowId: string): string | null =>
  conn.temporalUi ? `${conn.temporalUi}/namespaces/${encodeURIComponent(conn.temporalNamespace)}/workflows/${encodeURIComponent(workflowId)}` : null;
