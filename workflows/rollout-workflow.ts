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
  proxyActivities,
  setHandler,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { HostInFlight, RolloutActivities } from '../activities/rollout-activities.js';
import { type HostRolloutReport, type HostRolloutState, type HostWork, type MaxFailures, RolloutInput, type RolloutInputRaw, fitsInWindow } from '../schemas/rollout.js';
import {
  type RolloutProgress,
  cancelRolloutSignal,
  hostRolloutEndedSignal,
  hostRolloutWorkflowId,
  pauseRolloutSignal,
  resumeRolloutSignal,
  rolloutProgressQuery,
} from './definitions.js';
import { hostRolloutWorkflow } from './host-rollout-workflow.js';
import { parseWorkflowInput } from './saga-kit.js';
import { PtcFailedHosts, PtcHostId, PtcOutcome, PtcRollout } from './visibility.js';

/** What one generation hands the next across continue-as-new (hosts already launched are not carried). */
export interface RolloutCarry {
  total: number;
  counts: Record<HostRolloutState, number>;
  problems: HostRolloutReport[];
  /** Problems beyond MAX_PROBLEMS, counted but not kept (absent in carries of older generations). */
  problemsOmitted?: number;
  canariesLeft: number;
  stopReason: string | null;
  paused: boolean;
  generation: number;
  /** Where the next generation goes on in a plan by reference (absent: at the start of its inline hosts). */
  next?: number;
  /** Hosts still in flight, handed over instead of drained (absent in carries of draining generations). */
  running?: HostInFlight[];
}

export interface RolloutReport {
  name: string;
  total: number;
  counts: Record<HostRolloutState, number>;
  stopReason: string | null;
  problems: HostRolloutReport[];
  /** Hosts that did not succeed beyond the first MAX_PROBLEMS: `ptctl list --outcome …` finds them. */
  problemsOmitted?: number;
  generations: number;
}

/**
 * Problems kept in workflow state, in its carry and in its report: 100,000 skipped hosts would be
 * ~20 MB, far past Temporal's payload limit. The rest are counted; each host's own workflow and its
 * search attributes still say what happened to it.
 */
export const MAX_PROBLEMS = 200;

/** History length at which a generation stops launching, drains and continues as new (tests lower it). */
export const DEFAULT_HISTORY_LIMIT = 5000;

/**
 * Failures "exceed" the budget when strictly more hosts failed than allowed: `{count: 0}` stops at the
 * first failure, `{count: 2}` at the third; `{percent: 10}` of 10 hosts stops at the second (2/10 > 10%).
 */
export function failuresExceeded(failed: number, total: number, max: MaxFailures): boolean {
  return 'count' in max ? failed > max.count : total > 0 && (failed * 100) / total > max.percent;
}

/** A finished rollout in one word, for `PtcOutcome`: what an operator filters on. */
export function rolloutOutcome(counts: Record<HostRolloutState, number>, cancelled: boolean, stopReason: string | null): 'succeeded' | 'failed' | 'cancelled' | 'stopped' {
  if (cancelled) return 'cancelled';
  if (counts.failed > 0) return 'failed';
  if (stopReason !== null || counts.skipped > 0) return 'stopped';
  return 'succeeded';
}

const emptyCounts = (): Record<HostRolloutState, number> => ({ pending: 0, running: 0, succeeded: 0, failed: 0, skipped: 0, cancelled: 0 });

const firstGeneration = (hosts: number, options: RolloutInput['options']): RolloutCarry => ({
  total: hosts,
  counts: { ...emptyCounts(), pending: hosts },
  problems: [],
  canariesLeft: options.canary,
  stopReason: null,
  paused: false,
  generation: 0,
});

/**
 * `rollout/<name>`: a fleet rollout. Canary hosts first, one at a time, and any canary failure stops it;
 * then at most `maxParallel` hosts at once until failures exceed `maxFailures`. Pause stops launching,
 * resume continues, cancel stops launching and cancels the hosts in flight (their sagas compensate).
 * Each host is a child workflow whose operations go through the host's entity. Generations continue as
 * new before their history grows long, carrying counters, capped problems and the hosts still in flight,
 * never the finished hosts; the hosts themselves are read page by page from KV (`hostsRef`).
 */
