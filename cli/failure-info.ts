import { ActivityFailure, ApplicationFailure, TemporalFailure } from '@temporalio/common';
import { ErrorCode, type ErrorInfo, isErrorCode } from '../schemas/errors.js';

/**
 * A workflow run that ended without a result (failed, cancelled, terminated, timed out), as the CLI's
 * own reader (cli/workflow-reader.ts) saw it: the SDK client's WorkflowFailedError without loading that
 * client. `cause` is the failure the run recorded, rebuilt by the SDK's failure converter (a TemporalFailure).
 */
export class WorkflowEndedError extends Error {
  override readonly name = 'WorkflowEndedError';
  constructor(
    message: string,
    override readonly cause: Error,
  ) {
    super(message, { cause });
  }
}

/**
 * The code and sentence of a failure Temporal recorded: the innermost ApplicationFailure's type under
 * any ActivityFailures (Temporal wraps failures several levels deep), never parsed out of a message;
 * null for anything that is not a Temporal failure.
 */
export function failureInfo(failure: unknown): ErrorInfo | null {
  let cur = failure;
  while (cur instanceof ActivityFailure && cur.cause) cur = cur.cause;
  if (cur instanceof ApplicationFailure && isErrorCode(cur.type)) return { code: cur.type, message: cur.message };
  if (cur instanceof TemporalFailure) return { code: ErrorCode.OPERATION_FAILED, message: cur.message };
  return null;
}

/** Structured details a workflow attached to the failure it ended with (outcome, steps, residue), if any. */
export function failureDetailsOf(failure: unknown): unknown {
  return failure instanceof ApplicationFailure ? (failure.details?.[0] ?? null) : null;
}
