import { fileURLToPath } from 'node:url';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { Client, Connection as TemporalConnection } from '@temporalio/client';
import { createActivities } from '../activities/passthrough-activities.js';
import { createOperationActivities } from '../activities/operation-activities.js';
import { createWindowActivities } from '../activities/window-activities.js';
import { requesterLookup } from '../activities/requester.js';
import { connectNats } from '../transport/nats-connection.js';
import { TASK_QUEUE } from '../workflows/definitions.js';
import type { Connection } from './connection.js';
import { temporalConnectOptions } from './clients.js';

export const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.js', import.meta.url));

/** PTC_AGENT_TIMEOUT_MS: how long to wait for an agent's reply (a rebooting host answers nothing). */
function agentTimeoutFromEnv(): number | undefined {
  const value = Number(process.env.PTC_AGENT_TIMEOUT_MS);
  return Number.isInteger(value) && value > 0 ? value : undefined;
}

/** Runs the ptctl worker until SIGINT/SIGTERM (the Temporal SDK's own shutdown signals). */
export async function runWorker(conn: Connection, extra: Partial<WorkerOptions> = {}): Promise<void> {
  const nc = await connectNats({ servers: conn.natsUrl, seedFile: conn.natsCreds, name: 'ptc-worker', reconnectForever: true, tls: conn.natsTls });
  const temporal = await temporalConnectOptions(conn);
  const connection = await NativeConnection.connect(temporal);
  // Rollouts hand work to host entities through a client: a workflow cannot signal-with-start.
  const clientConnection = await TemporalConnection.connect(temporal);
  const client = new Client({ connection: clientConnection, namespace: conn.temporalNamespace });
  try {
    const worker = await Worker.create({
      connection,
      namespace: conn.temporalNamespace,
      taskQueue: TASK_QUEUE,
      workflowsPath: WORKFLOWS_PATH,
      activities: { ...createActivities({ nc, agentTimeoutMs: agentTimeoutFromEnv(), requesterOf: requesterLookup(client) }), ...createOperationActivities({ client }), ...createWindowActivities({ nc }) },
      ...extra,
    });
    await worker.run();
  } finally {
    await clientConnection.close();
    await connection.close();
    await nc.drain();
  }
}
