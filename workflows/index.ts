export { passthroughWorkflow } from './passthrough-workflow.js';
