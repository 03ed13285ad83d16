import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import getPort from 'get-port';
import { type BundleOptions, DefaultLogger, NativeConnection, Runtime, Worker, type WorkerOptions, bundleWorkflowCode } from '@temporalio/worker';
import { Client, Connection as TemporalConnection } from '@temporalio/client';
import { IllegalStateError } from '@temporalio/common';
import { OpenTelemetryPlugin, OpenTelemetryWorkflowClientInterceptor } from '@temporalio/interceptors-opentelemetry';
import { createActivities } from '../activities/passthrough-activities.js';
import { createOperationActivities } from '../activities/operation-activities.js';
import { createWindowActivities } from '../activities/window-activities.js';
import { createRolloutActivities } from '../activities/rollout-activities.js';
import { requesterLookup } from '../activities/requester.js';
import { connectNats } from '../transport/nats-connection.js';
import { ensureNatsResources } from '../transport/nats-resources.js';
import { TASK_QUEUE } from '../workflows/definitions.js';
import { DEFAULT_DEPLOYMENT_NAME, describeDeployment, setCurrentVersion } from '../transport/worker-deployment.js';
import type { Connection } from './connection.js';
import { ensureSearchAttributes } from '../transport/search-attributes.js';
import { WorkerMetrics } from '../observability/worker-metrics.js';
import { remoteSource, serveMetrics } from '../observability/metrics-server.js';
import type { Logger } from 'pino';
import { PinoTemporalLogger, createLogger } from '../observability/logger.js';
import { currentTracing, type Tracing } from '../observability/tracing.js';
import { temporalConnectOptions } from './temporal-connection.js';

export const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.js', import.meta.url));
/** Operation and rollout metrics from inside the workflows, bundled with them (no workflow file changes). */
export const METRICS_INTERCEPTORS_PATH = fileURLToPath(new URL('../workflows/metrics-interceptors.js', import.meta.url));
/** With tracing on: each host operation joins the trace of its enqueue signal (see the module). */
export const TRACE_LINK_INTERCEPTORS_PATH = fileURLToPath(new URL('../workflows/trace-link-interceptors.js', import.meta.url));

/**
 * The workflow interceptor modules bundled with the workflows: metrics always; with tracing the trace
 * link and the OpenTelemetry interceptors (the trace link first, so it is the outer one). They are part
 * of the bundle and so of the build id: all workers of one build run with tracing on, or all off.
 */
export function workflowInterceptorModules(tracing: boolean): string[] {
  const otel = createRequire(import.meta.url).resolve('@temporalio/interceptors-opentelemetry/lib/workflow-interceptors');
  return [METRICS_INTERCEPTORS_PATH, ...(tracing ? [TRACE_LINK_INTERCEPTORS_PATH, otel] : [])];
}

/** Evaluated once per worker and shared by every workflow it runs (the schemas and pure policy; see the module). */
export const WORKFLOW_SHARED_MODULES: readonly string[] = [fileURLToPath(new URL('../workflows/shared-modules.js', import.meta.url))];

/** How every workflow bundle of ptctl is made, by the worker, the replayers and the tests alike. */
export function workflowBundleOptions(workflowsPath: string = WORKFLOWS_PATH, interceptorModules: string[] = workflowInterceptorModules(false)): BundleOptions {
  return { workflowsPath, workflowInterceptorModules: interceptorModules, preloadModules: [...WORKFLOW_SHARED_MODULES], logger: new DefaultLogger('WARN') };
}

/**
 * What the worker adds to its options for observability besides the bundled interceptors: the metrics
 * sink, and with tracing on the OpenTelemetry plugin (client and activity interceptors plus the sink
 * that exports workflow spans). Replay tests build their replayer with the same.
 */
export function observabilityOptions(metrics: WorkerMetrics, tracing: Tracing | null): Pick<WorkerOptions, 'sinks' | 'plugins'> {
  return {
    sinks: metrics.workflowSinks(),
    plugins: tracing ? [new OpenTelemetryPlugin({ resource: tracing.resource, spanProcessor: tracing.spanProcessor })] : [],
  };
}

