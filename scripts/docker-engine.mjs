#!/usr/bin/env node
// The project's own Docker engine (DESIGN §7): Debian's docker.io, started as root with no bridge,
// no iptables and no forwarding, its data and sockets under the git-ignored .cache/docker/, so every
// container runs with host networking and all traffic stays on 127.0.0.1.
//
//   node scripts/docker-engine.mjs start   # installs docker.io/docker-compose/debootstrap when missing, starts dockerd
//   node scripts/docker-engine.mjs stop    # stops the dockerd this script started
//   node scripts/docker-engine.mjs status  # exit 0 when the engine answers
//   node scripts/docker-engine.mjs check-no-pull  # exit 1 when the daemon log shows any image pull
//
// Prints DOCKER_HOST=… on start. Node built-ins only (CI runs it before anything else).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const root = fileURLToPath(new URL('..', import.meta.url));
/** Also named in test/helpers/container-stack.ts (the tests' default DOCKER_HOST). */
export const ENGINE_DIR = join(root, '.cache', 'docker');
export const ENGINE_SOCKET = join(ENGINE_DIR, 'docker.sock');
export const ENGINE_HOST = `unix://${ENGINE_SOCKET}`;
export const ENGINE_LOG = join(ENGINE_DIR, 'dockerd.log');
const PID_FILE = join(ENGINE_DIR, 'docker.pid');

/** DESIGN §7: only the `host` and `none` networks exist; never a bridge, never a NAT rule. */
export const DOCKERD_FLAGS = ['--bridge=none', '--iptables=false', '--ip6tables=false', '--ip-forward=false', '--ip-masq=false'];

const PACKAGES = [
  { bin: 'dockerd', pkg: 'docker.io' },
  { bin: 'docker-compose', pkg: 'docker-compose' },
  { bin: 'debootstrap', pkg: 'debootstrap' },
];

const say = (line) => process.stderr.write(`docker-engine: ${line}\n`);

class EngineError extends Error {}

function onPath(bin) {
  return spawnSync('sh', ['-c', 'command -v "$1"', 'sh', bin], { encoding: 'utf8' }).status === 0 || existsSync(`/usr/sbin/${bin}`);
}

/** Answers true when the engine at `socket` replies to GET /_ping. */
export function ping(socket = ENGINE_SOCKET, timeoutMs = 2000) {
  return new Promise((resolve) => {
    if (!existsSync(socket)) return resolve(false);
    const req = request({ socketPath: socket, path: '/_ping', timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

function installMissing() {
  const missing = PACKAGES.filter((p) => !onPath(p.bin));
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) throw new EngineError(`${missing.map((p) => p.pkg).join(', ')} missing and this is not root: install them with apt-get as root`);
  const names = missing.map((p) => p.pkg);
  say(`installing ${names.join(' ')} from Debian`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  let res = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...names], { stdio: ['ignore', 'ignore', 'inherit'], env });
  if (res.status !== 0) {
    // A fresh machine may have empty package lists.
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore', env });
    res = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...names], { stdio: ['ignore', 'ignore', 'inherit'], env });
  }
  if (res.status !== 0) throw new EngineError(`apt-get install ${names.join(' ')} failed (exit ${res.status})`);
}

function recordedPid() {
  try {
    const pid = Number(readFileSync(PID_FILE, 'utf8').trim());
    process.kill(pid, 0);
    return pid;
  } catch {
    return null;
  }
}

/** Starts dockerd unless it already answers. Returns whether this call started it. */
export async function startEngine({ timeoutMs = 60_000 } = {}) {
  if (await ping()) return { started: false, host: ENGINE_HOST };
  installMissing();
  if (process.getuid?.() !== 0) throw new EngineError('dockerd must be started as root');
  if (recordedPid() !== null) throw new EngineError(`a dockerd (pid ${recordedPid()}) holds ${ENGINE_DIR} but does not answer; stop it with \`node scripts/docker-engine.mjs stop\``);
  mkdirSync(join(ENGINE_DIR, 'data'), { recursive: true });
  rmSync(ENGINE_SOCKET, { force: true });
  const log = openSync(ENGINE_LOG, 'a');
  const args = [
    ...DOCKERD_FLAGS,
    // Debug logging records every API call, so a pull (POST /images/create?fromImage=…) cannot go unseen.
    '--debug',
    '--data-root', join(ENGINE_DIR, 'data'),
    '--exec-root', join(ENGINE_DIR, 'exec'),
    '--pidfile', PID_FILE,
    '-H', ENGINE_HOST,
  ];
  const child = spawn('dockerd', args, { detached: true, stdio: ['ignore', log, log] });
  child.unref();
  say(`dockerd ${args.join(' ')} (pid ${child.pid}, log ${ENGINE_LOG})`);
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await ping()) return { started: true, host: ENGINE_HOST };
    if (child.exitCode !== null) break;
    await sleep(250);
  }
  throw new EngineError(`dockerd did not answer on ${ENGINE_SOCKET} within ${timeoutMs / 1000} s; see ${ENGINE_LOG}`);
}

/** Lines of the daemon log that show a pull (an import is `fromSrc`, a pull `fromImage`), from byte `from` on. */
export function pullLines(from = 0) {
  let text = '';
  try {
    text = readFileSync(ENGINE_LOG, 'utf8').slice(from);
  } catch {
    return [];
  }
  return text.split('\n').filter((l) => /Calling \w+ \S*(images\/create\?\S*fromImage|\/distribution\/|plugins\/pull)|pull access|Trying to pull|Pulling /i.test(l));
}

/** Stops the dockerd recorded in .cache/docker/docker.pid (SIGTERM, then SIGKILL after 20 s). */
export async function stopEngine() {
  const pid = recordedPid();
  if (pid === null) return false;
  process.kill(pid, 'SIGTERM');
  const until = Date.now() + 20_000;
  while (Date.now() < until) {
    try {
      process.kill(pid, 0);
    } catch {
      return true;
    }
    await sleep(200);
  }
  process.kill(pid, 'SIGKILL');
  return true;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const cmd = process.argv[2];
  try {
    if (cmd === 'start') {
      const { started } = await startEngine();
      say(started ? 'dockerd started' : 'dockerd already running');
      process.stdout.write(`DOCKER_HOST=${ENGINE_HOST}\n`);
    } else if (cmd === 'stop') {
      say((await stopEngine()) ? 'dockerd stopped' : 'no dockerd of this project was running');
    } else if (cmd === 'check-no-pull') {
      const pulls = pullLines();
      say(pulls.length === 0 ? `no pull in ${ENGINE_LOG}` : `${pulls.length} pull(s) in ${ENGINE_LOG}:\n${pulls.slice(0, 5).join('\n')}`);
      process.exit(pulls.length === 0 ? 0 : 1);
    } else if (cmd === 'status') {
      const up = await ping();
      say(up ? `answering on ${ENGINE_SOCKET}` : `not answering on ${ENGINE_SOCKET}`);
      process.exit(up ? 0 : 1);
    } else {
      say('usage: docker-engine.mjs start|stop|status|check-no-pull');
      process.exit(2);
    }
  } catch (err) {
    if (!(err instanceof EngineError)) throw err;
    process.stderr.write(`docker-engine failed: ${err.message}\n`);
    process.exit(1);
  }
}
