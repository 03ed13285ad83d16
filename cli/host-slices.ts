import { ErrorCode, PtcError } from '../schemas/errors.js';

/**
 * Splits hosts into `n` contiguous slices whose sizes differ by at most one, the larger ones first
 * (2,000 hosts over 3 processes: 667, 667, 666), so every agents process carries the same load. Fewer
 * hosts than slices gives one slice per host rather than empty slices (an agents process needs at least
 * one `--host-id`); no hosts gives no slices.
 */
export function splitHosts<T>(hosts: readonly T[], n: number): T[][] {
  if (!Number.isInteger(n) || n < 1) throw new PtcError(ErrorCode.INVALID_INPUT, `agent processes: ${n} is not a whole number ≥ 1`);
  if (hosts.length === 0) return [];
  const slices = Math.min(n, hosts.length);
  const base = Math.floor(hosts.length / slices);
  const larger = hosts.length % slices;
  const out: T[][] = [];
  let start = 0;
  for (let i = 0; i < slices; i++) {
    const size = base + (i < larger ? 1 : 0);
    out.push(hosts.slice(start, start + size));
    start += size;
  }
  return out;
}
