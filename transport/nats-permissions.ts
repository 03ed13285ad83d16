import { EVENTS_STREAM, HOSTS_BUCKET, SUBJECT_PREFIX } from '../schemas/agent-protocol.js';
import { PLANS_BUCKET } from '../schemas/rollout.js';

/**
 * The NATS identities of ptctl and what each may do (DESIGN §2, §7). One table, rendered both into
 * nats-server's static `authorization` block and into user JWTs, so the two auth modes cannot drift.
 *
 * - worker: the orchestrator. Commands agents, reads inventory and events, creates (never updates,
 *   purges or deletes) the audit stream and the inventory bucket; writes, reads and removes rollouts'
 *   hosts in the plans bucket (a window's firing resolves its plan; a finished rollout drops its pages).
 * - operator: a person. Acts through Temporal, reads inventory and events, and writes the hosts of the
 *   rollouts it applies into the plans bucket (the workflow gets their reference, not the hosts): no
 *   more than it could already ask for by starting a rollout, and the worker validates every page.
 * - viewer: read-only: inventory, events, status.
 * - host: receives its own commands, answers them, publishes its own events and writes its own KV key.
 *
 * Every identity has its own reply-inbox prefix, so no identity can read another's replies.
 */
export type NatsRole = 'worker' | 'operator' | 'viewer' | 'host';
export const NATS_ROLES: readonly NatsRole[] = ['worker', 'operator', 'viewer', 'host'];

export interface SubjectPermissions {
  publish: string[];
  subscribe: string[];
  /** May publish to the reply subject of a message it received (agents answering requests). */
  allowResponses: boolean;
}

const KV_STREAM = `KV_${HOSTS_BUCKET}`;
const PLANS_STREAM = `KV_${PLANS_BUCKET}`;

/** Writing pages of rollout hosts (a KV put or purge is a publish to the key's subject, acked by JetStream). */
function planWriterPublish(): string[] {
  return [`$KV.${PLANS_BUCKET}.>`, `${API}.STREAM.INFO.${PLANS_STREAM}`];
}

/** The direct get of one host's own inventory key: the only KV read a host identity may make. */
export const ownKeyDirectGetSubject = (hostId: string): string => `$JS.API.DIRECT.GET.${KV_STREAM}.$KV.${HOSTS_BUCKET}.${hostId}`;
const API = '$JS.API';

/** An identity name becomes an inbox prefix token and a file name. */
export const IDENTITY_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

export const identityName = (role: NatsRole, name: string): string => (role === 'worker' ? 'worker' : `${role}-${name}`);

/**
 * The reply-inbox prefix of an identity. Hosts keep `_INBOX_<hostId>` (DESIGN §8); the others get
 * `_INBOX_id_<identity>`, which no host id can spell (host ids have no "_").
 */
export const inboxPrefixOf = (role: NatsRole, name: string): string => (role === 'host' ? `_INBOX_${name}` : `_INBOX_id_${identityName(role, name)}`);

/**
 * Reading the two streams: stream info, ordered consumers (created, fed, asked about and removed
 * again), direct and stored KV gets, flow-control answers. Nothing here changes stored data.
 */
function readerPublish(): string[] {
  const out = [`${API}.INFO`];
  for (const stream of [EVENTS_STREAM, KV_STREAM]) {
    out.push(
      `${API}.STREAM.INFO.${stream}`,
      `${API}.CONSUMER.CREATE.${stream}`,
      `${API}.CONSUMER.CREATE.${stream}.>`,
      `${API}.CONSUMER.INFO.${stream}.*`,
      `${API}.CONSUMER.MSG.NEXT.${stream}.*`,
      // Ordered consumers are ephemeral; removing one loses no data.
      `${API}.CONSUMER.DELETE.${stream}.*`,
      `$JS.FC.${stream}.>`,
    );
  }
  out.push(`${API}.DIRECT.GET.${KV_STREAM}`, `${API}.DIRECT.GET.${KV_STREAM}.>`, `${API}.STREAM.MSG.GET.${KV_STREAM}`);
  return out;
}

export function permissionsFor(role: NatsRole, name: string): SubjectPermissions {
  const inbox = `${inboxPrefixOf(role, name)}.>`;
  switch (role) {
    case 'worker':
      return {
        publish: [
          `${SUBJECT_PREFIX}.agent.*.*`,
          ...readerPublish(),
          // CREATE only: nats-server answers a create of an existing stream with its config (same
          // config) or an error (different config); it never changes the stored stream.
          `${API}.STREAM.CREATE.${EVENTS_STREAM}`,
          `${API}.STREAM.CREATE.${KV_STREAM}`,
          `${API}.STREAM.CREATE.${PLANS_STREAM}`,
          ...planWriterPublish(),
          `${API}.DIRECT.GET.${PLANS_STREAM}.>`,
          `${API}.STREAM.MSG.GET.${PLANS_STREAM}`,
        ],
        subscribe: [inbox],
        allowResponses: false,
      };
    case 'operator':
      return { publish: [...readerPublish(), ...planWriterPublish()], subscribe: [inbox], allowResponses: false };
    case 'viewer':
      return { publish: readerPublish(), subscribe: [inbox], allowResponses: false };
    case 'host':
      return {
        // Reading its own key (direct get) lets the agent see another agent answering for its host (rule 16).
        publish: [`${SUBJECT_PREFIX}.events.${name}.*`, `$KV.${HOSTS_BUCKET}.${name}`, ownKeyDirectGetSubject(name)],
        subscribe: [`${SUBJECT_PREFIX}.agent.${name}.*`, inbox],
        // Lets the agent answer requests on the requester's inbox, and only there.
        allowResponses: true,
      };
  }
}

/** The identity a credentials file speaks for, from its file name (`<identity>.nk` / `<identity>.creds`). */
export function identityOfCredsFile(path: string): { role: NatsRole; name: string; identity: string } | null {
  const base = path.split(/[\\/]/).pop() ?? '';
  const m = /^(worker|operator|viewer|host)(?:-([a-z0-9][a-z0-9-]{0,62}))?\.(?:nk|creds)$/.exec(base);
  if (!m) return null;
  const role = m[1] as NatsRole;
  if (role === 'worker') return m[2] ? null : { role, name: 'worker', identity: 'worker' };
  if (!m[2]) return null;
  return { role, name: m[2], identity: identityName(role, m[2]) };
}
