import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createUser, fromSeed } from '@nats-io/nkeys';
import { HOSTS_BUCKET, SUBJECT_PREFIX } from '../schemas/agent-protocol.js';
import { hostInboxPrefix } from '../transport/nats-connection.js';
import { ownKeyDirectGetSubject } from '../agent/host-ownership.js';

/** An identity's seed file; created once and reused, so a restarted stack keeps its credentials. */
async function identity(credsDir: string, name: string): Promise<{ seedFile: string; publicKey: string }> {
  const seedFile = join(credsDir, `${name}.nk`);
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

export const orchestratorCredsName = 'orchestrator';
export const hostCredsName = (hostId: string): string => `host-${hostId}`;

/**
 * DESIGN §2 authorization: the orchestrator may command any agent and use JetStream; host H may only
 * receive its own commands, reply to inboxes, publish its own events and write its own KV key. No
 * anonymous user exists.
 */
export async function natsAuthorization(credsDir: string, hostIds: readonly string[]): Promise<{ config: string; orchestratorSeedFile: string }> {
  const orch = await identity(credsDir, orchestratorCredsName);
  const users = [
    {
      nkey: orch.publicKey,
      permissions: {
        publish: { allow: [`${SUBJECT_PREFIX}.agent.*.*`, '$JS.API.>', '$JS.ACK.>', '$JS.FC.>', `$KV.${HOSTS_BUCKET}.>`, '_INBOX.>'] },
        subscribe: { allow: ['_INBOX.>', `${SUBJECT_PREFIX}.events.>`] },
      },
    },
  ];
  for (const hostId of hostIds) {
    const host = await identity(credsDir, hostCredsName(hostId));
    users.push({
      nkey: host.publicKey,
      permissions: {
        // Reading its own key (direct get) lets the agent see another agent answering for its host (rule 16).
        publish: { allow: [`${SUBJECT_PREFIX}.events.${hostId}.*`, `$KV.${HOSTS_BUCKET}.${hostId}`, ownKeyDirectGetSubject(hostId)] },
        subscribe: { allow: [`${SUBJECT_PREFIX}.agent.${hostId}.*`, `${hostInboxPrefix(hostId)}.>`] },
        // Lets the agent answer requests on the requester's inbox, and only there.
        allow_responses: true,
      } as (typeof users)[number]['permissions'],
    });
  }
  // nats-server's config format accepts JSON.
  return { config: JSON.stringify({ authorization: { users } }, null, 2), orchestratorSeedFile: orch.seedFile };
}

export const hostSeedFile = (credsDir: string, hostId: string): string => join(credsDir, `${hostCredsName(hostId)}.nk`);
