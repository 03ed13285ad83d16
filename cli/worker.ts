import { fileURLToPath } from 'node:url';
import getPort from 'get-port';
import { NativeConnection, Runtime, Worker, type WorkerOptions } from '@temporalio/worker';
import { Client, Connection as TemporalConnection } from '@temporalio/client';
import { OpenTelemetryPlugin, OpenTelemetryWorkflowClientInterceptor } from '@temporalio/interceptors-opentelemetry';
import { createActivities } from '../activities/passthrough-activities.js';
import { createOperationActivities } from '../activities/operation-activities.js';
import { createWindowActivities } from '../activities/window-activities.js';
import { connectNats } from '../transport/nats-connection.js';
import { TASK_QUEUE } from '../workflows/definitions.js';
import { WorkerMetrics } from '../observability/worker-metrics.js';
import { remoteSource, serveMetrics } from '../observability/metrics-server.js';
import { PinoTemporalLogger, createLogger } from '../observability/logger.js';
import { currentTracing, type Tracing } from '../observability/tracing.js';
import type { Connection } from './connection.js';

export const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.js', import.meta.url));
/** Operation and rollout metrics from inside the workflows, bundled with them (no workflow file changes). */
export const METRICS_INTERCEPTORS_PATH = fileURLToPath(new URL('../workflows/metrics-interceptors.js', import.meta.url));
/** With tracing on: each host operation joins the trace of its enqueue signal (see the module). */
export const TRACE_LINK_INTERCEPTORS_PATH = fileURLToPath(new URL('../workflows/trace-link-interceptors.js', import.meta.url));

/** PTC_AGENT_TIMEOUT_MS: how long to wait for an agent's reply (a rebooting host answers nothing). */
function agentTimeoutFromEnv(): number | undefined {
  const value = Number(process.env.PTC_AGENT_TIMEOUT_MS);
  return Number.isInteger(value) && value > 0 ? value : undefined;
}

/**
 * What the worker adds to its options for observability: the metrics interceptor module and its sink,
 * and with tracing on the OpenTelemetry plugin (client, activity and workflow interceptors plus the
 * sink that exports workflow spans). Replay tests build their replayer with the same.
 */
export function observabilityOptions(metrics: WorkerMetrics, tracing: Tracing | null): Pick<WorkerOptions, 'interceptors' | 'sinks' | 'plugins'> {
  return {
    // The OpenTelemetry plugin appends its own module after these, so the trace link is outside it.
    interceptors: { workflowModules: [METRICS_INTERCEPTORS_PATH, ...(tracing ? [TRACE_LINK_INTERCEPTORS_PATH] : [])] },
    sinks: metrics.workflowSinks(),
    plugins: tracing ? [new OpenTelemetryPlugin({ resource: tracing.resource, spanProcessor: tracing.spanProcessor })] : [],
  };
}

export interface WorkerRunOptions {
  /** Serve ptctl's and the Temporal SDK's metrics at http://ADDR/metrics (`host:port`, `:port`; loopback by default). */
  metrics?: string | undefined;
}

/** Runs the ptctl worker until SIGINT/SIGTERM (the Temporal SDK's own shutdown signals). */
export async function runWorker(conn: Connection, extra: Partial<WorkerOptions> = {}, opts: WorkerRunOptions = {}): Promise<void> {
  const log = createLogger('ptc-worker');
  // The SDK's own Prometheus exporter listens on a loopback port of its own; /metrics merges it with ptctl's.
  const temporalMetricsPort = opts.metrics ? await getPort({ host: '127.0.0.1' }) : null;
  Runtime.install({
    logger: new PinoTemporalLogger(log),
    ...(temporalMetricsPort ? { telemetryOptions: { metrics: { prometheus: { bindAddress: `127.0.0.1:${temporalMetricsPort}`, useSecondsForDurations: true, unitSuffix: true, countersTotalSuffix: true } } } } : {}),
  });
  const tracing = currentTracing();
  const nc = await connectNats({ servers: conn.natsUrl, seedFile: conn.natsCreds, name: 'ptc-worker', reconnectForever: true });
  const connection = await NativeConnection.connect({ address: conn.temporalAddress });
  // Rollouts hand work to host entities through a client: a workflow cannot signal-with-start.
  const clientConnection = await TemporalConnection.connect({ address: conn.temporalAddress });
  const client = new Client({
    connection: clientConnection,
    namespace: conn.temporalNamespace,
    ...(tracing ? { interceptors: { workflow: [new OpenTelemetryWorkflowClientInterceptor()] } } : {}),
  });
  const metrics = new WorkerMetrics(client);
  const endpoint = opts.metrics ? await serveMetrics(opts.metrics, [() => metrics.registry.metrics(), remoteSource(`http://127.0.0.1:${temporalMetricsPort}/metrics`)]) : null;
  if (endpoint) log.info({ metrics: endpoint.url }, 'serving metrics');
  try {
    const worker = await Worker.create({
      connection,
      namespace: conn.temporalNamespace,
      taskQueue: TASK_QUEUE,
      workflowsPath: WORKFLOWS_PATH,
      activities: {
        ...createActivities({ nc, agentTimeoutMs: agentTimeoutFromEnv(), observer: metrics }),
        ...createOperationActivities({ client }),
        ...createWindowActivities({ nc }),
      },
      ...observabilityOptions(metrics, tracing),
      ...extra,
    });
    await worker.run();
  } finally {
    await endpoint?.close();
    await clientConnection.close();
    await connection.close();
    await nc.drain();
    await tracing?.shutdown();
  }
}
