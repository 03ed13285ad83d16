import { closeSync, ftruncateSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { JetStreamClient } from '@nats-io/jetstream';
import type { Logger } from 'pino';

export interface AuditOutboxOptions {
  js: JetStreamClient;
  /** Spool of events not yet acknowledged by the stream; survives a crash of the agent's process. */
  file: string;
  log: Logger;
  /** Wait before sending again after a failed publish. */
  retryMs?: number;
  /** How long one publish waits for the stream's acknowledgement. */
  ackTimeoutMs?: number;
}

interface Entry {
  /** JetStream message id: the stream drops a second copy of an event sent again after a lost ack or a restart. */
  id: string;
  subject: string;
  data: string;
  ack?: Promise<boolean>;
}

/**
 * The agent's audit events on their way to PTC_EVENTS, off the reply's critical path and never lost.
 * An event is appended to a local spool and published at once (so it reaches the server ahead of the
 * reply that follows it), but the agent does not wait for the stream's acknowledgement: a pump awaits
 * acks in order and, after a failure, sends everything unacknowledged again, in order, until the stream
 * has it. Events spooled but unacknowledged when the process died are sent by the next start. The
 * spool is written without fsync: it survives the process, not the host's power (a power loss would
 * take an unfinished command's other effects with it too). Delivery is at least once; the message id
 * makes it exactly once within the stream's duplicate window (2 minutes by default).
 */
export class AuditOutbox {
  private readonly queue: Entry[] = [];
  private pumping = false;
  private retrying = false;
  private closed = false;
  private idle: (() => void)[] = [];
  private retryTimer: NodeJS.Timeout | undefined;
  private wakeUp: (() => void) | undefined;

  private constructor(
    private readonly opts: AuditOutboxOptions,
    private readonly fd: number,
  ) {}

  /** Opens the spool; events a previous process left in it are sent first. */
  static open(opts: AuditOutboxOptions): AuditOutbox {
    let left: Entry[] = [];
    try {
      left = readFileSync(opts.file, 'utf8').split('\n').flatMap((line) => parseEntry(line));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    mkdirSync(dirname(opts.file), { recursive: true });
    const outbox = new AuditOutbox(opts, openSync(opts.file, 'a'));
    if (left.length > 0) {
      opts.log.info({ events: left.length }, 'sending audit events a previous run left unacknowledged');
      outbox.queue.push(...left);
      outbox.pump();
    }
    return outbox;
  }

  /** Events not yet acknowledged by the stream. */
  get pending(): number {
    return this.queue.length;
  }

  enqueue(subject: string, event: unknown): void {
    const entry: Entry = { id: randomUUID(), subject, data: JSON.stringify(event) };
    writeSync(this.fd, JSON.stringify({ id: entry.id, subject: entry.subject, data: entry.data }) + '\n');
    this.queue.push(entry);
    // While retrying, new events wait their turn behind the ones that failed.
    if (!this.retrying && !this.closed) this.send(entry);
    this.pump();
  }

  /** Resolves once every event enqueued so far is acknowledged. */
  drained(): Promise<void> {
    if (this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  /**
   * Waits up to `waitMs` for the stream to acknowledge what is queued; what is left stays spooled for the
   * next start. Closing twice (an agent stopped by a signal and by its runner) closes once.
   */
  close(waitMs = 5000): Promise<void> {
    this.closing ??= this.closeOnce(waitMs);
    return this.closing;
  }

  private closing: Promise<void> | null = null;

  private async closeOnce(waitMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.drained(), new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs)))]);
    clearTimeout(timer);
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.wakeUp?.();
    if (this.queue.length > 0) this.opts.log.warn({ events: this.queue.length }, 'audit events left in the spool for the next start');
    closeSync(this.fd);
  }

  private send(entry: Entry): void {
    entry.ack = this.opts.js.publish(entry.subject, entry.data, { msgID: entry.id, timeout: this.opts.ackTimeoutMs ?? 5000 }).then(
      () => true,
      (err: unknown) => {
        this.opts.log.warn({ err, subject: entry.subject }, 'audit event not acknowledged; will send it again');
        return false;
      },
    );
  }

  /** One pump at a time; one that ends as an event arrives hands over to a new one. */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    void this.run().finally(() => {
      this.pumping = false;
      if (this.queue.length > 0 && !this.closed) this.pump();
    });
  }

  private async run(): Promise<void> {
    while (this.queue.length > 0 && !this.closed) {
      const head = this.queue[0] as Entry;
      if (!head.ack) this.send(head);
      if (await head.ack) {
        this.queue.shift();
        continue;
      }
      this.retrying = true;
      await new Promise<void>((resolve) => {
        this.wakeUp = resolve;
        this.retryTimer = setTimeout(resolve, this.opts.retryMs ?? 1000);
      });
      if (this.closed) return;
      // Everything after a failure is sent again, in order: the message ids drop what the stream already has.
      for (const entry of this.queue) this.send(entry);
      this.retrying = false;
    }
    if (this.queue.length === 0 && !this.closed) {
      // All acknowledged: the spool starts over (appends go to its end, which is now 0).
      ftruncateSync(this.fd, 0);
      for (const resolve of this.idle.splice(0)) resolve();
    }
  }
}

function parseEntry(line: string): Entry[] {
  if (line.trim() === '') return [];
  try {
    const e = JSON.parse(line) as Partial<Entry>;
    return typeof e.id === 'string' && typeof e.subject === 'string' && typeof e.data === 'string' ? [{ id: e.id, subject: e.subject, data: e.data }] : [];
  } catch {
    // The line a crash cut short: its command never got its reply either.
    return [];
  }
}
