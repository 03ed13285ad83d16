import { jetstreamManager, type StreamConfig } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { EVENTS_STREAM, HOSTS_BUCKET, SUBJECT_PREFIX } from '../schemas/agent-protocol.js';

const DAY_NS = 24 * 60 * 60 * 1_000_000_000;

/**
 * Creates (or brings up to date) the JetStream resources ptctl needs: the audit stream and the host
 * inventory bucket. Hosts may not create streams, so the orchestrator does this once at start.
 */
export async function ensureNatsResources(nc: NatsConnection): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const events: Partial<StreamConfig> & { name: string } = {
    name: EVENTS_STREAM,
    subjects: [`${SUBJECT_PREFIX}.events.>`],
    max_age: 30 * DAY_NS,
    max_bytes: 1024 * 1024 * 1024,
  };
  try {
    await jsm.streams.info(EVENTS_STREAM);
    await jsm.streams.update(EVENTS_STREAM, events);
  } catch {
    await jsm.streams.add(events);
  }
  await new Kvm(nc).create(HOSTS_BUCKET, { history: 5 });
}
