import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import Table from 'cli-table3';
import { CredsStore } from '../nats-creds.js';
import type { NatsRole } from '../../transport/nats-permissions.js';
import { identityName } from '../../transport/nats-permissions.js';
import { printJson } from '../output.js';

export { DEFAULT_CREDS_DIR } from '../connection.js';

export interface CredsOptions {
  credsDir: string;
  json: boolean;
}

const say = (line: string): void => void process.stdout.write(`${line}\n`);

/** `ptctl creds init`: operator, accounts, the worker identity and the server's auth config; nothing secret is printed. */
export async function credsInitCommand(opts: CredsOptions & { resolverDir?: string | undefined; serverConfig?: string | undefined }): Promise<void> {
  const store = await CredsStore.init(opts.credsDir);
  const worker = await store.add('worker', 'worker');
  const configFile = await writeServerConfig(store, opts.serverConfig, opts.resolverDir);
  if (opts.json) return printJson({ ok: true, credsDir: store.dir, worker: worker.file, serverConfig: configFile });
  say(`credentials in ${store.dir} (secrets 0600)`);
  say(`worker identity: ${worker.file}`);
  say(`nats-server auth config: ${configFile} (include it from your nats-server config)`);
}

async function writeServerConfig(store: CredsStore, file: string | undefined, resolverDir: string | undefined): Promise<string> {
  const out = resolve(file ?? join(store.dir, 'nats-auth.conf'));
  // Public data only (operator and account JWTs, public keys); nats-server's config format accepts JSON.
  const body = JSON.stringify(store.serverConfig(resolve(resolverDir ?? join(store.dir, 'resolver'))), null, 2);
  await writeFile(out, body.slice(1, -1).trim() + '\n', { mode: 0o644 });
  return out;
}

/** `ptctl creds server-config`: (re)writes the nats-server auth block, e.g. for another server of a cluster. */
export async function credsServerConfigCommand(opts: CredsOptions & { resolverDir?: string | undefined; out?: string | undefined }): Promise<void> {
  const store = await CredsStore.open(opts.credsDir);
  const file = await writeServerConfig(store, opts.out, opts.resolverDir);
  if (opts.json) printJson({ ok: true, serverConfig: file });
  else say(`nats-server auth config: ${file}`);
}

/** `ptctl creds add-host|add-user`: a new identity; the running servers accept it without a reload. */
export async function credsAddCommand(opts: CredsOptions & { role: NatsRole; name: string }): Promise<void> {
  const store = await CredsStore.open(opts.credsDir);
  const added = await store.add(opts.role, opts.name);
  if (opts.json) return printJson({ ok: true, ...added });
  say(`${added.created ? 'created' : 'exists, kept'}: ${added.identity} -> ${added.file}`);
  if (opts.role === 'host') say(`copy it to the host (mode 0600) and run: ptctl agent --backend linux --host-id ${opts.name} --nats-creds <file> --nats-url <url>`);
}

/** `ptctl creds revoke`: revoke an identity and, with --nats-url, cut it off on the running servers now. */
export async function credsRevokeCommand(opts: CredsOptions & { identity: string; natsUrl?: string | undefined; resolverDir?: string | undefined }): Promise<void> {
  const store = await CredsStore.open(opts.credsDir);
  const { pushed } = await store.revoke(opts.identity, opts.natsUrl);
  // The preload in the server config must carry the revocation too, or a server started from it would forget it.
  const configFile = await writeServerConfig(store, undefined, opts.resolverDir);
  if (opts.json) return printJson({ ok: true, identity: opts.identity, pushed, serverConfig: configFile });
  say(`revoked ${opts.identity}${pushed ? '; the servers were told and closed its connections' : '; pass --nats-url to tell the running servers now (or `ptctl creds push`)'}`);
}

/** `ptctl creds push`: send the current account JWT (with its revocations) to running servers. */
export async function credsPushCommand(opts: CredsOptions & { natsUrl: string }): Promise<void> {
  const store = await CredsStore.open(opts.credsDir);
  await store.push(opts.natsUrl);
  if (opts.json) printJson({ ok: true });
  else say(`account JWT pushed to ${opts.natsUrl}`);
}

export async function credsListCommand(opts: CredsOptions): Promise<void> {
  const store = await CredsStore.open(opts.credsDir);
  const rows = store.identities;
  if (opts.json) return printJson(rows.map(({ identity, role, name, publicKey, issuedAt, revokedAt, file }) => ({ identity, role, name, publicKey, issuedAt, revokedAt, file })));
  const table = new Table({ head: ['IDENTITY', 'ROLE', 'PUBLIC KEY', 'ISSUED', 'REVOKED'], style: { head: [], border: [] } });
  for (const r of rows) table.push([r.identity, r.role, r.publicKey, r.issuedAt, r.revokedAt ?? '-']);
  say(table.toString());
}

export const hostIdentity = (hostId: string): string => identityName('host', hostId);
