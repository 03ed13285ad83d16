import { Context } from '@temporalio/activity';
import type { NatsConnection } from '@nats-io/transport-node';
import { validatePlan } from '../schemas/plan.js';
import type { RolloutInput } from '../schemas/rollout.js';
import { resolvePlan, toRolloutInput } from '../policy/plan-resolution.js';
import { readHostInventories } from '../transport/host-inventories.js';

/**
 * A window resolves its plan when it opens, against the inventory of that moment: work done in an
 * earlier window (or by hand) shows as already done, so each window picks up only what is left.
 */
export function createWindowActivities(deps: { nc: NatsConnection }) {
  return {
    async resolvePlanNow(plan: unknown, source: string): Promise<RolloutInput> {
      const valid = validatePlan(plan, source);
      // Heartbeats while a large fleet's inventory streams in: a worker that died mid-read is noticed.
      const inventories = await readHostInventories(deps.nc, (hosts) => Context.current().heartbeat({ inventoriesRead: hosts }));
      return toRolloutInput(valid, resolvePlan(valid, inventories));
    },
  };
}

export type WindowActivities = ReturnType<typeof createWindowActivities>;
