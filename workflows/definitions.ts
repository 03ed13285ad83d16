import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { HostOperationInput, OperationKind, Outcome, PassthroughStep, StepRecord } from '../schemas/passthrough.js';
import type { HotplugLedger } from '../policy/hotplug-throttle.js';
import type { HostRolloutReport, HostRolloutState } from '../schemas/rollout.js';

/** Shared by workflow and clients: wire names are kebab-case and never change once published. */
export interface PassthroughProgress {
  step: PassthroughStep | 'done';
  steps: StepRecord[];
  waitingFor: string | null;
}

export const passthroughProgressQuery = defineQuery<PassthroughProgress>('passthrough-progress');

export const TASK_QUEUE = 'ptc';

/** `op/<hostId>/<bdf>/<n>`: meaningful ids, so the Temporal UI reads like the fleet. */
export const passthroughWorkflowId = (hostId: string, bdf: string, n: string): string => `op/${hostId}/${bdf}/${n}`;


/** `host/<hostId>`: the single writer for a host. */
export const hostEntityWorkflowId = (hostId: string): string => `host/${hostId}`;

export interface OperationRecord {
  workflowId: string;
  kind: OperationKind;
  bdf: string;
  guest: string;
  outcome: Outcome;
  code: string | null;
  message: string | null;
  finishedAt: number;
}

export interface HostEntityView {
  hostId: string;
  current: { workflowId: string; kind: OperationKind; bdf: string; startedAt: number } | null;
  queue: Array<{ workflowId: string; kind: OperationKind; bdf: string }>;
  recent: OperationRecord[];
  ledger: HotplugLedger;
  pinned: Record<string, string[]>;
}

/**
 * Queues an operation. A signal, not an update: signals are batched into workflow tasks, so a storm of
 * requests costs the entity a few tasks instead of one round trip each. Callers validate with the same
 * schema first; the entity records anything invalid as refused.
 */
export const enqueueOperationSignal = defineSignal<[HostOperationInput]>('enqueue-operation');
export const hostStateQuery = defineQuery<HostEntityView>('host-state');
/** Removes a queued (not yet running) operation; a running one is cancelled through its own workflow. */
export const dropQueuedSignal = defineSignal<[string]>('drop-queued');


/**
 * The entity tells the workflow named in an operation's `notify` how it ended: the waiter waits on a
 * condition instead of polling.
 */
export const operationEndedSignal = defineSignal<[OperationRecord]>('operation-ended');

/**
 * How long past an operation's own deadline the entity's signal may take before its waiter looks the
 * operation up itself: the entity's watchdog grace and its second bound after a cancel, plus a margin.
 * A signal that never comes means the entity was terminated or reset.
 */
export const SIGNAL_OVERDUE_MS = 35 * 60_000;

/**
 * The operation id of request `index` of a host in a rollout. `run` (one apply or window firing) makes a
 * new apply of the same plan act again; without it (rollouts from before run ids) the id is as it was.
 */
export const rolloutOperationId = (hostRolloutId: string, hostId: string, bdf: string, index: number, run?: string): string =>
  passthroughWorkflowId(hostId, bdf, `${hostRolloutId.replaceAll('/', '-')}${run ? `-${run}` : ''}-${index}`);

export const rolloutWorkflowId = (name: string): string => `rollout/${name}`;
/** The rollout a `rollout/<name>/<hostId>` workflow belongs to; undefined for any other id. */
export const rolloutNameOf = (workflowId: string): string | undefined => /^rollout\/([^/]+)\//.exec(workflowId)?.[1];
export const hostRolloutWorkflowId = (name: string, hostId: string): string => `rollout/${name}/${hostId}`;

export interface RolloutProgress {
  name: string;
  total: number;
  counts: Record<HostRolloutState, number>;
  paused: boolean;
  cancelled: boolean;
  /** Why no more hosts are launched, once that is decided. */
  stopReason: string | null;
  running: string[];
  /** Hosts that did not succeed, with what happened (full list; successes are only counted). */
  problems: HostRolloutReport[];
  /** Continue-as-new generations so far: every history stays short. */
  generation: number;
  done: boolean;
}

export const rolloutProgressQuery = defineQuery<RolloutProgress>('rollout-progress');
export const pauseRolloutSignal = defineSignal('pause');
export const resumeRolloutSignal = defineSignal('resume');
export const cancelRolloutSignal = defineSignal('cancel');

/**
 * A host's rollout workflow tells its rollout how it ended. Rollouts hand hosts still in flight to the
 * next generation across continue-as-new; only a signal to the rollout's id reaches the generation that
 * is current when the host ends.
 */
export const hostRolloutEndedSignal = defineSignal<[HostRolloutReport]>('host-rollout-ended');
