/**
 * What every workflow a worker runs shares instead of building its own: the schemas (zod objects) and
 * the pure policy they feed. The worker's bundle preloads this module (`preloadModules`, see
 * cli/worker.ts): it and its imports are evaluated once, before any workflow exists, while every other
 * module of the bundle is evaluated again for each new workflow. Each cached workflow held 1.2 MiB of
 * heap for its own copy of the schemas (a host entity stays cached for its idle hour); with them shared,
 * 0.12 MiB. With `node dist/bench/fleet.bench.js --only rollout --hosts 200 --parallel 20`, the
 * worker's RSS per host after the first wave went from 2.21 MiB to 0.30 MiB.
 *
 * The SDK deep-freezes what preloaded modules export, so that workflows cannot leak state to each other
 * through them. Zod schemas cannot be frozen: zod memoizes into them on first use (bound methods,
 * derived internals, a parse function that replaces itself after its first run). Each module here is
 * frozen one level deep instead, which the SDK's deep freeze stops at: its bindings cannot change, and
 * its schemas stay as usable as in any Node process that shares one schema across requests. What they
 * hold is not workflow state: a schema's memo is the same for every workflow that parses with it.
 *
 * Every module of ours that these import must be listed here (test/unit/shared-modules.test.ts checks
 * the bundle): one left out would be deep-frozen, and the first parse with its schemas would throw.
 */
import * as errors from '../schemas/errors.js';
import * as ids from '../schemas/ids.js';
import * as pciAddress from '../schemas/pci-address.js';
import * as inventory from '../schemas/inventory.js';
import * as passthrough from '../schemas/passthrough.js';
import * as rollout from '../schemas/rollout.js';
import * as window from '../schemas/window.js';
import * as hotplugThrottle from '../policy/hotplug-throttle.js';
import * as passthroughPolicy from '../policy/passthrough-policy.js';

export const SHARED_MODULES = { errors, ids, pciAddress, inventory, passthrough, rollout, window, hotplugThrottle, passthroughPolicy };

// In the bundle a module's exports are a plain object; under Node (tests) a module namespace, which
// is not extensible already and cannot be frozen.
for (const exports of Object.values(SHARED_MODULES)) if (Object.isExtensible(exports)) Object.freeze(exports);
