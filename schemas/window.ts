import { z } from 'zod';
import { RolloutName } from './rollout.js';

/** What a maintenance window's schedule hands each firing (`ptctl window create`). */
export const WindowSpec = z
  .object({
    name: RolloutName.describe('window name; the schedule is window-<name>, each firing window/<name>-<time>'),
    durationMs: z.number().int().min(60_000).max(7 * 24 * 60 * 60_000).describe('how long the window stays open after it fires'),
    cutoffMs: z.number().int().min(0).default(10 * 60_000).describe('no host starts this close to the end, on top of its expected time'),
    expectedHostMs: z.number().int().min(0).default(10 * 60_000).describe('how long one host is expected to take'),
    /** The plan as validated when the window was created; re-validated and re-resolved at each firing. */
    plan: z.unknown(),
  })
  .strict();
export type WindowSpec = z.infer<typeof WindowSpec>;
export type WindowSpecInput = z.input<typeof WindowSpec>;

export const windowScheduleId = (name: string): string => `window-${name}`;
