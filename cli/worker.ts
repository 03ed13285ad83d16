import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { DefaultLogger, NativeConnection, Worker, type WorkerOptions, bundleWorkflowCode } from '@temporalio/worker';
import { Client, Connection as TemporalConnection } from '@temporalio/client';
import { createActivities } from '../activities/passthrough-activities.js';
import { createOperationActivities } from '../activities/operation-activities.js';
import { createWindowActivities } from '../activities/window-activities.js';
import { connectNats } from '../transport/nats-connection.js';
import { TASK_QUEUE } from '../workflows/definitions.js';
import { DEFAULT_DEPLOYMENT_NAME } from '../transport/worker-deployment.js';
import type { Connection } from './connection.js';
import { ensureSearchAttributes } from '../transport/search-attributes.js';

export const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.js', import.meta.url));

export interface WorkerVersioning {
  /** Deployment name (default PTC_DEPLOYMENT_NAME, then `ptctl`). */
  deploymentName?: string | undefined;
  /** Build id (default PTC_BUILD_ID, then derived from the workflow bundle). */
  buildId?: string | undefined;
  /** Poll without a deployment version: every worker may replay every history (servers without versioning). */
  unversioned?: boolean | undefined;
}

export interface WorkerRunOptions extends WorkerVersioning {
  /** The workflow bundle to run, from workflowBuild() (default: ptctl's workflows, bundled now). Tests run a changed build. */
  build?: { code: string; buildId: string } | undefined;
  /** Aborting it shuts the worker down gracefully, as SIGINT/SIGTERM do. */
  signal?: AbortSignal | undefined;
  /** Told the deployment version once the worker is created, before it polls. */
  onReady?: ((version: { deploymentName: string; buildId: string } | null) => void) | undefined;
  extra?: Partial<WorkerOptions> | undefined;
}

/** PTC_AGENT_TIMEOUT_MS: how long to wait for an agent's reply (a rebooting host answers nothing). */
function agentTimeoutFromEnv(): number | undefined {
  const value = Number(process.env.PTC_AGENT_TIMEOUT_MS);
  return Number.isInteger(value) && value > 0 ? value : undefined;
}

/**
 * The workflow bundle this worker runs and the build id derived from it: the same code gives the same
 * id wherever it is installed (the inline source map, which names absolute paths, is left out of the
 * hash), and any change to workflow code, its imports or the SDK gives a new one.
 */
export async function workflowBuild(workflowsPath: string = WORKFLOWS_PATH): Promise<{ code: string; buildId: string }> {
  const { code } = await bundleWorkflowCode({ workflowsPath, logger: new DefaultLogger('WARN') });
  const withoutSourceMap = code.replace(/\n\/\/# sourceMappingURL=\S*\s*$/, '');
  return { code, buildId: `wf-${createHash('sha256').update(withoutSourceMap).digest('hex').slice(0, 16)}` };
}

/** Runs the ptctl worker until SIGINT/SIGTERM (the Temporal SDK's own shutdown signals) or `opts.signal`. */
export async function runWorker(conn: Connection, opts: WorkerRunOptions = {}): Promise<void> {
  const build = opts.build ?? (await workflowBuild());
  const deploymentName = opts.deploymentName ?? process.env.PTC_DEPLOYMENT_NAME ?? DEFAULT_DEPLOYMENT_NAME;
  const buildId = opts.buildId ?? process.env.PTC_BUILD_ID ?? build.buildId;
  const version = opts.unversioned ? null : { deploymentName, buildId };
  const nc = await connectNats({ servers: conn.natsUrl, seedFile: conn.natsCreds, name: 'ptc-worker', reconnectForever: true });
  const connection = await NativeConnection.connect({ address: conn.temporalAddress });
  // Rollouts hand work to host entities through a client: a workflow cannot signal-with-start.
  const clientConnection = await TemporalConnection.connect({ address: conn.temporalAddress });
  const client = new Client({ connection: clientConnection, namespace: conn.temporalNamespace });
  try {
    // Workflows set ptctl's search attributes; a namespace without them would fail every start.
    await ensureSearchAttributes(clientConnection, conn.temporalNamespace).catch((err: unknown) => {
      process.stderr.write(`ptctl worker: could not register search attributes (${err instanceof Error ? err.message : String(err)}); create them with \`temporal operator search-attribute create\` (see README)\n`);
    });
    const worker = await Worker.create({
      connection,
      namespace: conn.temporalNamespace,
      taskQueue: TASK_QUEUE,
      workflowBundle: { code: build.code },
      // Each workflow declares PINNED or AUTO_UPGRADE (workflows/index.ts); PINNED is the safe default for one that forgets.
      ...(version ? { workerDeploymentOptions: { useWorkerVersioning: true, version, defaultVersioningBehavior: 'PINNED' } } : {}),
      activities: { ...createActivities({ nc, agentTimeoutMs: agentTimeoutFromEnv() }), ...createOperationActivities({ client }), ...createWindowActivities({ nc }) },
      ...opts.extra,
    });
    opts.onReady?.(version);
    const stop = (): void => worker.shutdown();
    opts.signal?.addEventListener('abort', stop, { once: true });
    try {
      await worker.run();
    } finally {
      opts.signal?.removeEventListener('abort', stop);
    }
  } finally {
    await clientConnection.close();
    await connection.close();
    await nc.drain();
  }
}
