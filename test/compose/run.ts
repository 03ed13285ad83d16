// `npm run test:compose`: docker-compose.yml's stack on this machine through its local override
// (docker-compose.local.yml), with a rollout like the demo's driven by `ptctl` with env settings only,
// judged by reading the hosts back; then teardown, leaving no container. One PASS/FAIL line per check.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import getPort from 'get-port';
import { stringify } from 'yaml';
import { PROJECT_ROOT, PTCTL_ENTRY } from '../../cli/tools.js';
import { HostInventory } from '../../schemas/inventory.js';
import { CACHE_DIR, DOCKER_CLI, docker, ensurePtctlImage, ensureServerImages, imageExists, run } from '../containers/images.js';
import { containerEnv } from '../containers/engine.js';
import { BASE_FILE, ComposeFile, LOCAL_DROPPED, LOCAL_OVERRIDE, checkBaseFile, checkLocalOverride, localProfile, normaliseMerged, parseYaml } from './compose-file.js';

const PROJECT = 'ptctl-local';
const HOSTS = ['sim-1', 'sim-2', 'sim-3'];
const DEVICE = '0000:09:00.0';
const GUEST = 'vm-hvm';
/** The runtime user of ptctl's image, which must own the bind-mounted state. */
const PTCTL_UID = 10001;

const t0 = Date.now();
const secs = (ms: number): string => (ms / 1000).toFixed(1);
const note = (line: string): void => void process.stderr.write(`compose: [${secs(Date.now() - t0)} s] ${line}\n`);
const results: Array<{ name: string; ok: boolean }> = [];
function check(name: string, ok: boolean, seen: string): void {
  results.push({ name, ok });
  process.stdout.write(`${ok ? 'PASS' : 'FAIL'} ${name}: ${seen}\n`);
}
const timings: Record<string, number> = {};
async function timed<T>(name: string, f: () => Promise<T>): Promise<T> {
  const start = Date.now();
  try {
    return await f();
  } finally {
    timings[name] = Date.now() - start;
  }
}

/** The project's dockerd, started here unless one already answers; stopped afterwards only if started here. */
async function engine(cmd: 'start' | 'stop' | 'status'): Promise<boolean> {
  try {
    await run(process.execPath, [join(PROJECT_ROOT, 'scripts', 'docker-engine.mjs'), cmd]);
    return true;
  } catch (err) {
    if (cmd === 'status') return false;
    throw err;
  }
}

/** Free 127.0.0.1 ports for every listener of the stack (host networking: they share the machine's). */
async function choosePorts(): Promise<Record<string, string>> {
  const names = [
    'TEMPORAL_PORT', 'TEMPORAL_HTTP_PORT', 'TEMPORAL_UI_PORT', 'TEMPORAL_METRICS_PORT',
    ...[1, 2, 3].flatMap((n) => [`NATS_${n}_PORT`, `NATS_${n}_CLUSTER_PORT`, `NATS_${n}_MONITOR_PORT`]),
  ];
  const taken: number[] = [];
  const out: Record<string, string> = {};
  for (const n of names) {
    const port = await getPort({ host: '127.0.0.1', exclude: taken });
    taken.push(port);
    out[`PTC_LOCAL_${n}`] = String(port);
  }
  return out;
}

