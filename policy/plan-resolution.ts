import { ErrorCode } from '../schemas/errors.js';
import { type HostInventory, type PciDevice, STUB_DRIVER } from '../schemas/inventory.js';
import type { ConcreteBindStrategy, PassthroughRequestInput } from '../schemas/passthrough.js';
import type { PciAddress } from '../schemas/pci-address.js';
import {
  type AssignmentRefused,
  type AssignmentResolution,
  type DeviceMatch,
  type HostResolution,
  type Plan,
  type PlanAssignment,
  PlanCode,
  type PlanHosts,
  type PlanRefusalCode,
  type PlanResolution,
  globToRegExp,
} from '../schemas/plan.js';
import { type InlineRolloutInput, RolloutInput, type HostWorkInput } from '../schemas/rollout.js';
import { checkHideable, isBridgePort, preflight, versionAtLeast } from './passthrough-policy.js';

/**
 * A plan resolved against live inventory, host by host, with the same rules the saga's preflight
 * applies (it calls `preflight`), so what `ptctl plan` shows is what `ptctl apply` would do or refuse.
 * Pure and linear in the fleet size: 10,000 hosts resolve in about 0.1 s once warm (under 1 s cold).
 */

// Host ids sort the way people count: sim-2 before sim-10.
const hostOrder = new Intl.Collator('en', { numeric: true }).compare;

/** Why a host fails the plan's selectors, or null when it matches them all. */
export function hostExclusion(sel: PlanHosts, inv: HostInventory, idPattern: RegExp | null = sel.idPattern ? globToRegExp(sel.idPattern) : null): string | null {
  if (idPattern && !idPattern.test(inv.hostId)) return `its id does not match idPattern ${sel.idPattern ?? ''}`;
  if (sel.os !== undefined && inv.os.name.toLowerCase() !== sel.os.toLowerCase()) return `it runs ${inv.os.name}, the plan wants ${sel.os}`;
  if (sel.osVersionAtLeast !== undefined && !versionAtLeast(inv.os.version, sel.osVersionAtLeast)) return `it runs ${inv.os.name} ${inv.os.version}, older than ${sel.osVersionAtLeast}`;
  if (sel.hypervisor !== undefined && inv.hypervisor !== sel.hypervisor) return `it runs ${inv.hypervisor}, the plan wants ${sel.hypervisor}`;
  return null;
}

/** "vendor 8086, class 0200": a match as people read it. */
export function describeMatch(m: DeviceMatch): string {
  return [m.vendor && `vendor ${m.vendor}`, m.device && `device ${m.device}`, m.class && `class ${m.class}`].filter(Boolean).join(', ');
}

export const assignmentSelector = (a: PlanAssignment): string => a.device ?? (a.match ? `match ${describeMatch(a.match)}` : '?');

const matches = (m: DeviceMatch, d: PciDevice): boolean =>
  (m.vendor === undefined || d.vendor === m.vendor) && (m.device === undefined || d.device === m.device) && (m.class === undefined || d.class.startsWith(m.class));

const ref = (i: number): string => `assignments.${i}`;

/** One host's devices indexed once: by address, and the devices an assignment takes out with each. */
class HostDevices {
  readonly byBdf = new Map<string, PciDevice>();
  private readonly groups = new Map<number, PciDevice[]>();
  constructor(readonly inv: HostInventory) {
    for (const d of inv.devices) {
      this.byBdf.set(d.bdf, d);
      // A bridge or root port in a group stays with the host (rule 10): it claims nothing.
      if (d.iommuGroup === null || isBridgePort(d)) continue;
      const members = this.groups.get(d.iommuGroup);
      if (members) members.push(d);
      else this.groups.set(d.iommuGroup, [d]);
    }
  }

  /** The device and its IOMMU group (rule 10); empty for an address the host does not have. */
  claimSet(bdf: string): readonly PciDevice[] {
    const d = this.byBdf.get(bdf);
    if (!d) return [];
    return d.iommuGroup === null ? [d] : (this.groups.get(d.iommuGroup) ?? [d]);
  }
}

interface Claim {
  index: number;
  guest: string;
  bdf: PciAddress;
}

