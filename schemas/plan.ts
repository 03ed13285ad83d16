import { z } from 'zod';
import { ErrorCode, ErrorCodeSchema, PtcError } from './errors.js';
import { GuestName, HostId } from './ids.js';
import { Hypervisor, OsRelease } from './inventory.js';
import { AttachMode, BindStrategy, ThrottleSettings } from './passthrough.js';
import { PciAddress } from './pci-address.js';
import { MaxFailures, RolloutName, RolloutOptions } from './rollout.js';
import { DURATION_PATTERN, parseDuration } from './duration.js';

/**
 * The plan file (`ptctl plan|apply FILE`, maintenance windows): desired device → guest assignments on
 * a set of hosts, plus how carefully to get there. Every key has a description (docs/plan-reference.md
 * is generated from them) and, where one makes sense, a default. YAML/JSON parsing lives with the CLI
 * (schemas import zod only); `validatePlan` turns any parsed value into a Plan or one error listing
 * every problem.
 */

/** Human type names for the reference docs, keyed by schema instance (zod only knows "string"). */
export const planDocTypes = z.registry<{ type: string; plural?: string }>();
planDocTypes.add(PciAddress, { type: 'PCI address `DDDD:BB:DD.F`' });
planDocTypes.add(HostId, { type: 'host id', plural: 'host ids' });
planDocTypes.add(GuestName, { type: 'guest name' });
planDocTypes.add(RolloutName, { type: 'name (a-z, 0-9, `-`; at most 63)' });

/** A duration string in the plan, milliseconds after parsing, bounded like the request it feeds. */
function duration(bounds: { min: number; minText: string; max: number; maxText: string }) {
  const schema = z
    .string()
    .regex(DURATION_PATTERN, 'expected a duration like 90s, 30m, 2h or 1d')
    .transform((s) => parseDuration(s) ?? Number.NaN)
    .pipe(z.number().min(bounds.min, `at least ${bounds.minText}`).max(bounds.max, `at most ${bounds.maxText}`));
  planDocTypes.add(schema, { type: 'duration (`90s`, `30m`, `2h`, `1d`)' });
  return schema;
}

/** YAML reads `vendor: 8086` or `osVersionAtLeast: 5.10` as numbers (5.10 even becomes 5.1): ask for quotes. */
const quoted = (example: string) => (iss: { input?: unknown }) =>
  typeof iss.input === 'number' ? `write it in quotes, e.g. "${example}" (YAML reads bare digits as a number)` : undefined;

function hex(digits: string, what: string, example: string) {
  const schema = z
    .string({ error: quoted(example) })
    .transform((s) => s.toLowerCase())
    .pipe(z.string().regex(new RegExp(`^[0-9a-f]{${digits}}$`), `expected ${what}`));
  planDocTypes.add(schema, { type: `${digits.replace(',', '–')} hex digits` });
  return schema;
}

// ---------------------------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------------------------

const GLOB_PATTERN = /^[a-z0-9*?-]{1,100}$/;

/** Host id glob: `*` is any run of characters, `?` exactly one; nothing else is special. */
export function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[*?]/g, (c) => (c === '*' ? '.*' : '.'));
  return new RegExp(`^${body}$`);
}

export const PlanHosts = z
  .object({
    names: z.array(HostId).default([]).describe('host ids to target; when given, only these hosts are considered (and a named host that no agent reports is listed as unknown)'),
    idPattern: z
      .string()
      .regex(GLOB_PATTERN, 'a glob of a-z, 0-9, "-", "*" (any characters) and "?" (one character), e.g. sim-*')
      .register(planDocTypes, { type: 'glob (`*`, `?`)' })
      .optional()
      .describe('glob on the host id, e.g. `sim-*` or `rack?-*`'),
    os: OsRelease.shape.name.optional().describe('host OS name as the agent reports it, e.g. `rhel`'),
    osVersionAtLeast: z
      .string({ error: quoted('5.4') })
      .regex(/^\d+(\.\d+)*$/, 'a version like 5.4')
      .register(planDocTypes, { type: 'version, e.g. `5.4`' })
      .optional().describe('lowest host OS version, compared numerically (`5.4` < `5.10`)'),
    hypervisor: Hypervisor.optional().describe('only hosts running this hypervisor'),
  })
  .strict()
  .refine((h) => h.names.length > 0 || h.idPattern !== undefined || h.os !== undefined || h.osVersionAtLeast !== undefined || h.hypervisor !== undefined, {
    message: 'name at least one host (names) or give a selector (idPattern, os, osVersionAtLeast, hypervisor)',
  })
  .describe(
    'Which hosts the plan is for, out of the live inventory. Every criterion given must hold: a host is targeted when it is in `names` (if given) and matches every selector. A named host that matches `names` but not a selector is reported as excluded, with the reason.',
  );
