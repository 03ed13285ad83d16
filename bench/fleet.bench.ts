/**
 * `npm run bench`: ptctl's costs, each as a ratio against a baseline measured in the same run on the
 * same servers, so the figures mean the same on a laptop and on this 2-core machine:
 *   rollout   hosts/s of a real rollout vs a bare Temporal parent running as many children, as many at
 *             once, each with as many no-op activities as one ptctl host really scheduled;
 *   agent     round trip of inspect, verify and a mutating command vs a raw NATS request/reply echo;
 *   cli       wall time of `ptctl hosts --json` and `ptctl status` vs `node -e 0`;
 *   memory    worker RSS per host rolled out, agents-process RSS per simulated host at 100 and 1,000;
 *   history   the largest workflow history (events) and the largest single payload seen;
 *   latency   rollouts on hosts whose kernel takes real time (a driver reload 2 s, a hotplug 0.5 s, a
 *             reboot 20 s) vs the ideal critical path: waves × the latencies one host's path must pay;
 *   fleet     (only when asked: many minutes) `ptctl apply --wait` of one device to each of 2,000
 *             simulated hosts in several agents processes vs the ideal critical path of the same stack,
 *             ceil(hosts / parallel) × its median single-host rollout.
 * Prints a table and writes .cache/bench/latest.json. Not part of `npm test`.
 * Usage: `node dist/bench/fleet.bench.js --help` (USAGE below).
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile, cp } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import Table from 'cli-table3';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import proto from '@temporalio/proto';
import type { NatsConnection } from '@nats-io/transport-node';
import { DevStack } from '../cli/dev-stack.js';
import { PTCTL_ENTRY } from '../cli/tools.js';
import { connectNats } from '../transport/nats-connection.js';
import { agentSubject, HOSTS_BUCKET, SUBJECT_PREFIX } from '../schemas/agent-protocol.js';
import { CredsStore } from '../cli/nats-creds.js';
import { Kvm } from '@nats-io/kv';
import { readHostInventories } from '../transport/host-inventories.js';
import type { BaselineInput } from './baseline-workflows.js';
import type { RolloutReport } from '../workflows/rollout-book.js';
import { rolloutProgressQuery } from '../workflows/definitions.js';

const USAGE = `usage: node dist/bench/fleet.bench.js [--hosts 50] [--parallel 10] [--samples 300] [--agents 100,1000]
       [--only memory,agent,cli,rollout,latency,fleet] [--out .cache/bench/latest.json]
       [--latency-hosts 20] [--latency-parallel 10]
       [--fleet-hosts 2000] [--fleet-parallel 200] [--agent-processes 4]
sections (default all but fleet): memory, agent, cli, rollout, latency; fleet runs for most of an hour at 2,000 hosts
`;
const SECTION_NAMES = ['memory', 'agent', 'cli', 'rollout', 'latency', 'fleet'];

/** A bad command line ends the bench at once, with one line saying what and the usage. */
function usageError(message: string): never {
  process.stderr.write(`bench: ${message}\n${USAGE}`);
  process.exit(2);
}

const options = {
  hosts: { type: 'string', default: '50' },
  parallel: { type: 'string', default: '10' },
  samples: { type: 'string', default: '300' },
  agents: { type: 'string', default: '100,1000' },
  out: { type: 'string', default: '.cache/bench/latest.json' },
  only: { type: 'string', default: 'memory,agent,cli,rollout,latency' },
  'latency-hosts': { type: 'string', default: '20' },
  'latency-parallel': { type: 'string', default: '10' },
  'fleet-hosts': { type: 'string', default: '2000' },
  'fleet-parallel': { type: 'string', default: '200' },
  'agent-processes': { type: 'string', default: '4' },
  help: { type: 'boolean', short: 'h', default: false },
} as const;
let parsed: ReturnType<typeof parseArgs<{ options: typeof options }>>;
try {
  parsed = parseArgs({ options });
} catch (err) {
  usageError(err instanceof Error ? err.message : String(err));
}
const flags = parsed.values;
if (flags.help) {
  await new Promise<void>((resolve) => process.stdout.write(USAGE, () => resolve()));
  process.exit(0);
}
/** A positive whole number, or the bench stops before starting anything and says `why`. */
function positiveWhole(raw: string, why: string): number {
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) usageError(why);
  return value;
}
const count = (name: keyof typeof options): number => positiveWhole(String(flags[name]), `--${name} must be a positive whole number, not '${String(flags[name])}'`);
const HOSTS = count('hosts');
const PARALLEL = count('parallel');
const SAMPLES = count('samples');
const AGENT_FLEETS = flags.agents.split(',').map((n) => positiveWhole(n, `--agents takes host counts separated by commas, not '${flags.agents}'`));
const SECTIONS = new Set(flags.only.split(','));
const unknownSections = [...SECTIONS].filter((s) => !SECTION_NAMES.includes(s));
if (unknownSections.length > 0) usageError(`--only: no section ${unknownSections.map((s) => `'${s}'`).join(', ')} (sections: ${SECTION_NAMES.join(', ')})`);
const FLEET_HOSTS = count('fleet-hosts');
const FLEET_PARALLEL = count('fleet-parallel');
const AGENT_PROCESSES = count('agent-processes');
const LATENCY_HOSTS = count('latency-hosts');
const LATENCY_PARALLEL = count('latency-parallel');
/** What the issue calls realistic: a driver's module load and probe, a hotplug, a server's reboot. */
const REALISTIC = { reloadMs: 2000, attachMs: 500, rebootMs: 20_000 };
/** The default profile's two-function e1000 NIC: no other device has its driver, so reloading it drops nothing in use. */
const RELOADABLE_DEVICE = '0000:0a:04.0';
/** Single-host rollouts timed on the fleet's stack before the fleet rollout (their median is the ideal's unit). */
const SOLO_RUNS = 5;
const CLI_RUNS = 7;
const BASELINE_QUEUE = 'ptc-bench-baseline';
const DEVICE = '0000:09:00.0';
/** The echo responder's host identity: no simulated host is named so (those are sim-N). */
const ECHO_HOST = 'bench-echo';

