#!/usr/bin/env node
// Thin launcher: the CLI is compiled to dist/ by `npm run setup` (which runs the TypeScript build).
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const entry = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
if (!existsSync(entry)) {
  process.stderr.write('ptctl: not built yet: run `npm run setup` in the project folder first\n');
  process.exit(1);
}

// A reader that went away (`ptctl hosts --json | head`) is not an error of ours: stop writing.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err) => {
    if (err.code !== 'EPIPE') throw err;
  });
}

/**
 * Resolves once everything written so far to `stream` has been handed to the OS. A pipe takes 64 KiB
 * at once and Node queues the rest; process.exit() drops that queue, so exiting without this cuts
 * `ptctl hosts --json | jq` off at 65,536 bytes. Writes complete in order, so an empty write's
 * callback runs after every earlier one.
 */
const flushed = (stream) =>
  new Promise((resolve) => {
    if (stream.destroyed || stream.writableLength === 0) resolve();
    else stream.write('', () => resolve());
  });

const { main } = await import(pathToFileURL(entry).href);
const code = await main(process.argv.slice(2));
await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
// Exit explicitly: a one-shot command must not linger on an idle gRPC or NATS socket.
process.exit(code);
