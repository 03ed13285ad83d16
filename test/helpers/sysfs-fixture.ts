import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HostSpec } from '../../agent/sim/host-spec.js';
import { SimTree } from '../../agent/sim/sim-tree.js';

/**
 * Fixture host trees for the linux backend's unit tests: the simulated hosts' own tree builder and
 * kernel model (agent/sim/), in a temp dir, so a fixture and a `ptctl dev` host are one model.
 */
export type FixtureHostSpec = HostSpec;
export { PCIBACK, procNetRoute } from '../../agent/sim/sim-tree.js';

export class FixtureHost extends SimTree {
  cleanup(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** Builds a fixture host tree in a temp dir; call `cleanup()` when done. */
export function buildFixtureHost(spec: FixtureHostSpec): FixtureHost {
  return new FixtureHost(spec, realpathSync(mkdtempSync(join(tmpdir(), 'ptctl-linux-')))).build();
}
