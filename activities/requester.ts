import type { Client } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { Requester } from '../schemas/ids.js';

/**
 * Who asked for a workflow: the `requestedBy` of its first argument (a passthrough or release
 * request), read from the workflow's start event. The saga's activities take positional arguments
 * without it, so this is how the identity reaches the agent without a workflow change; one history
 * read per workflow run and worker, cached.
 */
export function requesterLookup(client: Client, maxEntries = 2000): (workflow: { workflowId: string; runId: string }) => Promise<string | undefined> {
  const cache = new Map<string, Promise<string | undefined>>();
  return (workflow) => {
    const key = `${workflow.workflowId}/${workflow.runId}`;
    let found = cache.get(key);
    if (!found) {
      found = read(client, workflow).catch(() => {
        // A failed read is not remembered: the next activity of this run tries again.
        cache.delete(key);
        return undefined;
      });
      if (cache.size >= maxEntries) cache.delete(cache.keys().next().value ?? '');
      cache.set(key, found);
    }
    return found;
  };
}

async function read(client: Client, workflow: { workflowId: string; runId: string }): Promise<string | undefined> {
  const history = await client.workflow.getHandle(workflow.workflowId, workflow.runId).fetchHistory();
  const payload = history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
  if (!payload) return undefined;
  const input = defaultPayloadConverter.fromPayload<unknown>(payload);
  const by = typeof input === 'object' && input !== null && 'requestedBy' in input ? Requester.safeParse(input.requestedBy) : null;
  return by?.success ? by.data : undefined;
}
