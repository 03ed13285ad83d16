import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import getPort from 'get-port';
import { Connection as TemporalConnection } from '@temporalio/client';
import proto from '@temporalio/proto';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { HOSTS_BUCKET } from '../schemas/agent-protocol.js';
import { ErrorCode, PtcError } from '../schemas/errors.js';
import { HostInventory } from '../schemas/inventory.js';
import { connectNats } from '../transport/nats-connection.js';
import { ensureNatsResources } from '../transport/nats-resources.js';
import { devServerSearchAttributeArgs } from '../transport/search-attributes.js';
import { ManagedProcess } from './child-process.js';
import { type Connection, type ConnectionFile, connectionEnv, connectionFilePath, processAlive, readConnectionFile } from './connection.js';
import { CredsStore, credsFile } from './nats-creds.js';
import { type DevCerts, generateDevCerts } from './dev-certs.js';
import { startTlsProxy } from './tls-proxy.js';
import { temporalConnectOptions } from './temporal-connection.js';
import { type NatsRole, identityName } from '../transport/nats-permissions.js';
import { PTCTL_ENTRY, serverBinary } from './tools.js';
import { TASK_QUEUE } from '../workflows/definitions.js';
import type { FleetFileInput } from '../agent/sim/fleet-file.js';
import { describeDeployment, setCurrentVersion } from '../transport/worker-deployment.js';
import { splitHosts } from './host-slices.js';

export interface DevStackOptions {
  dir: string;
  /** Simulated hosts to run: a count (named sim-1…sim-N) or explicit ids. */
  simHosts: number | readonly string[];
  profile?: string;
  /** Inventory heartbeat of the simulated agents. */
  heartbeatMs?: number;
  /** Extra `--sim-faults` JSON for the agents (tests inject failures this way). */
  simFaults?: Record<string, unknown>;
  /** How long the worker waits for an agent's reply before retrying (default 30 s). */
  agentTimeoutMs?: number;
  /** Per-host profiles and faults, written to <dir>/fleet.json for the agents. */
  fleet?: FleetFileInput | undefined;
  /** Temporal UI on (ptctl dev) or off (tests, demo). */
  ui?: boolean;
  /** Run the Temporal server and worker (default). Agent-only tests turn this off to start faster. */
  temporal?: boolean;
  /** Start the simulated agents for `simHosts` (default). Off: NATS credentials for those hosts only, for agents run elsewhere (the real-Xen dom0). */
  agents?: boolean;
  /** Extra `ptctl worker` arguments (e.g. `--unversioned`, `--build-id`). */
  workerArgs?: readonly string[];
  /** How long to wait for every simulated host's first inventory (default 60 s; a 1,000-host bench on a busy machine needs more). */
  agentsReadyMs?: number;
  /**
   * Agents processes the simulated hosts are split over, dealt in turn (default 1). One process
   * of thousands of hosts is bound to one core; several spread them, as a fleet spreads over machines.
   * With one, its log is logs/agents.log; with several, logs/agents-1.log … logs/agents-N.log.
   */
  agentProcesses?: number;
  /**
   * Mutual TLS on both servers: a throw-away CA in <dir>/tls, nats-server with `verify`, and the
   * Temporal dev server (which has no TLS of its own) behind a mutual-TLS front.
   */
  tls?: boolean;
  /** Progress lines ("nats-server ready on …"). */
  onProgress?: (line: string) => void;
  /** Where nats-server and the Temporal server run (default: local processes of the pinned binaries). */
  servers?: ServerLauncher;
}

