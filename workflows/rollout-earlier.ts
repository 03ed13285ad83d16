import {
  CancellationScope,
  ChildWorkflowCancellationType,
  ParentClosePolicy,
  allHandlersFinished,
  condition,
  continueAsNew,
  executeChild,
  getExternalWorkflowHandle,
  isCancellation,
  patched,
  setHandler,
  startChild,
  workflowInfo,
} from '@temporalio/workflow';
import { type HostRolloutReport, type HostWork, type RolloutInput, fitsInWindow } from '../schemas/rollout.js';
import {
  cancelRolloutSignal,
  hostRolloutEndedSignal,
  hostRolloutWorkflowId,
  rolloutProgressQuery,
} from './definitions.js';
import { hostRolloutWorkflow } from './host-rollout-workflow.js';
import { IN_FLIGHT_CHECK_MS, type RolloutCarry, type RolloutReport, firstGeneration, handlePauseAndResume, hostFailed, progressOf, hostToStart, rolloutActivities, rolloutBook, rolloutHosts, windowClosed } from './rollout-book.js';
import type { rolloutWorkflow } from './rollout-workflow.js';
import { PtcHostId, PtcRollout } from './visibility.js';

/*
 * How rollouts ran before their hosts' operations were queued directly: histories made by those builds
 * replay down these paths, patch calls in their old order. New rollouts never take them.
 */

/**
 * The rollout of histories from before operations were queued directly: each host a child workflow
 * that outlives the generation launching it and reports by signal.
 */
