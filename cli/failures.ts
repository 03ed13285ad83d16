import { WorkflowFailedError, WorkflowNotFoundError } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure, TemporalFailure } from '@temporalio/common';
import { ErrorCode, type ErrorInfo, PtcError, isErrorCode } from '../schemas/errors.js';

/**
 * Reduces any error to a code and one sentence. Temporal wraps failures several levels deep
 * (WorkflowFailedError → ActivityFailure → ApplicationFailure); the code is the innermost
 * ApplicationFailure's type, never parsed out of a message. Apart from cli/output.ts so that commands
 * that never talk to Temporal do not load its client (most of a second) to print their output.
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
