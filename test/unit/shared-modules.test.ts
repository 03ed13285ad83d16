import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { bundleWorkflowCode } from '@temporalio/worker';
import { workflowBundleOptions } from '../../cli/worker.js';

/** Each module of a webpack bundle by its id, with the ids it requires. */
function moduleGraph(code: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const starts = [...code.matchAll(/^\/\*\*\*\/ "([^"]+)"$/gm)];
  starts.forEach((m, i) => {
    const body = code.slice(m.index, starts[i + 1]?.index ?? code.length);
    graph.set(m[1] ?? '', [...body.matchAll(/__webpack_require__\(\/\*! [^*]* \*\/ "([^"]+)"\)/g)].map((r) => r[1] ?? ''));
  });
  return graph;
}

void describe('modules the workflows share', () => {
  void it('are all imported by shared-modules itself, which freezes each one level deep (the SDK would freeze their schemas)', async () => {
    const { code } = await bundleWorkflowCode(workflowBundleOptions());
    const graph = moduleGraph(code);
    // Module ids are paths relative to the bundling process's working directory.
    const root = [...graph.keys()].find((id) => id.endsWith('/workflows/shared-modules.js'));
    assert.ok(root, 'the bundle holds workflows/shared-modules.js');
    const ours = (id: string): boolean => !id.includes('node_modules') && id !== root;
    const direct = new Set((graph.get(root) ?? []).filter(ours));
    const reachable = new Set<string>();
    const walk = (id: string): void => {
      for (const dep of graph.get(id) ?? []) {
        if (!ours(dep) || reachable.has(dep)) continue;
        reachable.add(dep);
        walk(dep);
      }
    };
    walk(root);
    assert.ok([...direct].some((id) => id.endsWith('/schemas/passthrough.js')), `shared-modules imports the schemas: ${[...direct].join(', ')}`);
    assert.deepEqual([...reachable].sort(), [...direct].sort(), 'a module the shared ones import is missing from workflows/shared-modules.ts');
    assert.match(code, /preloadModules = function preloadModules\(\) \{\s*__webpack_require__\([^)]*"[^"]*\/workflows\/shared-modules\.js"\);\s*\}/);
  });
});
