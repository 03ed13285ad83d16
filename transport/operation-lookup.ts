import { type Client, WorkflowNotFoundError } from '@temporalio/client';
import { hostEntityWorkflowId, hostStateQuery, type OperationRecord } from '../workflows/definitions.js';

/** Where a host operation is: running or finished as its own workflow, queued in its host's entity, or ended there without one. */
export type OperationLocation =
  | { state: 'started'; running: boolean }
  | { state: 'queued'; position: number }
  | { state: 'ended-in-entity'; record: OperationRecord };

/** Whether the workflow exists and is still running; null when it does not exist (yet). */
async function workflowRunning(client: Client, workflowId: string): Promise<boolean | null> {
  try {
    return (await client.workflow.getHandle(workflowId).describe()).status.name === 'RUNNING';
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return null;
    throw err;
  }
}

/**
 * Finds an operation submitted to a host entity. An operation the entity throttled up front or dropped
 * from its queue never gets a workflow; its record in the entity is its outcome. `position` is how many
 * operations are ahead of a queued one (it may be 0 or -1 while the entity has not read the signal yet).
 */
export async function locateOperation(client: Client, hostId: string, workflowId: string): Promise<OperationLocation> {
  const running = await workflowRunning(client, workflowId);
  if (running !== null) return { state: 'started', running };
  const view = await client.workflow.getHandle(hostEntityWorkflowId(hostId)).query(hostStateQuery);
  const record = view.recent.find((r) => r.workflowId === workflowId);
  if (record && !view.queue.some((q) => q.workflowId === workflowId)) {
    // It may have started and finished between the describe above and the query: look again.
    const late = await workflowRunning(client, workflowId);
    return late !== null ? { state: 'started', running: late } : { state: 'ended-in-entity', record };
  }
  return { state: 'queued', position: view.queue.findIndex((q) => q.workflowId === workflowId) + (view.current ? 1 : 0) };
}
