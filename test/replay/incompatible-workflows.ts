// Test-only workflow module: the real workflows, except a saga that starts with a new, unpatched timer.
// Replaying a stored saga history on this code must fail; the replay test uses it to prove it can.
import { sleep } from '@temporalio/workflow';
import { passthroughWorkflow as realPassthroughWorkflow } from '../../workflows/passthrough-workflow.js';

export * from '../../workflows/index.js';

export async function passthroughWorkflow(...args: Parameters<typeof realPassthroughWorkflow>): ReturnType<typeof realPassthroughWorkflow> {
  await sleep('1 second');
  return realPassthroughWorkflow(...args);
}
