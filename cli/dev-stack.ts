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
import { ManagedProcess } from './child-process.js';
import { type Connection, type ConnectionFile, connectionEnv, connectionFilePath, processAlive, readConnectionFile } from './connection.js';
import { natsAuthorization } from './nats-auth.js';
import { PTCTL_ENTRY, serverBinary } from './tools.js';
import { TASK_QUEUE } from '../workflows/definitions.js';
import type { FleetFileInput } from '../agent/sim/fleet-file.js';

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
  hosts: string[] = [];
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

    // NATS
    const { config: authConfig, orchestratorSeedFile } = await natsAuthorization(this.path('creds'), this.hosts);
    const natsConf = {
      listen: `127.0.0.1:${ports.nats}`,
      http: `127.0.0.1:${ports.natsMonitor}`,
      server_name: 'ptc-dev',
      jetstream: { store_dir: this.path('nats') },
      ...(JSON.parse(authConfig) as object),
    };
    await writeFile(this.path('nats.conf'), JSON.stringify(natsConf, null, 2), { mode: 0o600 });
    this.processes.push(await this.startServer('nats-server', ['-c', this.path('nats.conf')], 'nats.log'));
    const natsUrl = `nats://127.0.0.1:${ports.nats}`;
    await waitFor('nats-server', 20_000, async () => ((await fetch(`http://127.0.0.1:${ports.natsMonitor}/healthz?js-enabled-only=true`)).ok ? true : null), () => this.deadProcess());
    this.nc = await connectNats({ servers: natsUrl, seedFile: orchestratorSeedFile, name: 'ptc-dev' });
    await ensureNatsResources(this.nc);
    this.say(`nats-server ready on ${natsUrl} (JetStream, nkey auth)`);

    const namespace = 'default';
    this.connection = { natsUrl, natsCreds: orchestratorSeedFile, temporalAddress: '', temporalNamespace: namespace, temporalUi: null };
    if (this.opts.temporal ?? true) await this.startTemporalAndWorker(ports);

    // Agents: one process runs every simulated host, each with its own NATS identity.
    if (this.hosts.length > 0 && (this.opts.agents ?? true)) await this.startAgents();

    const file: ConnectionFile = { ...this.connection, pid: process.pid, hosts: this.hosts, startedAt: new Date().toISOString() };
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
          '--port', String(ports.temporal),
          '--http-port', String(ports.temporalHttp),
          '--metrics-port', String(ports.temporalMetrics),
          ...(ui ? ['--ui-port', String(ports.temporalUi)] : ['--headless']),
          '--log-level', 'warn',
        ],
        'temporal.log',
      ),
    );
    const namespace = this.connection.temporalNamespace;
    const tc = await waitFor('Temporal dev server', 60_000, async () => {
      const conn = await TemporalConnection.connect({ address: temporalAddress, connectTimeout: 2000 });
      try {
        await conn.workflowService.describeNamespace({ namespace });
        return conn;
      } catch (err) {
        await conn.close();
        throw err;
      }
    }, () => this.deadProcess());
    const temporalUi = ui ? `http://127.0.0.1:${ports.temporalUi}` : null;
    this.say(`Temporal dev server ready on ${temporalAddress}${temporalUi ? `, UI ${temporalUi}` : ''}`);

    this.connection = { ...this.connection, temporalAddress, temporalUi };
    const childEnv = { ...process.env, ...connectionEnv(this.connection), ...(this.opts.agentTimeoutMs ? { PTC_AGENT_TIMEOUT_MS: String(this.opts.agentTimeoutMs) } : {}) };

    // Worker
    this.processes.push(ManagedProcess.start('worker', process.execPath, [PTCTL_ENTRY, 'worker'], { logFile: this.path('logs', 'worker.log'), env: childEnv }));
    try {
      await waitFor('worker', 90_000, async () => {
        const res = await tc.workflowService.describeTaskQueue({
          namespace,
          taskQueue: { name: TASK_QUEUE },
          taskQueueType: proto.temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        });
        return (res.pollers?.length ?? 0) > 0 ? true : null;
      }, () => this.deadProcess());
    } finally {
      await tc.close();
    }
    this.say(`worker polling task queue "${TASK_QUEUE}"`);
  }

  private agentsProcess: ManagedProcess | null = null;

  /** Starts the simulated agents' process and waits until every host has reported a fresh inventory. */
  async startAgents(faults: Record<string, unknown> | undefined = this.opts.simFaults): Promise<void> {
    if (!this.nc) throw new PtcError(ErrorCode.STACK_FAILED, 'NATS is not running');
    const startedAt = new Date().toISOString();
    const args = [PTCTL_ENTRY, 'agent', '--backend', 'sim', '--dir', this.dir, '--creds-dir', this.path('creds'), '--heartbeat', String(this.opts.heartbeatMs ?? 5000)];
    if (this.opts.profile) args.push('--profile', this.opts.profile);
    if (faults) args.push('--sim-faults', JSON.stringify(faults));
    if (this.opts.fleet) {
      await writeFile(this.path('fleet.json'), JSON.stringify(this.opts.fleet, null, 2));
      args.push('--fleet', this.path('fleet.json'));
    }
    for (const h of this.hosts) args.push('--host-id', h);
    const env = { ...process.env, ...connectionEnv(this.connection) };
    this.agentsProcess = ManagedProcess.start('agents', process.execPath, args, { logFile: this.path('logs', 'agents.log'), env });
    this.processes.push(this.agentsProcess);
    const kv = await new Kvm(this.nc).open(HOSTS_BUCKET);
    await waitFor(`agents of ${this.hosts.length} simulated hosts`, 60_000, async () => {
      for (const h of this.hosts) {
        const entry = await kv.get(h);
        const inv = entry?.operation === 'PUT' ? HostInventory.safeParse(entry.json()) : null;
        if (!inv?.success || inv.data.seenAt < startedAt) return null;
      }
      return true;
    }, () => this.deadProcess());
    this.say(`${this.hosts.length} simulated host agent(s) reporting: ${this.hosts.join(', ')}`);
  }

  /** Ends the agents' process (SIGKILL by default, like a crash) and waits until it is gone. */
  async stopAgents(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const proc = this.agentsProcess;
    if (!proc) return;
    this.agentsProcess = null;
    if (signal === 'SIGTERM') await proc.stop();
    else {
      proc.kill(signal);
      await proc.waitForExit();
    }
    this.processes.splice(this.processes.indexOf(proc), 1);
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

  /** Pid of the agents' process (benchmarks read its memory). */
  get agentsPid(): number | undefined {
    return this.agentsProcess?.pid;
  }

  /** Exit info of the agents' process, e.g. after an injected crash. */
  get agentsExit(): ManagedProcess['exit'] {
    return this.agentsProcess?.exit ?? null;
  }

  async waitForAgentsExit(): Promise<void> {
    await this.agentsProcess?.waitForExit();
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
    return {
      nats: await pick(previous.nats),
      natsMonitor: await pick(previous.natsMonitor),
      temporal: await pick(previous.temporal),
      temporalUi: await pick(previous.temporalUi),
      temporalHttp: await pick(previous.temporalHttp),
      temporalMetrics: await pick(previous.temporalMetrics),
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
    const file = await readConnectionFile(this.dir);
    if (file?.pid === process.pid) await rm(connectionFilePath(this.dir), { force: true });
  }
}
