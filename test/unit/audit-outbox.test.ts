import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JetStreamClient } from '@nats-io/jetstream';
import { pino } from 'pino';
import { AuditOutbox } from '../../agent/audit-outbox.js';

const log = pino({ level: 'silent' });

/** A stream that stores what it acknowledges, drops repeated message ids, and fails the calls it is told to. */
class FakeStream {
  readonly stored: { subject: string; data: string; id: string }[] = [];
  sent = 0;
  failNext = 0;
  /** Never answers while set: a server that went away mid-publish. */
  silent = false;
  readonly js = {
    publish: (subject: string, data: string, opts: { msgID: string }) => {
      this.sent++;
      if (this.silent) return new Promise<never>(() => undefined);
      if (this.failNext > 0) {
        this.failNext--;
        return Promise.reject(new Error('timeout'));
      }
      if (!this.stored.some((m) => m.id === opts.msgID)) this.stored.push({ subject, data, id: opts.msgID });
      return Promise.resolve({ seq: this.stored.length, duplicate: false });
    },
  } as unknown as JetStreamClient;
  kinds(): string[] {
    return this.stored.map((m) => (JSON.parse(m.data) as { kind: string }).kind);
  }
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'ptctl-outbox-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

void describe('audit outbox', () => {
  void it('publishes each event at once, without waiting for the previous ack, and in order', () =>
    withDir(async (dir) => {
      const stream = new FakeStream();
      const outbox = AuditOutbox.open({ js: stream.js, file: join(dir, 'outbox.jsonl'), log });
      for (const kind of ['received', 'hotplug', 'applied']) outbox.enqueue(`ptc.v1.events.h.${kind}`, { kind });
      // All three are on their way before any acknowledgement was awaited.
      assert.equal(stream.sent, 3);
      await outbox.drained();
      assert.deepEqual(stream.kinds(), ['received', 'hotplug', 'applied']);
      assert.equal(await readFile(join(dir, 'outbox.jsonl'), 'utf8'), '', 'the spool is emptied once all is acknowledged');
      await outbox.close();
    }));

  void it('sends an unacknowledged event again until the stream has it, and keeps the order', () =>
    withDir(async (dir) => {
      const stream = new FakeStream();
      stream.failNext = 2;
      const outbox = AuditOutbox.open({ js: stream.js, file: join(dir, 'outbox.jsonl'), log, retryMs: 10 });
      outbox.enqueue('ptc.v1.events.h.received', { kind: 'received' });
      outbox.enqueue('ptc.v1.events.h.applied', { kind: 'applied' });
      await outbox.drained();
      assert.deepEqual(stream.kinds(), ['received', 'applied']);
      await outbox.close();
    }));

  void it('a process that died before the acks leaves its events to the next start, which sends each once', () =>
    withDir(async (dir) => {
      const file = join(dir, 'outbox.jsonl');
      const dead = new FakeStream();
      dead.silent = true;
      const first = AuditOutbox.open({ js: dead.js, file, log });
      first.enqueue('ptc.v1.events.h.received', { kind: 'received' });
      first.enqueue('ptc.v1.events.h.hotplug', { kind: 'hotplug' });
      // No close(): the process is gone. The next one opens the same spool.
      const stream = new FakeStream();
      const ackedBefore = { subject: 'ptc.v1.events.h.received', data: '', id: (JSON.parse((await readFile(file, 'utf8')).split('\n')[0] ?? '{}') as { id: string }).id };
      stream.stored.push({ ...ackedBefore, data: JSON.stringify({ kind: 'received' }) }); // the stream had stored the first before the crash
      const second = AuditOutbox.open({ js: stream.js, file, log });
      await second.drained();
      assert.deepEqual(stream.kinds(), ['received', 'hotplug'], 'nothing lost, nothing twice');
      await second.close();
    }));

  void it('close leaves what the stream did not acknowledge in the spool', () =>
    withDir(async (dir) => {
      const file = join(dir, 'outbox.jsonl');
      const stream = new FakeStream();
      stream.silent = true;
      const outbox = AuditOutbox.open({ js: stream.js, file, log });
      outbox.enqueue('ptc.v1.events.h.applied', { kind: 'applied' });
      await outbox.close(50);
      assert.equal(outbox.pending, 1);
      assert.match(await readFile(file, 'utf8'), /applied/);
    }));
});
