import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createUser, fromSeed } from '@nats-io/nkeys';
import { type NatsRole, identityName, permissionsFor } from '../transport/nats-permissions.js';

export interface IdentitySpec {
  role: NatsRole;
  /** Host id for hosts, a person's or team's name for operators and viewers; ignored for the worker. */
  name: string;
}

/** An identity's seed file; created once and reused, so a restarted stack keeps its credentials. */
async function identity(credsDir: string, file: string): Promise<{ seedFile: string; publicKey: string }> {
  const seedFile = join(credsDir, file);
  let seed: string;
  try {
    seed = (await readFile(seedFile, 'utf8')).trim();
  } catch {
    seed = new TextDecoder().decode(createUser().getSeed());
    await mkdir(credsDir, { recursive: true, mode: 0o700 });
    await writeFile(seedFile, seed + '\n', { mode: 0o600 });
  }
  return { seedFile, publicKey: fromSeed(new TextEncoder().encode(seed)).getPublicKey() };
}

export const hostCredsName = (hostId: string): string => identityName('host', hostId);
export const seedFileName = (spec: IdentitySpec): string => `${identityName(spec.role, spec.name)}.nk`;

/**
 * nats-server's static authorization for these identities (DESIGN §2): one nkey user each, with the
 * permissions of its role. No anonymous user exists.
 */
export async function natsAuthorization(credsDir: string, identities: readonly IdentitySpec[]): Promise<{ config: string; seedFiles: Map<string, string> }> {
  const users: unknown[] = [];
  const seedFiles = new Map<string, string>();
  for (const spec of identities) {
    const id = await identity(credsDir, seedFileName(spec));
    seedFiles.set(identityName(spec.role, spec.name), id.seedFile);
    const p = permissionsFor(spec.role, spec.name);
    users.push({
      nkey: id.publicKey,
      permissions: { publish: { allow: p.publish }, subscribe: { allow: p.subscribe }, ...(p.allowResponses ? { allow_responses: true } : {}) },
    });
  }
  // nats-server's config format accepts JSON.
  return { config: JSON.stringify({ authorization: { users } }, null, 2), seedFiles };
}

export const hostSeedFile = (credsDir: string, hostId: string): string => join(credsDir, `${hostCredsName(hostId)}.nk`);
