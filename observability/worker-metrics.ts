import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Client } from '@temporalio/client';
import type { InjectedSinks } from '@temporalio/worker';
import type { PtcMetricsSinks } from '../workflows/metrics-interceptors.js';
import type { AgentCommand } from '../schemas/agent-protocol.js';
import type { AgentCallObserver } from '../transport/agent-client.js';
import type { StepObserver } from '../activities/passthrough-activities.js';
import { AGENT_VERSION } from '../agent/host-inventory.js';

/** Agent commands and host steps take milliseconds to a minute; reboots and waits take minutes. */
const STEP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const LONG_BUCKETS = [1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200];

/** Workflow types whose runs are host operations, and the operation kind each one is. */
export const OPERATION_WORKFLOWS = { passthroughWorkflow: 'attach', releaseWorkflow: 'detach' } as const;

/** How often the running-operations gauges may ask Temporal's visibility (a scrape every 5 s must not mean a list every 5 s). */
const VISIBILITY_CACHE_MS = 10_000;
/** A list beyond this is not read further: the gauges then say "at least". */
const VISIBILITY_LIMIT = 10_000;

/**
 * ptctl's own worker metrics (prom-client, `ptc_*`). Operations, rollouts and throttle waits are told by
 * the workflow metrics sink (workflows/metrics-interceptors.ts), steps and reboot waits by the
 * activities, agent round trips by the agent client; running operations are read from Temporal's
 * visibility at scrape time, so they stay right across worker restarts and with several workers.
 */
export class WorkerMetrics implements AgentCallObserver, StepObserver {
  readonly registry = new Registry();
  private readonly r = [this.registry];

  readonly buildInfo = new Gauge({ name: 'ptc_worker_build_info', help: 'ptctl worker build (value 1)', labelNames: ['version', 'node'], registers: this.r });
  readonly operationsStarted = new Counter({ name: 'ptc_operations_started_total', help: 'host operations started, by kind (attach | detach)', labelNames: ['kind'], registers: this.r });
  readonly operationsEnded = new Counter({ name: 'ptc_operations_ended_total', help: 'host operations ended, by kind and outcome', labelNames: ['kind', 'outcome'], registers: this.r });
  readonly operationDuration = new Histogram({ name: 'ptc_operation_duration_seconds', help: 'host operation time from start to end, by kind and outcome', labelNames: ['kind', 'outcome'], buckets: LONG_BUCKETS, registers: this.r });
  readonly residue = new Counter({ name: 'ptc_compensation_residue_total', help: 'undo steps that could not be done (left on the host; outcome needs-attention), by kind', labelNames: ['kind'], registers: this.r });
  readonly compensations = new Counter({ name: 'ptc_compensations_total', help: 'compensation (undo) steps run against agents, by command and result', labelNames: ['command', 'result'], registers: this.r });
  readonly stepDuration = new Histogram({ name: 'ptc_step_duration_seconds', help: 'one attempt of a host step (an agent command activity), by command, compensation and result', labelNames: ['command', 'compensation', 'result'], buckets: STEP_BUCKETS, registers: this.r });
  readonly throttleWaits = new Counter({ name: 'ptc_throttle_waits_total', help: 'waits for a hotplug slot of the throttle, by kind', labelNames: ['kind'], registers: this.r });
  readonly throttleWaitSeconds = new Histogram({ name: 'ptc_throttle_wait_seconds', help: 'length of each throttle wait, by kind', labelNames: ['kind'], buckets: LONG_BUCKETS, registers: this.r });
  readonly rebootWaits = new Histogram({ name: 'ptc_reboot_wait_seconds', help: 'waits for a host to come back from a reboot (new boot id), by result', labelNames: ['result'], buckets: LONG_BUCKETS, registers: this.r });
  readonly agentRequests = new Histogram({ name: 'ptc_agent_request_duration_seconds', help: 'agent request/reply round trips over NATS, by command and result (ok or error code)', labelNames: ['command', 'result'], buckets: STEP_BUCKETS, registers: this.r });
  readonly rolloutsStarted = new Counter({ name: 'ptc_rollouts_started_total', help: 'fleet rollouts started', registers: this.r });
  readonly rolloutsEnded = new Counter({ name: 'ptc_rollouts_ended_total', help: 'fleet rollouts ended, by state (completed | stopped_by_failures | cancelled | window_closed | failed)', labelNames: ['state'], registers: this.r });
  readonly rolloutHosts = new Counter({ name: 'ptc_rollout_hosts_total', help: 'hosts of rollouts that ended, by state (succeeded | failed | cancelled)', labelNames: ['state'], registers: this.r });
  readonly running: Gauge;
  readonly oldestRunning: Gauge;