export async function slidingRollout(input: RolloutInput, carry: RolloutCarry | undefined, historyLimit: number): Promise<RolloutReport> {
  const { name, options, window, run, hostsRef } = input;
  const inline = input.hosts;
  // Positions are into this generation's source: the plan by reference, or what is left of the inline hosts.
  const source = rolloutHosts(input);
  const sourceLength = source.length;
  const self = workflowInfo().workflowId;
  const state = carry ?? firstGeneration(sourceLength, options);
  let next = hostsRef ? (state.next ?? 0) : 0;
  let cancelled = false;
  /** Hosts in flight, and whether each is a canary. */
  const running = new Map<string, boolean>((state.running ?? []).map((h) => [h.hostId, h.canary]));
  // Launched by an earlier generation: only their signal (or the periodic check) says how they ended.
  const inherited = new Set(running.keys());
  let starting = 0;
  // Children of this generation report by signal just before they complete; the last generation waits
  // for them to complete too, so no host workflow is left with its last step after the rollout closed.
  let resultsPending = 0;
  const book = rolloutBook(state, options);

  const cancelRunning = (): void => {
    for (const hostId of running.keys()) void getExternalWorkflowHandle(hostRolloutWorkflowId(name, hostId)).cancel().catch(() => undefined);
  };
  const ended = (report: HostRolloutReport): void => {
    const canary = running.get(report.hostId);
    // The signal and the child's result both say it; the first one counts.
    if (canary === undefined) return;
    running.delete(report.hostId);
    inherited.delete(report.hostId);
    book.ended(report, canary);
  };
  handlePauseAndResume(state);
  setHandler(cancelRolloutSignal, () => {
    if (cancelled) return;
    cancelled = true;
    state.stopReason ??= 'cancelled';
    cancelRunning();
  });
  setHandler(hostRolloutEndedSignal, ended);
  setHandler(rolloutProgressQuery, () => progressOf(name, state, cancelled, [...running.keys()]));

  async function launch(work: HostWork, canary: boolean): Promise<void> {
    running.set(work.hostId, canary);
    book.move('pending', 'running');
    starting += 1;
    try {
      // Outside the workflow's cancellation: a cancel reaches hosts as the rollout's own cancel (so they
      // compensate and report), not as an abandoned child whose result rejects at once.
      const child = await CancellationScope.nonCancellable(() => startChild(hostRolloutWorkflow, {
        workflowId: hostRolloutWorkflowId(name, work.hostId),
        args: [work, canary, run ?? null, self],
        // Hosts outlive the generation that launched them; the rollout cancels them itself when asked.
        parentClosePolicy: ParentClosePolicy.ABANDON,
        cancellationType: ChildWorkflowCancellationType.ABANDON,
        typedSearchAttributes: [
          { key: PtcHostId, value: work.hostId },
          { key: PtcRollout, value: name },
        ],
      }));
      resultsPending += 1;
      void child
        .result()
        .then(ended, (err: unknown) => ended(hostFailed(work.hostId, canary, err)))
        .finally(() => (resultsPending -= 1));
      if (cancelled) void getExternalWorkflowHandle(child.workflowId).cancel().catch(() => undefined);
    } catch (err) {
      ended(hostFailed(work.hostId, canary, err));
    } finally {
      starting -= 1;
    }
  }

  const historyFull = (): boolean => workflowInfo().historyLength > historyLimit;
  const exhausted = (): boolean => next >= sourceLength || state.stopReason !== null || cancelled;
  const slotFree = (): boolean => {
    const canaryPhase = state.canariesLeft > 0 || [...running.values()].some(Boolean);
    return canaryPhase ? running.size === 0 : running.size < options.maxParallel;
  };
  const finished = (): boolean => exhausted() && running.size === 0;

  try {
    for (;;) {
      const ready = (): boolean => finished() || historyFull() || (!exhausted() && !state.paused && slotFree());
      // Without a timeout when nothing is inherited: an idle paused rollout adds no timer events.
      const woke = inherited.size > 0 ? await condition(ready, IN_FLIGHT_CHECK_MS) : (await condition(ready), true);
      if (finished()) break;
      if (!woke) {
        // A failed check is tried again at the next interval; the rollout goes on meanwhile.
        const closed = await rolloutActivities.closedHostRollouts(name, [...inherited].map((hostId) => ({ hostId, canary: running.get(hostId) ?? false }))).catch(() => []);
        for (const report of closed) ended(report);
        continue;
      }
      if (historyFull()) {
        await condition(() => starting === 0 && allHandlersFinished());
        const handOver = [...running].map(([hostId, canary]) => ({ hostId, canary }));
        await continueAsNew<typeof rolloutWorkflow>(
          { name, ...(hostsRef ? { hostsRef } : { hosts: inline?.slice(next) ?? [] }), options, window, ...(run ? { run } : {}) },
          { ...state, ...(hostsRef ? { next } : {}), running: handOver, generation: state.generation + 1 },
          historyLimit,
        );
      }
      if (exhausted() || state.paused || !slotFree()) continue;
      const start = await hostToStart(state, source, next, window, exhausted);
      if (!start) continue;
      const { work, canary } = start;
      next += 1;
      void launch(work, canary);
    }
  } catch (err) {
    // A cancel from the Temporal UI or `temporal workflow cancel` is a cancel like `ptctl cancel`.
    if (!isCancellation(err)) throw err;
    cancelled = true;
    state.stopReason ??= 'cancelled from Temporal (UI or temporal workflow cancel)';
    await CancellationScope.nonCancellable(async () => {
      await condition(() => starting === 0);
      cancelRunning();
      await condition(() => running.size === 0);
    });
  }

  // Hosts never started: counted as skipped; those on the page at hand are named, up to the cap.
  const notStarted = sourceLength - next;
  if (notStarted > 0) {
    const named = source.atHand(next);
    for (const work of named) book.skipped(work.hostId);
    book.skippedUnnamed(notStarted - named.length);
  }
  await CancellationScope.nonCancellable(() => condition(() => resultsPending === 0));
  if (hostsRef) await CancellationScope.nonCancellable(() => rolloutActivities.dropRolloutHosts(hostsRef)).catch(() => undefined);
  return book.report(name, cancelled);
}