const say = (line: string): void => void process.stderr.write(`bench: ${line}\n`);
const median = (xs: readonly number[]): number => quantile(xs, 0.5);
function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
}

async function rssMiB(pid: number | undefined): Promise<number> {
  if (pid === undefined) throw new Error('process not running');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 'NaN') / 1024;
}

/** One CLI run to its exit, whatever its exit code: a failed rollout still prints its report. */
function runCli(args: readonly string[]): Promise<{ ms: number; code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PTC_NATS_URL: '', PTC_NATS_CREDS: '', PTC_TEMPORAL_ADDRESS: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ ms: Number(process.hrtime.bigint() - started) / 1e6, code, stdout, stderr }));
  });
}

/** Wall time of one process run to its exit, in ms: it must succeed, and its stdout parse when `json` is set. */
async function timeRun(args: readonly string[], json: boolean): Promise<number> {
  const run = await runCli(args);
  if (run.code !== 0) throw new Error(`${args.join(' ')} exited ${run.code}: ${run.stderr}${run.stdout.slice(0, 2000)}`);
  if (json) JSON.parse(run.stdout);
  return run.ms;
}

interface Row {
  figure: string;
  ptctl: string;
  baseline: string;
  ratio: number;
  target: string;
}

// ---------- agents process memory (no Temporal) ----------

async function agentsMemory(hosts: number): Promise<{ hosts: number; readyS: number; rssMiB: number; kibPerHost: number; inventoryReadMs: number; inventoryGetsMs: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'ptctl-bench-'));
  const started = Date.now();
  const stack = await DevStack.start({ dir, simHosts: hosts, temporal: false, heartbeatMs: 60_000, agentsReadyMs: 300_000 });
  const readyS = (Date.now() - started) / 1000;
  const nc = await connectNats({ servers: stack.connection.natsUrl, seedFile: stack.connection.natsCreds, name: 'ptc-bench-inventory' });
  try {
    const rss = await rssMiB(stack.agentsPid);
    // The fleet's inventory as plan/apply/windows read it (one watch) vs a get per key (what it did before).
    const read: number[] = [];
    const gets: number[] = [];
    for (let i = 0; i < 3; i++) {
      let t = performance.now();
      const a = await readHostInventories(nc);
      read.push(performance.now() - t);
      t = performance.now();
      const b = await inventoriesByGets(nc);
      gets.push(performance.now() - t);
      if (a.length !== hosts || b !== hosts) throw new Error(`inventory read saw ${a.length} and ${b} of ${hosts} hosts`);
    }
    return { hosts, readyS, rssMiB: rss, kibPerHost: (rss * 1024) / hosts, inventoryReadMs: median(read), inventoryGetsMs: median(gets) };
  } finally {
    await nc.close();
    await stack.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** The baseline: list the keys, then one get per key. */
async function inventoriesByGets(nc: NatsConnection): Promise<number> {
  const kv = await new Kvm(nc).open(HOSTS_BUCKET);
  const keys = new Set<string>();
  for await (const key of await kv.keys()) keys.add(key);
  let n = 0;
  for (const key of keys) if ((await kv.get(key))?.operation === 'PUT') n += 1;
  return n;
}

// ---------- agent round trip ----------

interface Latency {
  p50: number;
  p99: number;
}

interface Probe {
  subject: (i: number) => string;
  body: (i: number) => string;
  check: (reply: unknown) => void;
}

/**
 * Round trips of several probes taken by turns (echo, inspect, verify, … then again), so each sees the
 * same moments of the machine's load: on a shared 2-core machine, runs one after the other would
 * compare different minutes rather than different code.
 */
async function roundTrips(nc: NatsConnection, probes: Record<string, Probe>): Promise<Record<string, Latency>> {
  const times: Record<string, number[]> = Object.fromEntries(Object.keys(probes).map((k) => [k, []]));
  for (let i = 0; i < SAMPLES + 20; i++) {
    for (const [name, probe] of Object.entries(probes)) {
      const started = process.hrtime.bigint();
      const msg = await nc.request(probe.subject(i), probe.body(i), { timeout: 5000 });
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      probe.check(msg.json());
      if (i >= 20) times[name]?.push(ms); // the first ones warm up JIT and connections
    }
  }
  return Object.fromEntries(Object.entries(times).map(([k, xs]) => [k, { p50: median(xs), p99: quantile(xs, 0.99) }]));
}

/**
 * The echo answers as a host identity of its own on that host's command subject, and the bench asks
 * it as the worker, exactly the permissions, inboxes and connection of an agent round trip. A host
 * identity may only answer requests on its own subjects: an echo on any other subject, or as the
 * worker (which may not publish replies), is refused by the server.
 */
async function startEcho(stack: DevStack): Promise<{ subject: string; stop: () => void }> {
  const subject = `${SUBJECT_PREFIX}.agent.${ECHO_HOST}.echo`;
  // Issuing a user needs no server change (its JWT, signed by the account, carries the permissions).
  const creds = await CredsStore.open(join(stack.dir, 'creds'));
  const { file } = await creds.add('host', ECHO_HOST);
  const tls = stack.connection.natsTls ? [JSON.stringify(stack.connection.natsTls)] : [];
  const child = spawn(process.execPath, [join(dirname(fileURLToPath(import.meta.url)), 'echo-responder.js'), stack.connection.natsUrl, file, subject, ...tls], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`echo responder exited ${code}`)));
  });
  return { subject, stop: () => child.kill('SIGTERM') };
}