export interface WorkerVersioning {
  /** Deployment name (default PTC_DEPLOYMENT_NAME, then `ptctl`). */
  deploymentName?: string | undefined;
  /** Build id (default PTC_BUILD_ID, then derived from the workflow bundle). */
  buildId?: string | undefined;
  /** Poll without a deployment version: every worker may replay every history (servers without versioning). */
  unversioned?: boolean | undefined;
}

export interface WorkerRunOptions extends WorkerVersioning {
  /** Serve ptctl's and the Temporal SDK's metrics at http://ADDR/metrics (`host:port`, `:port`; loopback by default). */
  metrics?: string | undefined;
  /** The workflow bundle to run, from workflowBuild() (default: ptctl's workflows, bundled now). Tests run a changed build. */
  build?: { code: string; buildId: string } | undefined;
  /** Aborting it shuts the worker down gracefully, as SIGINT/SIGTERM do. */
  signal?: AbortSignal | undefined;
  /** Told the deployment version once the worker is created, before it polls. */
  onReady?: ((version: { deploymentName: string; buildId: string } | null) => void) | undefined;
  extra?: Partial<WorkerOptions> | undefined;
}

/**
 * Workflows the worker keeps in memory between their tasks. Host entities wait an idle hour before
 * they close, so an unbounded cache grows with every host a rollout touched and is never given back
 * (about 0.15 MiB a workflow since the schemas are shared, 2 MiB before); past the bound the least
 * recently used is evicted and replays its short history at its next task. PTC_WORKFLOW_CACHE overrides it.
 */
export const DEFAULT_WORKFLOW_CACHE = 250;

