import { CancellationScope, proxyActivities, setHandler, upsertSearchAttributes } from '@temporalio/workflow';
import { type RolloutProgress, pauseRolloutSignal, resumeRolloutSignal } from './definitions.js';
import type { HostInFlight, RolloutActivities } from '../activities/rollout-activities.js';
import { type HostRolloutReport, type HostRolloutState, type HostWork, type HostsRef, type MaxFailures, type RolloutInput, fitsInWindow } from '../schemas/rollout.js';
import { PtcFailedHosts, PtcOutcome } from './visibility.js';

/**
 * An operation a rollout queued on a host's entity and has not heard the end of (one per host at a
 * time). Kept small, as up to maxParallel of them cross each continue-as-new: its workflow id is derived.
 */
export interface OperationInFlight {
  hostId: string;
  canary: boolean;
  /** The host's position in the rollout's hosts: its work is read from there again for its next request. */
  at: number;
  /** Which of the host's requests this operation is, of how many. */
  step: number;
  steps: number;
  bdf: string;
  /** Workflow time past the request's deadline (and a margin) at which it is looked up instead of awaited. */
  overdueAt: number;
  /** What the host's earlier requests ended as, for its report. */
  details: string[];
  /** Asked to stop (the rollout was cancelled): however it ends, the host is reported cancelled. */
  cancelling?: boolean;
}

/** What one generation hands the next across continue-as-new (hosts already finished are not carried). */
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
  /** Where the next generation goes on in its hosts (absent: at the start of what it is given). */
  next?: number;
  /** Host workflows still in flight, launched by generations from before operations were queued directly. */
  running?: HostInFlight[];
  /** Operations still in flight, handed over instead of drained. */
  ops?: OperationInFlight[];
  /** Cancelled: the operations in flight are being stopped, nothing more starts. */
  cancelled?: boolean;
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
 * ~20 MB, far past Temporal's payload limit. The rest are counted; each host's operations and their
 * search attributes still say what happened to it.
 */
export const MAX_PROBLEMS = 200;

/** History length at which a generation stops launching and continues as new (tests lower it). */
export const DEFAULT_HISTORY_LIMIT = 5000;

/** How often a generation looks up what it has in flight that may have ended without telling it. */
export const IN_FLIGHT_CHECK_MS = 15 * 60_000;

export const rolloutActivities = proxyActivities<RolloutActivities>({ startToCloseTimeout: '2 minutes', retry: { maximumAttempts: 5 } });

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

export const firstGeneration = (hosts: number, options: RolloutInput['options']): RolloutCarry => ({
  total: hosts,
  counts: { ...emptyCounts(), pending: hosts },
  problems: [],
  canariesLeft: options.canary,
  stopReason: null,
  paused: false,
  generation: 0,
});

export const hostFailed = (hostId: string, canary: boolean, err: unknown): HostRolloutReport => ({
  hostId,
  state: 'failed',
  canary,
  details: [`host workflow failed: ${err instanceof Error ? err.message : String(err)}`],
});

export const windowClosed = (window: NonNullable<RolloutInput['window']>): string =>
  `the window closes at ${new Date(window.endsAt).toISOString()}: no host starts within ${Math.round((window.cutoffMs + window.expectedHostMs) / 1000)} s of it (cutoff + expected host time)`;

/** A rollout's counters and problems: how hosts moving between states change them, and the report. */
export function rolloutBook(state: RolloutCarry, options: RolloutInput['options'], capped = true) {
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


/**
 * A generation's hosts, read by position: from the plan by reference one page at a time (a generation
 * holds at most MAX_PAGE_BYTES of hosts), or from the hosts it was given inline.
 */
export function rolloutHosts(input: { hosts?: HostWork[] | undefined; hostsRef?: HostsRef | undefined }, opts: { beforeRead?: () => void; nonCancellable?: boolean } = {}) {
  const { hosts: inline, hostsRef } = input;
  const load = (ref: HostsRef, index: number): Promise<HostWork[]> => rolloutActivities.loadRolloutHosts(ref, index);
  const page: { index: number; hosts: HostWork[] } = { index: -1, hosts: [] };
  return {
    length: hostsRef ? hostsRef.count : (inline?.length ?? 0),
    async at(position: number): Promise<HostWork | undefined> {
      if (!hostsRef) return inline?.[position];
      const index = Math.floor(position / hostsRef.pageSize);
      if (page.index !== index) {
        opts.beforeRead?.();
        Object.assign(page, { index, hosts: await (opts.nonCancellable ? CancellationScope.nonCancellable(() => load(hostsRef, index)) : load(hostsRef, index)) });
      }
      return page.hosts[position - index * hostsRef.pageSize];
    },
    /** The hosts from `position` on that are at hand without a read (to name them in a report). */
    atHand(position: number): HostWork[] {
      if (!hostsRef) return inline?.slice(position) ?? [];
      return page.index === Math.floor(position / hostsRef.pageSize) ? page.hosts.slice(position - page.index * hostsRef.pageSize) : [];
    },
  };
}

/** Pause stops launching hosts, resume goes on; both are kept in the carry. */
export function handlePauseAndResume(state: RolloutCarry): void {
  setHandler(pauseRolloutSignal, () => {
    state.paused = true;
  });
  setHandler(resumeRolloutSignal, () => {
    state.paused = false;
  });
}

/**
 * The host at `position`, if it may start now: not past the window's cutoff, readable, and the rollout
 * not stopped meanwhile. It takes a canary slot while any is left. Otherwise undefined, with the reason
 * in `state.stopReason` when the rollout cannot go on.
 */
export async function hostToStart(
  state: RolloutCarry,
  hosts: ReturnType<typeof rolloutHosts>,
  position: number,
  window: RolloutInput['window'],
  stopped: () => boolean,
): Promise<{ work: HostWork; canary: boolean } | undefined> {
  if (window && !fitsInWindow(Date.now(), window)) {
    state.stopReason = windowClosed(window);
    return undefined;
  }
  let work: HostWork | undefined;
  try {
    work = await hosts.at(position);
  } catch (err) {
    state.stopReason ??= `the rollout's hosts could not be read: ${err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err)}`;
    return undefined;
  }
  if (!work || stopped()) return undefined;
  const canary = state.canariesLeft > 0;
  if (canary) state.canariesLeft -= 1;
  return { work, canary };
}

/** What `rollout-progress` answers, from a generation's state and the hosts it has in flight. */
export const progressOf = (name: string, state: RolloutCarry, cancelled: boolean, running: string[]): RolloutProgress => ({
  name,
  total: state.total,
  counts: state.counts,
  paused: state.paused,
  cancelled,
  stopReason: state.stopReason,
  running,
  problems: state.problems,
  generation: state.generation,
  done: false,
});
