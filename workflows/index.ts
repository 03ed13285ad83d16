export { passthroughWorkflow } from './passthrough-workflow.js';
export { releaseWorkflow } from './release-workflow.js';
export { hostEntityWorkflow } from './host-entity.js';
export { hostRolloutWorkflow } from './host-rollout-workflow.js';
export { rolloutWorkflow } from './rollout-workflow.js';
export { windowWorkflow } from './window-workflow.js';
