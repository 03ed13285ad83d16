#!/usr/bin/env node
// Runs the compiled test files with Node's test runner. Usage: run-tests.mjs [unit|workflow|integration ...]
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const suites = process.argv.slice(2);
const testRoot = join(root, 'dist', 'test');

function collect(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return collect(path);
    return name.endsWith('.test.js') ? [path] : [];
  });
}

const files = collect(testRoot)
  .filter((f) => suites.length === 0 || suites.some((s) => relative(testRoot, f).startsWith(`${s}/`)))
  .sort();
if (files.length === 0) {
  process.stderr.write(`no test files found under ${testRoot} for ${suites.join(', ') || 'all suites'}\n`);
  process.exit(1);
}
const res = spawnSync(
  process.execPath,
  ['--enable-source-maps', '--test', '--test-reporter=spec', '--test-concurrency=1', '--test-timeout=300000', ...files],
  { cwd: root, stdio: 'inherit' },
);
process.exit(res.status ?? 1);