/** An assignment's device on one host, or why a match found none. */
type Pick = { bdf: PciAddress } | { bdf: null; why: string };

/**
 * Turns each assignment into a device on this host: explicit addresses first (they are what the plan's
 * author pinned), then matches in plan order, each skipping what is already taken. A match prefers a
 * device the guest already holds, so a plan applied once resolves to the same devices again.
 */

function pickDevices(plan: Plan, host: HostDevices): (Pick | undefined)[] {
  const { inv } = host;
  const picks: (Pick | undefined)[] = plan.assignments.map(() => undefined);
  const taken = new Map<PciAddress, number>();
  const groupOwner = new Map<PciAddress, Claim>();
  const claim = (index: number, guest: string, bdf: PciAddress): void => {
    picks[index] = { bdf };
    if (!taken.has(bdf)) taken.set(bdf, index);
    for (const d of host.claimSet(bdf)) if (!groupOwner.has(d.bdf)) groupOwner.set(d.bdf, { index, guest, bdf });
  };
  plan.assignments.forEach((a, i) => {
    if (a.device !== undefined && appliesTo(a, inv)) claim(i, a.guest, a.device);
  });
  plan.assignments.forEach((a, i) => {
    if (a.device !== undefined || a.match === undefined || !appliesTo(a, inv)) return;
    const { guest, match } = a;
    const candidates = inv.devices.filter((d) => matches(match, d)).sort((x, y) => (x.bdf < y.bdf ? -1 : x.bdf > y.bdf ? 1 : 0));
    /** Why a candidate cannot be this assignment's device, or null when it can. */
    const unavailable = (d: PciDevice, idleOnly: boolean): string | null => {
      const t = taken.get(d.bdf);
      if (t !== undefined) return `${d.bdf} is claimed by ${ref(t)}`;
      for (const member of host.claimSet(d.bdf)) {
        const owner = groupOwner.get(member.bdf);
        if (owner && owner.guest !== guest) return `${d.bdf} shares IOMMU group ${d.iommuGroup ?? '?'} with ${owner.bdf}, which ${ref(owner.index)} gives to ${owner.guest}`;
        if (member !== d && member.assignedTo !== null && member.assignedTo !== guest) return `${d.bdf} shares IOMMU group ${d.iommuGroup ?? '?'} with ${member.bdf}, assigned to ${member.assignedTo}`;
      }
      if (!idleOnly) return null;
      if (d.inUse !== null) return `${d.bdf} is used by the host (${d.inUse})`;
      if (d.assignedTo !== null) return `${d.bdf} is assigned to ${d.assignedTo}`;
      const hideable = checkHideable(inv, d);
      return hideable.ok ? null : `${d.bdf}'s IOMMU group holds a device the host uses`;
    };
    const held = candidates.find((d) => d.assignedTo === guest && unavailable(d, false) === null);
    const idle = held ?? candidates.find((d) => unavailable(d, true) === null);
    if (idle) {
      claim(i, guest, idle.bdf);
      return;
    }
    const what = describeMatch(match);
    picks[i] =
      candidates.length === 0
        ? { bdf: null, why: `no device on ${inv.hostId} matches ${what}` }
        : { bdf: null, why: `no idle device on ${inv.hostId} matches ${what}: ${candidates.map((d) => unavailable(d, true) ?? `${d.bdf} is taken`).join('; ')}` };
  });
  return picks;
}

