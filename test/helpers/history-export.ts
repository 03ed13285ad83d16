import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';

/**
 * Where test runs leave the histories they produced, when set: the raw material of the replay corpus
 * (`npm run replay:capture`). Unset in ordinary runs, so tests pay nothing for it.
 */
export const EXPORT_HISTORIES_ENV = 'PTC_EXPORT_HISTORIES';

/**
 * Records the ids of workflows a client starts, so a server without visibility can still be exported.
 * Only when exporting: ordinary runs leave the client untouched.
 */
export function recordStartedWorkflows(client: Client): Set<string> {
  const ids = new Set<string>();
  if (!process.env[EXPORT_HISTORIES_ENV]) return ids;
  const wf = client.workflow;
  for (const method of ['start', 'execute', 'signalWithStart'] as const) {
    const original = wf[method].bind(wf) as (type: unknown, options: { workflowId: string }) => Promise<unknown>;
    Object.defineProperty(wf, method, {
      value: (type: unknown, options: { workflowId: string }) => {
        ids.add(options.workflowId);
        return original(type, options);
      },
    });
  }
  return ids;
}

/** One stored history: enough to replay it and to tell what it covers. */
export interface StoredHistory {
  workflowId: string;
  workflowType: string;
  history: unknown;
}

interface RunRef {
  workflowId: string;
  runId?: string | undefined;
}

/**
 * Writes the histories of the given workflows into `dir`, one JSON file each, following what each one
 * leads to: the children it started and the runs before it in a continue-as-new chain. The time-skipping
 * server has no visibility listing, so its tests name their top-level workflows and this finds the rest.
 */
export async function exportHistories(client: Client, dir: string, label: string, roots: Iterable<RunRef>): Promise<number> {
  await mkdir(dir, { recursive: true });
  const pending: RunRef[] = [...roots];
  const done = new Set<string>();
  let n = 0;
  while (pending.length > 0) {
    const ref = pending.pop();
    if (!ref) break;
    const history = await client.workflow.getHandle(ref.workflowId, ref.runId).fetchHistory().catch(() => null);
    if (!history) continue;
    const first = history.events?.[0]?.workflowExecutionStartedEventAttributes;
    const runId = first?.originalExecutionRunId ?? ref.runId ?? 'latest';
    const key = `${ref.workflowId}/${runId}`;
    if (done.has(key)) continue;
    done.add(key);
    for (const e of history.events ?? []) {
      const child = e.startChildWorkflowExecutionInitiatedEventAttributes;
      if (child?.workflowId) pending.push({ workflowId: child.workflowId });
    }
    if (first?.continuedExecutionRunId) pending.push({ workflowId: ref.workflowId, runId: first.continuedExecutionRunId });
    const stored: StoredHistory = { workflowId: ref.workflowId, workflowType: first?.workflowType?.name ?? 'unknown', history: JSON.parse(historyToJSON(history)) };
    const file = `${label}--${ref.workflowId.replace(/[^A-Za-z0-9._-]+/g, '_')}--${runId.slice(0, 8)}.json`;
    await writeFile(join(dir, file), JSON.stringify(stored));
    n++;
  }
  return n;
}

/** Every workflow run the namespace lists (a server with visibility: the dev server). */
export async function listedRuns(client: Client): Promise<RunRef[]> {
  const refs: RunRef[] = [];
  for await (const wf of client.workflow.list()) refs.push({ workflowId: wf.workflowId, runId: wf.runId });
  return refs;
}

/**
 * Exports into the folder named by PTC_EXPORT_HISTORIES, if any; a failure here must not fail the test.
 * `roots` defaults to everything the server lists.
 */
export async function exportHistoriesIfAsked(client: Client, label: string, roots?: Iterable<RunRef>): Promise<void> {
  const dir = process.env[EXPORT_HISTORIES_ENV];
  if (!dir) return;
  try {
    await exportHistories(client, dir, label, roots ?? (await listedRuns(client)));
  } catch (err) {
    process.stderr.write(`history export (${label}) failed: ${err instanceof Error ? err.message : String(err)}\n`);
  }
}

/**
 * What a workflow run scheduled as activities, and how many local activities it ran (their markers):
 * which of a saga's steps cost a server round trip and a workflow task of their own.
 */
export async function stepKinds(client: Client, workflowId: string): Promise<{ activities: string[]; localActivities: number }> {
  const events = (await client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
  return {
    activities: [...new Set(events.flatMap((e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? []))].sort(),
    localActivities: events.filter((e) => e.markerRecordedEventAttributes?.markerName === 'core_local_activity').length,
  };
}
