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
      await cancelOne(hostId, workflowId);
    },

    /**
     * Queues the operations a rollout launched in one workflow task, each on its host's entity, a few at
     * a time. Retried whole: the entities ignore an operation id they know.
     */
    async enqueueOperations(raw: HostOperationInput[]): Promise<void> {
      const ops = raw.map((op) => HostOperation.safeParse(op));
      const invalid = ops.find((op) => !op.success);
      if (invalid) throw ApplicationFailure.nonRetryable(`invalid operation: ${invalid.error?.issues[0]?.message ?? ''}`, ErrorCode.INVALID_INPUT);
      await eachAtMost(BATCH_CONCURRENCY, ops, (op) => (op.success ? submitOperation(client, op.data) : Promise.resolve()));
    },

    async cancelOperations(ops: OperationRef[]): Promise<void> {
      await eachAtMost(BATCH_CONCURRENCY, ops, (op) => cancelOne(op.hostId, op.workflowId));
    },

    /**
     * How those of the given operations that have ended ended; the others (queued, running) are left
     * out. A rollout asks only about operations whose signal is overdue.
     */
    async endedOperations(ops: OperationRef[]): Promise<OperationOutcome[]> {
      const ended: OperationOutcome[] = [];
      await eachAtMost(BATCH_CONCURRENCY, ops, async (op) => {
        Context.current().heartbeat();
        const where = await locateOperation(client, op.hostId, op.workflowId);
        if (where.state === 'started' && !where.running) ended.push(await outcomeOf(op.workflowId));
        else if (where.state === 'ended-in-entity') ended.push({ workflowId: op.workflowId, outcome: where.record.outcome, code: where.record.code, message: where.record.message });
      });
      return ended;
    },
  };

  async function cancelOne(hostId: string, workflowId: string): Promise<void> {
    await client.workflow.getHandle(hostEntityWorkflowId(hostId)).signal(dropQueuedSignal, workflowId).catch(() => undefined);
    try {
      await client.workflow.getHandle(workflowId).cancel();
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) throw err;
    }
  }
}

/** An operation of a host, by its workflow id. */
export interface OperationRef {
  hostId: string;
  workflowId: string;
}

/** Client calls one batch activity has in flight at once: enough to hide round trips, few enough for one frontend. */
const BATCH_CONCURRENCY = 16;

async function eachAtMost<T>(limit: number, items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}

export type OperationActivities = ReturnType<typeof createOperationActivities>;