export type PlanHosts = z.infer<typeof PlanHosts>;

// ---------------------------------------------------------------------------------------------
// Assignments
// ---------------------------------------------------------------------------------------------

export const DeviceMatch = z
  .object({
    vendor: hex('4', 'a PCI vendor id of 4 hex digits, e.g. 8086', '8086').optional().describe('PCI vendor id, e.g. `8086` (Intel), `14e4` (Broadcom)'),
    device: hex('4', 'a PCI device id of 4 hex digits, e.g. 10d3', '10d3').optional().describe('PCI device id, e.g. `10d3`'),
    class: hex('2,6', 'a PCI class code or prefix of 2 to 6 hex digits, e.g. 02 or 0200', '0200').optional().describe('PCI class code or a prefix of it: `02` any network controller, `0200` Ethernet'),
  })
  .strict()
  .refine((m) => m.vendor !== undefined || m.device !== undefined || m.class !== undefined, { message: 'give at least one of vendor, device, class' })
  .describe(
    'Picks a device on each host by its PCI ids instead of its address. On each host it resolves, in address order, to a matching device already given to this guest if there is one (so a plan applied once shows as done), otherwise to the first idle one: not used by the host, not assigned to a guest, its IOMMU group unused, and not claimed by another assignment of the plan.',
  );
export type DeviceMatch = z.infer<typeof DeviceMatch>;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const objectInput = (payload: { value: unknown }): boolean => isObject(payload.value);

export const PlanAssignment = z
  .object({
    device: PciAddress.optional().describe('the device to pass through, by address; give this or `match`'),
    match: DeviceMatch.optional().describe('pick the device by PCI ids on each host; give this or `device`'),
    guest: GuestName.describe('the guest (domain) that gets the device'),
    hypervisor: Hypervisor.optional().describe(
      'only on hosts running this hypervisor (`xen` or `kvm`); on the others the assignment does not apply, so one plan can name the Xen guests and the KVM guests of a mixed fleet',
    ),
  })
  .strict()
  // `when`: report these even when another key of the assignment is also wrong (all problems at once).
  .refine((a) => !(isObject(a) && a.device !== undefined && a.match !== undefined), { path: ['match'], message: 'give either device or match, not both', when: objectInput })
  .refine((a) => !(isObject(a) && a.device === undefined && a.match === undefined), { path: ['device'], message: 'required: give device (an address) or match (PCI ids)', when: objectInput })
  .describe('One device → one guest, wanted on every targeted host.');
export type PlanAssignment = z.infer<typeof PlanAssignment>;

// ---------------------------------------------------------------------------------------------
// The plan file
// ---------------------------------------------------------------------------------------------

const PERCENT_PATTERN = /^(\d{1,3}(?:\.\d+)?)%$/;

const MaxFailuresSetting = z
  .union(
    [
      z.number().int().min(0, 'a failure count is 0 or more'),
      z
        .string()
        .regex(PERCENT_PATTERN, 'expected a percentage like "10%"')
        .refine((s) => Number.parseFloat(s) <= 100, 'a percentage is at most 100%'),
    ],
    { error: 'expected a count like 2 or a percentage like "10%"' },
  )
  .transform((v): MaxFailures => (typeof v === 'number' ? { count: v } : { percent: Number.parseFloat(v) }))
  .pipe(MaxFailures);
planDocTypes.add(MaxFailuresSetting, { type: 'count or percentage (`2`, `"10%"`)' });

export const PlanRollout = z
  .object({
    canary: RolloutOptions.shape.canary.describe('hosts done first, one at a time; any failure among them stops the rollout'),
    maxParallel: RolloutOptions.shape.maxParallel.describe('hosts worked on at once after the canaries (never unlimited)'),
    maxFailures: MaxFailuresSetting.prefault(0).describe(
      'stop launching hosts once more than this many hosts failed: a count (`0` stops at the first failure) or a percentage of the rollout\'s hosts (`"10%"`)',
    ),
  })
  .strict()
  .describe('How `ptctl apply` paces the rollout: canary hosts first, then a bounded number at once, stopping on too many failures. `ptctl apply` flags override these.');

export const PlanThrottle = z
  .object({
    budget: ThrottleSettings.shape.budget.describe('hotplugs allowed per device per window (at most 256: 512 in a short time can crash the kernel)'),
    window: duration({ min: 1000, minText: '1s', max: 24 * 60 * 60_000, maxText: '24h' })
      .prefault('10m')
      .describe('the sliding window the budget applies to'),
  })
  .strict()
  .describe('Hotplug throttle for every operation of the plan; when absent, each host\'s default applies (32 per device per 10 minutes).');

