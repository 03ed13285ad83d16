import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { DevStack, simHostIds } from '../dev-stack.js';
import type { FleetFileInput } from '../../agent/sim/fleet-file.js';
import { DEFAULT_STATE_DIR } from '../connection.js';
import { natsAuthorization } from '../nats-auth.js';

export interface DevOptions {
  dir?: string | undefined;
  simHosts: number | string[];
  fleet?: FleetFileInput | undefined;
  profile?: string | undefined;
  heartbeatMs: number;
}

/** `ptctl dev`: the embedded stack in the foreground until Ctrl-C. */
export async function devCommand(opts: DevOptions): Promise<void> {
  const dir = opts.dir ?? DEFAULT_STATE_DIR;
  const say = (line: string): void => void process.stdout.write(`${line}\n`);
  say(`starting the ptctl dev stack in ${dir}/ …`);
  const stack = await DevStack.start({ dir, simHosts: opts.simHosts, fleet: opts.fleet, profile: opts.profile, heartbeatMs: opts.heartbeatMs, ui: true, onProgress: (l) => say(`  ✓ ${l}`) });
  say('');
  say(`NATS      ${stack.connection.natsUrl}  (credentials: ${stack.connection.natsCreds})`);
  say(`Temporal  ${stack.connection.temporalAddress}  namespace ${stack.connection.temporalNamespace}`);
  if (stack.connection.temporalUi) say(`UI        ${stack.connection.temporalUi}`);
  say(`logs      ${stack.dir}/logs/`);
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
 * `ptctl dev --init-only`: the identities of `ptctl dev` without its servers, for a stack run elsewhere
 * (docker-compose.yml): one nkey seed per identity under <dir>/creds/ (kept when present, so a rerun
 * changes no credential) and <dir>/nats-auth.conf, the nats-server `authorization` block naming their
 * public keys, to mount into every NATS node.
 */
export async function devInitCommand(opts: { dir?: string | undefined; simHosts: number | string[] }): Promise<void> {
  const dir = resolve(opts.dir ?? DEFAULT_STATE_DIR);
  const hosts = simHostIds(opts.simHosts);
  const { config, orchestratorSeedFile } = await natsAuthorization(join(dir, 'creds'), hosts);
  const authFile = join(dir, 'nats-auth.conf');
  // Public keys and permissions only: readable by the NATS containers, which never see a seed.
  await writeFile(authFile, config + '\n', { mode: 0o644 });
  process.stdout.write(`NATS authorization  ${authFile}\norchestrator seed   ${orchestratorSeedFile}\nhost seeds          ${join(dir, 'creds')}/host-<id>.nk for ${hosts.join(', ')}\n`);
}