export async function rolloutWorkflow(raw: RolloutInputRaw, carry?: RolloutCarry, historyLimit: number = DEFAULT_HISTORY_LIMIT): Promise<RolloutReport> {
  const input = parseWorkflowInput(RolloutInput, raw, 'rollout');
  // Histories from before the sliding window drained every generation before continuing; they replay so.
  if (patched('rollout-sliding-window')) return slidingRollout(input, carry, historyLimit);
  return drainingRollout(input, carry, historyLimit);
}

/** How often a generation asks whether hosts it inherited closed without reporting (terminated, timed out). */
const INHERITED_CHECK_MS = 15 * 60_000;

const rolloutActivities = proxyActivities<RolloutActivities>({ startToCloseTimeout: '2 minutes', retry: { maximumAttempts: 5 } });

async function slidingRollout(input: RolloutInput, carry: RolloutCarry | undefined, historyLimit: number): Promise<RolloutReport> {
  const { name, options, window, run, hostsRef } = input;
  const inline = input.hosts;
  // Positions are into this generation's source: the plan by reference, or what is left of the inline hosts.
  const sourceLength = hostsRef ? hostsRef.count : (inline?.length ?? 0);
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
  setHandler(pauseRolloutSignal, () => {
    state.paused = true;
  });
  setHandler(resumeRolloutSignal, () => {
    state.paused = false;
  });
  setHandler(cancelRolloutSignal, () => {
    if (cancelled) return;
    cancelled = true;
    state.stopReason ??= 'cancelled';
    cancelRunning();
  });
  setHandler(hostRolloutEndedSignal, ended);
  setHandler(rolloutProgressQuery, (): RolloutProgress => ({
    name,
    total: state.total,
    counts: state.counts,
    paused: state.paused,
    cancelled,
    stopReason: state.stopReason,
    running: [...running.keys()],
    problems: state.problems,
    generation: state.generation,
    done: false,
  }));

  // One page of a plan by reference at a time: a generation holds at most MAX_PAGE_BYTES of hosts.
  const page: { index: number; hosts: HostWork[] } = { index: -1, hosts: [] };
  async function hostAt(position: number): Promise<HostWork | undefined> {
    if (!hostsRef) return inline?.[position];
    const index = Math.floor(position / hostsRef.pageSize);
    if (page.index !== index) Object.assign(page, { index, hosts: await rolloutActivities.loadRolloutHosts(hostsRef, index) });
    return page.hosts[position - index * hostsRef.pageSize];
  }

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
      const woke = inherited.size > 0 ? await condition(ready, INHERITED_CHECK_MS) : (await condition(ready), true);
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
      if (window && !fitsInWindow(Date.now(), window)) {
        state.stopReason = windowClosed(window);
        continue;
      }
      let work: HostWork | undefined;
      try {
        work = await hostAt(next);
      } catch (err) {
        state.stopReason ??= `the rollout's hosts could not be read: ${err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err)}`;
        continue;
      }
      if (!work || exhausted()) continue;
      const canary = state.canariesLeft > 0;
      if (canary) state.canariesLeft -= 1;
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
    const named = hostsRef ? (page.index === Math.floor(next / hostsRef.pageSize) ? page.hosts.slice(next - page.index * hostsRef.pageSize) : []) : (inline?.slice(next) ?? []);
    for (const work of named) book.skipped(work.hostId);
    book.skippedUnnamed(notStarted - named.length);
  }
  await CancellationScope.nonCancellable(() => condition(() => resultsPending === 0));
  if (hostsRef) await CancellationScope.nonCancellable(() => rolloutActivities.dropRolloutHosts(hostsRef)).catch(() => undefined);
  return book.report(name, cancelled);
}

