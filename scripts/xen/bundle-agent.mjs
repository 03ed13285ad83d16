#!/usr/bin/env node
// Single-file bundle of ptctl's agent (linux backend) for the real-Xen dom0 (issue #7): esbuild
// bundles test/xen/agent-entry.mjs (which imports dist/cli/linux-agent.js, so run `npm run build`
// first) with every dependency into <out>/ptctl-agent.mjs, for node20, ESM. pino writes to fd 2
// through sonic-boom (no worker-thread transports), so nothing is loaded from disk at run time.
//
//   node scripts/xen/bundle-agent.mjs [OUT_DIR]     (default .cache/xen/agent)
import { mkdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const out = path.resolve(process.argv[2] ?? path.join(repo, '.cache', 'xen', 'agent'));
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const outfile = path.join(out, 'ptctl-agent.mjs');
const result = await build({
  entryPoints: [path.join(repo, 'test', 'xen', 'agent-entry.mjs')],
  outfile,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  // CommonJS dependencies (pino, sonic-boom) call require() for node built-ins: give the ESM bundle one.
  banner: { js: "import { createRequire as __ptcCreateRequire } from 'node:module'; const require = __ptcCreateRequire(import.meta.url);" },
  legalComments: 'none',
  logLevel: 'warning',
  metafile: true,
});
const inputs = Object.keys(result.metafile.inputs);
const native = inputs.filter((f) => f.endsWith('.node'));
if (native.length) {
  process.stderr.write(`bundle-agent: native modules cannot run from a single file: ${native.join(', ')}\n`);
  process.exit(1);
}
process.stdout.write(`bundle-agent: ${outfile} (${(statSync(outfile).size / 1024).toFixed(0)} KiB, ${inputs.length} inputs)\n`);
