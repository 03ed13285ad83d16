import { WorkflowFailedError, WorkflowNotFoundError } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure, TemporalFailure } from '@temporalio/common';
import { ErrorCode, type ErrorInfo, PtcError, isErrorCode } from '../schemas/errors.js';

/**
 * Reduces any error to a code and one sentence. Temporal wraps failures several levels deep
 * (WorkflowFailedError → ActivityFailure → ApplicationFailure); the code is the innermost
 * ApplicationFailure's type, never parsed out of a message.
 */
export function errorInfo(err: unknown): ErrorInfo {
  if (err instanceof PtcError) return err.toInfo();
  if (err instanceof WorkflowNotFoundError) return { code: ErrorCode.INVALID_INPUT, message: err.message };
  let cur: unknown = err instanceof WorkflowFailedError ? err.cause : err;
  while (cur instanceof ActivityFailure && cur.cause) cur = cur.cause;
  if (cur instanceof ApplicationFailure && isErrorCode(cur.type)) return { code: cur.type, message: cur.message };
  if (cur instanceof TemporalFailure) return { code: ErrorCode.OPERATION_FAILED, message: cur.message };
  const message = err instanceof Error ? err.message : String(err);
  return { code: ErrorCode.INTERNAL, message: message.split('\n')[0] ?? message };
}

/** Structured details a workflow attached to its failure (outcome, steps, residue), if any. */
export function failureDetails(err: unknown): unknown {
  const cur: unknown = err instanceof WorkflowFailedError ? err.cause : err;
  return cur instanceof ApplicationFailure ? (cur.details?.[0] ?? null) : null;
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** Exit codes: 1 for a failed operation or refusal, 2 for input that was rejected before anything ran. */
export function exitCodeFor(info: ErrorInfo): number {
  return info.code === ErrorCode.INVALID_INPUT ? 2 : 1;
}

export function reportError(err: unknown, json: boolean): number {
  const info = errorInfo(err);
  if (json) printJson({ ok: false, error: info, details: failureDetails(err) });
  else process.stderr.write(`ptctl: ${info.code}: ${info.message}\n`);
  return exitCodeFor(info);
}