/** The rollout of histories from before the sliding window: each generation drains before it continues. */
export async function drainingRollout(input: RolloutInput, carry: RolloutCarry | undefined, historyLimit: number): Promise<RolloutReport> {
  const { name, options, window, run } = input;
  const hosts = input.hosts ?? [];
  const state = carry ?? firstGeneration(hosts.length, options);
  let cancelled = false;
  const running = new Set<string>();

  handlePauseAndResume(state);
  setHandler(cancelRolloutSignal, () => {
    if (cancelled) return;
    cancelled = true;
    state.stopReason ??= 'cancelled';
    // The hosts' own workflows cancel their operation in flight and report what it ended as.
    for (const hostId of running) void getExternalWorkflowHandle(hostRolloutWorkflowId(name, hostId)).cancel();
  });
  setHandler(rolloutProgressQuery, () => progressOf(name, state, cancelled, [...running]));

  // Histories from before the cap kept every problem and replay that way.
  const book = rolloutBook(state, options, patched('rollout-problems-capped'));

  async function runHost(index: number, canary: boolean): Promise<void> {
    const work = hosts[index];
    if (!work) return;
    running.add(work.hostId);
    book.move('pending', 'running');
    let report: HostRolloutReport;
    try {
      report = await executeChild(hostRolloutWorkflow, {
        workflowId: hostRolloutWorkflowId(name, work.hostId),
        args: run ? [work, canary, run] : [work, canary],
        // Terminated or reset, the rollout's hosts are cancelled (their sagas compensate), not killed mid-step.
        parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
        typedSearchAttributes: [
          { key: PtcHostId, value: work.hostId },
          { key: PtcRollout, value: name },
        ],
      });
    } catch (err) {
      report = hostFailed(work.hostId, canary, err);
    }
    running.delete(work.hostId);
    book.ended(report, canary);
  }

  let next = 0;
  const launchable = (): boolean => {
    if (next >= hosts.length || state.stopReason !== null || cancelled) return false;
    if (window && !fitsInWindow(Date.now(), window)) {
      state.stopReason = windowClosed(window);
      return false;
    }
    return true;
  };
  const historyFull = (): boolean => workflowInfo().historyLength > historyLimit;

  const inFlight: Array<Promise<void>> = [];
  try {
    // Canaries: one at a time, each awaited, before anything else.
    while (state.canariesLeft > 0 && launchable() && !historyFull()) {
      await condition(() => cancelled || !state.paused);
      if (!launchable()) break;
      state.canariesLeft -= 1;
      await runHost(next++, true);
    }
    // The rest: at most maxParallel in flight.
    while (state.canariesLeft === 0 && launchable() && !historyFull()) {
      await condition(() => cancelled || state.stopReason !== null || (!state.paused && running.size < options.maxParallel));
      if (!launchable()) break;
      inFlight.push(runHost(next++, false));
    }
    await Promise.all(inFlight);
  } catch (err) {
    // A cancel from the Temporal UI or `temporal workflow cancel` is a cancel like `ptctl cancel`: the
    // hosts in flight get it too (child cancellation) and compensate; the rollout still reports.
    // Histories from before this ended with the cancellation and replay that way.
    if (!isCancellation(err) || !patched('rollout-cancel-from-temporal')) throw err;
    cancelled = true;
    state.stopReason ??= 'cancelled from Temporal (UI or temporal workflow cancel)';
    await CancellationScope.nonCancellable(() => Promise.all(inFlight));
  }

  const remaining = hosts.slice(next);
  if (remaining.length > 0 && state.stopReason === null && !cancelled) {
    // Not stopped, just a long history: hand the remaining hosts to a fresh generation.
    await condition(allHandlersFinished);
    await continueAsNew<typeof rolloutWorkflow>({ name, hosts: remaining, options, window, ...(run ? { run } : {}) }, { ...state, generation: state.generation + 1 }, historyLimit);
  }
  for (const work of remaining) book.skipped(work.hostId);
  // Histories from before the outcome attribute replay without it.
  return book.report(name, cancelled, patched('visibility-outcome'));
}
