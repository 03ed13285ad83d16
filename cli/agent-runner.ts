import { join, resolve } from 'node:path';
import { ErrorCode, PtcError } from '../schemas/errors.js';
import { StateDirLock } from '../agent/agent-lock.js';
import { HostAgent } from '../agent/host-agent.js';
import { SimHost, type SimFaultsInput } from '../agent/sim/sim-host.js';
import { type FleetFile, hostSettings } from '../agent/sim/fleet-file.js';
import { connectNats, hostInboxPrefix, type NatsTls } from '../transport/nats-connection.js';
import { hostCredsFile } from './nats-creds.js';
import { AgentTelemetry } from '../observability/agent-telemetry.js';
import { createLogger } from '../observability/logger.js';
import { serveMetrics } from '../observability/metrics-server.js';

export interface SimAgentsOptions {
  dir: string;
  hostIds: readonly string[];
  natsUrl: string;
  /** Folder with one `host-<id>.creds` per host: each simulated host has its own NATS identity. */
  credsDir: string;
  heartbeatMs: number;
  /** Accepted clock skew of a request's issuedAt. */
  maxSkewMs?: number | undefined;
  /** TLS to NATS (CA, and this host's certificate for mutual TLS). */
  natsTls?: NatsTls | undefined;
  profile?: string | undefined;
  faults?: SimFaultsInput | undefined;
  /** Per-host profiles and faults. */
  fleet?: FleetFile | undefined;
  /** Serve every host's metrics (label `host`) at http://ADDR/metrics; off when unset. */
  metrics?: string | undefined;
}

/** The layout of a simulated host: its root (etc/…) and, inside it, where a real agent keeps its state. */
export const simHostDir = (dir: string, hostId: string): string => join(resolve(dir), 'hosts', hostId);
export const agentStateDir = (hostRoot: string): string => join(hostRoot, 'var', 'lib', 'ptctl');

/** Runs one agent per simulated host in this process until SIGINT/SIGTERM, then shuts down cleanly. */
export async function runSimAgents(opts: SimAgentsOptions): Promise<void> {
  if (opts.hostIds.length === 0) throw new PtcError(ErrorCode.INVALID_INPUT, 'give at least one --host-id');
  const log = createLogger('ptc-agent');
  const telemetry = new AgentTelemetry(log);
  const endpoint = opts.metrics ? await serveMetrics(opts.metrics, [() => telemetry.registry.metrics()]) : null;
  if (endpoint) log.info({ metrics: endpoint.url }, 'serving metrics');
  const agents: Array<{ agent: HostAgent; close: () => Promise<void> }> = [];
  for (const hostId of opts.hostIds) {
    const root = simHostDir(opts.dir, hostId);
    const { profile, faults } = hostSettings(opts.fleet, hostId, opts);
    // Rule 16: the lock first, so a second agent for this host opens nothing and connects to nothing.
    const lock = await StateDirLock.forNewAgent(agentStateDir(root), hostId);
    const backend = await SimHost.open({ hostDir: root, hostId, profile, faults });
    const nc = await connectNats({
      servers: opts.natsUrl,
      seedFile: hostCredsFile(opts.credsDir, hostId),
      name: `ptc-agent-${hostId}`,
      inboxPrefix: hostInboxPrefix(hostId),
      reconnectForever: true,
      tls: opts.natsTls,
    });
    telemetry.watchNats(hostId, nc);
    const agent = await HostAgent.start({
      hostId,
      backend,
      nc,
      stateDir: agentStateDir(root),
      lock,
      heartbeatMs: opts.heartbeatMs,
      ...(opts.maxSkewMs ? { maxSkewMs: opts.maxSkewMs } : {}),
      crashAt: backend.faults.crashAtStep,
      rebootAt: backend.faults.rebootAtStep,
      log: log.child({ hostId }),
      observer: telemetry,
    });
    agents.push({ agent, close: () => nc.drain() });
  }
  const signalled = new Promise<null>((resolveSignal) => {
    process.once('SIGINT', () => resolveSignal(null));
    process.once('SIGTERM', () => resolveSignal(null));
  });
  // A host whose key another agent writes stops being served (rule 16); the process reports it and exits.
  const fenced = await Promise.race([signalled, ...agents.map(({ agent }) => agent.fenced)]);
  log.info('shutting down agents');
  for (const { agent, close } of agents) {
    await agent.stop();
    await close();
  }
  await endpoint?.close();
  if (fenced) throw fenced;
}
