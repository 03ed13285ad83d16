import type { Writable } from 'node:stream';
import { ErrorCode, type ErrorInfo, PtcError } from '../schemas/errors.js';
import { JSON_INDENT, jsonChunks } from './json-chunks.js';
import { type StreamEnd, writeStream } from './stream-output.js';

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, JSON_INDENT) + '\n');
}

/**
 * printJson's document for a value that grows with the fleet (a plan's resolution): the same text,
 * written as it is produced with the stream's backpressure instead of built as one string first.
 */
export function streamJson(value: unknown, out: Writable = process.stdout): Promise<StreamEnd> {
  return writeStream(out, jsonDocument(value));
}

function* jsonDocument(value: unknown): Generator<string, void, undefined> {
  yield* jsonChunks(value);
  yield '\n';
}

/** Exit codes: 1 for a failed operation or refusal, 2 for input that was rejected before anything ran. */
export function exitCodeFor(info: ErrorInfo): number {
  return info.code === ErrorCode.INVALID_INPUT ? 2 : 1;
}

/** Prints an error as one line (or JSON, with the workflow's failure details) and returns its exit code. */
export async function reportError(err: unknown, json: boolean): Promise<number> {
  let info: ErrorInfo;
  let details: unknown = null;
  if (err instanceof PtcError) info = err.toInfo();
  else {
    // Only an error that is not ours can be one of Temporal's; only then is its failure reader worth loading.
    const failures = await import('./failures.js');
    info = failures.errorInfo(err);
    details = failures.failureDetails(err);
  }
  if (json) printJson({ ok: false, error: info, details });
  else process.stderr.write(`ptctl: ${info.code}: ${info.message}\n`);
  return exitCodeFor(info);
}
