import { z } from 'zod';

/**
 * Every failure ptctl reports has one of these codes. The code is the contract (callers branch on
 * it); the message is for people. No enum: a const object plus a derived union, so codes survive
 * JSON and Temporal failure types unchanged.
 */
export const ErrorCode = {
  // input
  INVALID_INPUT: 'INVALID_INPUT',
  INVALID_REQUEST: 'INVALID_REQUEST',
  UNKNOWN_COMMAND: 'UNKNOWN_COMMAND',
  HOST_MISMATCH: 'HOST_MISMATCH',
  OP_ID_REUSED: 'OP_ID_REUSED',
  /** The request's issuedAt is outside the agent's clock skew: a replayed or delayed request, or a wrong clock. Retryable (a retry is a fresh request). */
  REQUEST_STALE: 'REQUEST_STALE',
  // host facts
  HOST_NOT_FOUND: 'HOST_NOT_FOUND',
  DEVICE_NOT_FOUND: 'DEVICE_NOT_FOUND',
  GUEST_NOT_FOUND: 'GUEST_NOT_FOUND',
  GUEST_NOT_RUNNING: 'GUEST_NOT_RUNNING',
  GUEST_CONFIG_INVALID: 'GUEST_CONFIG_INVALID',
  // safety rules (DESIGN §4)
  DEVICE_IN_USE: 'DEVICE_IN_USE',
  RELOAD_UNSAFE: 'RELOAD_UNSAFE',
  PV_UNSUPPORTED: 'PV_UNSUPPORTED',
  PV_INSECURE: 'PV_INSECURE',
  HVM_UNSUPPORTED: 'HVM_UNSUPPORTED',
  IOMMU_REQUIRED: 'IOMMU_REQUIRED',
  IOMMU_GROUP_IN_USE: 'IOMMU_GROUP_IN_USE',
  DEVICE_ASSIGNED: 'DEVICE_ASSIGNED',
  GUEST_PINNED: 'GUEST_PINNED',
  HOTPLUG_BUDGET: 'HOTPLUG_BUDGET',
  THROTTLED: 'THROTTLED',
  DEADLINE_EXCEEDED: 'DEADLINE_EXCEEDED',
  CANCELLED: 'CANCELLED',
  STRATEGY_UNSUPPORTED: 'STRATEGY_UNSUPPORTED',
  HOTPLUG_UNSUPPORTED: 'HOTPLUG_UNSUPPORTED',
  DEVICE_NOT_RESETTABLE: 'DEVICE_NOT_RESETTABLE',
  // effects
  NOT_HIDDEN: 'NOT_HIDDEN',
  NOT_BOUND: 'NOT_BOUND',
  VERIFY_FAILED: 'VERIFY_FAILED',
  ATTACH_FAILED: 'ATTACH_FAILED',
  COMMAND_FAILED: 'COMMAND_FAILED',
  HOST_UNRESPONSIVE: 'HOST_UNRESPONSIVE',
  // plumbing
  AGENT_DUPLICATE: 'AGENT_DUPLICATE',
  AGENT_UNREACHABLE: 'AGENT_UNREACHABLE',
  AGENT_TIMEOUT: 'AGENT_TIMEOUT',
  NOT_CONNECTED: 'NOT_CONNECTED',
  STACK_FAILED: 'STACK_FAILED',
  OPERATION_FAILED: 'OPERATION_FAILED',
  INTERNAL: 'INTERNAL',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export const ErrorCodeSchema = z.enum(Object.values(ErrorCode) as [ErrorCode, ...ErrorCode[]]);

/** An error as it crosses a boundary (NATS reply, CLI --json, workflow result). */
export const ErrorInfo = z.object({
  code: ErrorCodeSchema,
  message: z.string().max(2000),
});
export type ErrorInfo = z.infer<typeof ErrorInfo>;

/**
 * Codes that no retry can fix: the host or the request must change first. Everything else (timeouts,
 * an unreachable agent, a flaky command) is worth retrying.
 */
const PERMANENT: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  ErrorCode.INVALID_INPUT,
  ErrorCode.INVALID_REQUEST,
  ErrorCode.UNKNOWN_COMMAND,
  ErrorCode.HOST_MISMATCH,
  ErrorCode.OP_ID_REUSED,
  ErrorCode.DEVICE_NOT_FOUND,
  ErrorCode.GUEST_NOT_FOUND,
  ErrorCode.GUEST_NOT_RUNNING,
  ErrorCode.GUEST_CONFIG_INVALID,
  ErrorCode.DEVICE_IN_USE,
  ErrorCode.RELOAD_UNSAFE,
  ErrorCode.PV_UNSUPPORTED,
  ErrorCode.PV_INSECURE,
  ErrorCode.HVM_UNSUPPORTED,
  ErrorCode.IOMMU_REQUIRED,
  ErrorCode.IOMMU_GROUP_IN_USE,
  ErrorCode.DEVICE_ASSIGNED,
  ErrorCode.GUEST_PINNED,
  ErrorCode.HOTPLUG_BUDGET,
  ErrorCode.THROTTLED,
  ErrorCode.DEADLINE_EXCEEDED,
  ErrorCode.CANCELLED,
  ErrorCode.STRATEGY_UNSUPPORTED,
  ErrorCode.HOTPLUG_UNSUPPORTED,
  ErrorCode.DEVICE_NOT_RESETTABLE,
  ErrorCode.NOT_HIDDEN,
  ErrorCode.NOT_BOUND,
  ErrorCode.VERIFY_FAILED,
  ErrorCode.ATTACH_FAILED,
  ErrorCode.HOST_UNRESPONSIVE,
]);

export function isPermanent(code: ErrorCode): boolean {
  return PERMANENT.has(code);
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ErrorCode, value);
}

/** The one error class ptctl throws on purpose: a code for programs, a sentence for people. */
export class PtcError extends Error {
  override readonly name = 'PtcError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  toInfo(): ErrorInfo {
    return { code: this.code, message: this.message };
  }

  static from(info: ErrorInfo): PtcError {
    return new PtcError(info.code, info.message);
  }
}

export function isPtcError(err: unknown, code?: ErrorCode): err is PtcError {
  return err instanceof PtcError && (code === undefined || err.code === code);
}

/** Turns a zod failure into one sentence listing every problem as `path: message`. */
export function describeZodError(err: z.ZodError, subject: string): string {
  const problems = err.issues.map((i) => `${i.path.length ? i.path.join('.') : subject}: ${i.message}`);
  return problems.join('; ');
}