function ptctl(args: readonly string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // Env settings only: no --dir and no connection file may be consulted.
    const child = spawn(process.execPath, [PTCTL_ENTRY, ...args], { cwd: CACHE_DIR, env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

async function main(): Promise<number> {
  containerEnv();
  const dockerEnv = containerEnv({ ...process.env });
  const compose = (file: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<string> =>
    run('docker-compose', ['-p', PROJECT, '-f', file, ...args], { env: { ...dockerEnv, ...env } });

  // Static checks first: nothing starts from a file that fails them.
  const baseText = await readFile(BASE_FILE, 'utf8');
  const baseProblems = checkBaseFile(baseText);
  const base = parseYaml(ComposeFile, baseText, 'docker-compose.yml').value;
  const overrideProblems = base ? checkLocalOverride(await readFile(LOCAL_OVERRIDE, 'utf8'), base) : [];
  check('compose files pass the static checks', baseProblems.length + overrideProblems.length === 0, [...baseProblems, ...overrideProblems].join('; ') || 'docker-compose.yml + docker-compose.local.yml');
  if (!base || baseProblems.length + overrideProblems.length > 0) return 1;

  const wasRunning = await engine('status');
  if (!wasRunning) await timed('engine start', () => engine('start'));
  note(wasRunning ? 'engine already running' : 'engine started (scripts/docker-engine.mjs)');
  // A fresh clone has no cache folder yet (the images are built further down, into it).
  await mkdir(CACHE_DIR, { recursive: true });
  const dir = await mkdtemp(join(CACHE_DIR, 'compose-run-'));
  const composeFile = join(dir, 'docker-compose.effective.yml');
  let ports: Record<string, string> = {};
  try {
    await timed('images', async () => {
      await ensureServerImages(note);
      await ensurePtctlImage(note);
    });
    note(`images ready (${secs(timings.images ?? 0)} s)`);

    // Bind-mounted state, owned by ptctl's runtime user (the NATS nodes read only auth/).
    for (const sub of ['auth', 'creds', 'hosts', 'nats-1', 'nats-2', 'nats-3']) {
      await mkdir(join(dir, sub), { recursive: true });
      if (['auth', 'creds', 'hosts'].includes(sub)) await chown(join(dir, sub), PTCTL_UID, PTCTL_UID);
    }
    ports = await choosePorts();
    const env = { PTC_LOCAL_DIR: dir, ...ports };
    // Leftovers of an interrupted run go first.
    await compose(BASE_FILE, ['down', '-v', '--remove-orphans'], env).catch(() => '');

    const merged = await compose(BASE_FILE, ['-f', LOCAL_OVERRIDE, 'config'], env);
    const { parse } = await import('yaml');
    const profile = localProfile(ComposeFile.parse(normaliseMerged(parse(merged))));
    await writeFile(composeFile, stringify(profile));
    for (const img of new Set(Object.values(profile.services).map((s) => s.image))) {
      if (!(await imageExists(img))) throw new Error(`${img} is not built; refusing to let compose pull it`);
    }
    check('effective local file: host networking, local images only', true, `${Object.keys(profile.services).join(', ')} (dropped: ${LOCAL_DROPPED.join(', ')})`);

    await timed('compose up', () => compose(composeFile, ['up', '-d', '--no-build'], env));
    note(`docker-compose up -d done (${secs(timings['compose up'] ?? 0)} s)`);

    const natsUrl = [1, 2, 3].map((n) => `nats://127.0.0.1:${ports[`PTC_LOCAL_NATS_${n}_PORT`]}`).join(',');
    const cliEnv = { PTC_NATS_URL: natsUrl, PTC_NATS_CREDS: join(dir, 'creds', 'operator-dev.creds'), PTC_TEMPORAL_ADDRESS: `127.0.0.1:${ports.PTC_LOCAL_TEMPORAL_PORT}`, PTC_TEMPORAL_NAMESPACE: 'default' };

    const hosts = async (): Promise<HostInventory[]> => {
      const r = await ptctl(['hosts', '--json'], cliEnv);
      if (r.code !== 0) throw new Error(`ptctl hosts exited ${r.code}: ${r.stderr.trim()}`);
      return HostInventory.array().parse(JSON.parse(r.stdout));
    };
    let seen: HostInventory[] = [];
    await timed('agents reporting', async () => {
      const until = Date.now() + 90_000;
      while (Date.now() < until) {
        seen = await hosts().catch(() => []);
        if (HOSTS.every((h) => seen.some((s) => s.hostId === h))) return;
        await sleep(1000);
      }
    });
    check('three simulated hosts report through the NATS cluster', HOSTS.every((h) => seen.some((s) => s.hostId === h)), `${seen.map((h) => h.hostId).join(', ') || 'none'} after ${secs(timings['agents reporting'] ?? 0)} s`);

    // The three NATS nodes form one cluster: each has routes to the other two, and JetStream a meta leader.
    const cluster = await Promise.all([1, 2, 3].map(async (n) => {
      const base = `http://127.0.0.1:${ports[`PTC_LOCAL_NATS_${n}_MONITOR_PORT`]}`;
      const routez = (await (await fetch(`${base}/routez`)).json()) as { server_name?: string; num_routes?: number };
      const jsz = (await (await fetch(`${base}/jsz`)).json()) as { meta_cluster?: { cluster_size?: number; leader?: string } };
      return { name: routez.server_name, routes: routez.num_routes, size: jsz.meta_cluster?.cluster_size, leader: jsz.meta_cluster?.leader };
    }));
    check('NATS: a 3-node JetStream cluster', cluster.every((c, i) => c.name === `nats-${i + 1}` && (c.routes ?? 0) >= 2 && c.size === 3 && c.leader),
      cluster.map((c) => `${c.name}: ${c.routes} routes, meta cluster ${c.size}, leader ${c.leader}`).join('; '));

    const planFile = join(PROJECT_ROOT, 'examples', 'nic-to-hvm.yaml');
    const plan = await ptctl(['plan', planFile], cliEnv);
    check('ptctl plan (env settings only)', plan.code === 0, plan.code === 0 ? `${HOSTS.length} hosts, no refusal` : `exit ${plan.code}: ${plan.stderr.trim() || plan.stdout.trim()}`);

    const apply = await timed('rollout', () => ptctl(['apply', planFile, '--canary', '1', '--max-parallel', '2', '--max-failures', '0', '--wait'], cliEnv));
    check('ptctl apply --wait: the rollout succeeds', apply.code === 0, apply.code === 0 ? `in ${secs(timings.rollout ?? 0)} s` : `exit ${apply.code}: ${(apply.stderr.trim() || apply.stdout.trim()).split('\n').slice(-5).join(' | ')}`);

    seen = await hosts();
    for (const h of HOSTS) {
      const dev = seen.find((s) => s.hostId === h)?.devices.find((d) => d.bdf === DEVICE);
      const guestConfig = await readFile(join(dir, 'hosts', h, 'etc', 'xen', GUEST), 'utf8').catch(() => '');
      const ok = dev?.assignedTo === GUEST && dev.driver === 'pciback' && guestConfig.includes(DEVICE);
      check(`${h}: ${DEVICE} passed through to ${GUEST}`, ok, `inventory driver ${dev?.driver ?? '-'}, assigned to ${dev?.assignedTo ?? '-'}; etc/xen/${GUEST} ${guestConfig.includes(DEVICE) ? 'lists' : 'does not list'} it`);
    }
  } catch (err) {
    check('compose stack', false, (err as Error).message);
    if (ports.PTC_LOCAL_TEMPORAL_PORT) {
      const logs = await compose(composeFile, ['logs', '--no-color', '--tail', '30'], { PTC_LOCAL_DIR: dir, ...ports }).catch(() => '');
      process.stderr.write(logs);
    }
  } finally {
    await timed('teardown', () => compose(existsSync(composeFile) ? composeFile : BASE_FILE, ['down', '-v', '--remove-orphans', '--timeout', '10'], { PTC_LOCAL_DIR: dir, ...ports }).catch((e: Error) => note(`down: ${e.message}`)));
    const left = (await docker(['ps', '-aq', '--filter', `label=com.docker.compose.project=${PROJECT}`]).catch(() => '?')).trim();
    check('teardown leaves no container', left === '', left === '' ? `in ${secs(timings.teardown ?? 0)} s` : `left: ${left.split('\n').join(' ')}`);
    // dockerd runs with --debug, so every API call is in its log: a pull would be there.
    const noPull = await run(process.execPath, [join(PROJECT_ROOT, 'scripts', 'docker-engine.mjs'), 'check-no-pull']).then(() => true, () => false);
    check('the daemon log shows no pull', noPull, noPull ? 'node scripts/docker-engine.mjs check-no-pull: none' : 'see `node scripts/docker-engine.mjs check-no-pull`');
    await rm(dir, { recursive: true, force: true });
    if (!wasRunning) await engine('stop');
  }
  const total = Date.now() - t0;
  process.stdout.write(`timings: ${Object.entries(timings).map(([k, v]) => `${k} ${secs(v)} s`).join(', ')}; total ${secs(total)} s (docker: ${DOCKER_CLI})\n`);
  const failed = results.filter((r) => !r.ok).length;
  process.stdout.write(failed === 0 ? `compose: all ${results.length} checks passed\n` : `compose: ${failed} of ${results.length} checks FAILED\n`);
  return failed === 0 ? 0 : 1;
}

process.exitCode = await main();
