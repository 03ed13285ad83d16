/**
 * "Build B" for the upgrade test: the real workflows, except that the PINNED ones (the saga, and the
 * per-host child of rollouts from before operations were queued directly) first wait on a timer. A history started on build A
 * begins with an activity, so replaying it with this code is a non-determinism error: the change is
 * safe only because versioning keeps those histories on A.
 */
import { setWorkflowOptions, sleep } from '@temporalio/workflow';
import type { WorkflowDefinitionOptionsOrGetter } from '@temporalio/common';
import { hostRolloutWorkflow as hostRolloutA, passthroughWorkflow as passthroughA } from '../../workflows/index.js';

export { releaseWorkflow, hostEntityWorkflow, rolloutWorkflow, windowWorkflow } from '../../workflows/index.js';

/** The first command of B's new code, so a history shows which build started it. */
export const B_MARKER_TIMER_MS = 10;

export async function passthroughWorkflow(...args: Parameters<typeof passthroughA>): ReturnType<typeof passthroughA> {
  await sleep(B_MARKER_TIMER_MS);
  return passthroughA(...args);
}

export async function hostRolloutWorkflow(...args: Parameters<typeof hostRolloutA>): ReturnType<typeof hostRolloutA> {
  await sleep(B_MARKER_TIMER_MS);
  return hostRolloutA(...args);
}

// The variants keep the versioning behavior the real build declares for them (PINNED).
const optionsOf = (fn: object): WorkflowDefinitionOptionsOrGetter => (fn as { workflowDefinitionOptions: WorkflowDefinitionOptionsOrGetter }).workflowDefinitionOptions;
setWorkflowOptions(optionsOf(passthroughA), passthroughWorkflow);
setWorkflowOptions(optionsOf(hostRolloutA), hostRolloutWorkflow);