/** Plan-level conflicts: a device claimed twice, or one IOMMU group split between guests. */
function findConflicts(plan: Plan, host: HostDevices, picks: readonly (Pick | undefined)[]): Map<number, string> {
  const primary = new Map<PciAddress, number[]>();
  const group = new Map<PciAddress, Claim[]>();
  const add = <K, V>(m: Map<K, V[]>, k: K, v: V): void => {
    const list = m.get(k);
    if (list) list.push(v);
    else m.set(k, [v]);
  };
  picks.forEach((p, index) => {
    if (!p?.bdf) return;
    const claim = { index, guest: plan.assignments[index]?.guest ?? '', bdf: p.bdf };
    add(primary, p.bdf, index);
    for (const d of host.claimSet(p.bdf)) add(group, d.bdf, claim);
  });
  const out = new Map<number, string>();
  for (const [bdf, indexes] of primary) {
    if (indexes.length < 2) continue;
    const who = indexes.map((i) => `${ref(i)} (→ ${plan.assignments[i]?.guest ?? '?'})`);
    for (const i of indexes) out.set(i, `${bdf} is claimed by ${who.join(' and ')}; a device goes to one guest: keep one of these assignments`);
  }
  for (const claims of group.values()) {
    for (const a of claims) {
      const other = claims.find((b) => b.guest !== a.guest);
      if (!other || out.has(a.index)) continue;
      const g = host.byBdf.get(a.bdf)?.iommuGroup ?? '?';
      out.set(a.index, `${a.bdf} (→ ${a.guest}) and ${other.bdf} of ${ref(other.index)} (→ ${other.guest}) share IOMMU group ${g}; a group goes to one guest as a whole`);
    }
  }
  return out;
}

/** Why binding needs a reboot on this host, for the REBOOT_NOT_ALLOWED sentence. */
function rebootReason(plan: Plan, inv: HostInventory, device: PciDevice): string {
  if (plan.strategy === 'reboot') return 'the plan\'s strategy is reboot';
  const reasons = [inv.capabilities.includes('dynamic-bind') ? null : 'no dynamic bind on this host'];
  if (!inv.capabilities.includes('reload')) reasons.push('no driver reload');
  else {
    const busy = inv.devices.find((d) => d.bdf !== device.bdf && device.hostDriver !== null && d.driver === device.hostDriver && d.inUse !== null);
    reasons.push(busy ? `reloading ${device.hostDriver ?? '?'} would also drop ${busy.bdf}, which the host uses` : `${device.bdf} has no host driver to reload`);
  }
  return reasons.filter(Boolean).join('; ');
}

/** An assignment limited to one hypervisor does not apply to hosts of the other. */
function appliesTo(a: Plan['assignments'][number], inv: HostInventory): boolean {
  return a.hypervisor === undefined || a.hypervisor === inv.hypervisor;
}

/** One targeted host: every assignment that applies to it resolved to a change, already done, or a refusal. */
export function resolveHost(plan: Plan, inv: HostInventory): HostResolution {
  const host = new HostDevices(inv);
  const picks = pickDevices(plan, host);
  const conflicts = findConflicts(plan, host, picks);
  const assignments = plan.assignments.flatMap((a, index): AssignmentResolution[] => (appliesTo(a, inv) ? [resolveAssignment(a, index)] : []));
  return { hostId: inv.hostId, rebootNeeded: assignments.some((a) => a.status === 'change' && a.rebootNeeded), assignments };

  function resolveAssignment(a: Plan['assignments'][number], index: number): AssignmentResolution {
    // Literal objects, no `...base` spread: a spread followed by many keys costs V8 ~10 µs an object,
    // which is most of the time on a 10,000-host fleet.
    const { guest } = a;
    const selector = assignmentSelector(a);
    const refused = (bdf: PciAddress | null, code: PlanRefusalCode, message: string): AssignmentRefused => ({ status: 'refused', index, guest, selector, bdf, code, message });
    const pick = picks[index];
    if (!pick || pick.bdf === null) return refused(null, ErrorCode.DEVICE_NOT_FOUND, pick?.why ?? 'no device');
    const { bdf } = pick;
    const conflict = conflicts.get(index);
    if (conflict !== undefined) return refused(bdf, PlanCode.PLAN_CONFLICT, conflict);
    const verdict = preflight(inv, { bdf, guest, strategy: plan.strategy, allowInsecurePV: plan.allowInsecurePV });
    if (!verdict.ok) return refused(bdf, verdict.code, verdict.message);
    const { plan: pf } = verdict;
    if (pf.alreadyDone) return { status: 'done', index, guest, selector, bdf };
    const device = host.byBdf.get(bdf);
    if (!device) return refused(bdf, ErrorCode.DEVICE_NOT_FOUND, `host ${inv.hostId} has no PCI device ${bdf}`);
    if (pf.strategy === 'reboot' && !plan.allowReboot) {
      return refused(
        bdf,
        PlanCode.REBOOT_NOT_ALLOWED,
        `binding ${bdf} on ${inv.hostId} needs a host reboot (${rebootReason(plan, inv, device)}), and the plan does not allow reboots; set allowReboot: true to let ${inv.hostId} reboot`,
      );
    }
    return {
      status: 'change',
      index,
      guest,
      selector,
      bdf,
      driver: device.driver,
      hide: !device.hidden,
      stubDriver: STUB_DRIVER[inv.hypervisor],
      companions: pf.devicesToHide.filter((b) => b !== bdf),
      strategy: pf.strategy,
      rebootNeeded: pf.strategy === 'reboot',
      mode: pf.mode,
      guestRebootNeeded: pf.guestRebootNeeded,
      attachNote: pf.attachNote,
    };
  }
}

