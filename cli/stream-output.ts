import type { Writable } from 'node:stream';

/** How a streamed write ended: everything written, or the reader went away first (`ptctl plan | head`). */
export type StreamEnd = 'written' | 'closed';

/**
 * Pieces are joined up to this size before a write: one write per line of a 100,000-host plan costs
 * more than the lines themselves, and a pipe takes 64 KiB at once.
 */
export const STREAM_BATCH = 64 * 1024;

/** A reader that closed its end, or a stream this process already gave up on: a stop, not a failure. */
const isClosedPipe = (err: NodeJS.ErrnoException): boolean => {
  const { code } = err;
  return code === 'EPIPE' || code === 'ERR_STREAM_DESTROYED' || code === 'ERR_STREAM_WRITE_AFTER_END';
};

const unusable = (out: Writable): boolean => out.destroyed || out.writableEnded || out.errored !== null;

/**
 * Writes `pieces` to `out` in batches of about `batchSize` characters, pulling the next piece only
 * when `out` has room: after a write() that returned false it waits for 'drain', so a 100 MB
 * `plan --json` never sits in memory as one string or as a queue behind a slow reader. Resolves once
 * the last batch has been handed over. A reader that goes away (EPIPE) resolves 'closed' and stops
 * pulling pieces; other stream errors reject.
 */
export async function writeStream(out: Writable, pieces: Iterable<string>, batchSize = STREAM_BATCH): Promise<StreamEnd> {
  if (unusable(out)) return 'closed';
  let failure: Error | null = null;
  let wake: (() => void) | null = null;
  const onError = (err: Error): void => {
    failure ??= err;
    wake?.();
  };
  const onSettle = (): void => wake?.();
  // Without a listener an EPIPE would be an uncaught 'error' event: a stack trace for a closed pager.
  out.on('error', onError);
  out.on('drain', onSettle);
  out.on('close', onSettle);
  const settled = (): Promise<void> => new Promise((resolve) => (wake = resolve));
  const stopped = (): boolean => failure !== null || unusable(out);

  /** Hands `batch` to `out` and waits for room (for the last batch: for its callback). */
  const send = async (batch: string, last: boolean): Promise<void> => {
    if (last) {
      const done = new Promise<void>((resolve) => out.write(batch, (err) => {
        if (err) onError(err);
        resolve();
      }));
      // A destroyed stream may never call back; its 'close' still wakes this.
      await Promise.race([done, settled()]);
      return;
    }
    if (!out.write(batch) && !stopped()) await settled();
  };

  try {
    let batch = '';
    for (const piece of pieces) {
      batch += piece;
      if (batch.length < batchSize) continue;
      await send(batch, false);
      batch = '';
      if (stopped()) break;
    }
    if (!stopped()) await send(batch, true);
  } finally {
    out.off('drain', onSettle);
    out.off('close', onSettle);
    // A stream that failed may still emit the error of a write in flight; keep swallowing it then.
    if (!stopped()) out.off('error', onError);
  }
  // A failed write marks the stream errored at once, its 'error' event only comes a tick later.
  const err = failure ?? out.errored;
  if (err !== null && !isClosedPipe(err)) throw err;
  return err !== null || unusable(out) ? 'closed' : 'written';
}