  private visibility: Promise<Map<string, { count: number; oldestSeconds: number }>> | null = null;
  private visibilityAt = 0;

  constructor(private readonly client?: Client) {
    collectDefaultMetrics({ register: this.registry, prefix: 'ptc_worker_' });
    this.buildInfo.set({ version: AGENT_VERSION, node: process.version }, 1);
    const running = (): Promise<Map<string, { count: number; oldestSeconds: number }>> => this.runningOperations();
    this.running = new Gauge({
      name: 'ptc_operations_running',
      help: 'host operations running now, by kind (from Temporal visibility)',
      labelNames: ['kind'],
      registers: this.r,
      async collect() {
        for (const [kind, v] of await running()) this.set({ kind }, v.count);
      },
    });
    this.oldestRunning = new Gauge({
      name: 'ptc_operation_oldest_running_seconds',
      help: 'age of the oldest running host operation, by kind (0 when none runs; from Temporal visibility)',
      labelNames: ['kind'],
      registers: this.r,
      async collect() {
        for (const [kind, v] of await running()) this.set({ kind }, v.oldestSeconds);
      },
    });
  }

  /** The worker side of the workflows' metrics sink; nothing is counted while a history replays. */
  workflowSinks(): InjectedSinks<PtcMetricsSinks> {
    const fn = <A extends unknown[]>(f: (...args: A) => void) => ({ fn: (_info: unknown, ...args: A) => f(...args), callDuringReplay: false });
    return {
      ptcMetrics: {
        operationStarted: fn((kind: string) => this.operationsStarted.inc({ kind })),
        operationEnded: fn((kind: string, outcome: string, seconds: number, residue: number) => {
          this.operationsEnded.inc({ kind, outcome });
          this.operationDuration.observe({ kind, outcome }, seconds);
          this.residue.inc({ kind }, residue);
        }),
        throttleWait: fn((kind: string, seconds: number) => {
          this.throttleWaits.inc({ kind });
          this.throttleWaitSeconds.observe({ kind }, seconds);
        }),
        rolloutStarted: fn(() => this.rolloutsStarted.inc()),
        rolloutEnded: fn((state: string) => this.rolloutsEnded.inc({ state })),
        rolloutHostEnded: fn((state: string) => this.rolloutHosts.inc({ state })),
      },
    };
  }

  requestEnded(command: AgentCommand, result: string, seconds: number): void {
    this.agentRequests.observe({ command, result }, seconds);
  }

  stepEnded(command: AgentCommand, compensation: boolean, result: string, seconds: number): void {
    this.stepDuration.observe({ command, compensation: String(compensation), result }, seconds);
    if (compensation) this.compensations.inc({ command, result });
  }

  rebootWaitEnded(result: string, seconds: number): void {
    this.rebootWaits.observe({ result }, seconds);
  }

  /** Running operations per kind, read at most every VISIBILITY_CACHE_MS; a visibility error keeps the last answer. */
  private runningOperations(): Promise<Map<string, { count: number; oldestSeconds: number }>> {
    const client = this.client;
    if (!client) return Promise.resolve(new Map<string, { count: number; oldestSeconds: number }>());
    if (this.visibility && Date.now() - this.visibilityAt < VISIBILITY_CACHE_MS) return this.visibility;
    const previous = this.visibility;
    this.visibilityAt = Date.now();
    this.visibility = (async () => {
      const out = new Map<string, { count: number; oldestSeconds: number }>();
      for (const [type, kind] of Object.entries(OPERATION_WORKFLOWS)) {
        let count = 0;
        let oldest = Date.now();
        for await (const wf of client.workflow.list({ query: `WorkflowType = '${type}' AND ExecutionStatus = 'Running'` })) {
          count += 1;
          oldest = Math.min(oldest, wf.startTime.getTime());
          if (count >= VISIBILITY_LIMIT) break;
        }
        out.set(kind, { count, oldestSeconds: (Date.now() - oldest) / 1000 });
      }
      return out;
    })().catch(() => previous ?? new Map<string, { count: number; oldestSeconds: number }>());
    return this.visibility;
  }
}