async function agentLatencies(stack: DevStack, nc: NatsConnection): Promise<Record<string, Latency>> {
  const run = Date.now();
  const request = (kind: string, args: unknown) => (i: number) => JSON.stringify({ opId: `bench/${run}/${kind}/${i}`, hostId: 'sim-1', issuedAt: new Date().toISOString(), args });
  const answered = (reply: unknown): void => {
    if (typeof reply !== 'object' || reply === null || !('ok' in reply)) throw new Error(`not an agent reply: ${JSON.stringify(reply)}`);
  };
  const ok = (reply: unknown): void => {
    answered(reply);
    if ((reply as { ok: boolean }).ok !== true) throw new Error(`agent refused: ${JSON.stringify(reply)}`);
  };
  const echo = await startEcho(stack);
  try {
    return await roundTrips(nc, {
      echo: { subject: () => echo.subject, body: request('echo', {}), check: () => undefined },
      inspect: { subject: () => agentSubject('sim-1', 'inspect'), body: request('inspect', {}), check: ok },
      verify: { subject: () => agentSubject('sim-1', 'verify'), body: request('verify', { bdf: DEVICE, expect: 'host' }), check: ok },
      // Mutating: hide and unhide by turns, each with a fresh op id, so every one really changes the host.
      'hide/unhide': { subject: (i) => agentSubject('sim-1', i % 2 === 0 ? 'hide' : 'unhide'), body: request('mutate', { bdf: DEVICE }), check: ok },
    });
  } finally {
    echo.stop();
  }
}

// ---------- rollout and the bare baseline ----------

/** A rollout of `plan` (YAML lines after its name) to its close, in s; every host must succeed. */
async function timedRollout(stack: DevStack, client: Client, name: string, plan: readonly string[], parallel: number): Promise<number> {
  const file = join(stack.dir, `${name}.yaml`);
  await writeFile(file, [`name: ${name}`, ...plan, ''].join('\n'));
  await timeRun([PTCTL_ENTRY, 'apply', file, '--dir', stack.dir, '--canary', '0', '--max-parallel', String(parallel), '--max-failures', '0', '--json'], true);
  const handle = client.workflow.getHandle(`rollout/${name}`);
  const report = (await handle.result()) as RolloutReport;
  const d = await handle.describe();
  if (!d.closeTime) throw new Error(`rollout/${name} did not close`);
  say(`rollout/${name} report: ${JSON.stringify(report.counts)}`);
  if (report.counts.failed + report.counts.cancelled + report.counts.skipped > 0) throw new Error(`rollout/${name} did not succeed on every host: ${JSON.stringify(report.counts)} ${JSON.stringify(report.problems.slice(0, 3))}`);
  return (d.closeTime.getTime() - d.startTime.getTime()) / 1000;
}

const rolloutTime = (stack: DevStack, client: Client): Promise<number> =>
  timedRollout(stack, client, 'bench', ['hosts:', '  idPattern: sim-*', 'assignments:', `  - device: "${DEVICE}"`, '    guest: vm-hvm'], PARALLEL);

// ---------- realistic latencies vs the ideal critical path ----------

/** CPU seconds a process has used (user + system), from /proc/<pid>/stat; 0 once it is gone. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  // Fields after the command name in parentheses: utime and stime are the 12th and 13th, in clock ticks (USER_HZ, 100 on Linux).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11] ?? 0) + Number(fields[12] ?? 0)) / 100;
}

/** The stack's processes by role: worker and agents by pid, the servers by the stack's folder in their command line. */
async function stackProcesses(stack: DevStack): Promise<Record<string, number[]>> {
  const roles: Record<string, number[]> = { worker: stack.workerPid === undefined ? [] : [stack.workerPid], agents: stack.agentsPids, temporal: [], nats: [] };
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (!cmdline.some((arg) => arg.startsWith(stack.dir))) continue;
    const program = cmdline[0] ?? '';
    if (program.endsWith('/temporal')) roles.temporal?.push(Number(entry));
    else if (program.endsWith('/nats-server')) roles.nats?.push(Number(entry));
  }
  return roles;
}

/** CPU seconds each role of the stack spends while `work` runs. */
async function cpuDuring<T>(stack: DevStack, work: () => Promise<T>): Promise<{ value: T; cpuS: Record<string, number> }> {
  const roles = await stackProcesses(stack);
  const total = async (): Promise<Record<string, number>> =>
    Object.fromEntries(await Promise.all(Object.entries(roles).map(async ([role, pids]) => [role, (await Promise.all(pids.map(cpuSeconds))).reduce((a, b) => a + b, 0)] as const)));
  const before = await total();
  const value = await work();
  const after = await total();
  return { value, cpuS: Object.fromEntries(Object.entries(after).map(([role, s]) => [role, s - (before[role] ?? 0)])) };
}

/** CPU per host in ms, in all and by role (`worker 62, agents 71, …`), from CPU seconds by role over `hosts`. */
function cpuPerHost(cpuS: Record<string, number>, hosts: number): { ms: number; parts: string } {
  return {
    ms: (Object.values(cpuS).reduce((a, b) => a + b, 0) * 1000) / hosts,
    parts: Object.entries(cpuS).map(([role, sec]) => `${role} ${((sec * 1000) / hosts).toFixed(0)}`).join(', '),
  };
}

interface LatencyRun {
  rolloutS: number;
  idealS: number;
  /** CPU seconds per role of the stack during the rollout. */
  cpuS: Record<string, number>;
}

interface LatencyFigures {
  hosts: number;
  parallel: number;
  cores: number;
  latencies: typeof REALISTIC;
  reload: LatencyRun;
  reboot: LatencyRun;
}

/**
 * Two rollouts on hosts whose simulated kernel pays REALISTIC latencies: one binding by driver reload
 * (each host pays a reload, then a hotplug), one by reboot (a reboot, then a hotplug into the running
 * guest). The ideal is what the latencies alone cost: ceil(hosts / parallel) waves of one host's path,
 * with everything ptctl itself does (workflows, agent round trips, scans) taking no time at all.
 */
