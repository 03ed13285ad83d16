import { defineSearchAttributeKey } from '@temporalio/common';
import { ParentClosePolicy, executeChild, patched, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { WindowActivities } from '../activities/window-activities.js';
import { WindowSpec, type WindowSpecInput } from '../schemas/window.js';
import type { RolloutReport } from './rollout-book.js';
import { rolloutWorkflow } from './rollout-workflow.js';
import { parseWorkflowInput } from './saga-kit.js';

/** Set by a Temporal Schedule on every workflow it starts: the time the firing was due. */
const SCHEDULED_START = defineSearchAttributeKey('TemporalScheduledStartTime', 'DATETIME');

const plans = proxyActivities<WindowActivities>({ startToCloseTimeout: '2 minutes', retry: { maximumAttempts: 5 } });

export interface WindowReport {
  window: string;
  opensAt: string;
  closesAt: string;
  /** Null when there was nothing left to do. */
  rollout: RolloutReport | null;
}

/**
 * One firing of a maintenance window (started by its Temporal Schedule): resolves the plan against the
 * inventory now, then rolls out what is left, starting no host whose expected duration would pass the
 * window's end minus the cutoff. Hosts it does not reach are picked up by the next window.
 */
export async function windowWorkflow(input: WindowSpecInput): Promise<WindowReport> {
  const spec = parseWorkflowInput(WindowSpec, input, 'window');
  // The window opens when it was due, not when a late worker or server got to it: after an outage a
  // 02:00-04:00 window that fires at 08:00 is already closed and starts no host.
  const dueAt = patched('window-opens-at-schedule') ? workflowInfo().typedSearchAttributes.get(SCHEDULED_START)?.getTime() : undefined;
  const opensAt = dueAt ?? Date.now();
  const endsAt = opensAt + spec.durationMs;
  const stamp = new Date(opensAt).toISOString().replace(/[:.]/g, '-').toLowerCase();
  const work = await plans.resolvePlanNow(spec.plan, `window ${spec.name}`);
  const base = { window: spec.name, opensAt: new Date(opensAt).toISOString(), closesAt: new Date(endsAt).toISOString() };
  if (!work.hostsRef && (work.hosts?.length ?? 0) === 0) return { ...base, rollout: null };
  const rollout = await executeChild(rolloutWorkflow, {
    workflowId: `${workflowInfo().workflowId}/rollout`,
    parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
    args: [{ ...work, name: `${spec.name}-${stamp}`.slice(0, 63).replace(/-+$/, ''), window: { endsAt, cutoffMs: spec.cutoffMs, expectedHostMs: spec.expectedHostMs } }],
  });
  return { ...base, rollout };
}
