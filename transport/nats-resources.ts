import { jetstreamManager, type StreamConfig } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { EVENTS_STREAM, HOSTS_BUCKET, SUBJECT_PREFIX } from '../schemas/agent-protocol.js';
import { ErrorCode, PtcError } from '../schemas/errors.js';
import { PLANS_BUCKET } from '../schemas/rollout.js';

const DAY_NS = 24 * 60 * 60 * 1_000_000_000;

/**
 * The audit stream's configuration. `deny_delete` and `deny_purge` make the server itself refuse to
 * erase records, whatever permissions a client has; no ptctl identity may update or delete the stream.
 */
export const EVENTS_STREAM_CONFIG: Partial<StreamConfig> & { name: string } = {
  name: EVENTS_STREAM,
  subjects: [`${SUBJECT_PREFIX}.events.>`],
  max_age: 30 * DAY_NS,
  max_bytes: 1024 * 1024 * 1024,
  deny_delete: true,
  deny_purge: true,
};

/**
 * Creates the JetStream resources ptctl needs, if missing: the audit stream, the host inventory bucket
 * and the rollout plans bucket. Creates only: the worker identity may not update a stream, so a stream
 * from an older ptctl that lacks the deny flags is reported rather than silently kept.
 */
export async function ensureNatsResources(nc: NatsConnection): Promise<void> {
  const jsm = await jetstreamManager(nc);
  let existing: StreamConfig | null = null;
  try {
    existing = (await jsm.streams.info(EVENTS_STREAM)).config;
  } catch (err) {
    if (!/stream not found/i.test((err as Error).message)) throw err;
  }
  if (!existing) await jsm.streams.add(EVENTS_STREAM_CONFIG);
  else if (!existing.deny_delete || !existing.deny_purge) {
    throw new PtcError(
      ErrorCode.STACK_FAILED,
      `the audit stream ${EVENTS_STREAM} allows deleting or purging records; as the NATS account's admin, set deny_delete and deny_purge on it (nats stream edit ${EVENTS_STREAM} --deny-delete --deny-purge), or start the dev stack in a fresh --dir`,
    );
  }
  await new Kvm(nc).create(HOSTS_BUCKET, { history: 5 });
  // Rollouts drop their hosts when they end; the age limit removes those of rollouts that never ended.
  await new Kvm(nc).create(PLANS_BUCKET, { history: 1, ttl: 90 * 24 * 60 * 60 * 1000 });
}
