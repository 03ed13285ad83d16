import { StateDirLock } from '../agent/agent-lock.js';
import { HostAgent } from '../agent/host-agent.js';
import { ExecRunner } from '../agent/linux/command-runner.js';
import { LinuxHost } from '../agent/linux/linux-host.js';
import { connectNats, hostInboxPrefix, type NatsTls } from '../transport/nats-connection.js';
import { AgentTelemetry } from '../observability/agent-telemetry.js';
import { createLogger } from '../observability/logger.js';
import { serveMetrics } from '../observability/metrics-server.js';

export interface LinuxAgentOptions {
  hostId: string;
  natsUrl: string;
  /** This host's nkey seed file: its identity may only touch its own subjects. */
  natsCreds: string;
  /** `/` on a real host; another root to run against a fixture tree or a chroot. */
  root: string;
  stateDir: string;
  toolstack: 'auto' | 'xl' | 'xm';
  heartbeatMs: number;
  /** Serve the agent's metrics at http://ADDR/metrics; off when unset. */
  metrics?: string | undefined;
  /** Accepted clock skew of a request's issuedAt. */
  maxSkewMs?: number | undefined;
  /** TLS to NATS (CA, and this host's certificate for mutual TLS). */
  natsTls?: NatsTls | undefined;
}

/** The interface that carries traffic to the NATS server: hiding it would cut the agent off. */
async function natsUplink(runner: ExecRunner, natsUrl: string): Promise<string[]> {
  const host = new URL(natsUrl.split(',')[0]?.trim().replace(/^nats:/, 'http:') ?? 'http://127.0.0.1').hostname;
  if (!/^[0-9.]+$/.test(host)) return [];
  const res = await runner.run(['ip', 'route', 'get', host], { timeoutMs: 5000 });
  const dev = /\bdev (\S+)/.exec(res.stdout)?.[1];
  return res.code === 0 && dev && dev !== 'lo' ? [dev] : [];
}

/** Runs the agent for this real host (the linux backend) until SIGINT/SIGTERM. */
export async function runLinuxAgent(opts: LinuxAgentOptions): Promise<void> {
  // Rule 16: the lock first, so a second agent for this host touches nothing and connects to nothing.
  const lock = await StateDirLock.forNewAgent(opts.stateDir, opts.hostId);
  const log = createLogger('ptc-agent');
  const telemetry = new AgentTelemetry(log);
  const runner = new ExecRunner();
  const uplinkInterfaces = await natsUplink(runner, opts.natsUrl).catch(() => []);
  const backend = new LinuxHost({ root: opts.root, runner, toolstack: opts.toolstack, uplinkInterfaces });
  const nc = await connectNats({ servers: opts.natsUrl, seedFile: opts.natsCreds, name: `ptc-agent-${opts.hostId}`, inboxPrefix: hostInboxPrefix(opts.hostId), reconnectForever: true, tls: opts.natsTls });
  telemetry.watchNats(opts.hostId, nc);
  const agent = await HostAgent.start({ hostId: opts.hostId, backend, nc, stateDir: opts.stateDir, lock, heartbeatMs: opts.heartbeatMs, ...(opts.maxSkewMs ? { maxSkewMs: opts.maxSkewMs } : {}), log: log.child({ hostId: opts.hostId }), observer: telemetry });
  const endpoint = opts.metrics ? await serveMetrics(opts.metrics, [() => telemetry.registry.metrics()]) : null;
  if (endpoint) log.info({ metrics: endpoint.url }, 'serving metrics');
  log.info({ uplinkInterfaces, root: opts.root }, 'agent ready (linux backend)');
  const signalled = new Promise<null>((resolve) => {
    process.once('SIGINT', () => resolve(null));
    process.once('SIGTERM', () => resolve(null));
  });
  // SIGTERM: the command in progress finishes (and is answered) before the agent exits.
  const fenced = await Promise.race([signalled, agent.fenced]);
  await agent.stop();
  await nc.drain();
  await endpoint?.close();
  if (fenced) throw fenced;
}
