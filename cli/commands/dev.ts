import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { DEV_PERSON, DevStack, issueDevIdentities, simHostIds } from '../dev-stack.js';
import type { FleetFileInput } from '../../agent/sim/fleet-file.js';
import { DEFAULT_STATE_DIR } from '../connection.js';
import { credsFile } from '../nats-creds.js';
import { identityName } from '../../transport/nats-permissions.js';

export interface DevOptions {
  dir?: string | undefined;
  simHosts: number | string[];
  fleet?: FleetFileInput | undefined;
  profile?: string | undefined;
  heartbeatMs: number;
  tls?: boolean;
}

/** `ptctl dev`: the embedded stack in the foreground until Ctrl-C. */
export async function devCommand(opts: DevOptions): Promise<void> {
  const dir = opts.dir ?? DEFAULT_STATE_DIR;
  const say = (line: string): void => void process.stdout.write(`${line}\n`);
  say(`starting the ptctl dev stack in ${dir}/ …`);
  const stack = await DevStack.start({ dir, simHosts: opts.simHosts, fleet: opts.fleet, profile: opts.profile, heartbeatMs: opts.heartbeatMs, tls: opts.tls === true, ui: true, onProgress: (l) => say(`  ✓ ${l}`) });
  say('');
  say(`NATS      ${stack.connection.natsUrl}`);
  say(`          worker ${stack.connection.natsCreds}, operator ${stack.roleCreds.natsOperatorCreds}, viewer ${stack.roleCreds.natsViewerCreds}`);
  say(`Temporal  ${stack.connection.temporalAddress}  namespace ${stack.connection.temporalNamespace}`);
  if (stack.connection.temporalUi) say(`UI        ${stack.connection.temporalUi}`);
  if (stack.tlsFiles) say(`TLS       CA ${stack.tlsFiles.caFile}, client ${stack.tlsFiles.clientCert} (the CLI finds them through ${stack.dir}/connection.json)`);
  if (stack.metrics.worker) say(`metrics   worker ${stack.metrics.worker}  (ptctl + Temporal SDK)`);
  if (stack.metrics.agents) say(`          agents ${stack.metrics.agents}  (every simulated host, label host)`);
  if (stack.metrics.temporalServer) say(`          Temporal server ${stack.metrics.temporalServer}`);
  say(`logs      ${stack.dir}/logs/  (JSON lines; follow with: tail -F ${stack.dir}/logs/worker.log ${stack.dir}/logs/agents.log)`);
  say('');
  say(`ready. In another terminal: ptctl hosts --dir ${dir}`);
  say(`                            ptctl attach --dir ${dir} --host ${stack.hosts[0] ?? 'sim-1'} --device 0000:09:00.0 --guest vm-hvm --wait`);
  say('Ctrl-C stops everything.');

  const signal = new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('interrupted'));
    process.once('SIGTERM', () => resolve('terminated'));
  });
  const why = await Promise.race([signal, stack.watch()]);
  say(`\nstopping (${why}) …`);
  await stack.stop();
  say('stopped.');
  if (why !== 'interrupted' && why !== 'terminated') throw new Error(why);
}

/**
 * `ptctl dev --init-only`: issues the stack's NATS identities into <dir>/creds (`.creds` files, 0600;
 * existing ones are kept) and writes <dir>/nats-auth.conf, the nats-server settings that trust them
 * (operator, system account, full resolver preloaded with the accounts), for servers run elsewhere
 * (docker-compose.yml). The NATS nodes see that file only, never a secret.
 */
export async function devInitCommand(opts: { dir?: string | undefined; simHosts: number | string[]; resolverDir?: string | undefined }): Promise<void> {
  const dir = resolve(opts.dir ?? DEFAULT_STATE_DIR);
  const hosts = simHostIds(opts.simHosts);
  const creds = await issueDevIdentities(join(dir, 'creds'), hosts);
  const authFile = join(dir, 'nats-auth.conf');
  await writeFile(authFile, `${JSON.stringify(creds.serverConfig(opts.resolverDir ?? '/data/resolver'), null, 2)}\n`, { mode: 0o644 });
  process.stdout.write(`NATS server settings  ${authFile}\nworker credentials    ${credsFile(creds.dir, identityName('worker', 'worker'))}\noperator credentials  ${credsFile(creds.dir, identityName('operator', DEV_PERSON))}\nhost credentials      ${creds.dir}/host-<id>.creds for ${hosts.join(', ')}\n`);
}
