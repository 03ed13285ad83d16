import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { type Client, WorkflowFailedError, WorkflowNotFoundError } from '@temporalio/client';
import { ErrorCode, isErrorCode } from '../schemas/errors.js';
import { HostOperation, type HostOperationInput, type Outcome } from '../schemas/passthrough.js';
import { dropQueuedSignal, hostEntityWorkflowId } from '../workflows/definitions.js';
import { submitOperation } from '../transport/host-operations.js';
import { locateOperation } from '../transport/operation-lookup.js';

/** How one operation ended, as a rollout reports it. */
export interface OperationOutcome {
  workflowId: string;
  outcome: Outcome;
  code: string | null;
  message: string | null;
}

/**
 * Activities that let a workflow (the fleet rollout) use the host entities, which take work only from
 * clients: a workflow cannot signal-with-start. They use a Temporal client inside the worker.
 */
export function createOperationActivities(deps: { client: Client }) {
  const { client } = deps;

  async function outcomeOf(workflowId: string): Promise<OperationOutcome> {
    try {
      const result = (await client.workflow.getHandle(workflowId).result()) as { outcome: Outcome };
      return { workflowId, outcome: result.outcome, code: null, message: null };
    } catch (err) {
      if (!(err instanceof WorkflowFailedError)) throw err;
      const cause = err.cause as { type?: string; message?: string; details?: unknown[] } | undefined;
      const details = cause?.details?.[0] as { outcome?: Outcome } | undefined;
      return { workflowId, outcome: details?.outcome ?? 'failed', code: isErrorCode(cause?.type) ? cause.type : ErrorCode.OPERATION_FAILED, message: cause?.message ?? err.message };
    }
  }

  return {
    /** Queues an operation on its host's entity (idempotent: the entity ignores a known workflow id). */
    async enqueueOperation(raw: HostOperationInput): Promise<void> {
      const parsed = HostOperation.safeParse(raw);
      if (!parsed.success) throw ApplicationFailure.nonRetryable('invalid operation', ErrorCode.INVALID_INPUT);
      await submitOperation(client, parsed.data);
    },

    /**
     * Waits (heartbeating all along) until the operation has ended, and says how. Rollouts learn outcomes
     * by signal from the host entity; this is their fallback when the signal is overdue, and the wait of
     * rollouts started before that. It never blocks on a workflow's result, which could take longer than
     * the heartbeat timeout.
     */
    async awaitOperation(hostId: string, workflowId: string): Promise<OperationOutcome> {
      const ctx = Context.current();
      for (;;) {
        ctx.heartbeat({ waitingFor: workflowId });
        const where = await locateOperation(client, hostId, workflowId);
        if (where.state === 'started' && !where.running) return outcomeOf(workflowId);
        if (where.state === 'ended-in-entity') return { workflowId, outcome: where.record.outcome, code: where.record.code, message: where.record.message };
        await ctx.sleep(2000);
      }
    },

    /** Stops an operation: drops it from its host's queue, or cancels it so its saga compensates. */
    async cancelOperation(hostId: string, workflowId: string): Promise<void> {
      await client.workflow.getHandle(hostEntityWorkflowId(hostId)).signal(dropQueuedSignal, workflowId).catch(() => undefined);
      try {
        await client.workflow.getHandle(workflowId).cancel();
      } catch (err) {
        if (!(err instanceof WorkflowNotFoundError)) throw err;
      }
    },
  };
}

export type OperationActivities = ReturnType<typeof createOperationActivities>;
