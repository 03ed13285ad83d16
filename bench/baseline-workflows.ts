/**
 * The bare Temporal baseline of the rollout bench: a parent that keeps `parallel` children running
 * until `hosts` have run, each child doing `steps` no-op activities in sequence, the same shape of
 * work one ptctl host costs, with none of ptctl's logic. Bundled by the bench's own worker.
 */
import { executeChild, proxyActivities } from '@temporalio/workflow';

export interface BaselineInput {
  hosts: number;
  parallel: number;
  steps: number;
}

const { noop } = proxyActivities<{ noop(step: number): Promise<number> }>({ startToCloseTimeout: '1 minute' });

export async function baselineChild(steps: number): Promise<number> {
  for (let i = 0; i < steps; i++) await noop(i);
  return steps;
}

export async function baselineParent(input: BaselineInput): Promise<number> {
  let next = 0;
  let done = 0;
  const lane = async (): Promise<void> => {
    while (next < input.hosts) {
      const i = next++;
      await executeChild(baselineChild, { workflowId: `baseline/${i}`, args: [input.steps] });
      done++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(input.parallel, input.hosts) }, lane));
  return done;
}
