import { ErrorCode, PtcError } from '../schemas/errors.js';

/**
 * Deals hosts over `n` slices in turn (host i to slice i mod n), so sizes differ by at most one, the
 * larger ones first (2,000 hosts over 3 processes: 667, 667, 666). Dealt, not cut in contiguous runs:
 * a rollout launches hosts in order, and contiguous slices put its whole window on one agents process
 * at a time (measured: with 500 hosts over 4, two processes sat idle while the first was busy). Fewer
 * hosts than slices gives one slice per host rather than empty slices (an agents process needs at
 * least one `--host-id`); no hosts gives no slices.
 */
export function splitHosts<T>(hosts: readonly T[], n: number): T[][] {
  if (!Number.isInteger(n) || n < 1) throw new PtcError(ErrorCode.INVALID_INPUT, `agent processes: ${n} is not a whole number ≥ 1`);
  const out: T[][] = Array.from({ length: Math.min(n, hosts.length) }, () => []);
  hosts.forEach((host, i) => out[i % out.length]?.push(host));
  return out;
}
