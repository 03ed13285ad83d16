import {
  ApplicationFailure,
  CancellationScope,
  ChildWorkflowFailure,
  ParentClosePolicy,
  allHandlersFinished,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  isCancellation,
  patched,
  setHandler,
  sleep,
  startChild,
  workflowInfo,
} from '@temporalio/workflow';
import { ErrorCode, describeZodError } from '../schemas/errors.js';
import { HostOperation, type Outcome, type PassthroughResult } from '../schemas/passthrough.js';
import { type HotplugLedger, nextHotplugSlot, pruneLedger, recordHotplug } from '../policy/hotplug-throttle.js';
import { type HostEntityView, type OperationRecord, dropQueuedSignal, enqueueOperationSignal, hostStateQuery, operationEndedSignal, rolloutNameOf } from './definitions.js';
import { passthroughWorkflow } from './passthrough-workflow.js';
import { releaseWorkflow } from './release-workflow.js';
import { failureInfo, type FailureDetails } from './saga-kit.js';
import { operationSearchAttributes } from './visibility.js';

/** Durable state carried across continue-as-new. */
export interface HostEntityState {
  ledger: HotplugLedger;
  pinned: Record<string, string[]>;
  queue: HostOperation[];
  recent: OperationRecord[];
}

export interface HostEntityInput {
  hostId: string;
  state?: HostEntityState;
}

const RECENT_KEPT = 50;
/** The longest throttle window the ledger must remember (the schema's maximum). */
const LEDGER_HORIZON_MS = 24 * 60 * 60_000;
/** Extra time an operation gets past its own deadline before the entity cancels it (it compensates then). */
const WATCHDOG_GRACE_MS = 15 * 60_000;
/**
 * A terminated operation cannot report its hotplugs; count the most it could have done (attach plus the
 * compensation's detach) so the throttle errs on the safe side.
 */
const UNKNOWN_OP_HOTPLUGS = 2;
const IDLE_BEFORE_CLOSE = '1 hour';

/**
 * `host/<hostId>`: the single writer for a host. Operations arrive by update, run one at a time in
 * arrival order as child workflows, and hand their hotplug times back to a ledger kept here, so the
 * throttle of each operation sees every hotplug of the device. A child that ends badly (failed,
 * terminated, stuck past its deadline) is recorded and the queue moves on: no host stays locked.
 */
