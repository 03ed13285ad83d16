import {
  CancellationScope,
  allHandlersFinished,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  isCancellation,
  patched,
  proxyActivities,
  proxyLocalActivities,
  proxySinks,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import type { OperationActivities, OperationOutcome } from '../activities/operation-activities.js';
import type { HostOperationInput } from '../schemas/passthrough.js';
import { type HostRolloutReport, type HostRolloutState, type HostWork, RolloutInput, type RolloutInputRaw } from '../schemas/rollout.js';
import {
  SIGNAL_OVERDUE_MS,
  cancelRolloutSignal,
  hostRolloutEndedSignal,
  hostRolloutWorkflowId,
  operationEndedSignal,
  rolloutOperationId,
  rolloutProgressQuery,
} from './definitions.js';
import type { PtcMetricsSinks } from './metrics-interceptors.js';
import {
  DEFAULT_HISTORY_LIMIT,
  IN_FLIGHT_CHECK_MS,
  type OperationInFlight,
  type RolloutCarry,
  type RolloutReport,
  firstGeneration,
  handlePauseAndResume,
  progressOf,
  hostToStart,
  rolloutActivities,
  rolloutBook,
  rolloutHosts,
} from './rollout-book.js';
import { drainingRollout, slidingRollout } from './rollout-earlier.js';
import { parseWorkflowInput } from './saga-kit.js';

/**
 * `rollout/<name>`: a fleet rollout. Canary hosts first, one at a time, and any canary failure stops it;
 * then at most `maxParallel` hosts at once until failures exceed `maxFailures`. Pause stops launching,
 * resume continues, cancel stops launching and cancels the operations in flight (their sagas compensate).
 * Each host's requests are queued one after another on the host's entity (which serializes them with
 * everything else on the host); the entity signals how each ended. Generations continue as new before
 * their history grows long, carrying counters, capped problems and the operations in flight, never the
 * finished hosts; the hosts themselves are read page by page from KV (`hostsRef`).
 */
export async function rolloutWorkflow(raw: RolloutInputRaw, carry?: RolloutCarry, historyLimit: number = DEFAULT_HISTORY_LIMIT): Promise<RolloutReport> {
  const input = parseWorkflowInput(RolloutInput, raw, 'rollout');
  // Histories from before ran a child workflow per host (draining each generation, or later not); they replay so.
  if (patched('rollout-direct-operations')) return directRollout(input, carry, historyLimit);
  if (patched('rollout-sliding-window')) return slidingRollout(input, carry, historyLimit);
  return drainingRollout(input, carry, historyLimit);
}

const operationOptions = { startToCloseTimeout: '2 minutes', retry: { maximumAttempts: 10 } } as const;
const operations = proxyActivities<OperationActivities>(operationOptions);
/**
 * The enqueue as a local activity: the worker signals the entities inside the workflow task that
 * launched the hosts, so a host's start costs a marker in the rollout's history instead of an activity
 * (three events, a task's round trip through the server and a workflow task more). Histories recorded
 * before it replay with the activity (patched `local-enqueue`). Run twice after a lost worker, it
 * queues nothing twice: an entity ignores an operation id it knows.
 */
const localOperations = proxyLocalActivities<Pick<OperationActivities, 'enqueueOperations'>>({ ...operationOptions, localRetryThreshold: '1 minute' });
const enqueueOperations = (batch: HostOperationInput[]): Promise<void> => (patched('local-enqueue') ? localOperations : operations).enqueueOperations(batch);
const { ptcMetrics } = proxySinks<PtcMetricsSinks>();

/** Operations one activity queues: the hosts launched in one workflow task go together, up to this. */
const ENQUEUE_BATCH = 100;

/** A host's operation ended, heard by signal (which names the guest) or found by the overdue look-up. */
interface EndedOperation {
  op: OperationInFlight;
  outcome: Pick<OperationOutcome, 'outcome' | 'code' | 'message'> & { guest?: string };
}

type AttachOperation = Extract<HostOperationInput, { kind: 'attach' }>;

const stepLine = (request: { bdf: string; guest: string }, text: string): string => `${request.bdf} → ${request.guest}: ${text}`;

async function directRollout(input: RolloutInput, carry: RolloutCarry | undefined, historyLimit: number): Promise<RolloutReport> {
  const { name, options, window, run, hostsRef } = input;
  const self = workflowInfo().workflowId;
  // A read of the next page waits: what this workflow task launched is queued before it.
  const hosts = rolloutHosts(input, { beforeRead: () => queueLaunched(), nonCancellable: true });
  const state = carry ?? firstGeneration(hosts.length, options);
  let next = state.next ?? 0;
  let cancelled = state.cancelled ?? false;
  const book = rolloutBook(state, options);

  const opId = (op: Pick<OperationInFlight, 'hostId' | 'bdf' | 'step'>): string => rolloutOperationId(hostRolloutWorkflowId(name, op.hostId), op.hostId, op.bdf, op.step, run ?? undefined);
  /** Operations in flight by workflow id: queued (or being queued) on their host's entity, not yet heard back. */
  const ops = new Map((state.ops ?? []).map((op) => [opId(op), op]));
  /** Of those, the ones whose enqueue has not returned yet: a cancel for them waits for it. */
  const enqueuing = new Set<string>();
  const toEnqueue: AttachOperation[] = [];
  const ended: EndedOperation[] = [];
  /** Host workflows launched by a generation from before operations were queued directly. */
  const children = new Map((state.running ?? []).map((h) => [h.hostId, h.canary]));
  /** Activities whose end this generation must see before it may continue as new. */
  let busy = 0;
  /** A local enqueue ran that no timer has committed yet (see the continue-as-new below). */
  let enqueuedSinceCommit = false;
  let checkArmed = false;
  let checkDue = false;

  const inFlight = (): number => ops.size + ended.length + children.size;
  const hostEnded = (op: Pick<OperationInFlight, 'hostId' | 'canary'>, hostState: HostRolloutState, details: string[]): void => {
    book.ended({ hostId: op.hostId, state: hostState, canary: op.canary, details }, op.canary);
    ptcMetrics.rolloutHostEnded(hostState);
  };

  function queueLaunched(): void {
    while (toEnqueue.length > 0) {
      const batch = toEnqueue.splice(0, ENQUEUE_BATCH);
      busy += 1;
      enqueuedSinceCommit = true;
      void CancellationScope.nonCancellable(() => enqueueOperations(batch))
        .then(
          () => {
            const cancels: OperationInFlight[] = [];
            for (const { workflowId } of batch) {
              enqueuing.delete(workflowId);
              const op = ops.get(workflowId);
              if (op?.cancelling) cancels.push(op);
            }
            cancelOperations(cancels);
          },
          (err: unknown) => {
            const why = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
            for (const { workflowId, request } of batch) {
              enqueuing.delete(workflowId);
              const op = ops.get(workflowId);
              if (!op) continue;
              ops.delete(workflowId);
              hostEnded(op, op.cancelling ? 'cancelled' : 'failed', [...op.details, stepLine(request, `could not be queued on its host: ${why}`)]);
            }
          },
        )
        .finally(() => (busy -= 1));
    }
  }

  function queueStep(host: Pick<OperationInFlight, 'hostId' | 'canary' | 'at' | 'details'>, work: HostWork, step: number): void {
    const request = work.requests[step];
    if (!request) return;
    const op: OperationInFlight = { ...host, step, steps: work.requests.length, bdf: request.bdf, overdueAt: Date.now() + request.deadlineMs + SIGNAL_OVERDUE_MS };
    const workflowId = opId(op);
    ops.set(workflowId, op);
    enqueuing.add(workflowId);
    toEnqueue.push({ kind: 'attach', workflowId, request, notify: self, rollout: name });
    if (toEnqueue.length >= ENQUEUE_BATCH) queueLaunched();
    armCheck();
  }

  function cancelOperations(list: OperationInFlight[]): void {
    if (list.length === 0) return;
    busy += 1;
    void CancellationScope.nonCancellable(() => operations.cancelOperations(list.map((op) => ({ hostId: op.hostId, workflowId: opId(op) }))))
      .catch(() => undefined)
      .finally(() => (busy -= 1));
  }

  function cancelAll(): void {
    cancelled = true;
    state.stopReason ??= 'cancelled';
    const now = [...ops.values()].filter((op) => !op.cancelling);
    for (const op of now) op.cancelling = true;
    // One whose enqueue is still out is cancelled when that returns: a cancel must not overtake it.
    cancelOperations(now.filter((op) => !enqueuing.has(opId(op))));
    for (const hostId of children.keys()) void getExternalWorkflowHandle(hostRolloutWorkflowId(name, hostId)).cancel().catch(() => undefined);
  }

  /** One timer at a time while anything is in flight: a signal that never comes is looked up, not waited for forever. */
  function armCheck(): void {
    if (checkArmed || inFlight() === 0) return;
    checkArmed = true;
    void CancellationScope.nonCancellable(() => sleep(IN_FLIGHT_CHECK_MS)).then(() => {
      checkArmed = false;
      checkDue = true;
    });
  }

  async function lookUpSilent(): Promise<void> {
    checkDue = false;
    if (children.size > 0) {
      // A failed look-up is tried again at the next interval; the rollout goes on meanwhile.
      const closed = await CancellationScope.nonCancellable(() => rolloutActivities.closedHostRollouts(name, [...children].map(([hostId, canary]) => ({ hostId, canary })))).catch(() => []);
      for (const report of closed) childEnded(report);
    }
    const now = Date.now();
    const overdue = [...ops].filter(([workflowId, op]) => now >= op.overdueAt && !enqueuing.has(workflowId));
    if (overdue.length > 0) {
      const found = await CancellationScope.nonCancellable(() => operations.endedOperations(overdue.map(([workflowId, op]) => ({ hostId: op.hostId, workflowId })))).catch(() => []);
      for (const outcome of found) operationEnded(outcome.workflowId, outcome);
    }
    armCheck();
  }

  function operationEnded(workflowId: string, outcome: EndedOperation['outcome']): void {
    const op = ops.get(workflowId);
    // A repeated signal, or one about an operation of another run of this rollout. (It may come before
    // the enqueue returns: an operation refused up front ends at once.)
    if (!op) return;
    ops.delete(workflowId);
    ended.push({ op, outcome });
  }

  function childEnded(report: HostRolloutReport): void {
    const canary = children.get(report.hostId);
    if (canary === undefined) return;
    children.delete(report.hostId);
    book.ended(report, canary);
  }

  /** What a host does after one of its operations ended: its next request, or its end. */
  async function settle({ op, outcome }: EndedOperation): Promise<void> {
    // Most hosts have one request and the signal names its guest: no page is read for them.
    const needsWork = op.step + 1 < op.steps || outcome.guest === undefined;
    const work = needsWork ? await hosts.at(op.at).catch(() => undefined) : undefined;
    const request = { bdf: op.bdf, guest: outcome.guest ?? work?.requests[op.step]?.guest ?? 'its guest' };
    const code = outcome.code ? ` (${outcome.code}${op.cancelling ? '' : `: ${outcome.message ?? ''}`})` : '';
    if (op.cancelling) return hostEnded(op, 'cancelled', [...op.details, stepLine(request, `cancelled, operation ended ${outcome.outcome}${code}`)]);
    const details = [...op.details, stepLine(request, `${outcome.outcome}${code}`)];
    if (outcome.outcome !== 'attached') return hostEnded(op, 'failed', details);
    if (op.step + 1 >= op.steps) return hostEnded(op, 'succeeded', details);
    const following = work?.requests[op.step + 1];
    if (!work || !following) return hostEnded(op, 'failed', [...details, `request ${op.step + 2} of ${op.steps}: the rollout's hosts could not be read`]);
    if (cancelled) return hostEnded(op, 'cancelled', [...details, stepLine(following, 'not started: cancelled')]);
    queueStep({ ...op, details }, work, op.step + 1);
  }

  handlePauseAndResume(state);
  setHandler(cancelRolloutSignal, () => {
    if (!cancelled) cancelAll();
  });
  setHandler(operationEndedSignal, (record) => operationEnded(record.workflowId, record));
  setHandler(hostRolloutEndedSignal, childEnded);
  setHandler(rolloutProgressQuery, () => progressOf(name, state, cancelled, [...new Set([...[...ops.values()].map((op) => op.hostId), ...ended.map((e) => e.op.hostId), ...children.keys()])]));

  const historyFull = (): boolean => workflowInfo().historyLength > historyLimit;
  const exhausted = (): boolean => next >= hosts.length || state.stopReason !== null || cancelled;
  const slotFree = (): boolean => {
    // A canary runs alone, so only a rollout with one host in flight can have a canary in flight: the
    // parallel phase, evaluated on every wake-up, does not walk its hundreds of operations.
    const canaryInFlight = inFlight() === 1 && ([...ops.values()].some((op) => op.canary) || ended.some((e) => e.op.canary) || [...children.values()].some(Boolean));
    return state.canariesLeft > 0 || canaryInFlight ? inFlight() === 0 : inFlight() < options.maxParallel;
  };
  const finished = (): boolean => exhausted() && inFlight() === 0;

  async function drive(): Promise<void> {
    armCheck();
    for (;;) {
      const ready = (): boolean => ended.length > 0 || checkDue || finished() || historyFull() || (!exhausted() && !state.paused && slotFree());
      if (!ready()) {
        queueLaunched();
        await condition(ready);
      }
      const first = ended.shift();
      if (first) {
        await settle(first);
        continue;
      }
      if (finished()) return;
      if (checkDue) {
        await lookUpSilent();
        continue;
      }
      if (historyFull()) {
        queueLaunched();
        await condition(() => busy === 0 && allHandlersFinished());
        if (ended.length > 0) continue;
        // A local activity's marker is written only with the workflow task that ran it. Were that the task
        // that continues as new, a signal arriving meanwhile (an operation refused up front ends at once)
        // makes Temporal refuse the task; its retry runs the enqueue again, the entity answers again, and
        // the retry is refused again, for ever. A timer first commits the enqueues on their own task.
        if (enqueuedSinceCommit && patched('rollout-commit-before-continue')) {
          enqueuedSinceCommit = false;
          await CancellationScope.nonCancellable(() => sleep(1));
          continue;
        }
        await continueAsNew<typeof rolloutWorkflow>(
          // Inline hosts go on whole: positions stay what the operations in flight were given.
          { name, ...(hostsRef ? { hostsRef } : { hosts: input.hosts ?? [] }), options, window, ...(run ? { run } : {}) },
          {
            ...state,
            next,
            ...(cancelled ? { cancelled } : {}),
            ops: [...ops.values()],
            ...(children.size > 0 ? { running: [...children].map(([hostId, canary]) => ({ hostId, canary })) } : { running: undefined }),
            generation: state.generation + 1,
          },
          historyLimit,
        );
      }
      if (exhausted() || state.paused || !slotFree()) continue;
      const start = await hostToStart(state, hosts, next, window, exhausted);
      if (!start) continue;
      const { work, canary } = start;
      book.move('pending', 'running');
      queueStep({ hostId: work.hostId, canary, at: next, details: [] }, work, 0);
      next += 1;
    }
  }

  try {
    await drive();
  } catch (err) {
    // A cancel from the Temporal UI or `temporal workflow cancel` is a cancel like `ptctl cancel`.
    if (!isCancellation(err)) throw err;
    state.stopReason ??= 'cancelled from Temporal (UI or temporal workflow cancel)';
    if (!cancelled) cancelAll();
    await CancellationScope.nonCancellable(drive);
  }

  // Hosts never started: counted as skipped; those at hand are named, up to the cap.
  const notStarted = hosts.length - next;
  if (notStarted > 0) {
    const named = hosts.atHand(next);
    for (const work of named) book.skipped(work.hostId);
    book.skippedUnnamed(notStarted - named.length);
  }
  if (hostsRef) await CancellationScope.nonCancellable(() => rolloutActivities.dropRolloutHosts(hostsRef)).catch(() => undefined);
  return book.report(name, cancelled);
}
