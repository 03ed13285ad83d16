import { after, before } from 'node:test';
import { createRequire } from 'node:module';
import { Runtime, DefaultLogger, Worker, bundleWorkflowCode, type ReplayWorkerOptions, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { makeWorkflowExporter } from '@temporalio/interceptors-opentelemetry';
import { NoopSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { Resource } from '@opentelemetry/resources';
import { serverBinary } from '../../cli/tools.js';
import { METRICS_INTERCEPTORS_PATH, TRACE_LINK_INTERCEPTORS_PATH, WORKFLOWS_PATH, observabilityOptions } from '../../cli/worker.js';
import { WorkerMetrics } from '../../observability/worker-metrics.js';

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
  return TestWorkflowEnvironment.createTimeSkipping({ server: { executable: { type: 'existing-path', path: serverBinary('temporal-test-server') } } });
}

export async function bundleWorkflows(): Promise<WorkflowBundleWithSourceMap> {
  return bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: new DefaultLogger('WARN') });
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
  before(async () => {
    env = await timeSkippingEnv();
    bundle = await bundleWorkflows();
  });
  after(async () => {
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
      const worker = await Worker.create({ connection: e.nativeConnection, taskQueue, workflowBundle: b, activities });
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
  const otelModule = createRequire(import.meta.url).resolve('@temporalio/interceptors-opentelemetry/lib/workflow-interceptors');
  const modules = [METRICS_INTERCEPTORS_PATH, ...(tracing ? [TRACE_LINK_INTERCEPTORS_PATH, otelModule] : [])];
  const workflowBundle = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, workflowInterceptorModules: modules, logger: new DefaultLogger('WARN') });
  const sinks = {
    ...observabilityOptions(metrics, null).sinks,
    ...(tracing ? { exporter: makeWorkflowExporter(new NoopSpanProcessor(), new Resource({ 'service.name': 'replay' })) } : {}),
  };
  return { workflowBundle, sinks };
}
