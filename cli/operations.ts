import { setTimeout as sleep } from 'node:timers/promises';
import { type Client, WorkflowNotFoundError } from '@temporalio/client';
import { ErrorCode, PtcError, isErrorCode } from '../schemas/errors.js';
import type { HostOperation, HostOperationInput, PassthroughResult } from '../schemas/passthrough.js';
import {
  type PassthroughProgress,
  TASK_QUEUE,
  enqueueOperationSignal,
  hostEntityWorkflowId,
  hostStateQuery,
  passthroughProgressQuery,
} from '../workflows/definitions.js';
import type { hostEntityWorkflow } from '../workflows/host-entity.js';

/** Queues an operation on its host's entity, starting the entity if it is not running (signal-with-start). */
export async function submitOperation(client: Client, op: HostOperation): Promise<void> {
  const hostId = op.request.hostId;
  await client.workflow.signalWithStart<typeof hostEntityWorkflow, [HostOperationInput]>('hostEntityWorkflow', {
    workflowId: hostEntityWorkflowId(hostId),
    taskQueue: TASK_QUEUE,
    args: [{ hostId }],
    signal: enqueueOperationSignal,
    signalArgs: [op],
  });
}

/** How many operations are ahead of this one on its host (0: running or about to run). */
export async function queuePosition(client: Client, hostId: string, workflowId: string): Promise<number> {
  const view = await client.workflow.getHandle(hostEntityWorkflowId(hostId)).query(hostStateQuery);
  const idx = view.queue.findIndex((q) => q.workflowId === workflowId);
  return idx < 0 ? 0 : idx + (view.current ? 1 : 0);
}

/** What a waiting caller is told as the operation moves: queue position, steps, waits. */
export type ProgressListener = (line: string) => void;

/**
 * Waits for an operation: while it is queued behind others on its host, reports its position; while it
 * runs, reports each new step and wait (throttle, reboot); then returns its result or throws its failure.
 */
export async function waitForOperation(client: Client, hostId: string, workflowId: string, onProgress: ProgressListener = () => undefined): Promise<PassthroughResult> {
  let lastPosition = -1;
  for (;;) {
    const handle = client.workflow.getHandle(workflowId);
    try {
      await handle.describe();
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) throw err;
      const view = await client.workflow.getHandle(hostEntityWorkflowId(hostId)).query(hostStateQuery);
      // Ended without a workflow of its own: dropped from the queue, or throttled by the entity up front.
      const ended = view.recent.find((r) => r.workflowId === workflowId);
      // It may have started and finished between the describe above and this query: look again.
      if (ended && (await workflowExists(handle))) continue;
      if (ended) {
        const code = isErrorCode(ended.code) ? ended.code : ErrorCode.OPERATION_FAILED;
        throw new PtcError(code, ended.message ?? `${workflowId} ended before it started`);
      }
      const position = view.queue.findIndex((q) => q.workflowId === workflowId) + (view.current ? 1 : 0);
      if (position !== lastPosition && position > 0) onProgress(`queued on ${hostId}: ${position} operation(s) ahead`);
      lastPosition = position;
      await sleep(300);
      continue;
    }
    return followRunning<PassthroughResult>(handle, onProgress);
  }
}

async function workflowExists(handle: ReturnType<Client['workflow']['getHandle']>): Promise<boolean> {
  try {
    await handle.describe();
    return true;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return false;
    throw err;
  }
}

async function followRunning<T>(handle: ReturnType<Client['workflow']['getHandle']>, onProgress: ProgressListener): Promise<T> {
  let shownSteps = 0;
  let shownWait: string | null = null;
  let done = false;
  const poll = (async () => {
    while (!done) {
      try {
        const p: PassthroughProgress = await handle.query(passthroughProgressQuery);
        for (const s of p.steps.slice(shownSteps)) onProgress(`${s.step}: ${s.detail}`);
        shownSteps = p.steps.length;
        if (p.waitingFor && p.waitingFor !== shownWait) onProgress(`waiting for ${p.waitingFor}`);
        shownWait = p.waitingFor;
      } catch {
        // A finished workflow may no longer answer queries; the result below ends the loop.
      }
      await sleep(500);
    }
  })();
  try {
    return (await handle.result()) as T;
  } finally {
    done = true;
    await poll;
  }
}
