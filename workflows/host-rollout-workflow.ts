import { CancellationScope, isCancellation, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { OperationActivities } from '../activities/operation-activities.js';
import type { HostRolloutReport, HostWork } from '../schemas/rollout.js';
import { passthroughWorkflowId } from './definitions.js';

const enqueue = proxyActivities<OperationActivities>({ startToCloseTimeout: '1 minute', retry: { maximumAttempts: 10 } });
// Waiting covers the whole operation (throttle waits, reboots): long, but heartbeated.
const waiter = proxyActivities<OperationActivities>({ startToCloseTimeout: '1 day', heartbeatTimeout: '30s', retry: { maximumAttempts: 20 } });

/**
 * One host of a rollout: its requests, in order, each through the host's entity (so it is serialized
 * with everything else on that host and throttled by the same ledger). The first request that does not
 * end attached fails the host. Cancelled, it cancels its operation in flight (whose saga compensates)
 * and reports what that operation ended as.
 */
export async function hostRolloutWorkflow(work: HostWork, canary: boolean): Promise<HostRolloutReport> {
  const details: string[] = [];
  const base = workflowInfo().workflowId;
  for (const [i, request] of work.requests.entries()) {
    const workflowId = passthroughWorkflowId(work.hostId, request.bdf, `${base.replaceAll('/', '-')}-${i}`);
    await enqueue.enqueueOperation({ kind: 'attach', workflowId, request });
    try {
      const outcome = await waiter.awaitOperation(work.hostId, workflowId);
      details.push(`${request.bdf} → ${request.guest}: ${outcome.outcome}${outcome.code ? ` (${outcome.code}: ${outcome.message ?? ''})` : ''}`);
      if (outcome.outcome !== 'attached') return { hostId: work.hostId, state: 'failed', canary, details };
    } catch (err) {
      if (!isCancellation(err)) throw err;
      const final = await CancellationScope.nonCancellable(async () => {
        await enqueue.cancelOperation(work.hostId, workflowId);
        return waiter.awaitOperation(work.hostId, workflowId);
      });
      details.push(`${request.bdf} → ${request.guest}: cancelled, operation ended ${final.outcome}${final.code ? ` (${final.code})` : ''}`);
      return { hostId: work.hostId, state: 'cancelled', canary, details };
    }
  }
  return { hostId: work.hostId, state: 'succeeded', canary, details };
}
