import { setTimeout as sleep } from 'node:timers/promises';
import { type Client, WorkflowNotFoundError } from '@temporalio/client';
import { ErrorCode, PtcError } from '../../schemas/errors.js';
import type { RolloutReport } from '../../workflows/rollout-book.js';
import { cancelRolloutSignal, dropQueuedSignal, hostEntityWorkflowId, pauseRolloutSignal, resumeRolloutSignal, rolloutProgressQuery } from '../../workflows/definitions.js';
import { openTemporal } from '../clients.js';
import { type ConnectionFlags, resolveConnection } from '../connection.js';
import { printJson } from '../output.js';
import { describeRolloutProgress } from './rollout-lines.js';

/**
 * Follows a rollout to its end: on a terminal the progress line is redrawn in place, otherwise a plain
 * line is printed whenever the counts change (CI logs stay readable).
 */
export async function followRollout(client: Client, workflowId: string, json: boolean): Promise<RolloutReport> {
  const handle = client.workflow.getHandle(workflowId);
  const tty = process.stdout.isTTY && !json;
  let last = '';
  let done = false;
  const poll = (async () => {
    while (!done) {
      try {
        const line = describeRolloutProgress(await handle.query(rolloutProgressQuery));
        if (line !== last && !json) process.stdout.write(tty ? `\r\x1b[2K${line}` : `${line}\n`);
        last = line;
      } catch {
        // between generations (continue-as-new) a query may miss; the next poll catches up
      }
      await sleep(1000);
    }
  })();
  try {
    return (await handle.result()) as RolloutReport;
  } finally {
    done = true;
    await poll;
    if (tty && last) process.stdout.write('\n');
  }
}

export interface ControlOptions extends ConnectionFlags {
  id: string;
  json: boolean;
}

/** `ptctl pause|resume|cancel ID`: rollouts take all three; a single operation can only be cancelled. */
export async function controlCommand(action: 'pause' | 'resume' | 'cancel', opts: ControlOptions): Promise<void> {
  const conn = await resolveConnection(opts, process.env, 'operator');
  const { client, close } = await openTemporal(conn);
  try {
    const handle = client.workflow.getHandle(opts.id);
    try {
      await handle.describe();
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) throw err;
      if (!opts.id.startsWith('op/')) throw new PtcError(ErrorCode.INVALID_INPUT, `no rollout or operation ${opts.id}`);
    }
    if (opts.id.startsWith('rollout/')) {
      await handle.signal(action === 'pause' ? pauseRolloutSignal : action === 'resume' ? resumeRolloutSignal : cancelRolloutSignal);
    } else if (opts.id.startsWith('op/') && action === 'cancel') {
      const hostId = opts.id.split('/')[1] ?? '';
      // Queued: drop it; running: cancel it (its saga compensates).
      await client.workflow.getHandle(hostEntityWorkflowId(hostId)).signal(dropQueuedSignal, opts.id).catch(() => undefined);
      await handle.cancel().catch((err: unknown) => {
        if (!(err instanceof WorkflowNotFoundError)) throw err;
      });
    } else {
      throw new PtcError(ErrorCode.INVALID_INPUT, `${action} applies to rollouts (rollout/<name>); an operation can only be cancelled`);
    }
    if (opts.json) printJson({ ok: true, id: opts.id, action });
    else process.stdout.write(`${action === 'cancel' ? 'cancel requested for' : `${action}d`} ${opts.id}\n`);
  } finally {
    await close();
  }
}
