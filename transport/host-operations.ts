import type { Client } from '@temporalio/client';
import type { HostOperationInput } from '../schemas/passthrough.js';
import { TASK_QUEUE, enqueueOperationSignal, hostEntityWorkflowId } from '../workflows/definitions.js';
import type { hostEntityWorkflow } from '../workflows/host-entity.js';
import { PtcHostId } from '../workflows/visibility.js';

/**
 * Queues an operation on its host's entity, starting the entity if it is not running (signal-with-start).
 * Idempotent: the entity ignores a workflow id it already knows.
 */
export async function submitOperation(client: Client, op: HostOperationInput): Promise<void> {
  const hostId = op.request.hostId;
  await client.workflow.signalWithStart<typeof hostEntityWorkflow, [HostOperationInput]>('hostEntityWorkflow', {
    workflowId: hostEntityWorkflowId(hostId),
    taskQueue: TASK_QUEUE,
    args: [{ hostId }],
    signal: enqueueOperationSignal,
    signalArgs: [op],
    typedSearchAttributes: [{ key: PtcHostId, value: hostId }],
  });
}
