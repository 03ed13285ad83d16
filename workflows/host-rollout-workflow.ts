import { CancellationScope, condition, getExternalWorkflowHandle, isCancellation, patched, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { OperationActivities, OperationOutcome } from '../activities/operation-activities.js';
import type { HostRolloutReport, HostWork } from '../schemas/rollout.js';
import { type OperationRecord, SIGNAL_OVERDUE_MS, hostRolloutEndedSignal, operationEndedSignal, rolloutOperationId } from './definitions.js';

const enqueue = proxyActivities<OperationActivities>({ startToCloseTimeout: '1 minute', retry: { maximumAttempts: 10 } });
// The fallback lookup (and the only wait of histories from before outcome-by-signal): heartbeated.
const waiter = proxyActivities<OperationActivities>({ startToCloseTimeout: '1 day', heartbeatTimeout: '30s', retry: { maximumAttempts: 20 } });


/**
 * One host of a rollout: its requests, in order, each through the host's entity (so it is serialized
 * with everything else on that host and throttled by the same ledger). The first request that does not
 * end attached fails the host. Cancelled, it cancels its operation in flight (whose saga compensates)
 * and reports what that operation ended as.
 *
 * `run` is the apply or window firing this belongs to: it is part of every operation id, so applying a
 * plan again acts again while a retry of this run is answered from the entity and the agents' journals.
 *
 * `reportTo` is the rollout's workflow id: the host signals it how it ended, whichever generation of the
 * rollout is current by then (rollouts from before the sliding window awaited the child and pass none).
 */
export async function hostRolloutWorkflow(work: HostWork, canary: boolean, run?: string | null, reportTo?: string): Promise<HostRolloutReport> {
  if (!reportTo) return hostRollout(work, canary, run ?? undefined);
  const report = async (ended: HostRolloutReport): Promise<void> => {
    // A terminated rollout cannot hear it; the host's own result still says how it went.
    await CancellationScope.nonCancellable(() => getExternalWorkflowHandle(reportTo).signal(hostRolloutEndedSignal, ended)).catch(() => undefined);
  };
  let ended: HostRolloutReport;
  try {
    ended = await hostRollout(work, canary, run ?? undefined);
  } catch (err) {
    await report({ hostId: work.hostId, state: 'failed', canary, details: [`host workflow failed: ${err instanceof Error ? err.message : String(err)}`] });
    throw err;
  }
  await report(ended);
  return ended;
}

async function hostRollout(work: HostWork, canary: boolean, run: string | undefined): Promise<HostRolloutReport> {
  const details: string[] = [];
  const base = workflowInfo().workflowId;
  const ended = new Map<string, OperationRecord>();
  setHandler(operationEndedSignal, (record) => {
    ended.set(record.workflowId, record);
  });
  // Histories from before this waited in a polling activity; they replay down the old path.
  const bySignal = patched('outcome-by-signal');

  async function outcomeOf(workflowId: string, deadlineMs: number): Promise<OperationOutcome> {
    if (bySignal && (await condition(() => ended.has(workflowId), deadlineMs + SIGNAL_OVERDUE_MS))) {
      const record = ended.get(workflowId);
      if (record) return { workflowId, outcome: record.outcome, code: record.code, message: record.message };
    }
    return waiter.awaitOperation(work.hostId, workflowId);
  }

  for (const [i, request] of work.requests.entries()) {
    const workflowId = rolloutOperationId(base, work.hostId, request.bdf, i, run);
    await enqueue.enqueueOperation({ kind: 'attach', workflowId, request, ...(bySignal ? { notify: base } : {}) });
    try {
      const outcome = await outcomeOf(workflowId, request.deadlineMs);
      details.push(`${request.bdf} → ${request.guest}: ${outcome.outcome}${outcome.code ? ` (${outcome.code}: ${outcome.message ?? ''})` : ''}`);
      if (outcome.outcome !== 'attached') return { hostId: work.hostId, state: 'failed', canary, details };
    } catch (err) {
      if (!isCancellation(err)) throw err;
      const final = await CancellationScope.nonCancellable(async () => {
        await enqueue.cancelOperation(work.hostId, workflowId);
        return outcomeOf(workflowId, request.deadlineMs);
      });
      details.push(`${request.bdf} → ${request.guest}: cancelled, operation ended ${final.outcome}${final.code ? ` (${final.code})` : ''}`);
      return { hostId: work.hostId, state: 'cancelled', canary, details };
    }
  }
  return { hostId: work.hostId, state: 'succeeded', canary, details };
}
