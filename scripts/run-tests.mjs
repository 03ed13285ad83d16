#!/usr/bin/env node
// Runs the compiled test files with Node's test runner. Usage: run-tests.mjs [unit|workflow|integration|integration/<file> ...]
// (integration/passthrough runs dist/test/integration/passthrough.test.js alone).
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

/**
 * Real-system tests too slow for the everyday `npm test` (each starts several stacks and waits out
 * reboots); they run when named (`npm run test:upgrade`), and `.ci/run` runs them as their own step.
 */
const SLOW = new Set(['integration/upgrade.test.js']);

const files = collect(testRoot)
  .filter((f) => (suites.length === 0 ? !SLOW.has(relative(testRoot, f)) : suites.some((s) => relative(testRoot, f).startsWith(`${s}/`) || relative(testRoot, f) === `${s}.test.js`)))
  .sort();
if (files.length === 0) {
  process.stderr.write(`no test files found under ${testRoot} for ${suites.join(', ') || 'all suites'}\n`);
  process.exit(1);
}
// PTC_TEST_STACK=containers needs an engine: without one, say so once and stop, rather than fail each file.
if (process.env.PTC_TEST_STACK === 'containers' && files.some((f) => relative(testRoot, f).startsWith('integration/'))) {
  const { ping, ENGINE_SOCKET } = await import('./docker-engine.mjs');
  const host = process.env.DOCKER_HOST || `unix://${ENGINE_SOCKET}`;
  const socket = host.startsWith('unix://') ? host.slice('unix://'.length) : null;
  if (socket === null || !(await ping(socket))) {
    process.stderr.write(
      socket === null
        ? `PTC_TEST_STACK=containers: DOCKER_HOST=${host} is not a unix socket this runner can check; use unix://… or run the test files directly.\n`
        : `PTC_TEST_STACK=containers: no container engine answers at ${host}; start one with \`node scripts/docker-engine.mjs start\` (or set DOCKER_HOST), or unset PTC_TEST_STACK to use local processes.\n`,
    );
    process.exit(1);
  }
}
const res = spawnSync(
  process.execPath,
  ['--enable-source-maps', '--test', '--test-reporter=spec', '--test-concurrency=1', '--test-timeout=300000', ...files],
  { cwd: root, stdio: 'inherit' },
);
process.exit(res.status ?? 1);
