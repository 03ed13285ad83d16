/**
 * The hotplug throttle of DESIGN §3. The Red Hat guide warns that more than 512 hotplugs of an assigned
 * device in a brief period can crash the host kernel; ptctl allows a hotplug (attach or detach of a
 * running guest) only while the device's count in a sliding window is under budget; the schema
 * (ThrottleSettings) never lets a budget above 256 be configured.
 */

export interface ThrottleConfig {
  budget: number;
  windowMs: number;
}

/** Hotplug times (epoch ms) per device, as the host entity keeps them. */
export type HotplugLedger = Record<string, number[]>;

/** Drops entries that have left the window, so a ledger carried across continue-as-new stays small. */
export function pruneLedger(ledger: HotplugLedger, now: number, windowMs: number): HotplugLedger {
  const out: HotplugLedger = {};
  for (const [bdf, times] of Object.entries(ledger)) {
    const recent = times.filter((t) => now - t < windowMs);
    if (recent.length > 0) out[bdf] = recent;
  }
  return out;
}

/**
 * When the next `count` hotplugs of `bdf` may start: `now` when the budget has room, otherwise the
 * moment enough old entries leave the window. `count` is more than 1 when an operation must reserve
 * room for its own compensation (attach + a possible detach).
 */
export function nextHotplugSlot(ledger: HotplugLedger, bdf: string, now: number, config: ThrottleConfig, count = 1): number {
  if (count > config.budget) return Number.POSITIVE_INFINITY;
  const recent = (ledger[bdf] ?? []).filter((t) => now - t < config.windowMs).sort((a, b) => a - b);
  const excess = recent.length + count - config.budget;
  if (excess <= 0) return now;
  // The excess-th oldest entry must leave the window first.
  const leaving = recent[excess - 1] ?? now;
  return leaving + config.windowMs;
}

export function recordHotplug(ledger: HotplugLedger, bdf: string, at: number): HotplugLedger {
  return { ...ledger, [bdf]: [...(ledger[bdf] ?? []), at] };
}
