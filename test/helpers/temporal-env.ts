import { after, before } from 'node:test';
import { Runtime, DefaultLogger, Worker, bundleWorkflowCode, type ReplayWorkerOptions, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { makeWorkflowExporter } from '@temporalio/interceptors-opentelemetry';
import { NoopSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { Resource } from '@opentelemetry/resources';
import { serverBinary } from '../../cli/tools.js';
import { WORKFLOWS_PATH, observabilityOptions, workflowBundleOptions, workflowInterceptorModules } from '../../cli/worker.js';
import { WorkerMetrics } from '../../observability/worker-metrics.js';
import { ensureSearchAttributes } from '../../transport/search-attributes.js';
import { exportHistoriesIfAsked, recordStartedWorkflows } from './history-export.js';

let runtimeInstalled = false;

/** Keeps the SDK's INFO chatter out of test output; warnings and errors still show. */
export function quietTemporalRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  Runtime.install({ logger: new DefaultLogger('WARN') });
}

/** The time-skipping test server from .tools/ (never downloaded at run time). */
export async function timeSkippingEnv(): Promise<TestWorkflowEnvironment> {
  quietTemporalRuntime();
  const env = await TestWorkflowEnvironment.createTimeSkipping({ server: { executable: { type: 'existing-path', path: serverBinary('temporal-test-server') } } });
  // The workflows set ptctl's search attributes; the test server, like a real one, refuses unknown ones.
  await ensureSearchAttributes(env.connection, env.namespace ?? 'default');
  return env;
}

/**
 * The sinks the production worker registers (metrics only, into a registry nobody reads): workflows
 * call them, and a worker or replayer without them logs an error for every call.
 */
export const productionSinks = (): NonNullable<ReplayWorkerOptions['sinks']> => observabilityOptions(new WorkerMetrics(), null).sinks ?? {};

export async function bundleWorkflows(): Promise<WorkflowBundleWithSourceMap> {
  return bundleWorkflowCode(workflowBundleOptions(WORKFLOWS_PATH, []));
}

/**
 * One time-skipping server and one workflow bundle for a test file (created in `before`, torn down in
 * `after`); `withWorker` runs a body while a worker with the given activities polls a fresh task queue.
 */
export function useTimeSkippingEnv(prefix: string): {
  readonly env: TestWorkflowEnvironment;
  withWorker<T>(activities: object, body: (taskQueue: string) => Promise<T>): Promise<T>;
} {
  let env: TestWorkflowEnvironment | undefined;
  let bundle: WorkflowBundleWithSourceMap | undefined;
  let n = 0;
  let started = new Set<string>();
  before(async () => {
    env = await timeSkippingEnv();
    started = recordStartedWorkflows(env.client);
    bundle = await bundleWorkflows();
  });
  after(async () => {
    if (env) await exportHistoriesIfAsked(env.client, `ts-${prefix}`, [...started].map((workflowId) => ({ workflowId })));
    await env?.teardown();
  });
  const ready = (): { env: TestWorkflowEnvironment; bundle: WorkflowBundleWithSourceMap } => {
    if (!env || !bundle) throw new Error('useTimeSkippingEnv: used outside a test');
    return { env, bundle };
  };
  return {
    get env() {
      return ready().env;
    },
    async withWorker(activities, body) {
      const { env: e, bundle: b } = ready();
      const taskQueue = `${prefix}-${++n}`;
      const worker = await Worker.create({ connection: e.nativeConnection, taskQueue, workflowBundle: b, activities, sinks: productionSinks() });
      return worker.runUntil(() => body(taskQueue));
    },
  };
}

/**
 * The workflow bundle the production worker runs, with its interceptor modules (metrics; with
 * `tracing` also the trace link and the OpenTelemetry workflow interceptors) and the sinks a replayer
 * needs for them (workflow spans go to a processor that drops them).
 */
export async function observedReplayer(tracing: boolean, metrics: WorkerMetrics = new WorkerMetrics()): Promise<Pick<ReplayWorkerOptions, 'workflowBundle' | 'sinks'>> {
  const workflowBundle = await bundleWorkflowCode(workflowBundleOptions(WORKFLOWS_PATH, workflowInterceptorModules(tracing)));
  const sinks = {
    ...observabilityOptions(metrics, null).sinks,
    ...(tracing ? { exporter: makeWorkflowExporter(new NoopSpanProcessor(), new Resource({ 'service.name': 'replay' })) } : {}),
  };
  return { workflowBundle, sinks };
}