/** The plan against the fleet's inventory: which hosts it targets, and what would happen on each. */
export function resolvePlan(plan: Plan, inventories: readonly HostInventory[]): PlanResolution {
  const names = new Set(plan.hosts.names);
  const idPattern = plan.hosts.idPattern ? globToRegExp(plan.hosts.idPattern) : null;
  const known = new Set<string>();
  const hosts: HostResolution[] = [];
  const excluded: { hostId: string; reason: string }[] = [];
  for (const inv of [...inventories].sort((a, b) => hostOrder(a.hostId, b.hostId))) {
    known.add(inv.hostId);
    if (names.size > 0 && !names.has(inv.hostId)) continue;
    const why = hostExclusion(plan.hosts, inv, idPattern) ?? (plan.assignments.some((a) => appliesTo(a, inv)) ? null : `no assignment of the plan is for ${inv.hypervisor} hosts`);
    if (why !== null) {
      if (names.has(inv.hostId)) excluded.push({ hostId: inv.hostId, reason: why });
      continue;
    }
    hosts.push(resolveHost(plan, inv));
  }
  const unknown = [...names].filter((n) => !known.has(n)).sort(hostOrder);
  const count = (p: (h: HostResolution) => boolean): number => hosts.reduce((n, h) => n + (p(h) ? 1 : 0), 0);
  return {
    name: plan.name,
    hosts,
    unknown,
    excluded,
    summary: {
      toChange: count((h) => h.assignments.some((a) => a.status === 'change')),
      alreadyDone: count((h) => h.assignments.every((a) => a.status === 'done')),
      refused: count((h) => h.assignments.some((a) => a.status === 'refused')),
      unknown: unknown.length,
      rebootNeeded: count((h) => h.rebootNeeded),
      changes: hosts.reduce((n, h) => n + h.assignments.filter((a) => a.status === 'change').length, 0),
    },
  };
}

/** True when `ptctl plan` must exit non-zero: something the plan wants cannot be done as written. */
export const planHasRefusals = (r: PlanResolution): boolean => r.summary.refused > 0 || r.unknown.length > 0;

/**
 * What `ptctl apply` hands the rollout workflow: one HostWork per host with at least one change, its
 * requests in plan order. Already-done and refused assignments stay out (the resolution lists them).
 * Each request pins the strategy the plan showed: the saga's preflight re-checks it against the host
 * at run time and refuses rather than escalate, so `allowReboot: false` holds even if the host changed.
 */
export function toRolloutInput(plan: Plan, resolution: PlanResolution): InlineRolloutInput {
  const hosts: HostWorkInput[] = [];
  for (const h of resolution.hosts) {
    const requests: PassthroughRequestInput[] = [];
    for (const a of h.assignments) {
      if (a.status !== 'change') continue;
      requests.push({
        hostId: h.hostId,
        bdf: a.bdf,
        guest: a.guest,
        strategy: a.strategy satisfies ConcreteBindStrategy,
        allowInsecurePV: plan.allowInsecurePV,
        deadlineMs: plan.deadline,
        ...(plan.throttle ? { throttle: { budget: plan.throttle.budget, windowMs: plan.throttle.window } } : {}),
      });
    }
    if (requests.length > 0) hosts.push({ hostId: h.hostId, requests });
  }
  const input = RolloutInput.parse({ name: plan.name, hosts, options: plan.rollout });
  return { ...input, hosts: input.hosts ?? [] };
}
