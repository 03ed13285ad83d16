import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { createAccount, createOperator, createUser, encodeAccount, encodeOperator, encodeUser, fmtCreds, fromSeed, type KeyPair } from '@nats-io/jwt';
import { ErrorCode, PtcError } from '../schemas/errors.js';
import { HostId } from '../schemas/ids.js';
import { connectNats } from '../transport/nats-connection.js';
import { IDENTITY_NAME, type NatsRole, NATS_ROLES, identityName, permissionsFor } from '../transport/nats-permissions.js';

/**
 * NATS decentralized auth for ptctl (DESIGN §7): one operator, a system account (for pushing account
 * updates to the servers) and the PTC account whose users are ptctl's identities. A user's JWT,
 * signed by the account key, carries its permissions, so enrolling a host needs no server change;
 * revoking one re-signs the account JWT with a revocation and pushes it to the running servers
 * (resolver `full`), which cut the user off at once.
 *
 * Layout of the credentials dir: secrets are 0600 in a 0700 dir (`operator.nk`, `account-*.nk`,
 * `sys.creds`, `<identity>.creds`); `store.json` holds only public data (JWTs, public keys, dates).
 */

const Identity = z.object({
  role: z.enum(NATS_ROLES as [NatsRole, ...NatsRole[]]),
  name: z.string(),
  publicKey: z.string(),
  issuedAt: z.string(),
  revokedAt: z.string().nullable(),
});
export type IdentityRecord = z.infer<typeof Identity>;

const Store = z.object({
  version: z.literal(1),
  operator: z.object({ publicKey: z.string(), jwt: z.string() }),
  systemAccount: z.object({ publicKey: z.string(), jwt: z.string() }),
  account: z.object({ publicKey: z.string(), jwt: z.string(), revocations: z.record(z.string(), z.number().int()) }),
  identities: z.record(z.string(), Identity),
});
type Store = z.infer<typeof Store>;

export const ACCOUNT_NAME = 'PTC';
const SYSTEM_ACCOUNT_NAME = 'SYS';

const storePath = (dir: string): string => join(dir, 'store.json');
export const credsFile = (dir: string, identity: string): string => join(resolve(dir), `${identity}.creds`);
export const hostCredsFile = (dir: string, hostId: string): string => credsFile(dir, identityName('host', hostId));
export const systemCredsFile = (dir: string): string => join(resolve(dir), 'sys.creds');

async function writeSecret(path: string, data: string | Uint8Array): Promise<void> {
  // Written aside and renamed: a reader never sees half a key, and the mode is set before the content lands.
  const tmp = `${path}.tmp`;
  await writeFile(tmp, data, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, path);
}

async function readSeed(dir: string, file: string): Promise<KeyPair> {
  try {
    return fromSeed(new TextEncoder().encode((await readFile(join(dir, file), 'utf8')).trim()));
  } catch (err) {
    throw new PtcError(ErrorCode.INVALID_INPUT, `cannot read ${join(dir, file)}: ${(err as Error).message}; run \`ptctl creds init --creds-dir ${dir}\` first`, { cause: err });
  }
}

const seedText = (kp: KeyPair): string => new TextDecoder().decode(kp.getSeed()) + '\n';

/** JetStream on, no other limits: ptctl's own streams bound their size. */
const ACCOUNT_LIMITS = {
  subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1,
  mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1,
};

async function signAccount(dir: string, store: Store): Promise<string> {
  const operator = await readSeed(dir, 'operator.nk');
  const account = await readSeed(dir, 'account-ptc.nk');
  return encodeAccount(ACCOUNT_NAME, account, { limits: ACCOUNT_LIMITS, revocations: store.account.revocations }, { signer: operator });
}

export class CredsStore {
  private constructor(
    readonly dir: string,
    private store: Store,
  ) {}

  /** Opens the store in `dir`, creating the operator and both accounts the first time. */
  static async init(dirIn: string): Promise<CredsStore> {
    const dir = resolve(dirIn);
    const existing = await CredsStore.tryOpen(dir);
    if (existing) return existing;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
    const operator = createOperator();
    const sys = createAccount();
    const account = createAccount();
    const sysUser = createUser();
    await writeSecret(join(dir, 'operator.nk'), seedText(operator));
    await writeSecret(join(dir, 'account-sys.nk'), seedText(sys));
    await writeSecret(join(dir, 'account-ptc.nk'), seedText(account));
    const operatorJwt = await encodeOperator('ptc', operator, { system_account: sys.getPublicKey() });
    const sysJwt = await encodeAccount(SYSTEM_ACCOUNT_NAME, sys, { limits: { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 } }, { signer: operator });
    const sysUserJwt = await encodeUser('sys', sysUser, sys);
    await writeSecret(systemCredsFile(dir), fmtCreds(sysUserJwt, sysUser));
    const store: Store = {
      version: 1,
      operator: { publicKey: operator.getPublicKey(), jwt: operatorJwt },
      systemAccount: { publicKey: sys.getPublicKey(), jwt: sysJwt },
      account: { publicKey: account.getPublicKey(), jwt: '', revocations: {} },
      identities: {},
    };
    const created = new CredsStore(dir, store);
    store.account.jwt = await signAccount(dir, store);
    await created.save();
    return created;
  }

