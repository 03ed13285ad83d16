import type { z } from 'zod';
import { ActivityFailure, ApplicationFailure, CancellationScope, isCancellation, log, patched, proxyActivities, proxyLocalActivities, setHandler, sleep, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import { PtcOutcome } from './visibility.js';
import type { PassthroughActivities } from '../activities/passthrough-activities.js';
import { ErrorCode, describeZodError, isErrorCode } from '../schemas/errors.js';
import type { Outcome, PassthroughResult, PassthroughStep, StepRecord, ThrottleSettings } from '../schemas/passthrough.js';
import { nextHotplugSlot } from '../policy/hotplug-throttle.js';
import { type PassthroughProgress, passthroughProgressQuery } from './definitions.js';

// One profile per kind of call. Agent commands are short; permanent errors are marked non-retryable by
// the activity, so retries only ever repeat a call the agent's journal makes idempotent. A rebooting
// host does not answer for a while, which the backoff rides out.
const hostOp = {
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '15s', maximumAttempts: 8 },
} as const;

export const agent = proxyActivities<PassthroughActivities>(hostOp);

/**
 * The same calls as local activities, for the short steps that read or edit a file (inspect, hide,
 * verify): the worker runs them inside the workflow task that asked, so each costs a marker instead of
 * a server round trip and a workflow task of its own (three events and a task less per step; measured
 * in `npm run bench`, latency section). Effects that take a host's real time (bind, attach, reboot)
 * stay activities, each visible on its own in the history and the UI. Retries within the profile's
 * 15 s backoff stay in the worker, which keeps the workflow task alive meanwhile. A local step's
 * result is recorded only with its workflow task, so a worker lost before that runs the step again:
 * with the same op id, which the agent answers from its journal (hide) or which changes nothing.
 */
const localAgent = proxyLocalActivities<PassthroughActivities>({ ...hostOp, localRetryThreshold: '1 minute' });

/** The agent for short steps: local activities, except in histories recorded before they were (patched). */
export function shortStepAgent(): PassthroughActivities {
  return patched('local-agent-steps') ? localAgent : agent;
}

/**
 * Undo steps get their own profile: a slow or rebooting host must not be left with residue after a few
 * minutes of retries. Unlimited attempts within a long bound; the inverses are idempotent by state.
 */
