import { DeliverPolicy, jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { AuditEvent, EVENTS_STREAM, SUBJECT_PREFIX } from '../schemas/agent-protocol.js';

export interface AuditQuery {
  hostId?: string | undefined;
  kind?: string | undefined;
  /** Only events stored at or after this time. */
  since?: Date | undefined;
}

export const auditSubject = (q: AuditQuery): string => `${SUBJECT_PREFIX}.events.${q.hostId ?? '*'}.${q.kind ?? '*'}`;

/**
 * Reads the audit stream through an ordered consumer (ephemeral, no acks: any read-only identity may
 * use it). Without `follow` it ends at the last stored event; with it, it waits for new ones until
 * `signal` aborts. A record that is not an audit event (nothing ptctl wrote) is skipped, not trusted.
 */
export async function readAuditEvents(nc: NatsConnection, q: AuditQuery, onEvent: (e: AuditEvent, seq: number) => void, opts: { follow?: boolean; signal?: AbortSignal } = {}): Promise<number> {
  const consumer = await jetstream(nc).consumers.get(EVENTS_STREAM, {
    filter_subjects: [auditSubject(q)],
    ...(q.since ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: q.since.toISOString() } : { deliver_policy: DeliverPolicy.All }),
  });
  let count = 0;
  const deliver = (data: unknown, seq: number): void => {
    const parsed = AuditEvent.safeParse(data);
    if (!parsed.success) return;
    count++;
    onEvent(parsed.data, seq);
  };
  const json = (m: { json: <T>() => T }): unknown => {
    try {
      return m.json<unknown>();
    } catch {
      return null;
    }
  };
  if (opts.follow) {
    const messages = await consumer.consume();
    opts.signal?.addEventListener('abort', () => void messages.close(), { once: true });
    if (opts.signal?.aborted) await messages.close();
    for await (const m of messages) deliver(json(m), m.seq);
    return count;
  }
  for (;;) {
    let pending = -1;
    const batch = await consumer.fetch({ max_messages: 1000, expires: 1000 });
    for await (const m of batch) {
      deliver(json(m), m.seq);
      pending = m.info.pending;
      if (pending === 0) break;
    }
    if (pending <= 0) break;
  }
  await consumer.delete().catch(() => undefined);
  return count;
}
