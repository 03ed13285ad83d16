import { mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { spawn } from 'node:child_process';
import { Client, Connection } from '@temporalio/client';
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { AuditEvent, EVENTS_STREAM } from '../../schemas/agent-protocol.js';
import { DevStack, type DevStackOptions } from '../../cli/dev-stack.js';
import { connectNats } from '../../transport/nats-connection.js';
import { AgentClient } from '../../transport/agent-client.js';
import { simHostDir } from '../../cli/agent-runner.js';
import { PTCTL_ENTRY } from '../../cli/tools.js';
import { exportHistoriesIfAsked } from './history-export.js';
import { temporalConnectOptions } from '../../cli/temporal-connection.js';
import { containerServers } from '../containers/server-containers.js';
import { requireEngine } from '../containers/engine.js';

/**
 * PTC_TEST_STACK=containers: nats-server and Temporal come from testcontainers (images built here)
 * instead of local processes; the worker and the agents stay processes the tests can kill. Anything else
 * is refused rather than silently read as the default.
 */
function serverMode(): 'processes' | 'containers' {
  const mode = process.env.PTC_TEST_STACK ?? '';
  if (mode === '' || mode === 'processes') return 'processes';
  if (mode === 'containers') return 'containers';
  throw new Error(`PTC_TEST_STACK=${mode} is not a stack mode: use containers, processes or leave it unset.`);
}

/** A real stack (nats-server, Temporal dev server, worker, simulated agents) in a temp dir; see serverMode. */
export interface TestStack {
  dir: string;
  stack: DevStack;
  client: Client;
  nc: NatsConnection;
  agents: AgentClient;
  hostRoot(hostId: string): string;
  [Symbol.asyncDispose](): Promise<void>;
}

export async function startTestStack(opts: Partial<DevStackOptions> = {}): Promise<TestStack> {
  const containers = serverMode() === 'containers';
  // Before the temp dir: without an engine this mode fails at once, with one sentence.
  if (containers) await requireEngine();
  const dir = await mkdtemp(join(tmpdir(), 'ptctl-test-'));
  const stack = await DevStack.start({ dir, simHosts: 2, heartbeatMs: 1000, ...(containers ? { servers: containerServers } : {}), ...opts });
  let connection: Connection | null = null;
  let nc: NatsConnection | null = null;
  try {
    connection = stack.connection.temporalAddress ? await Connection.connect(await temporalConnectOptions(stack.connection)) : null;
    nc = await connectNats({ servers: stack.connection.natsUrl, seedFile: stack.connection.natsCreds, name: 'ptc-test', tls: stack.connection.natsTls });
  } catch (err) {
    await connection?.close();
    await stack.stop();
    throw err;
  }
  const client = connection ? new Client({ connection, namespace: stack.connection.temporalNamespace }) : null;
  const openNc = nc;
  return {
    dir,
    stack,
    get client(): Client {
      if (!client) throw new Error('this test stack runs without Temporal');
      return client;
    },
    nc: openNc,
    agents: new AgentClient(openNc),
    hostRoot: (hostId) => simHostDir(dir, hostId),
    async [Symbol.asyncDispose]() {
      if (client) await exportHistoriesIfAsked(client, `stack-${Date.now().toString(36)}`);
      await openNc.close();
      await connection?.close();
      await stack.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Every file under a folder with its bytes, and every symlink with its target (a simulated host's
 * sysfs `driver` links say which driver holds a device), to prove an operation changed nothing.
 */
export async function snapshotFiles(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  async function walk(dir: string): Promise<void> {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isSymbolicLink()) out.set(relative(root, path), `-> ${await readlink(path)}`);
      else if (entry.isDirectory()) await walk(path);
      else out.set(relative(root, path), await readFile(path, 'utf8'));
    }
  }
  await walk(root);
  return out;
}

/** All audit events of a host so far, read from the PTC_EVENTS stream with an ordered consumer. */
export async function auditEvents(nc: NatsConnection, hostId: string): Promise<AuditEvent[]> {
  const consumer = await jetstream(nc).consumers.get(EVENTS_STREAM, { filter_subjects: [`ptc.v1.events.${hostId}.>`] });
  const events: AuditEvent[] = [];
  for (;;) {
    let last = -1;
    const batch = await consumer.fetch({ max_messages: 1000, expires: 1000 });
    for await (const msg of batch) {
      events.push(AuditEvent.parse(msg.json()));
      last = msg.info.pending;
      if (last === 0) break;
    }
    if (last <= 0) break;
  }
  await consumer.delete().catch(() => undefined);
  return events;
}

/** Runs the real `ptctl` CLI (bin/ptctl.js) and captures its output. */
export function runCli(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [PTCTL_ENTRY, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}
