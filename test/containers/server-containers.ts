import { createWriteStream, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';
import type { StartedTestContainer } from 'testcontainers';
import type { ServerLauncher, ServerProcess } from '../../cli/dev-stack.js';
import { containerEnv, requireEngine } from './engine.js';
import { IMAGES, ensureServerImages } from './images.js';

/** Every image is built here first; a pull could only fail (no registry) or fetch something unreviewed. */
const NEVER_PULL = { shouldPull: (): boolean => false };

let images: Promise<void> | null = null;

/** A server container seen as a process: its exit is the engine's `wait`, its stop removes it. */
class ServerContainer implements ServerProcess {
  exit: ServerProcess['exit'] = null;
  private readonly exited: Promise<void>;
  private stopped: Promise<unknown> | null = null;

  constructor(
    readonly name: string,
    readonly logFile: string,
    private readonly container: StartedTestContainer,
    waited: Promise<{ StatusCode: number }>,
  ) {
    this.exited = waited.then(
      (r) => void (this.exit = { code: r.StatusCode, signal: null }),
      () => void (this.exit = { code: null, signal: null }),
    );
  }

  waitForExit(): Promise<void> {
    return this.exited;
  }

  /** Stops (10 s grace, like a local process) and removes the container, also one that exited on its own. */
  async stop(): Promise<void> {
    this.stopped ??= this.container.stop({ timeout: 10_000, remove: true, removeVolumes: true });
    await this.stopped;
    await this.exited;
  }
}

/**
 * PTC_TEST_STACK=containers: nats-server and the Temporal dev server from the locally built images,
 * with host networking (the stack's addresses are 127.0.0.1) and the stack's dir mounted at its own path,
 * so the arguments are exactly those of the local processes.
 */
export const containerServers: ServerLauncher = async (binary, args, opts) => {
  await requireEngine();
  images ??= ensureServerImages();
  await images;
  containerEnv();
  const { GenericContainer, getContainerRuntimeClient } = await import('testcontainers');
  mkdirSync(dirname(opts.logFile), { recursive: true });
  const log = createWriteStream(opts.logFile, { flags: 'a' });
  const started = await new GenericContainer(binary === 'nats-server' ? IMAGES.nats : IMAGES.temporal)
    .withPullPolicy(NEVER_PULL)
    .withNetworkMode('host')
    .withBindMounts([{ source: opts.dir, target: opts.dir, mode: 'rw' }])
    .withCommand([...args])
    .withLogConsumer((stream: Readable) => stream.pipe(log, { end: false }))
    .start();
  const client = await getContainerRuntimeClient();
  const waited = client.container.getById(started.getId()).wait() as Promise<{ StatusCode: number }>;
  return new ServerContainer(binary, opts.logFile, started, waited);
};
