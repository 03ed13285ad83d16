import {
  CancellationScope,
  ParentClosePolicy,
  allHandlersFinished,
  condition,
  continueAsNew,
  executeChild,
  getExternalWorkflowHandle,
  isCancellation,
  patched,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { type HostRolloutReport, type HostRolloutState, type MaxFailures, RolloutInput, type RolloutInputRaw, fitsInWindow } from '../schemas/rollout.js';
import {
  type RolloutProgress,
  cancelRolloutSignal,
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

/**
 * `rollout/<name>`: a fleet rollout. Canary hosts first, one at a time, and any canary failure stops it;
 * then at most `maxParallel` hosts at once until failures exceed `maxFailures`. Pause stops launching,
 * resume continues, cancel stops launching and cancels the hosts in flight (their sagas compensate).
 * Each host is a child workflow whose operations go through the host's entity. Generations continue as
 * new before their history grows long, carrying only counters and problems, never the finished hosts.
 */
export async function rolloutWorkflow(raw: RolloutInputRaw, carry?: RolloutCarry, historyLimit: number = DEFAULT_HISTORY_LIMIT): Promise<RolloutReport> {
  const { name, hosts, options, window, run } = parseWorkflowInput(RolloutInput, raw, 'rollout');
  const state: RolloutCarry = carry ?? {
    total: hosts.length,
    counts: { ...emptyCounts(), pending: hosts.length },
    problems: [],
    canariesLeft: options.canary,
    stopReason: null,
    paused: false,
    generation: 0,
  };
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
  const capped = patched('rollout-problems-capped');
  const addProblem = (report: HostRolloutReport): void => {
    if (!capped || state.problems.length < MAX_PROBLEMS) state.problems.push(report);
    else state.problemsOmitted = (state.problemsOmitted ?? 0) + 1;
  };

  const move = (from: HostRolloutState, to: HostRolloutState): void => {
    state.counts[from] -= 1;
    state.counts[to] += 1;
  };

  async function runHost(index: number, canary: boolean): Promise<void> {
    const work = hosts[index];
    if (!work) return;
    running.add(work.hostId);
    move('pending', 'running');
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
      report = { hostId: work.hostId, state: 'failed', canary, details: [`host workflow failed: ${err instanceof Error ? err.message : String(err)}`] };
    }
    running.delete(work.hostId);
    move('running', report.state);
    if (report.state !== 'succeeded') addProblem(report);
    if (canary && report.state === 'failed') state.stopReason ??= `canary ${work.hostId} failed`;
    if (!canary && failuresExceeded(state.counts.failed, state.total, options.maxFailures)) {
      state.stopReason ??= `failures (${state.counts.failed}) exceed maxFailures ${JSON.stringify(options.maxFailures)}`;
    }
  }

  let next = 0;
  const launchable = (): boolean => {
    if (next >= hosts.length || state.stopReason !== null || cancelled) return false;
    if (window && !fitsInWindow(Date.now(), window)) {
      state.stopReason = `the window closes at ${new Date(window.endsAt).toISOString()}: no host starts within ${Math.round((window.cutoffMs + window.expectedHostMs) / 1000)} s of it (cutoff + expected host time)`;
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
  for (const work of remaining) {
    move('pending', 'skipped');
    addProblem({ hostId: work.hostId, state: 'skipped', canary: false, details: [`not started: ${state.stopReason ?? 'stopped'}`] });
  }
  // A rollout always completes; how it went is searchable (histories from before replay without it).
  if (patched('visibility-outcome')) {
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
}
