import { randomUUID } from 'node:crypto';
import { Context } from '@temporalio/activity';
import type { NatsConnection } from '@nats-io/transport-node';
import { validatePlan } from '../schemas/plan.js';
import type { RolloutInput } from '../schemas/rollout.js';
import { resolvePlan, toRolloutInput } from '../policy/plan-resolution.js';
import { readHostInventories } from '../transport/host-inventories.js';
import { storeRolloutInput } from '../transport/rollout-hosts.js';

/**
 * A window resolves its plan when it opens, against the inventory of that moment: work done in an
 * earlier window (or by hand) shows as already done, so each window picks up only what is left.
 */
export function createWindowActivities(deps: { nc: NatsConnection }) {
  return {
    /**
     * The rollout of this firing, its hosts stored in KV under the firing's run id (a retry writes the
     * same pages again); no hosts, no pages and an empty list.
     */
    async resolvePlanNow(plan: unknown, source: string): Promise<RolloutInput> {
      const valid = validatePlan(plan, source);
      const ctx = Context.current();
      // Heartbeats while a large fleet's inventory streams in: a worker that died mid-read is noticed.
      const inventories = await readHostInventories(deps.nc, (hosts) => ctx.heartbeat({ inventoriesRead: hosts }));
      const input = toRolloutInput(valid, resolvePlan(valid, inventories));
      if (input.hosts.length === 0) return input;
      return storeRolloutInput(deps.nc, input, `window.${(ctx.info.workflowExecution?.runId ?? randomUUID()).toLowerCase()}`);
    },
  };
}

export type WindowActivities = ReturnType<typeof createWindowActivities>;
