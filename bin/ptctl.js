#!/usr/bin/env node
// Thin launcher: the CLI is compiled to dist/ by `npm run build` (done by `npm run setup`).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
if (!existsSync(entry)) {
  process.stderr.write('ptctl: not built yet: run `npm run setup` in the project folder first\n');
  process.exit(1);
}
await import(entry);
