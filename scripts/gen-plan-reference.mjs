#!/usr/bin/env node
// Writes docs/plan-reference.md from the plan schema (schemas/plan.ts) through the compiled generator.
// Run after a build (`npm run build`):
//   node scripts/gen-plan-reference.mjs          rewrite the file
//   node scripts/gen-plan-reference.mjs --check  exit 1 when the committed file is out of date
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const generator = join(root, 'dist', 'cli', 'plan-reference.js');
if (!existsSync(generator)) {
  process.stderr.write('gen-plan-reference: dist/ is not built yet: run `npm run build` first\n');
  process.exit(1);
}
const { renderPlanReference, PLAN_REFERENCE_FILE } = await import(pathToFileURL(generator).href);
const target = join(root, PLAN_REFERENCE_FILE);
const text = renderPlanReference();
if (process.argv.includes('--check')) {
  const current = existsSync(target) ? readFileSync(target, 'utf8') : '';
  if (current !== text) {
    process.stderr.write(`gen-plan-reference: ${PLAN_REFERENCE_FILE} is out of date: run \`node scripts/gen-plan-reference.mjs\`\n`);
    process.exit(1);
  }
  process.stdout.write(`${PLAN_REFERENCE_FILE} is up to date\n`);
} else {
  writeFileSync(target, text);
  process.stdout.write(`wrote ${PLAN_REFERENCE_FILE}\n`);
}