async function realisticLatencies(): Promise<LatencyFigures> {
  const dir = await mkdtemp(join(tmpdir(), 'ptctl-bench-latency-'));
  const hosts = [...Array.from({ length: LATENCY_HOSTS }, (_, i) => `reload-${i + 1}`), ...Array.from({ length: LATENCY_HOSTS }, (_, i) => `reboot-${i + 1}`)];
  const stack = await DevStack.start({ dir, simHosts: hosts, heartbeatMs: 60_000, simFaults: REALISTIC });
  const connection = await Connection.connect({ address: stack.connection.temporalAddress });
  const client = new Client({ connection, namespace: stack.connection.temporalNamespace });
  const waves = Math.ceil(LATENCY_HOSTS / LATENCY_PARALLEL);
  try {
    const assignment = ['assignments:', `  - device: "${RELOADABLE_DEVICE}"`, '    guest: vm-hvm'];
    const reload = await cpuDuring(stack, () => timedRollout(stack, client, 'latency-reload', ['strategy: reload', 'hosts:', '  idPattern: reload-*', ...assignment], LATENCY_PARALLEL));
    const reboot = await cpuDuring(stack, () => timedRollout(stack, client, 'latency-reboot', ['strategy: reboot', 'allowReboot: true', 'hosts:', '  idPattern: reboot-*', ...assignment], LATENCY_PARALLEL));
    return {
      hosts: LATENCY_HOSTS,
      parallel: LATENCY_PARALLEL,
      cores: availableParallelism(),
      latencies: REALISTIC,
      reload: { rolloutS: reload.value, idealS: (waves * (REALISTIC.reloadMs + REALISTIC.attachMs)) / 1000, cpuS: reload.cpuS },
      reboot: { rolloutS: reboot.value, idealS: (waves * (REALISTIC.rebootMs + REALISTIC.attachMs)) / 1000, cpuS: reboot.cpuS },
    };
  } finally {
    await connection.close();
    await stack.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

function latencyRows(f: LatencyFigures): Row[] {
  const row = (path: string, step: string, r: LatencyRun): Row => ({
    figure: `${f.hosts} hosts @${f.parallel} by ${path}, realistic latencies`,
    ptctl: `${r.rolloutS.toFixed(1)} s`,
    baseline: `${r.idealS.toFixed(1)} s ideal = ${Math.ceil(f.hosts / f.parallel)} × (${step} + attach ${f.latencies.attachMs / 1000} s)`,
    ratio: r.rolloutS / r.idealS,
    target: '≤ 1.05',
  });
  // What bounds the time above the ideal: the stack's CPU work, spread over this machine's cores.
  const cpu = (path: string, r: LatencyRun): Row => {
    const perHost = cpuPerHost(r.cpuS, f.hosts);
    const totalS = (perHost.ms * f.hosts) / 1000;
    return {
      figure: `  CPU per host, ${path} rollout`,
      ptctl: `${perHost.ms.toFixed(0)} ms (${perHost.parts})`,
      baseline: `${(r.rolloutS - r.idealS).toFixed(1)} s above the ideal`,
      ratio: totalS / f.cores / (r.rolloutS - r.idealS),
      target: `(CPU s / ${f.cores} cores / excess)`,
    };
  };
  return [row('reload', `reload ${f.latencies.reloadMs / 1000} s`, f.reload), cpu('reload', f.reload), row('reboot', `reboot ${f.latencies.rebootMs / 1000} s`, f.reboot), cpu('reboot', f.reboot)];
}

interface HistoryFigures {
  workflows: number;
  largestEvents: number;
  largestEventsId: string;
  largestPayloadBytes: number;
  largestPayloadId: string;
  host: { workflows: number; events: number; activities: number; localActivities: number; workflowTasks: number };
}

const EventType = proto.temporal.api.enums.v1.EventType;

function largestPayload(value: unknown, best = 0): number {
  if (value instanceof Uint8Array) return Math.max(best, value.length);
  if (typeof value !== 'object' || value === null) return best;
  let m = best;
  for (const v of Object.values(value)) m = largestPayload(v, m);
  return m;
}

async function histories(client: Client, hostId: string): Promise<HistoryFigures> {
  const f: HistoryFigures = { workflows: 0, largestEvents: 0, largestEventsId: '', largestPayloadBytes: 0, largestPayloadId: '', host: { workflows: 0, events: 0, activities: 0, localActivities: 0, workflowTasks: 0 } };
  for await (const wf of client.workflow.list()) {
    if (wf.workflowId.startsWith('baseline')) continue;
    f.workflows++;
    const history = await client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
    const events = history.events ?? [];
    if (events.length > f.largestEvents) [f.largestEvents, f.largestEventsId] = [events.length, wf.workflowId];
    for (const e of events) {
      // Payload bytes are the Uint8Array data fields inside the event's attributes.
      const size = largestPayload(e);
      if (size > f.largestPayloadBytes) [f.largestPayloadBytes, f.largestPayloadId] = [size, wf.workflowId];
    }
    if (wf.workflowId.split('/').includes(hostId)) {
      f.host.workflows++;
      f.host.events += events.length;
      f.host.activities += events.filter((e) => e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED).length;
      // A local activity leaves only its marker (the SDK core names it so).
      f.host.localActivities += events.filter((e) => e.markerRecordedEventAttributes?.markerName === 'core_local_activity').length;
      f.host.workflowTasks += events.filter((e) => e.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED).length;
    }
  }
  return f;
}

/** The bare baseline's time in s, and the CPU s its worker (this process) spent on it. */
async function baselineTime(stack: DevStack, client: Client, steps: number): Promise<{ seconds: number; workerCpuS: number }> {
  const connection = await NativeConnection.connect({ address: stack.connection.temporalAddress });
  try {
    const worker = await Worker.create({
      connection,
      namespace: stack.connection.temporalNamespace,
      taskQueue: BASELINE_QUEUE,
      workflowsPath: fileURLToPath(new URL('./baseline-workflows.js', import.meta.url)),
      activities: { noop: (step: number) => Promise.resolve(step) },
    });
    const cpuBefore = process.cpuUsage();
    const seconds = await worker.runUntil(async () => {
      const input: BaselineInput = { hosts: HOSTS, parallel: PARALLEL, steps };
      const handle = await client.workflow.start('baselineParent', { taskQueue: BASELINE_QUEUE, workflowId: `baseline-${Date.now()}`, args: [input] });
      await handle.result();
      const d = await handle.describe();
      if (!d.closeTime) throw new Error('baseline did not close');
      return (d.closeTime.getTime() - d.startTime.getTime()) / 1000;
    });
    const cpu = process.cpuUsage(cpuBefore);
    return { seconds, workerCpuS: (cpu.user + cpu.system) / 1e6 };
  } finally {
    await connection.close();
  }
}

// ---------- fleet: thousands of hosts in several agents processes ----------

interface FleetFigures {
  hosts: number;
  parallel: number;
  agentProcesses: number;
  agentsReadyS: number;
  soloS: number[];
  idealS: number;
  rolloutS: number;
  applyWallS: number;
  applyExit: number | null;
  counts: RolloutReport['counts'];
  problems: RolloutReport['problems'];
  problemsOmitted: number;
  stopReason: string | null;
  runs: number;
  reportGenerations: number;
  historyEventsPerRun: number[];
  largestHostHistory: { events: number; workflowId: string };
  workerRssMiB: { before: number; peak: number; after: number };
  agentsRssMiB: { before: number[]; peak: number; after: number[] };
}

/** Takes a sample every `everyMs` until stopped (one in progress is waited for); a null sample is left out. */
function sampleEvery<T>(everyMs: number, take: () => Promise<T | null>): { stop: () => Promise<T[]> } {
  const samples: T[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const sample = await take();
      if (sample !== null) samples.push(sample);
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return samples;
    },
  };
}

/** Peak of a sum of processes' RSS, sampled every 2 s until stopped (a rollout's peak is mid-run, not at its end). */
function rssPeak(pids: readonly number[]): { stop: () => Promise<number> } {
  const sampler = sampleEvery(2000, async () => (await Promise.all(pids.map((pid) => rssMiB(pid).catch(() => 0)))).reduce((a, b) => a + b, 0));
  return { stop: async () => Math.max(0, ...(await sampler.stop())) };
}

/**
 * The worker's RSS against the hosts a rollout has finished, sampled every 500 ms while it runs. The
 * first wave also pays for what a worker builds once (its workflow thread's heap, the bundle compiled),
 * which an idle-to-end difference spreads over the hosts; the slope after it is what each host costs.
 */
function workerRssByHost(client: Client, workflowId: string, pid: number): { stop: () => Promise<Array<{ done: number; rssMiB: number }>> } {
  return sampleEvery(500, async () => {
    const progress = await client.workflow.getHandle(workflowId).query(rolloutProgressQuery).catch(() => null);
    return progress ? { done: progress.counts.succeeded + progress.counts.failed, rssMiB: await rssMiB(pid) } : null;
  });
}

/** A rollout's runs (one per continue-as-new generation), oldest first, from the Temporal visibility store. */
async function rolloutRuns(client: Client, workflowId: string): Promise<{ startTime: Date; closeTime: Date | undefined; historyLength: number }[]> {
  const runs = [];
  for await (const wf of client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) runs.push({ startTime: wf.startTime, closeTime: wf.closeTime, historyLength: wf.historyLength });
  return runs.sort((a, b) => a.startTime.getTime() - b.startTime.getTime());
}

/** Start of the first run to close of the last: the rollout's time across all its generations. */
async function rolloutSpanS(client: Client, workflowId: string): Promise<number> {
  const runs = await rolloutRuns(client, workflowId);
  const first = runs[0];
  const closes = runs.map((r) => r.closeTime?.getTime() ?? NaN);
  if (!first || closes.some(Number.isNaN)) throw new Error(`${workflowId}: ${runs.length} run(s), not all closed`);
  return (Math.max(...closes) - first.startTime.getTime()) / 1000;
}

function applyArgs(stack: DevStack, plan: string, parallel: number): string[] {
  // Every host is tried: a failure budget of 0 would stop the rollout at its first failure and leave the rest unmeasured.
  return [PTCTL_ENTRY, 'apply', plan, '--dir', stack.dir, '--canary', '0', '--max-parallel', String(parallel), '--max-failures', '100%', '--wait', '--json'];
}

async function fleetRollout(): Promise<FleetFigures> {
  const dir = await mkdtemp(join(tmpdir(), 'ptctl-bench-fleet-'));
  // The solo hosts time the single-host rollout on this very stack; the fleet plan (sim-*) leaves them out.
  const solo = Array.from({ length: SOLO_RUNS }, (_, i) => `solo-${i + 1}`);
  const hosts = [...Array.from({ length: FLEET_HOSTS }, (_, i) => `sim-${i + 1}`), ...solo];
  const started = Date.now();
  const stack = await DevStack.start({ dir, simHosts: hosts, agentProcesses: AGENT_PROCESSES, heartbeatMs: 60_000, agentsReadyMs: 900_000, onProgress: (line) => say(line.length > 200 ? `${line.slice(0, 200)} …` : line) });
  const agentsReadyS = (Date.now() - started) / 1000;
  const connection = await Connection.connect({ address: stack.connection.temporalAddress });
  const client = new Client({ connection, namespace: stack.connection.temporalNamespace });
  try {
    say(`fleet stack ready in ${agentsReadyS.toFixed(0)} s: ${hosts.length} hosts over ${stack.agentsPids.length} agents processes`);
    const soloS: number[] = [];
    for (const host of solo) {
      const plan = join(dir, `${host}.yaml`);
      await writeFile(plan, [`name: ${host}`, 'hosts:', `  names: [${host}]`, 'assignments:', `  - device: "${DEVICE}"`, '    guest: vm-hvm', ''].join('\n'));
      const run = await runCli(applyArgs(stack, plan, 1));
      const out = JSON.parse(run.stdout) as { ok?: boolean };
      if (run.code !== 0 || out.ok !== true) throw new Error(`single-host rollout of ${host} failed (exit ${run.code}): ${run.stdout.slice(0, 500)} ${run.stderr.slice(0, 500)}`);
      soloS.push(await rolloutSpanS(client, `rollout/${host}`));
    }
    const waves = Math.ceil(FLEET_HOSTS / FLEET_PARALLEL);
    const idealS = waves * median(soloS);
    say(`single-host rollout: median ${median(soloS).toFixed(1)} s of ${soloS.map((s) => s.toFixed(1)).join(', ')}; ideal critical path ${waves} × that = ${idealS.toFixed(0)} s`);

    const plan = join(dir, 'fleet.yaml');
    await writeFile(plan, ['name: fleet', 'hosts:', '  idPattern: sim-*', 'assignments:', `  - device: "${DEVICE}"`, '    guest: vm-hvm', ''].join('\n'));
    const workerPid = stack.workerPid;
    if (workerPid === undefined) throw new Error('worker not running');
    const agentsBefore = await Promise.all(stack.agentsPids.map((pid) => rssMiB(pid)));
    const workerBefore = await rssMiB(workerPid);
    const workerPeak = rssPeak([workerPid]);
    const agentsPeak = rssPeak(stack.agentsPids);
    say(`fleet rollout of ${FLEET_HOSTS} hosts at max parallel ${FLEET_PARALLEL} (ptctl apply --wait)`);
    const run = await runCli(applyArgs(stack, plan, FLEET_PARALLEL));
    const peaks = { worker: await workerPeak.stop(), agents: await agentsPeak.stop() };
    let out: { ok?: boolean; report?: RolloutReport };
    try {
      out = JSON.parse(run.stdout) as typeof out;
    } catch {
      throw new Error(`ptctl apply of the fleet exited ${run.code} without a JSON report after ${(run.ms / 1000).toFixed(0)} s: ${run.stdout.slice(0, 1000)} ${run.stderr.slice(0, 2000)}`);
    }
    const report = out.report;
    if (!report) throw new Error(`ptctl apply of the fleet exited ${run.code} without a rollout report: ${run.stdout.slice(0, 1000)}`);

    const runs = await rolloutRuns(client, 'rollout/fleet');
    let largestHostHistory = { events: 0, workflowId: '' };
    // Every other workflow the stack ran (host rollouts, host entities, operations): the visibility store's
    // history lengths, as fetching thousands of histories would take longer than the rollout.
    for await (const wf of client.workflow.list()) {
      if (wf.workflowId !== 'rollout/fleet' && wf.historyLength > largestHostHistory.events) largestHostHistory = { events: wf.historyLength, workflowId: wf.workflowId };
    }
    return {
      hosts: FLEET_HOSTS,
      parallel: FLEET_PARALLEL,
      agentProcesses: stack.agentsPids.length,
      agentsReadyS,
      soloS,
      idealS,
      rolloutS: await rolloutSpanS(client, 'rollout/fleet'),
      applyWallS: run.ms / 1000,
      applyExit: run.code,
      counts: report.counts,
      problems: report.problems.slice(0, 20),
      problemsOmitted: Math.max(0, report.problems.length - 20) + (report.problemsOmitted ?? 0),
      stopReason: report.stopReason,
      runs: runs.length,
      reportGenerations: report.generations,
      historyEventsPerRun: runs.map((r) => r.historyLength),
      largestHostHistory,
      workerRssMiB: { before: workerBefore, peak: peaks.worker, after: await rssMiB(workerPid) },
      agentsRssMiB: { before: agentsBefore, peak: peaks.agents, after: await Promise.all(stack.agentsPids.map((pid) => rssMiB(pid))) },
    };
  } finally {
    await connection.close();
    await stack.stop();
    // A fresh copy each run: the log files are appended to, and an older run's lines would read as this one's.
    await rm('.cache/bench/fleet-logs', { recursive: true, force: true });
    await cp(join(dir, 'logs'), '.cache/bench/fleet-logs', { recursive: true }).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

function fleetRows(f: FleetFigures): Row[] {
  const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);
  const done = f.counts.succeeded + f.counts.failed + f.counts.cancelled + f.counts.skipped;
  const largestRun = Math.max(...f.historyEventsPerRun);
  const agentsAfter = sum(f.agentsRssMiB.after);
  return [
    { figure: `fleet ${f.hosts} hosts @${f.parallel}, ${f.agentProcesses} agents processes`, ptctl: `${f.rolloutS.toFixed(0)} s, ${(f.hosts / f.rolloutS).toFixed(2)} hosts/s (apply --wait ${f.applyWallS.toFixed(0)} s)`, baseline: `${f.idealS.toFixed(0)} s = ${Math.ceil(f.hosts / f.parallel)} × ${median(f.soloS).toFixed(1)} s median single-host rollout`, ratio: f.rolloutS / f.idealS, target: '(1.0 = ideal)' },
    { figure: 'fleet hosts succeeded', ptctl: `${f.counts.succeeded} of ${f.hosts} (${f.counts.failed} failed, ${f.counts.cancelled} cancelled, ${f.counts.skipped} skipped${done === f.hosts ? '' : `, ${f.hosts - done} unaccounted`})`, baseline: `${f.hosts} hosts`, ratio: f.counts.succeeded / f.hosts, target: '= 1.0' },
    { figure: 'fleet rollout history', ptctl: `${largestRun} events in the largest of ${f.runs} runs (report: ${f.reportGenerations} generations)`, baseline: '10,000 events', ratio: largestRun / 10_000, target: '≤ 1.0' },
    { figure: 'fleet largest other history', ptctl: `${f.largestHostHistory.events} events (${f.largestHostHistory.workflowId})`, baseline: '10,000 events', ratio: f.largestHostHistory.events / 10_000, target: '≤ 1.0' },
    { figure: 'fleet worker RSS', ptctl: `peak ${f.workerRssMiB.peak.toFixed(0)} MiB, after ${f.workerRssMiB.after.toFixed(0)} MiB`, baseline: `${f.workerRssMiB.before.toFixed(0)} MiB before`, ratio: f.workerRssMiB.peak / f.workerRssMiB.before, target: '' },
    { figure: 'fleet agents RSS', ptctl: `peak ${f.agentsRssMiB.peak.toFixed(0)} MiB over ${f.agentProcesses} processes (${((agentsAfter * 1024) / (f.hosts + SOLO_RUNS)).toFixed(0)} KiB/host after)`, baseline: `1 GiB per 1,000 hosts`, ratio: f.agentsRssMiB.peak / ((f.hosts + SOLO_RUNS) * 1.024), target: '≤ 1.0' },
  ];
}

// ---------- main ----------

Runtime.install({ logger: new DefaultLogger('WARN') });
const rows: Row[] = [];
const result: Record<string, unknown> = { at: new Date().toISOString(), hosts: HOSTS, parallel: PARALLEL, samples: SAMPLES, sections: [...SECTIONS] };
const benchStarted = Date.now();

if (SECTIONS.has('memory')) {
  say(`agents process memory at ${AGENT_FLEETS.join(', ')} simulated hosts`);
  const agentsMem = [];
  for (const n of AGENT_FLEETS) agentsMem.push(await agentsMemory(n));
  result.agentsMemory = agentsMem;
  const [small, ...larger] = agentsMem;
  for (const m of agentsMem) {
    rows.push({ figure: `inventory read at ${m.hosts} hosts`, ptctl: `${m.inventoryReadMs.toFixed(0)} ms (one watch)`, baseline: `${m.inventoryGetsMs.toFixed(0)} ms (a get per host)`, ratio: m.inventoryReadMs / m.inventoryGetsMs, target: '< 1' });
  }
  for (const m of larger) {
    if (!small) break;
    rows.push({ figure: `agents RSS at ${m.hosts} hosts`, ptctl: `${m.rssMiB.toFixed(0)} MiB (${m.kibPerHost.toFixed(0)} KiB/host)`, baseline: `${small.rssMiB.toFixed(0)} MiB at ${small.hosts} (${small.kibPerHost.toFixed(0)} KiB/host)`, ratio: m.kibPerHost / small.kibPerHost, target: '≤ 1 GiB at 1,000' });
  }
}

// The fleet section brings a stack of its own; this one serves the other sections.
if (['agent', 'cli', 'rollout'].some((section) => SECTIONS.has(section))) {
  const temporal = SECTIONS.has('rollout');
  say(`${temporal ? 'full stack' : 'NATS and agents'} with ${HOSTS} simulated hosts`);
  const dir = await mkdtemp(join(tmpdir(), 'ptctl-bench-'));
  const stack = await DevStack.start({ dir, simHosts: HOSTS, heartbeatMs: 60_000, temporal });
  const connection = temporal ? await Connection.connect({ address: stack.connection.temporalAddress }) : null;
  const client = connection ? new Client({ connection, namespace: stack.connection.temporalNamespace }) : null;
  const nc = await connectNats({ servers: stack.connection.natsUrl, seedFile: stack.connection.natsCreds, name: 'ptc-bench', tls: stack.connection.natsTls });
  try {
    if (SECTIONS.has('agent')) {
      say('agent round trips');
      const lat = await agentLatencies(stack, nc);
      result.agent = lat;
      for (const k of ['inspect', 'verify', 'hide/unhide']) {
        const l = lat[k];
        const e = lat.echo;
        if (!l || !e) continue;
        rows.push({ figure: `agent ${k} p50`, ptctl: `${l.p50.toFixed(2)} ms`, baseline: `${e.p50.toFixed(2)} ms raw NATS echo`, ratio: l.p50 / e.p50, target: '≤ 1.5' });
        rows.push({ figure: `agent ${k} p99`, ptctl: `${l.p99.toFixed(2)} ms`, baseline: `${e.p99.toFixed(2)} ms raw NATS echo`, ratio: l.p99 / e.p99, target: '≤ 2 ms' });
      }
    }

    const nodeMs: number[] = [];
    const hostsMs: number[] = [];
    const temporalImportMs: number[] = [];
    if (SECTIONS.has('cli')) {
      say('CLI wall time');
      for (let i = 0; i < CLI_RUNS; i++) {
        nodeMs.push(await timeRun(['-e', '0'], false));
        hostsMs.push(await timeRun([PTCTL_ENTRY, 'hosts', '--json', '--dir', dir], true));
        // What a command that talks to Temporal through the SDK client pays to load it (status and list use their own reader).
        temporalImportMs.push(await timeRun(['--input-type=module', '-e', "await import('@temporalio/client')"], false));
      }
      rows.push({ figure: 'ptctl hosts --json (median)', ptctl: `${median(hostsMs).toFixed(0)} ms`, baseline: `${median(nodeMs).toFixed(0)} ms node -e 0`, ratio: median(hostsMs) / median(nodeMs), target: '≤ +300 ms' });
      rows.push({ figure: 'import @temporalio/client alone', ptctl: `${median(temporalImportMs).toFixed(0)} ms`, baseline: `${median(nodeMs).toFixed(0)} ms node -e 0`, ratio: median(temporalImportMs) / median(nodeMs), target: '(the SDK client\'s load, which status and list skip)' });
    }

    if (temporal && client) {
      say(`rollout of ${HOSTS} hosts at max parallel ${PARALLEL}`);
      const workerBefore = await rssMiB(stack.workerPid);
      const byHost = stack.workerPid ? workerRssByHost(client, 'rollout/bench', stack.workerPid) : null;
      const { value: rolloutS, cpuS: rolloutCpuS } = await cpuDuring(stack, () => rolloutTime(stack, client));
      const workerAfter = await rssMiB(stack.workerPid);
      const rssSamples = (await byHost?.stop()) ?? [];
      if (SECTIONS.has('cli')) {
        const statusMs: number[] = [];
        const listMs: number[] = [];
        for (let i = 0; i < CLI_RUNS; i++) {
          statusMs.push(await timeRun([PTCTL_ENTRY, 'status', 'rollout/bench', '--json', '--dir', dir], true));
          listMs.push(await timeRun([PTCTL_ENTRY, 'list', '--host', 'sim-1', '--json', '--dir', dir], true));
        }
        rows.push({ figure: 'ptctl status rollout (median)', ptctl: `${median(statusMs).toFixed(0)} ms`, baseline: `${median(nodeMs).toFixed(0)} ms node -e 0`, ratio: median(statusMs) / median(nodeMs), target: '≤ +300 ms' });
        rows.push({ figure: 'ptctl list --host (median)', ptctl: `${median(listMs).toFixed(0)} ms`, baseline: `${median(nodeMs).toFixed(0)} ms node -e 0`, ratio: median(listMs) / median(nodeMs), target: '' });
        result.cli = { nodeMs, hostsMs, statusMs, listMs, temporalImportMs };
      }

      say('histories');
      const hist = await histories(client, 'sim-1');
      result.history = hist;
      // The baseline does as many steps as one host's agent calls, local or not: as activities, the engine's plain way.
      const steps = hist.host.activities + hist.host.localActivities;
      say(`bare baseline: ${HOSTS} children, ${PARALLEL} at once, ${steps} no-op activities each`);
      // The stack's worker and agents idle meanwhile: the baseline's worker is this process.
      const { value: baseline, cpuS: baselineStackCpuS } = await cpuDuring(stack, () => baselineTime(stack, client, steps));
      const baselineS = baseline.seconds;
      const baselineCpuS = { worker: baseline.workerCpuS, temporal: baselineStackCpuS.temporal ?? 0, nats: baselineStackCpuS.nats ?? 0 };
      // From the first sample past the first wave to the rollout's end.
      const warm = rssSamples.find((x) => x.done >= PARALLEL);
      const warmPerHost = warm && HOSTS > warm.done ? (workerAfter - warm.rssMiB) / (HOSTS - warm.done) : NaN;
      result.rollout = { rolloutS, baselineS, steps, rolloutCpuS, baselineCpuS, workerRssBeforeMiB: workerBefore, workerRssAfterMiB: workerAfter, workerRssSamples: rssSamples };

      // The work each side does, apart from how it is scheduled: once the cores the whole stack shares
      // are saturated, the throughput ratio tends to this one.
      const ptctlCpu = cpuPerHost(rolloutCpuS, HOSTS);
      const bareCpu = cpuPerHost(baselineCpuS, HOSTS);
      rows.unshift(
        { figure: `rollout ${HOSTS} hosts @${PARALLEL} (throughput)`, ptctl: `${rolloutS.toFixed(1)} s`, baseline: `${baselineS.toFixed(1)} s bare Temporal, ${steps} activities/child (one per agent step)`, ratio: baselineS / rolloutS, target: '≥ 1.0' },
        { figure: '  CPU per host, rollout vs bare child', ptctl: `${ptctlCpu.ms.toFixed(0)} ms (${ptctlCpu.parts})`, baseline: `${bareCpu.ms.toFixed(0)} ms (${bareCpu.parts})`, ratio: bareCpu.ms / ptctlCpu.ms, target: '(bare / ptctl)' },
      );
      const workerPerHost = (workerAfter - workerBefore) / HOSTS;
      rows.push({ figure: 'worker RSS growth per host', ptctl: `${workerPerHost.toFixed(2)} MiB`, baseline: `${workerBefore.toFixed(0)} MiB idle worker`, ratio: (workerAfter - workerBefore) / workerBefore, target: '(includes the first wave)' });
      rows.push({ figure: 'worker RSS per host after the first wave', ptctl: `${warmPerHost.toFixed(2)} MiB`, baseline: warm ? `${warm.rssMiB.toFixed(0)} MiB at ${warm.done} hosts done → ${workerAfter.toFixed(0)} MiB at ${HOSTS}` : 'no sample past the first wave', ratio: warmPerHost / 0.5, target: '≤ 0.5 MiB/host' });
      rows.push({ figure: 'largest history', ptctl: `${hist.largestEvents} events (${hist.largestEventsId})`, baseline: '10,000 events', ratio: hist.largestEvents / 10_000, target: '≤ 1.0' });
      rows.push({ figure: 'largest payload', ptctl: `${(hist.largestPayloadBytes / 1024).toFixed(1)} KiB (${hist.largestPayloadId})`, baseline: '256 KiB', ratio: hist.largestPayloadBytes / (256 * 1024), target: '≤ 1.0' });
      rows.push({ figure: 'one host costs', ptctl: `${hist.host.workflows} workflows, ${hist.host.events} events, ${hist.host.workflowTasks} workflow tasks, ${hist.host.activities} activities + ${hist.host.localActivities} local`, baseline: '1 child workflow', ratio: hist.host.workflows, target: '' });
    } else if (SECTIONS.has('cli')) {
      result.cli = { nodeMs, hostsMs, temporalImportMs };
    }
  } finally {
    await nc.close();
    await connection?.close();
    await stack.stop();
    await cp(join(dir, 'logs'), '.cache/bench/logs', { recursive: true }).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }

}

if (SECTIONS.has('latency')) {
  say(`realistic latencies: ${LATENCY_HOSTS} hosts by reload and ${LATENCY_HOSTS} by reboot, max parallel ${LATENCY_PARALLEL}`);
  const latency = await realisticLatencies();
  result.latency = latency;
  rows.push(...latencyRows(latency));
}

if (SECTIONS.has('fleet')) {
  say(`fleet: ${FLEET_HOSTS} simulated hosts over ${AGENT_PROCESSES} agents processes, max parallel ${FLEET_PARALLEL}`);
  const fleet = await fleetRollout();
  result.fleet = fleet;
  rows.push(...fleetRows(fleet));
  const clean = fleet.counts.succeeded === fleet.hosts && fleet.applyExit === 0;
  if (!clean) {
    // A fleet figure is only worth its ratio when every host succeeded: say so where nobody can miss it.
    say(`FLEET ROLLOUT NOT CLEAN: ${JSON.stringify(fleet.counts)}, apply exit ${fleet.applyExit}, stop reason ${fleet.stopReason ?? 'none'}`);
    for (const p of fleet.problems) say(`  ${p.hostId}: ${p.state} — ${p.details.join('; ')}`);
    if (fleet.problemsOmitted) say(`  … and ${fleet.problemsOmitted} more`);
    process.exitCode = 1;
  }
}

result.rows = rows;
result.totalS = (Date.now() - benchStarted) / 1000;
const table = new Table({ head: ['figure', 'ptctl', 'baseline (same run)', 'ratio', 'target'], style: { head: [], border: [] } });
for (const r of rows) table.push([r.figure, r.ptctl, r.baseline, r.ratio.toFixed(2), r.target]);
process.stdout.write(table.toString() + '\n');
await mkdir(dirname(flags.out), { recursive: true });
await writeFile(flags.out, JSON.stringify(result, null, 2) + '\n');
process.stdout.write(`${rows.length} figures in ${(result.totalS as number).toFixed(0)} s; written to ${flags.out}\n`);