  static async open(dirIn: string): Promise<CredsStore> {
    const dir = resolve(dirIn);
    const store = await CredsStore.tryOpen(dir);
    if (!store) throw new PtcError(ErrorCode.INVALID_INPUT, `no ptctl credentials in ${dir}: run \`ptctl creds init --creds-dir ${dirIn}\` first`);
    return store;
  }

  private static async tryOpen(dir: string): Promise<CredsStore | null> {
    let text: string;
    try {
      text = await readFile(storePath(dir), 'utf8');
    } catch {
      return null;
    }
    const parsed = Store.safeParse(JSON.parse(text));
    if (!parsed.success) throw new PtcError(ErrorCode.INVALID_INPUT, `${storePath(dir)} is not a ptctl credentials store`);
    return new CredsStore(dir, parsed.data);
  }

  private async save(): Promise<void> {
    const tmp = `${storePath(this.dir)}.tmp`;
    await writeFile(tmp, JSON.stringify(this.store, null, 2) + '\n', { mode: 0o644 });
    await rename(tmp, storePath(this.dir));
  }

  get identities(): Array<IdentityRecord & { identity: string; file: string }> {
    return Object.entries(this.store.identities).map(([identity, rec]) => ({ identity, ...rec, file: credsFile(this.dir, identity) }));
  }

  /**
   * Issues a user of a role: a fresh key pair and a JWT with that role's permissions, in
   * `<identity>.creds`. An identity that exists and is not revoked is kept as it is (idempotent).
   */
  async add(role: NatsRole, nameIn: string): Promise<{ identity: string; file: string; created: boolean }> {
    const name = role === 'worker' ? 'worker' : nameIn;
    const valid = role === 'host' ? HostId.safeParse(name).success : IDENTITY_NAME.test(name);
    if (!valid) throw new PtcError(ErrorCode.INVALID_INPUT, `"${name}" is not a valid ${role} name (1-63 characters of a-z, 0-9 and "-")`);
    const identity = identityName(role, name);
    const file = credsFile(this.dir, identity);
    const current = this.store.identities[identity];
    if (current && current.revokedAt === null) return { identity, file, created: false };
    const user = createUser();
    const account = await readSeed(this.dir, 'account-ptc.nk');
    const p = permissionsFor(role, name);
    const jwt = await encodeUser(identity, user, account, {
      pub: { allow: p.publish, deny: [] },
      sub: { allow: p.subscribe, deny: [] },
      ...(p.allowResponses ? { resp: { max: 1, ttl: 0 } } : {}),
    });
    await writeSecret(file, fmtCreds(jwt, user));
    this.store.identities[identity] = { role, name, publicKey: user.getPublicKey(), issuedAt: new Date().toISOString(), revokedAt: null };
    await this.save();
    return { identity, file, created: true };
  }

  /**
   * Revokes an identity: the account JWT gets a revocation for its key and is re-signed; pushed to
   * the running servers when `natsUrl` is given (their connections of that user are closed at once).
   * The identity's creds file is kept renamed `.revoked` for the record; it no longer authenticates.
   */
  async revoke(identity: string, natsUrl?: string): Promise<{ pushed: boolean }> {
    const rec = this.store.identities[identity];
    if (!rec) throw new PtcError(ErrorCode.INVALID_INPUT, `no identity "${identity}" in ${this.dir} (see \`ptctl creds list\`)`);
    if (rec.revokedAt === null) {
      // Revokes every JWT of this key issued at or before now (nats-server compares the JWT's iat).
      this.store.account.revocations[rec.publicKey] = Math.floor(Date.now() / 1000);
      rec.revokedAt = new Date().toISOString();
      this.store.account.jwt = await signAccount(this.dir, this.store);
      await this.save();
      await rename(credsFile(this.dir, identity), `${credsFile(this.dir, identity)}.revoked`).catch(() => undefined);
    }
    if (!natsUrl) return { pushed: false };
    await this.push(natsUrl);
    return { pushed: true };
  }

  /** Sends the current account JWT to the servers through the system account (`$SYS.REQ.CLAIMS.UPDATE`). */
  async push(natsUrl: string, tls?: Parameters<typeof connectNats>[0]['tls']): Promise<void> {
    const nc = await connectNats({ servers: natsUrl, seedFile: systemCredsFile(this.dir), name: 'ptctl-creds', ...(tls ? { tls } : {}) });
    try {
      const reply = await nc.request('$SYS.REQ.CLAIMS.UPDATE', this.store.account.jwt, { timeout: 5000 });
      const body = reply.json<{ data?: { code?: number; message?: string }; error?: { code?: number; description?: string } }>();
      if (body.error || (body.data?.code ?? 0) !== 200) {
        throw new PtcError(ErrorCode.NOT_CONNECTED, `nats-server refused the account update: ${body.error?.description ?? body.data?.message ?? 'no reason given'}`);
      }
    } finally {
      await nc.close();
    }
  }

  /**
   * The nats-server settings for this operator: trust the operator, the system account, and a full
   * resolver (account JWTs stored in `resolverDir`, updatable at run time) preloaded with both accounts.
   */
  serverConfig(resolverDir: string): Record<string, unknown> {
    return {
      operator: this.store.operator.jwt,
      system_account: this.store.systemAccount.publicKey,
      resolver: { type: 'full', dir: resolverDir, allow_delete: false, interval: '2m' },
      resolver_preload: { [this.store.systemAccount.publicKey]: this.store.systemAccount.jwt, [this.store.account.publicKey]: this.store.account.jwt },
    };
  }
}
