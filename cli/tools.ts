import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ErrorCode, PtcError } from '../schemas/errors.js';

/** The project root (where package.json lives), from dist/cli or cli. */
export const PROJECT_ROOT = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../../' : '../', import.meta.url));

export type ServerBinary = 'temporal' | 'temporal-test-server' | 'nats-server';

const ENV_OVERRIDE: Record<ServerBinary, string> = {
  temporal: 'PTC_TEMPORAL_BIN',
  'temporal-test-server': 'PTC_TEMPORAL_TEST_SERVER_BIN',
  'nats-server': 'PTC_NATS_SERVER_BIN',
};

/** Path of a server binary: the user's own (env) first, else the one `npm run setup` put in .tools/. */
export function serverBinary(name: ServerBinary): string {
  const own = process.env[ENV_OVERRIDE[name]];
  const path = own && own.length > 0 ? own : `${PROJECT_ROOT}.tools/bin/${name}`;
  if (!existsSync(path)) {
    throw new PtcError(
      ErrorCode.STACK_FAILED,
      own ? `${ENV_OVERRIDE[name]} points at ${own}, which does not exist` : `${name} is not installed: run \`npm run setup\` (or set ${ENV_OVERRIDE[name]} to your own ${name} binary)`,
    );
  }
  return path;
}

/** The ptctl entry point, for starting worker and agent child processes of the same build. */
export const PTCTL_ENTRY = `${PROJECT_ROOT}bin/ptctl.js`;