export const PlanFile = z
  .object({
    name: RolloutName.describe('the rollout\'s name; its workflow id is `rollout/<name>`'),
    hosts: PlanHosts,
    assignments: z.array(PlanAssignment).min(1, 'a plan needs at least one assignment').describe('the wanted device → guest assignments, applied in this order on each host'),
    strategy: BindStrategy.default('auto').describe(
      'how a hidden device is bound to pciback: `auto` lets policy pick the least disruptive safe way (dynamic, then reload, then reboot); `ptctl apply` pins the strategy `ptctl plan` showed',
    ),
    allowReboot: z
      .boolean()
      .default(false)
      .describe('permit host reboots; when false, an assignment that could only be bound by rebooting its host is refused on that host'),
    rebootsOnlyInWindows: z
      .boolean()
      .default(false)
      .describe('with allowReboot: `ptctl apply` leaves hosts that need a reboot untouched, for a maintenance window (`ptctl window create`) to do'),
    allowInsecurePV: z.boolean().default(false).describe('permit passthrough to PV guests (gives the guest DMA reach into dom0); RHEL 6 PV guests are refused regardless'),
    deadline: duration({ min: 1000, minText: '1s', max: 7 * 24 * 60 * 60_000, maxText: '7d' })
      .prefault('30m')
      .describe('how long each operation may wait for a throttle slot or a reboot before it ends throttled or timed out'),
    throttle: PlanThrottle.optional(),
    rollout: PlanRollout.prefault({}),
  })
  .strict()
  .describe('A plan file: desired device → guest assignments on a set of hosts, and how carefully to get there. YAML or JSON.');

/** A validated plan: durations are milliseconds (`deadline`, `throttle.window`), `rollout` is RolloutOptions. */
export type Plan = z.infer<typeof PlanFile>;
export type PlanInput = z.input<typeof PlanFile>;

// ---------------------------------------------------------------------------------------------
// Validation: every problem at once, as `path: message` lines
// ---------------------------------------------------------------------------------------------

/** The keys an object schema accepts at `path` (through arrays, optionals and defaults), for "did you mean". */
function keysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  let cur: z.ZodType = schema;
  for (let i = 0; ; ) {
    if (cur instanceof z.ZodOptional || cur instanceof z.ZodDefault || cur instanceof z.ZodPrefault) cur = cur.unwrap() as z.ZodType;
    else if (cur instanceof z.ZodPipe) cur = cur.in as z.ZodType;
    else if (i >= path.length) return cur instanceof z.ZodObject ? Object.keys(cur.shape) : [];
    else if (cur instanceof z.ZodArray) {
      cur = cur.element as z.ZodType;
      i++;
    } else if (cur instanceof z.ZodObject) {
      const next = (cur.shape as Record<string, z.ZodType>)[String(path[i])];
      if (!next) return [];
      cur = next;
      i++;
    } else return [];
  }
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row.push(Math.min((prev[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1)));
    prev = row;
  }
  return prev[b.length] ?? 0;
}

function suggestKey(key: string, known: readonly string[]): string | null {
  const lower = key.toLowerCase();
  const best = known.map((k) => ({ k, d: k.toLowerCase() === lower ? 0 : editDistance(lower, k.toLowerCase()) })).sort((x, y) => x.d - y.d)[0];
  return best && best.d <= 2 ? best.k : null;
}

/** The line a problem sits on in the source file, or null when unknown. */
export type LocatePath = (path: readonly PropertyKey[]) => number | null;

export interface PlanProblem {
  path: PropertyKey[];
  message: string;
}

const pathText = (path: readonly PropertyKey[]): string => (path.length ? path.map(String).join('.') : '(plan)');

/** Every problem zod found, one per line, unknown keys one by one with a suggestion when one is close. */
export function planProblems(error: z.ZodError): PlanProblem[] {
  const out: PlanProblem[] = [];
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      const known = keysAt(PlanFile, issue.path);
      for (const key of issue.keys) {
        const hint = suggestKey(key, known);
        out.push({ path: [...issue.path, key], message: `unknown key${hint ? ` (did you mean ${hint}?)` : known.length ? ` (expected one of ${known.join(', ')})` : ''}` });
      }
    } else {
      out.push({ path: issue.path, message: issue.message });
    }
  }
  return out;
}

/** One error for a whole file: a headline, then one `path: message` line per problem. */
export function planFileError(source: string, problems: readonly string[]): PtcError {
  const head = `plan file ${source} has ${problems.length} problem${problems.length === 1 ? '' : 's'}:`;
  return new PtcError(ErrorCode.INVALID_INPUT, [head, ...problems.map((p) => `  ${p}`)].join('\n'));
}

/**
 * Validates a parsed plan file (any JSON-like value). Throws one PtcError(INVALID_INPUT) listing every
 * problem as a `path: message` line (with its place in the file when `locate` knows it).
 */
