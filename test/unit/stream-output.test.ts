import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { writeStream } from '../../cli/stream-output.js';
import { SlowReader } from '../helpers/slow-reader.js';

/** `count` pieces of `size` characters, recording how far the writer had pulled whenever it pulls. */
function* pieces(count: number, size: number, onPull: (pulled: number) => void = () => undefined): Generator<string> {
  for (let i = 0; i < count; i++) {
    onPull(i * size);
    yield String.fromCharCode(97 + (i % 26)).repeat(size);
  }
}

void describe('writeStream', () => {
  void it('writes every piece in order, in batches', async () => {
    const reader = new SlowReader();
    const expected = [...pieces(503, 7)].join('');
    assert.equal(await writeStream(reader, pieces(503, 7), 64), 'written');
    assert.equal(reader.text(), expected);
    assert.equal(await writeStream(reader, [], 64), 'written', 'nothing to write is fine too');
  });

  void it('pulls the next pieces only once the reader drained: never more than two batches ahead of it', async () => {
    const reader = new SlowReader(16);
    const batch = 64;
    let maxAhead = 0;
    // A writer that ignores 'drain' pulls all 2,000 pieces before the reader has taken its first chunk.
    const end = await writeStream(reader, pieces(2000, 5, (pulled) => (maxAhead = Math.max(maxAhead, pulled - reader.taken))), batch);
    assert.equal(end, 'written');
    assert.equal(reader.taken, 2000 * 5);
    assert.ok(maxAhead <= 2 * batch, `pulled at most two batches beyond what the reader took (${maxAhead} characters)`);
    assert.ok(reader.maxQueued <= 2 * batch, `at most two batches queued in the stream (${reader.maxQueued} characters)`);
    assert.ok(reader.drains > 10, `${reader.drains} drains: the writer met backpressure`);
  });

  void it('stops cleanly, without an error event left over, when the reader at the other end of a pipe is gone (EPIPE)', async (t) => {
    // A real OS pipe into a process that closed its end and lives on (as `head` does once it has its
    // lines): the next write fails with EPIPE. A process that exited would not do: Node destroys the
    // pipe to a child that exited before anything is written.
    const child = spawn(process.execPath, ['-e', 'require("fs").closeSync(0); process.stdout.write("closed"); setTimeout(() => {}, 30_000)'], { stdio: ['pipe', 'pipe', 'ignore'] });
    t.after(() => child.kill());
    await once(child.stdout, 'data');
    const endless = function* (): Generator<string> {
      for (;;) yield 'x'.repeat(1024);
    };
    assert.equal(await writeStream(child.stdin, endless()), 'closed', 'an endless stream stops at a closed pipe');
    const failure: NodeJS.ErrnoException | null = child.stdin.errored;
    assert.equal(failure?.code, 'EPIPE', 'the pipe really failed');
    assert.equal(await writeStream(child.stdin, ['more']), 'closed', 'and a later write to it stops at once');
    // An 'error' with no listener left would be thrown from the event loop and fail this file.
    await new Promise((resolve) => setTimeout(resolve, 50));
  });

  void it('stops cleanly when the pipe breaks while it waits for the reader to drain', { timeout: 20_000 }, async (t) => {
    // The reader takes nothing, so the pipe fills and the writer waits; then the reader closes its end.
    const child = spawn(process.execPath, ['-e', 'process.stdout.write("started"); setTimeout(() => require("fs").closeSync(0), 300); setTimeout(() => {}, 30_000)'], { stdio: ['pipe', 'pipe', 'ignore'] });
    t.after(() => child.kill());
    await once(child.stdout, 'data');
    let pulled = 0;
    const endless = function* (): Generator<string> {
      for (;;) {
        pulled += 1;
        yield 'x'.repeat(1024);
      }
    };
    assert.equal(await writeStream(child.stdin, endless()), 'closed');
    const failure: NodeJS.ErrnoException | null = child.stdin.errored;
    assert.equal(failure?.code, 'EPIPE', 'the pipe really failed');
    assert.ok(pulled < 1024, `it waited for room before it broke: ${pulled} KiB pulled`);
  });

  void it('rejects with any other error of the stream', async () => {
    const full = new Writable({ write: (_chunk, _encoding, done) => done(Object.assign(new Error('no space left on device'), { code: 'ENOSPC' })) });
    await assert.rejects(writeStream(full, pieces(100, 1000)), { code: 'ENOSPC' });
  });
});