/** A running server: a local process, or a container (the tests' PTC_TEST_STACK=containers). */
export interface ServerProcess {
  readonly name: string;
  readonly logFile: string;
  /** Null while running; the exit code/signal once it has ended. */
  readonly exit: { code: number | null; signal: NodeJS.Signals | null } | null;
  waitForExit(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts `nats-server` or `temporal` with these arguments. Every path in them lies under the stack's
 * dir and every address is 127.0.0.1, so a launcher that keeps both (a host-network container with the
 * dir mounted at the same path) runs the very same configuration.
 */
export type ServerLauncher = (binary: 'nats-server' | 'temporal', args: readonly string[], opts: { logFile: string; dir: string }) => Promise<ServerProcess>;

const localServers: ServerLauncher = async (binary, args, opts) => ManagedProcess.start(binary, serverBinary(binary), args, { logFile: opts.logFile });

interface Ports {
  nats: number;
  natsMonitor: number;
  temporal: number;
  temporalUi: number;
  temporalHttp: number;
  temporalMetrics: number;
  workerMetrics: number;
  agentsMetrics: number;
  /** The dev server's own plaintext port when a TLS front listens on `temporal`. */
  temporalInternal: number;
}

/** Where the stack's processes serve Prometheus metrics (null: that process is not running). */
export interface StackMetrics {
  worker: string | null;
  /** The first (with agentProcesses 1, the only) agents process; `agentsAll` lists every one. */
  agents: string | null;
  /** Every agents process, in the order of their slices of hosts (empty: none running). */
  agentsAll: string[];
  /** The Temporal dev server's own metrics. */
  temporalServer: string | null;
}

/** The person the dev stack's operator and viewer identities are named after. */
export const DEV_PERSON = 'dev';

/**
 * The identities a dev stack (or a compose stack from `ptctl dev --init-only`) runs with: the worker,
 * an operator and a viewer named after DEV_PERSON, and one per simulated host. Existing ones are kept.
 */
export async function issueDevIdentities(credsDir: string, hosts: readonly string[]): Promise<CredsStore> {
  const creds = await CredsStore.init(credsDir);
  const identities: Array<[NatsRole, string]> = [['worker', 'worker'], ['operator', DEV_PERSON], ['viewer', DEV_PERSON], ...hosts.map((h): [NatsRole, string] => ['host', h])];
  for (const [role, name] of identities) await creds.add(role, name);
  return creds;
}

export const simHostIds = (spec: number | readonly string[]): string[] =>
  typeof spec === 'number' ? Array.from({ length: spec }, (_, i) => `sim-${i + 1}`) : [...spec];

async function waitFor<T>(what: string, deadlineMs: number, probe: () => Promise<T | null>, alive: () => string | null): Promise<T> {
  const until = Date.now() + deadlineMs;
  let lastError = '';
  while (Date.now() < until) {
    const dead = alive();
    if (dead) throw new PtcError(ErrorCode.STACK_FAILED, `${what}: ${dead}`);
    try {
      const value = await probe();
      if (value !== null) return value;
    } catch (err) {
      lastError = (err as Error).message;
    }
    await sleep(200);
  }
  throw new PtcError(ErrorCode.STACK_FAILED, `${what} was not ready within ${deadlineMs / 1000} s${lastError ? ` (${lastError})` : ''}`);
}

/**
 * The embedded stack of `ptctl dev`, `ptctl demo` and the integration tests: nats-server (JetStream,
 * nkey users, no anonymous access), the Temporal dev server (SQLite under the state dir), one worker
 * and the simulated agents, each a real process, each waited on until it really answers.
 */
export class DevStack {
  private readonly processes: ServerProcess[] = [];
  private nc: NatsConnection | null = null;
  private stopping = false;
  connection!: Connection;
  /** Credentials of the dev stack's operator and viewer identities (the CLI's commands use them). */
  roleCreds: { natsOperatorCreds: string; natsViewerCreds: string } = { natsOperatorCreds: '', natsViewerCreds: '' };
  hosts: string[] = [];
  readonly metrics: StackMetrics = { worker: null, agents: null, agentsAll: [], temporalServer: null };
  private ports: Ports | null = null;
  readonly dir: string;

  private constructor(private readonly opts: DevStackOptions) {
    this.dir = resolve(opts.dir);
  }

  static async start(opts: DevStackOptions): Promise<DevStack> {
    const stack = new DevStack(opts);
    try {
      await stack.boot();
    } catch (err) {
      await stack.stop();
      throw err;
    }
    return stack;
  }

  private say(line: string): void {
    this.opts.onProgress?.(line);
  }

  private path(...parts: string[]): string {
    return join(this.dir, ...parts);
  }

  private startServer(binary: 'nats-server' | 'temporal', args: readonly string[], logName: string): Promise<ServerProcess> {
    return (this.opts.servers ?? localServers)(binary, args, { logFile: this.path('logs', logName), dir: this.dir });
  }

  private deadProcess(): string | null {
    const dead = this.processes.find((p) => p.exit !== null);
    return dead ? `${dead.name} exited (${dead.exit?.signal ?? `code ${dead.exit?.code}`}); see ${dead.logFile}` : null;
  }

  private async boot(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const previous = await readConnectionFile(this.dir);
    if (previous && previous.pid !== process.pid && processAlive(previous.pid)) {
      throw new PtcError(ErrorCode.STACK_FAILED, `a dev stack is already running in ${this.dir} (pid ${previous.pid}); stop it first or use another --dir`);
    }
    this.hosts = simHostIds(this.opts.simHosts);
    const ports = await this.choosePorts();
    this.ports = ports;

    // NATS
    // Decentralized auth: the stack issues its identities like `ptctl creds` does, in <dir>/creds.
    const creds = await issueDevIdentities(this.path('creds'), this.hosts);
    const seedOf = (role: NatsRole, name: string): string => credsFile(creds.dir, identityName(role, name));
    const orchestratorSeedFile = seedOf('worker', 'worker');
    const certs = this.opts.tls ? await generateDevCerts(this.path('tls')) : null;
    this.certs = certs;
    const natsConf = {
      ...(certs ? { tls: { cert_file: certs.serverCert, key_file: certs.serverKey, ca_file: certs.caFile, verify: true, timeout: 5 } } : {}),
      listen: `127.0.0.1:${ports.nats}`,
      http: `127.0.0.1:${ports.natsMonitor}`,
      server_name: 'ptc-dev',
      jetstream: { store_dir: this.path('nats') },
      ...creds.serverConfig(this.path('nats', 'resolver')),
    };
    await writeFile(this.path('nats.conf'), JSON.stringify(natsConf, null, 2), { mode: 0o600 });
    this.processes.push(await this.startServer('nats-server', ['-c', this.path('nats.conf')], 'nats.log'));
    const natsUrl = `${certs ? 'tls' : 'nats'}://127.0.0.1:${ports.nats}`;
    const natsTls = certs ? { caFile: certs.caFile, certFile: certs.clientCert, keyFile: certs.clientKey } : undefined;
    await waitFor('nats-server', 20_000, async () => ((await fetch(`http://127.0.0.1:${ports.natsMonitor}/healthz?js-enabled-only=true`)).ok ? true : null), () => this.deadProcess());
    this.nc = await connectNats({ servers: natsUrl, seedFile: orchestratorSeedFile, name: 'ptc-dev', tls: natsTls });
    await ensureNatsResources(this.nc);
    this.say(`nats-server ready on ${natsUrl} (JetStream, operator/account JWT auth${certs ? ', mutual TLS' : ''})`);

    const namespace = 'default';
    this.connection = { natsUrl, natsCreds: orchestratorSeedFile, temporalAddress: '', temporalNamespace: namespace, temporalUi: null, ...(natsTls ? { natsTls } : {}) };
    this.roleCreds = { natsOperatorCreds: seedOf('operator', DEV_PERSON), natsViewerCreds: seedOf('viewer', DEV_PERSON) };
    if (this.opts.temporal ?? true) await this.startTemporalAndWorker(ports);

    // Agents: each process runs a slice of the simulated hosts, each host with its own NATS identity.
    if (this.hosts.length > 0 && (this.opts.agents ?? true)) await this.startAgents();

    const file: ConnectionFile = { ...this.connection, ...this.roleCreds, pid: process.pid, hosts: this.hosts, startedAt: new Date().toISOString(), metrics: { worker: this.metrics.worker, agents: this.metrics.agents } };
    await writeFile(connectionFilePath(this.dir), JSON.stringify(file, null, 2) + '\n');
    await writeFile(this.path('ports.json'), JSON.stringify(ports, null, 2) + '\n');
  }


  private async startTemporalAndWorker(ports: Ports): Promise<void> {
    const temporalAddress = `127.0.0.1:${ports.temporal}`;
    const ui = this.opts.ui ?? false;
    this.processes.push(
      await this.startServer(
        'temporal',
        [
          'server', 'start-dev',
          '--db-filename', this.path('temporal.db'),
          '--ip', '127.0.0.1',
          '--port', String(this.certs ? ports.temporalInternal : ports.temporal),
          '--http-port', String(ports.temporalHttp),
          '--metrics-port', String(ports.temporalMetrics),
          ...(ui ? ['--ui-port', String(ports.temporalUi)] : ['--headless']),
          ...devServerSearchAttributeArgs(),
          '--log-level', 'warn',
          // Worker Deployment Versioning, and drainage checked every few seconds instead of minutes, so
          // `ptctl deployment status` shows an old build drained soon after its pinned workflows end.
          '--dynamic-config-value', 'system.enableDeploymentVersions=true',
          '--dynamic-config-value', 'matching.wv.VersionDrainageStatusRefreshInterval="5s"',
          '--dynamic-config-value', 'matching.wv.VersionDrainageStatusVisibilityGracePeriod="5s"',
        ],
        'temporal.log',
      ),
    );
    const namespace = this.connection.temporalNamespace;
    const certs = this.certs;
    if (certs) {
      this.tlsProxy = await startTlsProxy({ listenPort: ports.temporal, backendPort: ports.temporalInternal, caFile: certs.caFile, certFile: certs.serverCert, keyFile: certs.serverKey });
      this.connection = { ...this.connection, temporalTls: { caFile: certs.caFile, certFile: certs.clientCert, keyFile: certs.clientKey, serverName: 'localhost' } };
    }
    const probeOptions = await temporalConnectOptions({ ...this.connection, temporalAddress });
    const tc = await waitFor('Temporal dev server', 60_000, async () => {
      const conn = await TemporalConnection.connect({ ...probeOptions, connectTimeout: 2000 });
      try {
        await conn.workflowService.describeNamespace({ namespace });
        return conn;
      } catch (err) {
        await conn.close();
        throw err;
      }
    }, () => this.deadProcess());
    const temporalUi = ui ? `http://127.0.0.1:${ports.temporalUi}` : null;
    this.say(`Temporal dev server ready on ${temporalAddress}${certs ? ' (behind a mutual-TLS front)' : ''}${temporalUi ? `, UI ${temporalUi}` : ''}`);

    this.connection = { ...this.connection, temporalAddress, temporalUi };
    this.childEnv = { ...process.env, ...connectionEnv(this.connection), ...(this.opts.agentTimeoutMs ? { PTC_AGENT_TIMEOUT_MS: String(this.opts.agentTimeoutMs) } : {}) };
    const workerMetrics = `127.0.0.1:${ports.workerMetrics}`;
    this.metrics.worker = `http://${workerMetrics}/metrics`;
    this.metrics.temporalServer = `http://127.0.0.1:${ports.temporalMetrics}/metrics`;
    try {
      await this.startWorker(tc, workerMetrics);
    } finally {
      await tc.close();
    }
  }

  private childEnv: NodeJS.ProcessEnv = {};
  private workerProcess: ManagedProcess | null = null;

  /**
   * Starts `ptctl worker`, waits until it polls, and makes its deployment version current (a dev
   * stack has one build at a time; a cluster's operator switches versions with `ptctl deployment`).
   */
  private async startWorker(tc: TemporalConnection, workerMetrics: string): Promise<void> {
    const namespace = this.connection.temporalNamespace;
    this.workerProcess = ManagedProcess.start('worker', process.execPath, [PTCTL_ENTRY, 'worker', '--metrics', workerMetrics, ...(this.opts.workerArgs ?? [])], { logFile: this.path('logs', 'worker.log'), env: this.childEnv });
    this.processes.push(this.workerProcess);
    const version = await waitFor('worker', 90_000, async () => {
      const res = await tc.workflowService.describeTaskQueue({
        namespace,
        taskQueue: { name: TASK_QUEUE },
        taskQueueType: proto.temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
      });
      const poller = res.pollers?.find((p) => p.identity?.startsWith(`${this.workerProcess?.pid ?? ''}@`));
      if (!poller) return null;
      const options = poller.deploymentOptions;
      return options?.workerVersioningMode === proto.temporal.api.enums.v1.WorkerVersioningMode.WORKER_VERSIONING_MODE_VERSIONED && options.deploymentName && options.buildId
        ? { deploymentName: options.deploymentName, buildId: options.buildId }
        : { deploymentName: '', buildId: '' };
    }, () => this.deadProcess());
    if (!version.buildId) {
      this.say(`worker polling task queue "${TASK_QUEUE}" (unversioned)`);
      return;
    }
    // The server registers a version shortly after its first poll; until then it cannot be made current.
    await waitFor(`deployment version ${version.deploymentName}/${version.buildId}`, 30_000, async () => {
      const view = await describeDeployment(tc, namespace, version.deploymentName);
      if (view?.current === version.buildId) return true;
      await setCurrentVersion(tc, namespace, version.deploymentName, version.buildId, 'ptctl-dev');
      return true;
    }, () => this.deadProcess());
    this.say(`worker polling task queue "${TASK_QUEUE}" as ${version.deploymentName}/${version.buildId} (current)`);
  }

  private agentsProcesses: ManagedProcess[] = [];
  private certs: DevCerts | null = null;
  private tlsProxy: { close: () => Promise<void> } | null = null;

  /** The throw-away CA and certificates of a `tls` stack (tests make clients from them). */
  get tlsFiles(): DevCerts | null {
    return this.certs;
  }

  /** Starts the simulated agents' processes and waits until every host has reported a fresh inventory. */
  async startAgents(faults: Record<string, unknown> | undefined = this.opts.simFaults): Promise<void> {
    if (!this.nc) throw new PtcError(ErrorCode.STACK_FAILED, 'NATS is not running');
    const startedAt = new Date().toISOString();
    const slices = splitHosts(this.hosts, this.opts.agentProcesses ?? 1);
    const common = ['agent', '--backend', 'sim', '--dir', this.dir, '--creds-dir', this.path('creds'), '--heartbeat', String(this.opts.heartbeatMs ?? 5000)];
    if (this.opts.profile) common.push('--profile', this.opts.profile);
    if (faults) common.push('--sim-faults', JSON.stringify(faults));
    if (this.opts.fleet) {
      await writeFile(this.path('fleet.json'), JSON.stringify(this.opts.fleet, null, 2));
      common.push('--fleet', this.path('fleet.json'));
    }
    const env = { ...process.env, ...connectionEnv(this.connection) };
    const urls: string[] = [];
    const taken = this.ports ? Object.values(this.ports) : [];
    for (const [i, slice] of slices.entries()) {
      // The first keeps the port chosen with the others (reused across runs); the rest take free ones.
      const port = i === 0 && this.ports ? this.ports.agentsMetrics : await getPort({ host: '127.0.0.1', exclude: taken });
      taken.push(port);
      const metrics = `127.0.0.1:${port}`;
      const args = [PTCTL_ENTRY, ...common, '--metrics', metrics, ...slice.flatMap((h) => ['--host-id', h])];
      const [name, log] = slices.length === 1 ? ['agents', 'agents.log'] : [`agents-${i + 1}`, `agents-${i + 1}.log`];
      const proc = ManagedProcess.start(name, process.execPath, args, { logFile: this.path('logs', log), env });
      this.agentsProcesses.push(proc);
      this.processes.push(proc);
      urls.push(`http://${metrics}/metrics`);
    }
    const kv = await new Kvm(this.nc).open(HOSTS_BUCKET);
    await waitFor(`agents of ${this.hosts.length} simulated hosts${slices.length > 1 ? ` in ${slices.length} processes` : ''}`, this.opts.agentsReadyMs ?? 60_000, async () => {
      for (const h of this.hosts) {
        const entry = await kv.get(h);
        const inv = entry?.operation === 'PUT' ? HostInventory.safeParse(entry.json()) : null;
        if (!inv?.success || inv.data.seenAt < startedAt) return null;
      }
      return true;
    }, () => this.deadProcess());
    this.metrics.agents = urls[0] ?? null;
    this.metrics.agentsAll = urls;
    this.say(`${this.hosts.length} simulated host agent(s) reporting${slices.length > 1 ? ` from ${slices.length} processes` : ''}: ${this.hosts.join(', ')}`);
  }

  /** Ends the agents' processes (SIGKILL by default, like a crash) and waits until they are gone. */
  async stopAgents(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const procs = this.agentsProcesses;
    this.agentsProcesses = [];
    await Promise.all(
      procs.map(async (proc) => {
        if (signal === 'SIGTERM') await proc.stop();
        else {
          proc.kill(signal);
          await proc.waitForExit();
        }
        this.processes.splice(this.processes.indexOf(proc), 1);
      }),
    );
    this.metrics.agents = null;
    this.metrics.agentsAll = [];
  }

  /**
   * Stops nats-server and starts it again on the same port and store, as an operator's restart would;
   * clients (agents, worker) must reconnect on their own.
   */
  async restartNats(downMs = 1000): Promise<void> {
    const idx = this.processes.findIndex((p) => p.name === 'nats-server');
    const old = this.processes[idx];
    if (!old) throw new PtcError(ErrorCode.STACK_FAILED, 'nats-server is not running');
    await old.stop();
    await sleep(downMs);
    const ports = JSON.parse(await readFile(this.path('ports.json'), 'utf8')) as Ports;
    const fresh = await this.startServer('nats-server', ['-c', this.path('nats.conf')], 'nats.log');
    this.processes[idx] = fresh;
    await waitFor('nats-server', 20_000, async () => ((await fetch(`http://127.0.0.1:${ports.natsMonitor}/healthz?js-enabled-only=true`)).ok ? true : null), () => this.deadProcess());
  }

  /** Stops the stack's worker gracefully (an upgrade stops the old build's worker once it has drained). */
  async stopWorker(): Promise<void> {
    const proc = this.workerProcess;
    if (!proc) return;
    this.workerProcess = null;
    await proc.stop();
    this.processes.splice(this.processes.indexOf(proc), 1);
  }

  /**
   * Pid of the agents' process when one runs every simulated host; undefined when none runs, and also
   * when the hosts are split over several processes (read `agentsPids` then: one pid would measure a
   * slice as if it were the fleet).
   */
  get agentsPid(): number | undefined {
    return this.agentsProcesses.length === 1 ? this.agentsProcesses[0]?.pid : undefined;
  }

  /** Pids of every agents process, in the order of their slices of hosts (empty when none runs). */
  get agentsPids(): number[] {
    return this.agentsProcesses.flatMap((p) => (p.pid === undefined ? [] : [p.pid]));
  }

  /** Pid of the worker's process (benchmarks read its memory). */
  get workerPid(): number | undefined {
    return this.workerProcess?.pid;
  }

  /** Exit info of the first agents process that ended, e.g. after an injected crash; null while all run. */
  get agentsExit(): ManagedProcess['exit'] {
    return this.agentsProcesses.find((p) => p.exit !== null)?.exit ?? null;
  }

  /** Resolves when an agents process ends (an injected crash ends the one serving that host). */
  async waitForAgentsExit(): Promise<void> {
    if (this.agentsProcesses.length > 0) await Promise.race(this.agentsProcesses.map((p) => p.waitForExit()));
  }

  /** Reuses the ports of the last run in this dir when they are free, so bookmarks keep working. */
  private async choosePorts(): Promise<Ports> {
    let previous: Partial<Ports> = {};
    try {
      previous = JSON.parse(await readFile(this.path('ports.json'), 'utf8')) as Partial<Ports>;
    } catch {
      previous = {};
    }
    const taken = new Set<number>();
    const pick = async (prefer: number | undefined): Promise<number> => {
      const port = await getPort({ host: '127.0.0.1', ...(prefer ? { port: prefer } : {}), exclude: [...taken] });
      taken.add(port);
      return port;
    };
    // `temporal server start-dev` puts its history, matching and worker services on the frontend port
    // + 1, + 2 and + 3: all four must be free, and no other pick may take them (a collision killed the
    // dev server with "bind: address already in use" in CI).
    const pickFrontend = async (prefer: number | undefined): Promise<number> => {
      for (let attempt = 0; attempt < 50; attempt++) {
        const port = await getPort({ host: '127.0.0.1', ...(prefer && attempt === 0 ? { port: prefer } : {}), exclude: [...taken] });
        const block = [port, port + 1, port + 2, port + 3];
        let free = true;
        for (const p of block.slice(1)) if (taken.has(p) || (await getPort({ host: '127.0.0.1', port: p })) !== p) free = false;
        if (free) {
          for (const p of block) taken.add(p);
          return port;
        }
        taken.add(port);
      }
      throw new PtcError(ErrorCode.STACK_FAILED, 'found no four free consecutive ports on 127.0.0.1 for the Temporal dev server');
    };
    return {
      nats: await pick(previous.nats),
      natsMonitor: await pick(previous.natsMonitor),
      temporal: await pickFrontend(previous.temporal),
      temporalUi: await pick(previous.temporalUi),
      temporalHttp: await pick(previous.temporalHttp),
      temporalMetrics: await pick(previous.temporalMetrics),
      workerMetrics: await pick(previous.workerMetrics),
      agentsMetrics: await pick(previous.agentsMetrics),
      temporalInternal: await pickFrontend(previous.temporalInternal),
    };
  }

  /** The first unexpected exit of a stack process, for supervisors that wait on the stack. */
  async watch(): Promise<string> {
    return Promise.race(this.processes.map((p) => p.waitForExit().then(() => `${p.name} exited (${p.exit?.signal ?? `code ${p.exit?.code}`}); see ${p.logFile}`)));
  }

  /** Stops agents, worker, Temporal and NATS in that order; safe to call twice. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    await this.nc?.close().catch(() => undefined);
    for (const p of [...this.processes].reverse()) await p.stop();
    await this.tlsProxy?.close();
    const file = await readConnectionFile(this.dir);
    if (file?.pid === process.pid) await rm(connectionFilePath(this.dir), { force: true });
  }
}