function workflowCacheFromEnv(): number {
  const value = Number(process.env.PTC_WORKFLOW_CACHE);
  return Number.isInteger(value) && value > 0 ? value : DEFAULT_WORKFLOW_CACHE;
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
export async function workflowBuild(workflowsPath: string = WORKFLOWS_PATH, interceptorModules: string[] = workflowInterceptorModules(false)): Promise<{ code: string; buildId: string }> {
  const { code } = await bundleWorkflowCode(workflowBundleOptions(workflowsPath, interceptorModules));
  const withoutSourceMap = code.replace(/\n\/\/# sourceMappingURL=\S*\s*$/, '');
  return { code, buildId: `wf-${createHash('sha256').update(withoutSourceMap).digest('hex').slice(0, 16)}` };
}

/**
 * Retries a start-up step that fails while the servers are still coming up (a NATS cluster started with
 * the worker answers "JetStream not enabled" until its meta leader is elected); past `forMs` the last
 * error stands.
 */
async function withRetries<T>(what: string, forMs: number, log: Logger, step: () => Promise<T>): Promise<T> {
  const until = Date.now() + forMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await step();
    } catch (err) {
      if (Date.now() > until) throw err;
      if (attempt === 1) log.warn({ err: (err as Error).message }, `${what} not ready yet; retrying`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

/**
 * The first build of a deployment makes itself current: with no current version the server routes no
 * task to a versioned worker, so a fresh cluster (docker-compose.yml) would never start a workflow.
 * Every later build is made current by an operator (`ptctl deployment set-current`), never by itself.
 */
async function becomeCurrentIfFirst(connection: TemporalConnection, namespace: string, version: { deploymentName: string; buildId: string }, log: Logger, stopped: () => boolean): Promise<void> {
  // The server knows the version only after the worker's first poll.
  for (let attempt = 0; attempt < 60 && !stopped(); attempt++) {
    const view = await describeDeployment(connection, namespace, version.deploymentName).catch(() => null);
    if (view?.current) return;
    if (view?.versions.some((v) => v.buildId === version.buildId)) {
      await setCurrentVersion(connection, namespace, version.deploymentName, version.buildId, 'ptctl-worker-first-build');
      log.info({ ...version }, 'first build of the deployment: made current');
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/** Runs the ptctl worker until SIGINT/SIGTERM (the Temporal SDK's own shutdown signals) or `opts.signal`. */
export async function runWorker(conn: Connection, opts: WorkerRunOptions = {}): Promise<void> {
  const log = createLogger('ptc-worker');
  // The SDK's own Prometheus exporter listens on a loopback port of its own; /metrics merges it with ptctl's.
  const temporalMetricsPort = opts.metrics ? await getPort({ host: '127.0.0.1' }) : null;
  try {
    Runtime.install({
      logger: new PinoTemporalLogger(log),
      ...(temporalMetricsPort ? { telemetryOptions: { metrics: { prometheus: { bindAddress: `127.0.0.1:${temporalMetricsPort}`, useSecondsForDurations: true, unitSuffix: true, countersTotalSuffix: true } } } } : {}),
    });
  } catch (err) {
    // A process that already installed the SDK's runtime (a test running a second build in-process)
    // keeps its own; only the SDK's metrics are then missing from /metrics.
    if (!(err instanceof IllegalStateError)) throw err;
    log.warn('the Temporal runtime was installed before this worker; its SDK metrics are not served');
  }
  const tracing = currentTracing();
  const build = opts.build ?? (await workflowBuild(WORKFLOWS_PATH, workflowInterceptorModules(tracing !== null)));
  const deploymentName = opts.deploymentName ?? process.env.PTC_DEPLOYMENT_NAME ?? DEFAULT_DEPLOYMENT_NAME;
  const buildId = opts.buildId ?? process.env.PTC_BUILD_ID ?? build.buildId;
  const version = opts.unversioned ? null : { deploymentName, buildId };
  const nc = await connectNats({ servers: conn.natsUrl, seedFile: conn.natsCreds, name: 'ptc-worker', reconnectForever: true, tls: conn.natsTls });
  // The worker identity owns the audit stream and the inventory bucket (hosts may not create them);
  // `ptctl dev` made them already, a stack run elsewhere (docker-compose.yml) gets them from its worker.
  await withRetries('NATS JetStream (the audit stream and the hosts bucket)', 60_000, log, () => ensureNatsResources(nc));
  const temporal = await temporalConnectOptions(conn);
  const connection = await NativeConnection.connect(temporal);
  // Rollouts hand work to host entities through a client: a workflow cannot signal-with-start.
  const clientConnection = await TemporalConnection.connect(temporal);
  const client = new Client({
    connection: clientConnection,
    namespace: conn.temporalNamespace,
    ...(tracing ? { interceptors: { workflow: [new OpenTelemetryWorkflowClientInterceptor()] } } : {}),
  });
  const metrics = new WorkerMetrics(client);
  const endpoint = opts.metrics ? await serveMetrics(opts.metrics, [() => metrics.registry.metrics(), remoteSource(`http://127.0.0.1:${temporalMetricsPort}/metrics`)]) : null;
  if (endpoint) log.info({ metrics: endpoint.url }, 'serving metrics');
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
      maxCachedWorkflows: workflowCacheFromEnv(),
      // Each workflow declares PINNED or AUTO_UPGRADE (workflows/index.ts); PINNED is the safe default for one that forgets.
      ...(version ? { workerDeploymentOptions: { useWorkerVersioning: true, version, defaultVersioningBehavior: 'PINNED' } } : {}),
      activities: {
        ...createActivities({ nc, agentTimeoutMs: agentTimeoutFromEnv(), observer: metrics, requesterOf: requesterLookup(client) }),
        ...createOperationActivities({ client }),
        ...createWindowActivities({ nc }),
        ...createRolloutActivities({ nc, client }),
      },
      ...observabilityOptions(metrics, tracing),
      ...opts.extra,
    });
    opts.onReady?.(version);
    const stop = (): void => worker.shutdown();
    opts.signal?.addEventListener('abort', stop, { once: true });
    const running = worker.run();
    try {
      if (version) await becomeCurrentIfFirst(clientConnection, conn.temporalNamespace, version, log, () => worker.getState() !== 'RUNNING');
      await running;
    } finally {
      opts.signal?.removeEventListener('abort', stop);
    }
  } finally {
    await endpoint?.close();
    await clientConnection.close();
    await connection.close();
    await nc.drain();
    await tracing?.shutdown();
  }
}
