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

/** The KV bucket a rollout's hosts travel in: a 100,000-host plan is ~30 MB, far past Temporal's payload limit. */
export const PLANS_BUCKET = 'ptc_plans';

/** Each page is one KV value and one activity result: kept well under Temporal's 256 KB payload warning. */
export const MAX_PAGE_BYTES = 128 * 1024;
export const MAX_PAGE_HOSTS = 500;

/**
 * A rollout's hosts by reference: `count` hosts in KV `ptc_plans` under `<key>.<page>`, `pageSize` per
 * page (the last may hold fewer). Written once before the rollout starts, never changed.
 */
export const HostsRef = z
  .object({
    key: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}\.[a-z0-9-]{1,64}$/, 'a hosts key is <rollout>.<run>'),
    count: z.number().int().min(1),
    pageSize: z.number().int().min(1).max(MAX_PAGE_HOSTS),
  })
  .strict();
export type HostsRef = z.infer<typeof HostsRef>;

/** The KV key of one page of a rollout's hosts. */
export const hostsPageKey = (ref: Pick<HostsRef, 'key'>, page: number): string => `${ref.key}.${page}`;

/** No host may be worked on twice in one rollout. */
export const UniqueHosts = z.array(HostWork).refine((hosts) => new Set(hosts.map((h) => h.hostId)).size === hosts.length, 'each host may appear only once in a rollout');

/**
 * What `ptctl apply` hands the rollout workflow: the plan resolved against live inventory. Its hosts
 * travel by reference (`hostsRef`); `hosts` inline is what rollouts started before that carry, and what
 * tests with a handful of hosts use.
 */
export const RolloutInput = z
  .object({
    name: RolloutName,
    hosts: UniqueHosts.optional(),
    hostsRef: HostsRef.optional(),
    options: RolloutOptions.default({ canary: 1, maxParallel: 1, maxFailures: { count: 0 } }),
    window: WindowLimits.optional().describe('set when the rollout runs inside a maintenance window'),
    run: RunId.optional().describe('this apply or window firing: part of every operation id, so applying again acts again while a retry of this run stays idempotent'),
  })
  .strict()
  .refine((input) => (input.hosts === undefined) !== (input.hostsRef === undefined), 'a rollout has its hosts inline or by reference, exactly one of the two');
export type RolloutInput = z.infer<typeof RolloutInput>;
export type RolloutInputRaw = z.input<typeof RolloutInput>;
/** A resolved plan before its hosts are stored: what `storeRolloutInput` turns into a rollout by reference. */
export type InlineRolloutInput = Omit<RolloutInput, 'hosts' | 'hostsRef'> & { hosts: HostWork[] };

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
