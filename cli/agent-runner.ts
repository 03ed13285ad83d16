import { join, resolve } from 'node:path';
import { pino } from 'pino';
import { ErrorCode, PtcError } from '../schemas/errors.js';
import { HostAgent } from '../agent/host-agent.js';
import { SimHost, type SimFaultsInput } from '../agent/sim/sim-host.js';
import { type FleetFile, hostSettings } from '../agent/sim/fleet-file.js';
import { connectNats, hostInboxPrefix, type NatsTls } from '../transport/nats-connection.js';
import { hostCredsFile } from './nats-creds.js';

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
}

/** The layout of a simulated host: its root (etc/…) and, inside it, where a real agent keeps its state. */
export const simHostDir = (dir: string, hostId: string): string => join(resolve(dir), 'hosts', hostId);
export const agentStateDir = (hostRoot: string): string => join(hostRoot, 'var', 'lib', 'ptctl');

/** Runs one agent per simulated host in this process until SIGINT/SIGTERM, then shuts down cleanly. */
export async function runSimAgents(opts: SimAgentsOptions): Promise<void> {
  if (opts.hostIds.length === 0) throw new PtcError(ErrorCode.INVALID_INPUT, 'give at least one --host-id');
  const log = pino({ name: 'ptc-agent' }, pino.destination(2));
  const agents: Array<{ agent: HostAgent; close: () => Promise<void> }> = [];
  for (const hostId of opts.hostIds) {
    const root = simHostDir(opts.dir, hostId);
    const { profile, faults } = hostSettings(opts.fleet, hostId, opts);
    const backend = await SimHost.open({ hostDir: root, hostId, profile, faults });
    const nc = await connectNats({
      servers: opts.natsUrl,
      seedFile: hostCredsFile(opts.credsDir, hostId),
      name: `ptc-agent-${hostId}`,
      inboxPrefix: hostInboxPrefix(hostId),
      reconnectForever: true,
      tls: opts.natsTls,
    });
    const agent = await HostAgent.start({
      hostId,
      backend,
      nc,
      stateDir: agentStateDir(root),
      heartbeatMs: opts.heartbeatMs,
      ...(opts.maxSkewMs ? { maxSkewMs: opts.maxSkewMs } : {}),
      crashAt: backend.faults.crashAtStep,
      rebootAt: backend.faults.rebootAtStep,
      log: log.child({ hostId }),
    });
    agents.push({ agent, close: () => nc.drain() });
  }
  await new Promise<void>((resolveSignal) => {
    process.once('SIGINT', resolveSignal);
    process.once('SIGTERM', resolveSignal);
  });
  log.info('shutting down agents');
  for (const { agent, close } of agents) {
    await agent.stop();
    await close();
  }
}
