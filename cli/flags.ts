import { parseDuration } from '../schemas/duration.js';
import { ErrorCode, PtcError } from '../schemas/errors.js';

/** A duration flag, in the plan files' grammar ("90s", "30m", "2h", "1d"); bare digits are milliseconds. */
export function durationFlag(value: string, flag: string): number {
  const parsed = /^\d+$/.test(value) ? Number(value) : parseDuration(value);
  if (parsed === null) throw new PtcError(ErrorCode.INVALID_INPUT, `${flag}: "${value}" is not a duration like 90s, 30m, 2h or 1d`);
  return parsed;
}
