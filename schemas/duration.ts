/**
 * Durations as people write them in plan files and CLI flags: "90s", "30m", "2h", "1d" (decimals
 * allowed, "1.5h"). One grammar everywhere, small enough not to need a library (schemas import zod only).
 */
const DURATION_UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
export const DURATION_PATTERN = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;

/** "90s", "30m", "2h", "1d" → milliseconds. Returns null for anything else. */
export function parseDuration(text: string): number | null {
  const m = DURATION_PATTERN.exec(text);
  if (!m) return null;
  return Math.round(Number(m[1]) * (DURATION_UNITS[m[2] ?? ''] ?? Number.NaN));
}
