import { Writable } from 'node:stream';

/**
 * A Writable that takes one chunk per event-loop turn behind a tiny high-water mark, so whoever writes
 * to it meets backpressure at once, as with a pipe into a busy `jq`. It keeps what it got.
 */
export class SlowReader extends Writable {
  private readonly chunks: string[] = [];
  /** Characters taken so far (each chunk counts once its write has completed). */
  taken = 0;
  /** The most characters ever queued in the stream at once, not yet taken. */
  maxQueued = 0;
  drains = 0;

  constructor(highWaterMark = 16) {
    super({ highWaterMark, decodeStrings: false });
    this.on('drain', () => (this.drains += 1));
  }

  override _write(chunk: string | Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    this.maxQueued = Math.max(this.maxQueued, this.writableLength);
    const text = String(chunk);
    setImmediate(() => {
      this.chunks.push(text);
      this.taken += text.length;
      done();
    });
  }

  text(): string {
    return this.chunks.join('');
  }
}
