import { spawn } from 'node:child_process';
import { copyFile, cp, mkdir, rename, rm, stat } from 'node:fs/promises';
import { existsSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { PROJECT_ROOT } from '../../cli/tools.js';
import { SERVER_VERSIONS, containerEnv } from './engine.js';

/**
 * The images of the local profile and of PTC_TEST_STACK=containers, all built here: no registry is
 * reachable (DESIGN §7), so nothing may be pulled. Layers are cached by the engine (its data root is
 * under .cache/docker/), the debootstrap base as a tarball under .cache/containers/.
 */
export const CACHE_DIR = join(PROJECT_ROOT, '.cache', 'containers');
const HERE = join(PROJECT_ROOT, 'test', 'containers');
const TOOLS_BIN = join(PROJECT_ROOT, '.tools', 'bin');

export const IMAGES = {
  base: 'ptctl-local/bookworm-minbase:1',
  node: `ptctl-local/node:${process.versions.node}`,
  nats: `ptctl-local/nats:${SERVER_VERSIONS.nats}`,
  temporal: `ptctl-local/temporal:${SERVER_VERSIONS.temporal}`,
  ptctl: 'ptctl-local/ptctl:dev',
} as const;

/** Debian's client matches the 20.10 engine; its legacy builder needs no BuildKit. */
export const DOCKER_CLI = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';

export class CommandError extends Error {}

/** The CA bundle this machine's npm trusts (NODE_EXTRA_CA_CERTS, else Debian's bundle). */
const MACHINE_CA_BUNDLE = process.env.NODE_EXTRA_CA_CERTS || '/etc/ssl/certs/ca-certificates.crt';

/** Runs a command (no shell) and returns its stdout; a failure carries the output's tail. */
export function run(cmd: string, args: readonly string[], opts: { env?: NodeJS.ProcessEnv; input?: string; quiet?: boolean } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e) => reject(new CommandError(`${cmd}: ${e.message}`)));
    child.on('close', (code) => {
      if (code === 0) resolve(out);
      else reject(new CommandError(`${cmd} ${args.join(' ')} exited with ${code}: ${(err || out).trim().split('\n').slice(-8).join('\n')}`));
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** The docker CLI against the same engine as testcontainers (DOCKER_HOST, else the project's). */
export const docker = (args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<string> => run(DOCKER_CLI, args, { env: { ...containerEnv({ ...process.env }), ...env } });

export async function imageExists(tag: string): Promise<boolean> {
  try {
    await docker(['image', 'inspect', '--format', '{{.Id}}', tag]);
    return true;
  } catch {
    return false;
  }
}

/** `debootstrap --variant=minbase bookworm`, once, kept as a tarball; imported when the engine lacks it. */
async function ensureBase(say: (line: string) => void): Promise<void> {
  if (await imageExists(IMAGES.base)) return;
  const tarball = join(CACHE_DIR, 'bookworm-minbase.tar');
  if (!existsSync(tarball)) {
    const rootfs = join(CACHE_DIR, 'rootfs.tmp');
    await rm(rootfs, { recursive: true, force: true });
    await mkdir(CACHE_DIR, { recursive: true });
    say('debootstrap --variant=minbase bookworm (once, about 2 minutes)');
    await run('debootstrap', ['--variant=minbase', 'bookworm', rootfs, 'http://deb.debian.org/debian']);
    await run('tar', ['-C', rootfs, '-cf', `${tarball}.tmp`, '.']);
    await rename(`${tarball}.tmp`, tarball);
    await rm(rootfs, { recursive: true, force: true });
  }
  say(`docker import ${tarball} ${IMAGES.base}`);
  await docker(['import', tarball, IMAGES.base]);
}

/** Copies `from` into the build context unless an identical-looking copy is there (the engine checksums it anyway). */
async function stage(from: string, to: string): Promise<void> {
  const src = await stat(from);
  const dst = await stat(to).catch(() => null);
  if (dst && dst.size === src.size && dst.mtimeMs >= src.mtimeMs) return;
  await mkdir(dirname(to), { recursive: true });
  if (src.isDirectory()) {
    await rm(to, { recursive: true, force: true });
    await cp(from, to, { recursive: true, preserveTimestamps: true });
  } else await copyFile(from, to);
}

async function build(tag: string, dockerfile: string, context: string, buildArgs: Record<string, string> = {}, network?: 'host'): Promise<void> {
  // --force-rm: a failed step must not leave its intermediate container behind.
  const args = ['build', '--quiet', '--force-rm', '-t', tag, '-f', dockerfile];
  for (const [k, v] of Object.entries(buildArgs)) args.push('--build-arg', `${k}=${v}`);
  if (network) args.push('--network', network);
  await docker([...args, context]);
}

/** The nats-server and Temporal dev-server images (what PTC_TEST_STACK=containers needs). */
export async function ensureServerImages(say: (line: string) => void = () => undefined): Promise<void> {
  for (const bin of ['nats-server', 'temporal']) {
    if (!existsSync(join(TOOLS_BIN, bin))) throw new CommandError(`${bin} is not in .tools/bin: run \`npm run setup\` first`);
  }
  await ensureBase(say);
  await build(IMAGES.nats, join(HERE, 'nats.Dockerfile'), TOOLS_BIN, { BASE_IMAGE: IMAGES.base });
  await build(IMAGES.temporal, join(HERE, 'temporal.Dockerfile'), TOOLS_BIN);
}

/** ptctl's own Dockerfile on a node image made of the debootstrap base and this machine's node. */
export async function ensurePtctlImage(say: (line: string) => void = () => undefined): Promise<void> {
  await ensureBase(say);
  const ctx = join(CACHE_DIR, 'node');
  await stage(realpathSync(process.execPath), join(ctx, 'node'));
  const npmDir = join(dirname(realpathSync(process.execPath)), '..', 'lib', 'node_modules', 'npm');
  if (!existsSync(npmDir)) throw new CommandError(`npm is not at ${npmDir}; the ptctl image's build stage needs it`);
  await stage(npmDir, join(ctx, 'npm'));
  await stage(MACHINE_CA_BUNDLE, join(ctx, 'ca-certificates.crt'));
  await build(IMAGES.node, join(HERE, 'node.Dockerfile'), ctx, { BASE_IMAGE: IMAGES.base });
  say(`docker build ${IMAGES.ptctl} (npm ci and tsc inside; cached layers after the first run)`);
  // The build stage runs `npm ci` against the npm registry: host networking, never a bridge.
  await build(IMAGES.ptctl, join(PROJECT_ROOT, 'Dockerfile'), PROJECT_ROOT, { NODE_IMAGE: IMAGES.node }, 'host');
}

/** For the report: which images exist and how large they are. */
export async function describeImages(): Promise<string> {
  return docker(['image', 'ls', '--format', '{{.Repository}}:{{.Tag}} {{.Size}}', 'ptctl-local/*']);
}