export const undoAgent = proxyActivities<PassthroughActivities>({
  startToCloseTimeout: '1 minute',
  scheduleToCloseTimeout: '2 hours',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

/**
 * Waits for a new boot id until the operation's deadline. Bounded by schedule-to-close, not by one
 * attempt: a worker that restarts during the wait loses the heartbeat, and the retry on another worker
 * goes on waiting for the same previous boot id instead of ending the operation.
 */
export function bootWaiter(deadlineMs: number): Pick<PassthroughActivities, 'awaitNewBoot'> {
  const bound = Math.max(1000, deadlineMs);
  return proxyActivities<Pick<PassthroughActivities, 'awaitNewBoot'>>({
    scheduleToCloseTimeout: bound,
    startToCloseTimeout: bound,
    heartbeatTimeout: '20s',
    retry: { initialInterval: '1s', maximumInterval: '10s' },
  });
}

/**
 * Validates a workflow's input with its schema. A ZodError thrown in workflow code would fail the
 * workflow task and retry it forever, so bad input becomes a non-retryable INVALID_INPUT failure.
 */
export function parseWorkflowInput<T extends z.ZodType>(schema: T, input: unknown, what: string): z.infer<T> {
  const parsed = schema.safeParse(input);
  if (!parsed.success) throw ApplicationFailure.nonRetryable(`invalid ${what}: ${describeZodError(parsed.error, what)}`, ErrorCode.INVALID_INPUT);
  return parsed.data;
}

/** Starts an operation on one device: its context, and the progress query that `ptctl status` reads. */
export function beginOperation(req: { hostId: string; bdf: string; throttle: ThrottleSettings; deadlineMs: number }, hotplugLedger: readonly number[]): OperationContext {
  const op = new OperationContext(workflowInfo().workflowId, req.hostId, req.bdf, [...hotplugLedger], req.throttle, req.deadlineMs);
  setHandler(passthroughProgressQuery, () => op.progress);
  return op;
}

/** The code and sentence of whatever failed, however deep Temporal wrapped it. */
export function failureInfo(err: unknown): { code: ErrorCode; message: string } {
  if (isCancellation(err)) return { code: ErrorCode.CANCELLED, message: 'the operation was cancelled' };
  let cur: unknown = err;
  while (cur instanceof ActivityFailure && cur.cause) cur = cur.cause;
  if (cur instanceof ApplicationFailure && isErrorCode(cur.type)) return { code: cur.type, message: cur.message };
  if (cur instanceof ApplicationFailure && cur.type === 'ActivityFailure') return { code: ErrorCode.OPERATION_FAILED, message: cur.message };
  return { code: ErrorCode.OPERATION_FAILED, message: cur instanceof Error ? cur.message : String(cur) };
}

/** The details every failed operation carries, so callers and the host entity see what happened. */
export interface FailureDetails {
  outcome: Outcome;
  steps: StepRecord[];
  residue: string[];
  hotplugs: number[];
}

export interface Compensation {
  what: string;
  undo: () => Promise<unknown>;
}

/**
 * State shared by the steps of one operation: its progress (for the query), the compensations pushed so
 * far, the device's hotplug ledger and the deadline for waits.
 */
export class OperationContext {
  readonly progress: PassthroughProgress = { step: 'preflight', steps: [], waitingFor: null };
  readonly compensations: Compensation[] = [];
  readonly hotplugs: number[] = [];
  readonly deadlineAt: number;

  constructor(
    readonly opBase: string,
    readonly hostId: string,
    readonly bdf: string,
    private readonly ledger: number[],
    readonly throttle: ThrottleSettings,
    deadlineMs: number,
  ) {
    this.deadlineAt = Date.now() + deadlineMs;
  }

  /** Operation ids are derived from the workflow id and the step: a retried step is answered from the agent's journal. */
  opId(step: string): string {
    return `${this.opBase}#${step}`;
  }

  record(step: PassthroughStep, detail: string): void {
    this.progress.step = step;
    this.progress.steps.push({ step, detail });
    log.info(detail, { step, hostId: this.hostId, bdf: this.bdf });
  }

  pushUndo(what: string, undo: () => Promise<unknown>): void {
    this.compensations.unshift({ what, undo });
  }

  /** The moment the next hotplug of this device fits in the budget (now when it fits already). */
  nextSlot(): number {
    return nextHotplugSlot({ [this.bdf]: this.ledger }, this.bdf, Date.now(), this.throttle);
  }

  /**
   * Waits on a durable timer until a hotplug fits the budget. Past the deadline the operation ends
   * `throttled`, unless `ignoreDeadline` (compensation must finish, however long it waits).
   */
  async hotplugGate(ignoreDeadline = false): Promise<void> {
    const now = Date.now();
    const slot = this.nextSlot();
    if (slot <= now) return;
    if (!ignoreDeadline && slot > this.deadlineAt) {
      throw ApplicationFailure.create({
        type: ErrorCode.THROTTLED,
        nonRetryable: true,
        message: `${this.bdf} has had ${this.throttle.budget} hotplugs in the last ${Math.round(this.throttle.windowMs / 1000)} s; the next slot (${new Date(slot).toISOString()}) is past the deadline`,
      });
    }
    this.progress.waitingFor = `hotplug budget of ${this.bdf} (${this.throttle.budget} per ${Math.round(this.throttle.windowMs / 1000)} s): next slot at ${new Date(slot).toISOString()}`;
    this.record('throttle', `waiting ${Math.ceil((slot - now) / 1000)} s for a hotplug slot`);
    await sleep(slot - now);
    this.progress.waitingFor = null;
  }

  noteHotplug(): void {
    const at = Date.now();
    this.ledger.push(at);
    this.hotplugs.push(at);
  }

  /** Makes the outcome searchable (`PtcOutcome`); histories from before it replay without the upsert. */
  private publishOutcome(outcome: Outcome): void {
    if (patched('visibility-outcome')) upsertSearchAttributes([{ key: PtcOutcome, value: outcome }]);
  }

  /** The operation's result: what was asked, how it ended, its steps and the hotplugs it caused. */
  result(kind: PassthroughResult['kind'], guest: string, outcome: Outcome, extra: Partial<Pick<PassthroughResult, 'strategy' | 'mode' | 'guestRebootNeeded'>> = {}): PassthroughResult {
    this.publishOutcome(outcome);
    return {
      kind,
      hostId: this.hostId,
      bdf: this.bdf,
      guest,
      outcome,
      strategy: extra.strategy ?? null,
      mode: extra.mode ?? null,
      guestRebootNeeded: extra.guestRebootNeeded ?? false,
      steps: this.progress.steps,
      hotplugs: this.hotplugs,
      error: null,
    };
  }

  /** Runs the inverses newest-first, never cancelled; returns what could not be undone. */
  async compensate(): Promise<string[]> {
    const residue: string[] = [];
    await CancellationScope.nonCancellable(async () => {
      for (const c of this.compensations) {
        try {
          await c.undo();
          this.record('compensate', `undone: ${c.what}`);
        } catch (err) {
          const info = failureInfo(err);
          residue.push(`${c.what} (${info.code}: ${info.message})`);
          this.record('compensate', `could not ${c.what}: ${info.code}`);
        }
      }
    });
    return residue;
  }

  /** Compensates and turns the original error into the operation's failure, with its outcome and residue. */
  async fail(err: unknown): Promise<never> {
    const original = failureInfo(err);
    const residue = await this.compensate();
    const outcome: Outcome =
      residue.length > 0 ? 'needs-attention' : original.code === ErrorCode.THROTTLED ? 'throttled' : original.code === ErrorCode.CANCELLED ? 'cancelled' : this.compensations.length > 0 ? 'compensated' : 'failed';
    this.progress.step = 'done';
    this.publishOutcome(outcome);
    const details: FailureDetails = { outcome, steps: this.progress.steps, residue, hotplugs: this.hotplugs };
    throw ApplicationFailure.create({
      type: original.code,
      message:
        residue.length > 0
          ? `${original.message}; undo incomplete, left on the host: ${residue.join('; ')}`
          : this.compensations.length > 0
            ? `${original.message} (undone: the host is as before)`
            : original.message,
      nonRetryable: true,
      details: [details],
    });
  }
}
