export * from './agent-protocol.js';
export * from './errors.js';
export * from './ids.js';
export * from './inventory.js';
export * from './passthrough.js';
export * from './pci-address.js';
export * from './rollout.js';
