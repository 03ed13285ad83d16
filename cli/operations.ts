import { setTimeout as sleep } from 'node:timers/promises';
import type { Client } from '@temporalio/client';
import { locateOperation } from '../transport/operation-lookup.js';
import { ErrorCode, PtcError, isErrorCode } from '../schemas/errors.js';
import type { PassthroughResult } from '../schemas/passthrough.js';
import { type PassthroughProgress, passthroughProgressQuery } from '../workflows/definitions.js';

/** What a waiting caller is told as the operation moves: queue position, steps, waits. */
export type ProgressListener = (line: string) => void;

/**
 * Waits for an operation: while it is queued behind others on its host, reports its position; while it
 * runs, reports each new step and wait (throttle, reboot); then returns its result or throws its failure.
 */
export async function waitForOperation(client: Client, hostId: string, workflowId: string, onProgress: ProgressListener = () => undefined): Promise<PassthroughResult> {
  let lastPosition = -1;
  for (;;) {
    const where = await locateOperation(client, hostId, workflowId);
    if (where.state === 'started') return followRunning<PassthroughResult>(client.workflow.getHandle(workflowId), onProgress);
    if (where.state === 'ended-in-entity') {
      const code = isErrorCode(where.record.code) ? where.record.code : ErrorCode.OPERATION_FAILED;
      throw new PtcError(code, where.record.message ?? `${workflowId} ended before it started`);
    }
    if (where.position !== lastPosition && where.position > 0) onProgress(`queued on ${hostId}: ${where.position} operation(s) ahead`);
    lastPosition = where.position;
    await sleep(300);
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