const hostFailed = (hostId: string, canary: boolean, err: unknown): HostRolloutReport => ({
  hostId,
  state: 'failed',
  canary,
  details: [`host workflow failed: ${err instanceof Error ? err.message : String(err)}`],
});

const windowClosed = (window: NonNullable<RolloutInput['window']>): string =>
  `the window closes at ${new Date(window.endsAt).toISOString()}: no host starts within ${Math.round((window.cutoffMs + window.expectedHostMs) / 1000)} s of it (cutoff + expected host time)`;

/** A rollout's counters and problems: how hosts moving between states change them, and the report. */
function rolloutBook(state: RolloutCarry, options: RolloutInput['options'], capped = true) {
  const addProblem = (report: HostRolloutReport): void => {
    if (!capped || state.problems.length < MAX_PROBLEMS) state.problems.push(report);
    else state.problemsOmitted = (state.problemsOmitted ?? 0) + 1;
  };
  const move = (from: HostRolloutState, to: HostRolloutState, hosts = 1): void => {
    state.counts[from] -= hosts;
    state.counts[to] += hosts;
  };
  return {
    move,
    ended(report: HostRolloutReport, canary: boolean): void {
      move('running', report.state);
      if (report.state !== 'succeeded') addProblem({ ...report, canary });
      if (canary && report.state === 'failed') state.stopReason ??= `canary ${report.hostId} failed`;
      if (!canary && failuresExceeded(state.counts.failed, state.total, options.maxFailures)) {
        state.stopReason ??= `failures (${state.counts.failed}) exceed maxFailures ${JSON.stringify(options.maxFailures)}`;
      }
    },
    skipped(hostId: string): void {
      move('pending', 'skipped');
      addProblem({ hostId, state: 'skipped', canary: false, details: [`not started: ${state.stopReason ?? 'stopped'}`] });
    },
    /** Hosts never started whose ids are not at hand (a plan by reference is not read to name them). */
    skippedUnnamed(hosts: number): void {
      if (hosts <= 0) return;
      move('pending', 'skipped', hosts);
      state.problemsOmitted = (state.problemsOmitted ?? 0) + hosts;
    },
    report(name: string, cancelled: boolean, searchable = true): RolloutReport {
      // A rollout always completes; how it went is searchable.
      if (searchable) {
        upsertSearchAttributes([
          { key: PtcOutcome, value: rolloutOutcome(state.counts, cancelled, state.stopReason) },
          { key: PtcFailedHosts, value: state.counts.failed },
        ]);
      }
      return {
        name,
        total: state.total,
        counts: state.counts,
        stopReason: state.stopReason,
        problems: state.problems,
        ...(state.problemsOmitted ? { problemsOmitted: state.problemsOmitted } : {}),
        generations: state.generation + 1,
      };
    },
  };
}

/** The rollout of histories from before the sliding window: each generation drains before it continues. */
async function drainingRollout(input: RolloutInput, carry: RolloutCarry | undefined, historyLimit: number): Promise<RolloutReport> {
  const { name, options, window, run } = input;
  const hosts = input.hosts ?? [];
  const state = carry ?? firstGeneration(hosts.length, options);
  let cancelled = false;
  const running = new Set<string>();

  setHandler(pauseRolloutSignal, () => {
    state.paused = true;
  });
  setHandler(resumeRolloutSignal, () => {
    state.paused = false;
  });
  setHandler(cancelRolloutSignal, () => {
    if (cancelled) return;
    cancelled = true;
    state.stopReason ??= 'cancelled';
    // The hosts' own workflows cancel their operation in flight and report what it ended as.
    for (const hostId of running) void getExternalWorkflowHandle(hostRolloutWorkflowId(name, hostId)).cancel();
  });
  setHandler(rolloutProgressQuery, (): RolloutProgress => ({
    name,
    total: state.total,
    counts: state.counts,
    paused: state.paused,
    cancelled,
    stopReason: state.stopReason,
    running: [...running],
    problems: state.problems,
    generation: state.generation,
    done: false,
  }));

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
