import { z } from 'zod';
import { HostId } from './ids.js';
import { PassthroughRequest } from './passthrough.js';

/** One apply or window firing. Absent in rollouts started before run ids existed (their ids stay as they were). */
export const RunId = z.string().regex(/^[a-z0-9]{1,16}$/, 'a run id is 1-16 characters of a-z and 0-9');
export type RunId = z.infer<typeof RunId>;

/** A rollout's name becomes part of workflow ids (`rollout/<name>`): keep it to a safe token. */
export const RolloutName = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'a rollout name is 1-63 characters of a-z, 0-9 and "-"');
export type RolloutName = z.infer<typeof RolloutName>;

/**
 * When to stop launching hosts: more than `count` failed hosts, or more than `percent` of the hosts in
 * the rollout failed. Canary failures always stop the rollout, whatever this says.
 */
export const MaxFailures = z.union([
  z.object({ count: z.number().int().min(0) }).strict(),
  z.object({ percent: z.number().min(0).max(100) }).strict(),
]);
export type MaxFailures = z.infer<typeof MaxFailures>;

export const RolloutOptions = z
  .object({
    canary: z.number().int().min(0).default(1).describe('hosts done first, one at a time; any failure among them stops the rollout'),
    maxParallel: z.number().int().min(1).max(1000).default(1).describe('hosts worked on at once after the canaries (an unset limit never means unlimited)'),
    maxFailures: MaxFailures.default({ count: 0 }).describe('stop launching hosts once failures exceed this (count or percent)'),
  })
  .strict();
export type RolloutOptions = z.infer<typeof RolloutOptions>;

/** One host's work in a rollout: its passthrough requests, run in order through the host's entity. */
export const HostWork = z
  .object({
    hostId: HostId,
    requests: z.array(PassthroughRequest).min(1),
  })
  .strict();
export type HostWork = z.infer<typeof HostWork>;
export type HostWorkInput = z.input<typeof HostWork>;

/** A maintenance window's limits: no host starts whose expected duration would pass `endsAt - cutoffMs`. */
export const WindowLimits = z
  .object({
    endsAt: z.number().int().describe('epoch ms when the window closes'),
    cutoffMs: z.number().int().min(0).describe('margin before the end in which no host starts'),
    expectedHostMs: z.number().int().min(0).describe('how long one host is expected to take'),
  })
  .strict();
export type WindowLimits = z.infer<typeof WindowLimits>;

/** Whether a host started at `now` is expected to finish before the window's cutoff. */
export function fitsInWindow(now: number, window: WindowLimits): boolean {
  return now + window.expectedHostMs <= window.endsAt - window.cutoffMs;
}

/** What `ptctl apply` hands the rollout workflow: the plan resolved against live inventory. */
export const RolloutInput = z
  .object({
    name: RolloutName,
    // A host listed twice would be worked on twice.
    hosts: z.array(HostWork).refine((hosts) => new Set(hosts.map((h) => h.hostId)).size === hosts.length, 'each host may appear only once in a rollout'),
    options: RolloutOptions.default({ canary: 1, maxParallel: 1, maxFailures: { count: 0 } }),
    window: WindowLimits.optional().describe('set when the rollout runs inside a maintenance window'),
    run: RunId.optional().describe('this apply or window firing: part of every operation id, so applying again acts again while a retry of this run stays idempotent'),
  })
  .strict();
export type RolloutInput = z.infer<typeof RolloutInput>;
export type RolloutInputRaw = z.input<typeof RolloutInput>;

export const HostRolloutState = z.enum(['pending', 'running', 'succeeded', 'failed', 'skipped', 'cancelled']);
export type HostRolloutState = z.infer<typeof HostRolloutState>;

export const HostRolloutReport = z.object({
  hostId: HostId,
  state: HostRolloutState,
  canary: z.boolean(),
  /** One line per request: its outcome, or the failure's code and sentence. */
  details: z.array(z.string()),
});
export type HostRolloutReport = z.infer<typeof HostRolloutReport>;
