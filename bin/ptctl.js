#!/usr/bin/env node
// Thin launcher: the CLI is compiled to dist/ by `npm run setup` (which runs the TypeScript build).
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const entry = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
if (!existsSync(entry)) {
  process.stderr.write('ptctl: not built yet: run `npm run setup` in the project folder first\n');
  process.exit(1);
}
const { main } = await import(pathToFileURL(entry).href);
const code = await main(process.argv.slice(2));
// Exit explicitly: a one-shot command must not linger on an idle gRPC or NATS socket.
process.exit(code);
