import { WorkflowFailedError, WorkflowNotFoundError } from '@temporalio/client';
import { ErrorCode, type ErrorInfo, PtcError } from '../schemas/errors.js';
import { WorkflowEndedError, failureDetailsOf, failureInfo } from './failure-info.js';

/** The failure a workflow ended with, from either client's error for it; otherwise the error itself. */
const recordedFailure = (err: unknown): unknown => (err instanceof WorkflowFailedError || err instanceof WorkflowEndedError ? err.cause : err);

/**
 * Reduces any error to a code and one sentence (failure-info.ts reads Temporal's failures). Apart from
 * cli/output.ts so that commands that never talk to Temporal do not load its client to print their
 * output.
 */
export function errorInfo(err: unknown): ErrorInfo {
  if (err instanceof PtcError) return err.toInfo();
  if (err instanceof WorkflowNotFoundError) return { code: ErrorCode.INVALID_INPUT, message: err.message };
  const info = failureInfo(recordedFailure(err));
  if (info) return info;
  const message = err instanceof Error ? err.message : String(err);
  return { code: ErrorCode.INTERNAL, message: message.split('\n')[0] ?? message };
}

/** Structured details a workflow attached to its failure (outcome, steps, residue), if any. */
export function failureDetails(err: unknown): unknown {
  return failureDetailsOf(recordedFailure(err));
}