export function validatePlan(raw: unknown, source: string, locate: LocatePath = () => null): Plan {
  const parsed = PlanFile.safeParse(raw, {
    error: (iss) => ((iss.code === 'invalid_type' || iss.code === 'invalid_union') && iss.input === undefined ? 'required' : undefined),
  });
  if (parsed.success) return parsed.data;
  // In file order, so the list reads top to bottom next to the file.
  const located = planProblems(parsed.error).map((p) => ({ ...p, line: locate(p.path) }));
  located.sort((a, b) => (a.line ?? Number.MAX_SAFE_INTEGER) - (b.line ?? Number.MAX_SAFE_INTEGER));
  throw planFileError(
    source,
    located.map((p) => `${pathText(p.path)}: ${p.message}${p.line !== null ? ` (line ${p.line})` : ''}`),
  );
}

// ---------------------------------------------------------------------------------------------
// Resolution: what `ptctl plan` shows and `--json` prints
// ---------------------------------------------------------------------------------------------

/**
 * Refusal codes a plan adds to the safety rules' ErrorCode: both are about the plan, not the host.
 * REBOOT_NOT_ALLOWED: the only way to bind needs a host reboot and `allowReboot` is false.
 * PLAN_CONFLICT: two assignments claim the same device, or split one IOMMU group between guests.
 */
export const PlanCode = { REBOOT_NOT_ALLOWED: 'REBOOT_NOT_ALLOWED', PLAN_CONFLICT: 'PLAN_CONFLICT' } as const;
export type PlanCode = (typeof PlanCode)[keyof typeof PlanCode];
export const PlanRefusalCode = z.union([ErrorCodeSchema, z.enum([PlanCode.REBOOT_NOT_ALLOWED, PlanCode.PLAN_CONFLICT])]);
export type PlanRefusalCode = z.infer<typeof PlanRefusalCode>;

const assignmentBase = {
  index: z.number().int().min(0).describe('position in the plan\'s assignments'),
  guest: GuestName,
  selector: z.string().describe('the plan\'s device: its address, or its match as text'),
};

export const AssignmentChange = z.object({
  status: z.literal('change'),
  ...assignmentBase,
  bdf: PciAddress,
  driver: z.string().nullable().describe('the device\'s driver now'),
  hide: z.boolean().describe('the device is not yet hidden (pciback hide= list on Xen, vfio-pci override rules on KVM)'),
  stubDriver: z.enum(['pciback', 'vfio-pci']).describe('the driver that will hold the device for the guest: pciback on Xen, vfio-pci on KVM'),
  companions: z.array(PciAddress).describe('devices of the same IOMMU group, hidden and bound with it'),
  strategy: z.enum(['dynamic', 'reload', 'reboot']),
  rebootNeeded: z.boolean().describe('binding reboots the host'),
  mode: AttachMode,
  guestRebootNeeded: z.boolean(),
  attachNote: z.string().nullable().describe('why the attach is cold, when it is'),
});
export const AssignmentDone = z.object({ status: z.literal('done'), ...assignmentBase, bdf: PciAddress });
export const AssignmentRefused = z.object({
  status: z.literal('refused'),
  ...assignmentBase,
  bdf: PciAddress.nullable().describe('null when a device match found nothing'),
  code: PlanRefusalCode,
  message: z.string(),
});
export const AssignmentResolution = z.discriminatedUnion('status', [AssignmentChange, AssignmentDone, AssignmentRefused]);
export type AssignmentChange = z.infer<typeof AssignmentChange>;
export type AssignmentDone = z.infer<typeof AssignmentDone>;
export type AssignmentRefused = z.infer<typeof AssignmentRefused>;
export type AssignmentResolution = z.infer<typeof AssignmentResolution>;

export const HostResolution = z.object({
  hostId: HostId,
  rebootNeeded: z.boolean().describe('at least one change reboots the host'),
  assignments: z.array(AssignmentResolution).describe('one per plan assignment, in plan order'),
});
export type HostResolution = z.infer<typeof HostResolution>;

export const PlanResolution = z.object({
  name: RolloutName,
  hosts: z.array(HostResolution).describe('targeted hosts found in inventory, in host id order'),
  unknown: z.array(HostId).describe('hosts named in the plan that no agent reports'),
  excluded: z.array(z.object({ hostId: HostId, reason: z.string() })).describe('hosts named in the plan that a selector rules out'),
  summary: z.object({
    toChange: z.number().int().describe('hosts with at least one change'),
    alreadyDone: z.number().int().describe('hosts where every assignment is already in place'),
    refused: z.number().int().describe('hosts with at least one refused assignment (a host can also have changes)'),
    unknown: z.number().int(),
    rebootNeeded: z.number().int().describe('hosts that would reboot'),
    changes: z.number().int().describe('assignments to carry out, over all hosts'),
  }),
});
export type PlanResolution = z.infer<typeof PlanResolution>;
