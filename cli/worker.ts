import { fileURLToPath } from 'node:url';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { Client, Connection as TemporalConnection } from '@temporalio/client';
import { createActivities } from '../activities/passthrough-activities.js';
import { createOperationActivities } from '../activities/operation-activities.js';
import { createWindowActivities } from '../activities/window-activities.js';
import { connectNats } from '../transport/nats-connection.js';
import { ensureNatsResources } from '../transport/nats-resources.js';
import { TASK_QUEUE } from '../workflows/definitions.js';
import type { Connection } from './connection.js';

export const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.js', import.meta.url));

/** PTC_AGENT_TIMEOUT_MS: how long to wait for an agent's reply (a rebooting host answers nothing). */
function agentTimeoutFromEnv(): number | undefined {
  const value = Number(process.env.PTC_AGENT_TIMEOUT_MS);
  return Number.isInteger(value) && value > 0 ? value : undefined;
}

/** Runs the ptctl worker until SIGINT/SIGTERM (the Temporal SDK's own shutdown signals). */
export async function runWorker(conn: Connection, extra: Partial<WorkerOptions> = {}): Promise<void> {
  const nc = await connectNats({ servers: conn.natsUrl, seedFile: conn.natsCreds, name: 'ptc-worker', reconnectForever: true });
  // The orchestrator identity owns the audit stream and the inventory bucket (hosts may not create them);
  // `ptctl dev` made them already, a stack run elsewhere (docker-compose.yml) gets them from its worker.
  await ensureNatsResources(nc);
  const connection = await NativeConnection.connect({ address: conn.temporalAddress });
  // Rollouts hand work to host entities through a client: a workflow cannot signal-with-start.
  const clientConnection = await TemporalConnection.connect({ address: conn.temporalAddress });
  const client = new Client({ connection: clientConnection, namespace: conn.temporalNamespace });
  try {
    const worker = await Worker.create({
      connection,
      namespace: conn.temporalNamespace,
      taskQueue: TASK_QUEUE,
      workflowsPath: WORKFLOWS_PATH,
      activities: { ...createActivities({ nc, agentTimeoutMs: agentTimeoutFromEnv() }), ...createOperationActivities({ client }), ...createWindowActivities({ nc }) },
      ...extra,
    });
    await worker.run();
  } finally {
    await clientConnection.close();
    await connection.close();
    await nc.drain();
  }
}
