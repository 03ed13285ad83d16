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
      return toRolloutInput(valid, resolvePlan(valid, await readHostInventories(deps.nc)));
    },
  };
}

export type WindowActivities = ReturnType<typeof createWindowActivities>;