export async function hostEntityWorkflow(input: HostEntityInput): Promise<void> {
  const { hostId } = input;
  const state: HostEntityState = input.state ?? { ledger: {}, pinned: {}, queue: [], recent: [] };
  let current: HostEntityView['current'] = null;
  let processed = 0;

  const known = (workflowId: string): boolean =>
    current?.workflowId === workflowId || state.queue.some((o) => o.workflowId === workflowId) || state.recent.some((r) => r.workflowId === workflowId);

  setHandler(enqueueOperationSignal, (raw) => {
    const parsed = HostOperation.safeParse(raw);
    const workflowId = typeof (raw as { workflowId?: unknown } | null)?.workflowId === 'string' ? (raw as { workflowId: string }).workflowId : 'invalid';
    if (!parsed.success) {
      rememberRejected(workflowId, ErrorCode.INVALID_INPUT, `invalid operation: ${describeZodError(parsed.error, 'operation')}`);
      return;
    }
    const op = parsed.data;
    if (op.request.hostId !== hostId) {
      rememberRejected(workflowId, ErrorCode.HOST_MISMATCH, `operation for ${op.request.hostId} sent to the entity of ${hostId}`);
      return;
    }
    // A repeated signal (client retry) must not run the operation twice; a waiter asking again about one
    // that already ended is told how it ended.
    if (!known(op.workflowId)) state.queue.push(op);
    else {
      const ended = state.recent.find((r) => r.workflowId === op.workflowId);
      if (ended && op.notify) notify(op.notify, ended);
    }
  });
  setHandler(dropQueuedSignal, (workflowId) => {
    const idx = state.queue.findIndex((o) => o.workflowId === workflowId);
    if (idx < 0) return;
    const [op] = state.queue.splice(idx, 1);
    if (op) remember(op, 'cancelled', ErrorCode.CANCELLED, 'dropped from the queue before it started');
  });
  setHandler(hostStateQuery, (): HostEntityView => ({
    hostId,
    current,
    queue: state.queue.map((o) => ({ workflowId: o.workflowId, kind: o.kind, bdf: o.request.bdf })),
    recent: state.recent,
    ledger: state.ledger,
    pinned: state.pinned,
  }));

  function remember(op: HostOperation, outcome: Outcome, code: string | null, message: string | null): void {
    const record: OperationRecord = { workflowId: op.workflowId, kind: op.kind, bdf: op.request.bdf, guest: op.request.guest, outcome, code, message, finishedAt: Date.now() };
    state.recent = [...state.recent, record].slice(-RECENT_KEPT);
    if (op.notify) notify(op.notify, record);
  }

  /**
   * The waiting workflow (a rollout's host) learns the outcome now instead of polling for it. A waiter
   * that is gone is no failure of the host; it would look the operation up itself.
   */
  function notify(waiter: string, record: OperationRecord): void {
    if (patched('notify-waiter')) void getExternalWorkflowHandle(waiter).signal(operationEndedSignal, record).catch(() => undefined);
  }

  function rememberRejected(workflowId: string, code: string, message: string): void {
    state.recent = [...state.recent, { workflowId, kind: 'attach' as const, bdf: '', guest: '', outcome: 'refused' as const, code, message, finishedAt: Date.now() }].slice(-RECENT_KEPT);
  }

  function addHotplugs(bdf: string, times: readonly number[]): void {
    for (const t of times) state.ledger = recordHotplug(state.ledger, bdf, t);
  }

  function pin(guest: string, bdf: string, attached: boolean): void {
    const devices = new Set(state.pinned[guest] ?? []);
    if (attached) devices.add(bdf);
    else devices.delete(bdf);
    if (devices.size > 0) state.pinned[guest] = [...devices].sort();
    else delete state.pinned[guest];
  }

  async function run(op: HostOperation): Promise<void> {
    const { bdf, guest } = op.request;
    state.ledger = pruneLedger(state.ledger, Date.now(), LEDGER_HORIZON_MS);
    const ledger = state.ledger[bdf] ?? [];
    // A storm of requests for an exhausted device ends here, before any workflow or host command runs.
    // (Conservative: it assumes the operation would hotplug.)
    const slot = nextHotplugSlot(state.ledger, bdf, Date.now(), op.request.throttle);
    if (slot > Date.now() + op.request.deadlineMs) {
      remember(op, 'throttled', ErrorCode.THROTTLED, `${bdf} is over its hotplug budget (${op.request.throttle.budget} per ${Math.round(op.request.throttle.windowMs / 1000)} s) until ${new Date(slot).toISOString()}, past the deadline`);
      return;
    }
    const scope = new CancellationScope();
    const outcome = scope.run(async () => {
      // Terminated or reset, the entity cancels its running operation, whose saga compensates.
      const parentClosePolicy = ParentClosePolicy.REQUEST_CANCEL;
      const typedSearchAttributes = operationSearchAttributes(op.request, op.rollout ?? (op.notify ? rolloutNameOf(op.notify) : undefined));
      const child =
        op.kind === 'attach'
          ? await startChild(passthroughWorkflow, { workflowId: op.workflowId, args: [op.request, ledger], parentClosePolicy, typedSearchAttributes })
          : await startChild(releaseWorkflow, { workflowId: op.workflowId, args: [op.request, ledger], parentClosePolicy, typedSearchAttributes });
      return child.result();
    });
    const watchdog = new CancellationScope();
    const expired = watchdog.run(() => sleep(op.request.deadlineMs + WATCHDOG_GRACE_MS)).then(
      () => true,
      () => false,
    );
    let result: PassthroughResult | null = null;
    let failure: unknown = null;
    try {
      result = await Promise.race([outcome, expired.then((timedOut) => (timedOut ? Promise.reject(new Error('watchdog')) : new Promise<never>(() => undefined)))]);
    } catch (err) {
      if (err instanceof Error && err.message === 'watchdog') {
        // Past its deadline: cancel it (the child compensates) and wait for it to finish doing so.
        scope.cancel();
        if (patched('watchdog-second-bound')) {
          // A child that does not finish compensating within a second bound is abandoned: the host may
          // hold residue, so it is recorded for a person, and the queue moves on.
          const bound = new CancellationScope();
          const late = await Promise.race([
            outcome.then(
              (r) => ({ r }),
              (e: unknown) => ({ e }),
            ),
            bound.run(() => sleep(WATCHDOG_GRACE_MS)).then(
              () => null,
              () => null,
            ),
          ]);
          // Not left ticking in an entity that lives as long as its host.
          bound.cancel();
          if (late === null) {
            addHotplugs(bdf, Array.from({ length: UNKNOWN_OP_HOTPLUGS }, () => Date.now()));
            remember(op, 'needs-attention', ErrorCode.DEADLINE_EXCEEDED, `did not finish compensating within ${WATCHDOG_GRACE_MS / 60_000} min of being cancelled past its deadline; abandoned: check ${bdf} on ${hostId} (ptctl status ${op.workflowId})`);
            return;
          }
          if ('r' in late) result = late.r;
          else failure = late.e;
        } else {
          try {
            result = await outcome;
          } catch (late) {
            failure = late;
          }
        }
      } else {
        failure = err;
      }
    } finally {
      watchdog.cancel();
    }
    if (result) {
      addHotplugs(bdf, result.hotplugs);
      pin(guest, bdf, result.kind === 'attach');
      remember(op, result.outcome, null, null);
      return;
    }
    const details = failureDetailsOf(failure);
    if (details) addHotplugs(bdf, details.hotplugs);
    else addHotplugs(bdf, Array.from({ length: UNKNOWN_OP_HOTPLUGS }, () => Date.now()));
    const info = failureInfo(failure instanceof ChildWorkflowFailure ? (failure.cause ?? failure) : failure);
    remember(op, details?.outcome ?? (isCancellation(failure) ? 'cancelled' : 'failed'), info.code, info.message);
  }

  for (;;) {
    const hasWork = await condition(() => state.queue.length > 0, IDLE_BEFORE_CLOSE);
    if (!hasWork) {
      state.ledger = pruneLedger(state.ledger, Date.now(), LEDGER_HORIZON_MS);
      // Nothing to remember any more: end, and the next operation starts a fresh entity.
      if (Object.keys(state.ledger).length === 0 && Object.keys(state.pinned).length === 0) {
        await condition(allHandlersFinished);
        if (state.queue.length === 0) return;
      }
    }
    const op = state.queue.shift();
    if (op) {
      current = { workflowId: op.workflowId, kind: op.kind, bdf: op.request.bdf, startedAt: Date.now() };
      await run(op);
      current = null;
      processed++;
    }
    // Keep every history short: hand the state to a fresh run between operations.
    if (workflowInfo().continueAsNewSuggested || processed >= 500 || !hasWork) {
      await condition(allHandlersFinished);
      await continueAsNew<typeof hostEntityWorkflow>({ hostId, state });
    }
  }
}

function failureDetailsOf(err: unknown): FailureDetails | null {
  const cause = err instanceof ChildWorkflowFailure ? err.cause : err;
  if (!(cause instanceof ApplicationFailure)) return null;
  const details = cause.details?.[0];
  if (typeof details === 'object' && details !== null && 'outcome' in details && 'hotplugs' in details) return details as FailureDetails;
  return null;
}
