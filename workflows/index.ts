import { setWorkflowOptions, workflowInfo } from '@temporalio/workflow';
import type { VersioningBehavior, WorkflowDefinitionOptions } from '@temporalio/common';
import { passthroughWorkflow } from './passthrough-workflow.js';
import { releaseWorkflow } from './release-workflow.js';
import { hostEntityWorkflow } from './host-entity.js';
import { hostRolloutWorkflow } from './host-rollout-workflow.js';
import { rolloutWorkflow } from './rollout-workflow.js';
import { windowWorkflow } from './window-workflow.js';

// Worker Deployment Versioning (README "Upgrading ptctl while work runs"). Short-lived workflows are
// PINNED: they finish on the build that started them, so a code change never replays their history.
// The long-lived ones (an entity lives as long as its host, a rollout for hours) AUTO_UPGRADE to the
// current build at their next task: every change to their code must be guarded by patched() and pass
// the replay corpus. The behavior is declared only on a versioned worker: the server rejects every
// workflow task of an unversioned worker (`ptctl worker --unversioned`, the test servers) that names one.
const behavior = (versioningBehavior: VersioningBehavior) => (): WorkflowDefinitionOptions =>
  workflowInfo().currentDeploymentVersion?.deploymentName ? { versioningBehavior } : {};
setWorkflowOptions(behavior('PINNED'), passthroughWorkflow);
setWorkflowOptions(behavior('PINNED'), releaseWorkflow);
setWorkflowOptions(behavior('PINNED'), hostRolloutWorkflow);
setWorkflowOptions(behavior('PINNED'), windowWorkflow);
setWorkflowOptions(behavior('AUTO_UPGRADE'), hostEntityWorkflow);
setWorkflowOptions(behavior('AUTO_UPGRADE'), rolloutWorkflow);

export { passthroughWorkflow, releaseWorkflow, hostEntityWorkflow, hostRolloutWorkflow, rolloutWorkflow, windowWorkflow };
