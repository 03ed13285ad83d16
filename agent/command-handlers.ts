import type { AgentCommand, CommandArgsOf, CommandResultOf, EventKind } from '../schemas/agent-protocol.js';
import { ErrorCode, PtcError } from '../schemas/errors.js';
import { type Guest, type HostInventory, type PciDevice, STUB_DRIVER } from '../schemas/inventory.js';
import type { PciAddress } from '../schemas/pci-address.js';
import type { GuestName } from '../schemas/ids.js';
import { checkGuestAccepts, checkHideable, checkReloadSafe, chooseAttachMode, deviceNotFound, findDevice, findGuest, takesHotplug, type Verdict } from '../policy/passthrough-policy.js';
import type { HostBackend, HostScan } from './backend.js';
import type { DeviceRecords } from './device-records.js';
import { readInventory } from './host-inventory.js';

/**
 * The agent's own hotplug cap per device: a second line of defence under the workflow throttle (which
 * never allows more than 256 per window), far below the 512-in-60-s that crashes the kernel.
 */
export interface HotplugCap {
  max: number;
  windowMs: number;
}
export const DEFAULT_HOTPLUG_CAP: HotplugCap = { max: 256, windowMs: 10 * 60_000 };

export interface HandlerContext {
  hostId: string;
  backend: HostBackend;
  records: DeviceRecords;
  hotplugCap: HotplugCap;
  now: () => number;
  emit: (kind: EventKind, detail: Record<string, unknown>) => Promise<void>;
  /** Named points between effects; fault injection can crash the agent at one to test recovery. */
  checkpoint: (step: string) => void;
  /** The operation being run, recorded with intents. */
  opId?: string;
  /**
   * Said by a command whose scan was taken after its last effect on the kernel (hide and unhide have
   * none; bind, unbind, attach and detach scan again to check theirs): the kernel is as `scan` saw it,
   * so the inventory published after the reply is built from that scan, fresh file reads and the
   * records as they are now, without another scan in the host's queue (where the next command would
   * wait for it).
   */
  kernelAsScanned?: (scan: HostScan) => void;
}

export interface Repair {
  bdf: PciAddress;
  op: 'bind' | 'reload';
  opId: string;
  /** What was done: rebound to the recorded driver, reprobed, or nothing (the step had completed). */
  action: 'rebound' | 'reprobed' | 'none';
  driver: string | null;
  error?: string;
}

/**
 * Repairs what a crash in the middle of a multi-step effect left behind (run at agent start, before
 * any command): a device of an unfinished bind or reload that is on no driver now is bound to its
 * recorded driver, or reprobed (`drivers_probe`) when it had none. A device on any driver is left as
 * it is (the step finished, or the saga's retry will judge it). Intents are cleared once handled;
 * one whose repair failed stays for the next start.
 */
export async function repairInterrupted(ctx: HandlerContext): Promise<Repair[]> {
  const intents = Object.entries(ctx.records.intents);
  if (intents.length === 0) return [];
  const devices = (await ctx.backend.scan()).devices;
  const repairs: Repair[] = [];
  const done: string[] = [];
  for (const [bdf, intent] of intents) {
    const dev = devices.find((d) => d.bdf === bdf);
    if (!dev || dev.driver !== null) {
      repairs.push({ bdf, op: intent.op, opId: intent.opId, action: 'none', driver: dev?.driver ?? null });
      done.push(bdf);
      continue;
    }
    try {
      await ctx.backend.bindHostDriver(bdf, intent.originalDriver);
      repairs.push({ bdf, op: intent.op, opId: intent.opId, action: intent.originalDriver === null ? 'reprobed' : 'rebound', driver: intent.originalDriver });
      done.push(bdf);
    } catch (err) {
      repairs.push({ bdf, op: intent.op, opId: intent.opId, action: 'none', driver: null, error: (err as Error).message });
    }
  }
  await ctx.records.clearIntents(done);
  return repairs;
}

type Handler<C extends AgentCommand> = (ctx: HandlerContext, args: CommandArgsOf<C>) => Promise<CommandResultOf<C>>;
export type CommandHandlers = { [C in AgentCommand]: Handler<C> };

function must<T extends object>(verdict: Verdict<T>): T {
  if (!verdict.ok) throw new PtcError(verdict.code, verdict.message);
  return verdict;
}

async function inventory(ctx: HandlerContext): Promise<HostInventory> {
  return (await inventoryWithScan(ctx)).inv;
}

/** The inventory and the scan it was built from: a command that needs both reads the kernel once. */
async function inventoryWithScan(ctx: HandlerContext): Promise<{ inv: HostInventory; scan: HostScan }> {
  const scan = await ctx.backend.scan();
  return { scan, inv: await readInventory(ctx.hostId, ctx.backend, ctx.records, { scan }) };
}

async function device(ctx: HandlerContext, bdf: PciAddress): Promise<{ inv: HostInventory; device: PciDevice; scan: HostScan }> {
  const { inv, scan } = await inventoryWithScan(ctx);
  return { inv, scan, device: must(findDevice(inv, bdf)).device };
}

/** A guest as a scan taken after an attach or detach sees it; that scan is the one the inventory is published from. */
async function guestAfter(ctx: HandlerContext, guestName: GuestName): Promise<Guest> {
  const { inv, scan } = await inventoryWithScan(ctx);
  ctx.kernelAsScanned?.(scan);
  return must(findGuest(inv, guestName)).guest;
}

/** Edits ptctl's part of the host's hide configuration (modprobe file on Xen, vfio-pci rules on KVM). */
async function editHideConfig(ctx: HandlerContext, edit: (text: string) => string): Promise<{ changed: boolean; file: string }> {
  const { file } = ctx.backend.hideConfig();
  const before = (await ctx.backend.files.read(file)) ?? '';
  const after = edit(before);
  if (after === before) return { changed: false, file };
  await ctx.backend.files.writeAtomic(file, after);
  return { changed: true, file };
}

async function guestConfigEdit(ctx: HandlerContext, edit: () => Promise<boolean>): Promise<boolean> {
  try {
    return await edit();
  } catch (err) {
    if (err instanceof PtcError && err.code === ErrorCode.GUEST_NOT_FOUND) throw new PtcError(ErrorCode.GUEST_NOT_FOUND, `${err.message} on host ${ctx.hostId}`, { cause: err });
    throw err;
  }
}

/** Rule: a guest whose config ptctl cannot parse is fenced; nothing that reads or edits that config runs. */
function requireReadableConfig(ctx: HandlerContext, guest: Guest, verb: string): void {
  if (guest.configProblem) {
    throw new PtcError(
      ErrorCode.GUEST_CONFIG_INVALID,
      `cannot ${verb} ${guest.name} on ${ctx.hostId}: its config ${ctx.backend.guestConfigPath(guest.name)} cannot be read safely (${guest.configProblem}); fix the file, then retry`,
    );
  }
}

async function guardedHotplug(ctx: HandlerContext, bdf: PciAddress, effect: () => Promise<void>, detail: Record<string, unknown>): Promise<void> {
  const now = ctx.now();
  const recent = ctx.records.recentHotplugs(bdf, now, ctx.hotplugCap.windowMs);
  if (recent.length >= ctx.hotplugCap.max) {
    throw new PtcError(
      ErrorCode.HOTPLUG_BUDGET,
      `${bdf} was hotplugged ${recent.length} times in the last ${ctx.hotplugCap.windowMs / 60_000} min on ${ctx.hostId}; the agent refuses more to protect the kernel (its limit is 512 in a brief period)`,
    );
  }
  // Counted before the effect: a hotplug that fails half-way still touched the kernel's interrupt tracking.
  await ctx.records.addHotplug(bdf, now, ctx.hotplugCap.windowMs);
  try {
    await effect();
  } catch (err) {
    // A failed hotplug is never retried blindly: retries are how hotplug storms start. The saga decides.
    if (err instanceof PtcError && err.code === ErrorCode.COMMAND_FAILED) throw new PtcError(ErrorCode.ATTACH_FAILED, err.message, { cause: err });
    throw err;
  }
  await ctx.emit('hotplug', detail);
}

/** What the device is bound to after a step, judged by state rather than by the command's exit code. */
function expectDriver(dev: PciDevice, want: string, step: string): void {
  if (dev.driver !== want) {
    throw new PtcError(ErrorCode.VERIFY_FAILED, `${step} reported success but ${dev.bdf} is bound to ${dev.driver ?? 'no driver'}, not ${want}`);
  }
}

/**
 * Rule 6: a guest holding a passed-through device is tied to this host's hardware, so it cannot be saved,
 * restored or migrated; everything else goes to the toolstack and is checked by state afterwards.
 */
function guestLifecycle(action: 'save' | 'restore' | 'migrate') {
  return async (ctx: HandlerContext, args: { guest: string; target?: string }): Promise<CommandResultOf<'save'>> => {
    const guest = must(findGuest(await inventory(ctx), args.guest)).guest;
    requireReadableConfig(ctx, guest, action);
    const held = [...new Set([...guest.liveDevices, ...guest.configDevices])];
    if (held.length > 0) {
      throw new PtcError(
        ErrorCode.GUEST_PINNED,
        `${guest.name} holds passed-through device${held.length > 1 ? 's' : ''} ${held.join(', ')}, so it cannot be ${action === 'save' ? 'saved' : action === 'restore' ? 'restored' : 'migrated'}; detach ${held.length > 1 ? 'them' : 'it'} first (ptctl detach)`,
      );
    }
    if (action === 'save') await ctx.backend.saveGuest(guest.name);
    else if (action === 'restore') await ctx.backend.restoreGuest(guest.name);
    else await ctx.backend.migrateGuest(guest.name, args.target ?? '');
    const after = (await inventory(ctx)).guests.find((g) => g.name === guest.name);
    const state = after?.state ?? 'gone';
    const expected = action === 'restore' ? state === 'running' : action === 'save' ? state !== 'running' : after === undefined;
    if (!expected) throw new PtcError(ErrorCode.COMMAND_FAILED, `${action} of ${guest.name} reported success but the guest is ${state}`);
    return { guest: guest.name, action, state };
  };
}

export const commandHandlers: CommandHandlers = {
  inspect: async (ctx) => inventory(ctx),

  hide: async (ctx, { bdf }) => {
    const { inv, device: dev, scan } = await device(ctx, bdf);
    must(checkHideable(inv, dev));
    // A device no host driver holds (a GPU without a dom0 driver, or one hidden at boot and on pciback
    // already) is hidden with no install line: no driver load has to be redirected through pciback.
    // On KVM the override rule names vfio-pci for the device itself: no driver's loading is redirected.
    const candidate = inv.hypervisor === 'kvm' ? null : (dev.hostDriver ?? dev.driver);
    const driver = candidate === STUB_DRIVER[inv.hypervisor] ? null : candidate;
    const config = ctx.backend.hideConfig();
    // Rule 15: a source read after ours wins; writing ours would "succeed" and hide nothing.
    const [winner] = await ctx.backend.winningHideSources(bdf);
    if (winner?.reason !== undefined) throw new PtcError(ErrorCode.NOT_HIDDEN, `host ${ctx.hostId}: ${winner.reason}`);
    if (winner) {
      const what = inv.hypervisor === 'kvm' ? `overrides ${bdf}'s driver` : `sets pciback's hide= list (${winner.hidden.join(', ') || 'empty'})`;
      throw new PtcError(
        ErrorCode.NOT_HIDDEN,
        `${winner.source} ${what} and is read after ${config.file}, so it wins and ${bdf} would not be hidden on host ${ctx.hostId}; ${inv.hypervisor === 'kvm' ? 'remove that override (driverctl unset-override)' : `add ${bdf} there or remove that hide=`}`,
      );
    }
    const { changed, file } = await editHideConfig(ctx, (text) => config.withHidden(text, bdf, driver));
    ctx.checkpoint('hide:after-write');
    ctx.kernelAsScanned?.(scan);
    return { bdf, changed, file, driver };
  },

  unhide: async (ctx, { bdf }) => {
    const { inv, device: dev, scan } = await device(ctx, bdf);
    if (dev.assignedTo !== null) throw new PtcError(ErrorCode.DEVICE_ASSIGNED, `${bdf} is still assigned to ${dev.assignedTo}; detach it before giving it back to the host`);
    const config = ctx.backend.hideConfig();
    const driver = inv.hypervisor === 'kvm' ? null : (dev.hostDriver ?? null);
    const { changed, file } = await editHideConfig(ctx, (text) => {
      const hidden = config.hidden(text);
      const stillNeeded = inv.devices.filter((d) => d.bdf !== bdf && hidden.includes(d.bdf)).flatMap((d) => (d.hostDriver ? [d.hostDriver] : []));
      return config.withoutHidden(text, bdf, stillNeeded);
    });
    ctx.kernelAsScanned?.(scan);
    return { bdf, changed, file, driver };
  },

  bind: async (ctx, { bdf, strategy }) => {
    const { inv, device: dev } = await device(ctx, bdf);
    const stub = STUB_DRIVER[inv.hypervisor];
    if (dev.driver === stub) return { bdf, changed: false, driver: stub, originalDriver: ctx.records.originalDriver(bdf) ?? null };
    must(checkHideable(inv, dev));
    if (strategy === 'reload') {
      if (inv.hypervisor === 'kvm') throw new PtcError(ErrorCode.STRATEGY_UNSUPPORTED, `a KVM host binds ${bdf} to vfio-pci through its own driver_override, not by reloading ${dev.hostDriver ?? 'its driver'}; use the dynamic or reboot strategy`);
      must(checkReloadSafe(inv, dev));
      if (!dev.hidden) throw new PtcError(ErrorCode.NOT_HIDDEN, `${bdf} is not in the pciback hide= list, so reloading ${dev.hostDriver ?? 'its driver'} would not move it; hide it first`);
    }
    // Rule 11: the original driver is on disk before the device leaves it. A retry that finds the
    // device driverless keeps the driver recorded the first time (DeviceRecords never stores null over it).
    await ctx.records.setOriginalDriver(bdf, dev.driver);
    const originalDriver = ctx.records.originalDriver(bdf) ?? dev.driver;
    // The intent goes to disk before the first of several writes (unbind, new_slot, bind; or modprobe -r,
    // modprobe): a crash in between leaves devices on no driver, and the next start rebinds them.
    const reloaded = dev.hostDriver ?? originalDriver;
    const touched = strategy === 'dynamic' ? [dev] : inv.devices.filter((d) => d.bdf === bdf || (d.driver !== null && d.driver === reloaded));
    const at = new Date(ctx.now()).toISOString();
    await ctx.records.setIntents(Object.fromEntries(touched.map((d) => [d.bdf, { op: strategy === 'dynamic' ? 'bind' : 'reload', opId: ctx.opId ?? '', originalDriver: d.bdf === bdf ? originalDriver : d.driver, at }] as const)));
    ctx.checkpoint('bind:after-record');
    if (strategy === 'dynamic') await ctx.backend.bindStub(bdf);
    else await ctx.backend.reloadDriver(reloaded ?? '');
    ctx.checkpoint('bind:after-effect');
    await ctx.records.clearIntents(touched.map((d) => d.bdf));
    const { device: after, scan } = await device(ctx, bdf);
    expectDriver(after, stub, `bind (${strategy})`);
    ctx.kernelAsScanned?.(scan);
    return { bdf, changed: true, driver: stub, originalDriver };
  },

  unbind: async (ctx, { bdf, driver }) => {
    const { inv, device: dev } = await device(ctx, bdf);
    const stub = STUB_DRIVER[inv.hypervisor];
    const recordedDriver = ctx.records.originalDriver(bdf);
    // A device a failed bind left on no driver is given back too (rule 14), not reported as done.
    const stranded = dev.driver === null && typeof recordedDriver === 'string';
    if (dev.driver !== stub && !stranded) return { bdf, changed: false, driver: dev.driver };
    const attachedLive = inv.guests.find((g) => g.liveDevices.includes(bdf));
    if (attachedLive) throw new PtcError(ErrorCode.DEVICE_ASSIGNED, `${bdf} is live in guest ${attachedLive.name}; detach it first`);
    const recorded = ctx.records.originalDriver(bdf);
    // No record at all: ptctl did not bind it (a tool's new_id did, say), so ask the kernel's aliases.
    const target = driver ?? recorded ?? dev.hostDriver ?? (recorded === undefined ? await ctx.backend.aliasedDriver(bdf) : null);
    await ctx.backend.bindHostDriver(bdf, target);
    const { device: after, scan } = await device(ctx, bdf);
    ctx.kernelAsScanned?.(scan);
    // A device that had no driver before ptctl took it (recorded null) is given back to no driver.
    const wasDriverless = recorded === null && driver === null;
    if (target !== null) expectDriver(after, target, 'unbind');
    else if (after.driver === stub || (after.driver === null && !wasDriverless)) throw new PtcError(ErrorCode.VERIFY_FAILED, `no host driver took ${bdf} back after unbinding it from ${stub}`);
    // The record of a driverless device stays: verify (expect host) reads it to accept "no driver".
    if (!wasDriverless) await ctx.records.forgetOriginalDriver(bdf);
    return { bdf, changed: true, driver: after.driver };
  },

  reboot: async (ctx) => {
    const previousBootId = await ctx.backend.bootId();
    await ctx.backend.reboot();
    return { previousBootId };
  },

  verify: async (ctx, { bdf, expect }) => {
    // Only this device's state is judged (rule 12), read now: its driver link, pciback's slots (or its
    // override) and the assignable list, from the sources a full scan reads them from; no other
    // device, guest or file decides the answer, so verify does not scan the rest of the host.
    const scanned = await ctx.backend.stubState(bdf);
    if (!scanned) {
      const missing = deviceNotFound(ctx.hostId, bdf);
      throw new PtcError(missing.code, missing.message);
    }
    const stub = STUB_DRIVER[scanned.hypervisor];
    const observed = { bdf, driver: scanned.driver, inPcibackSlots: scanned.inPcibackSlots, assignable: scanned.assignable };
    const backOnHost = scanned.driver !== stub && (scanned.driver !== null || (ctx.records.originalDriver(bdf) === null && !scanned.inPcibackSlots));
    const good = expect === 'pciback' ? scanned.driver === stub && scanned.inPcibackSlots && scanned.assignable : backOnHost;
    if (!good) {
      // On KVM "slots" is the device's own driver_override, "assignable" its group's /dev/vfio node and viability.
      const facts =
        scanned.hypervisor === 'kvm'
          ? `driver ${scanned.driver ?? 'none'}, driver_override vfio-pci: ${scanned.inPcibackSlots}, group viable with its /dev/vfio node: ${scanned.assignable}${scanned.driver === stub && !scanned.inPcibackSlots ? ' (bound without an override, as new_id or ids= do: vfio-pci then claims every device with this id and loses this one at the next reprobe; give it back with ptctl and bind again)' : ''}`
          : `driver ${scanned.driver ?? 'none'}, in pciback slots: ${scanned.inPcibackSlots}, assignable: ${scanned.assignable}`;
      throw new PtcError(ErrorCode.VERIFY_FAILED, `${bdf} is not ${expect === 'pciback' ? `held by ${stub}` : 'back on a host driver'}: ${facts}`);
    }
    return observed;
  },

  attach: async (ctx, { bdf, guest: guestName, mode, allowInsecurePV }) => {
    const inv = await inventory(ctx);
    const dev = must(findDevice(inv, bdf)).device;
    const guest = must(findGuest(inv, guestName)).guest;
    requireReadableConfig(ctx, guest, `attach ${bdf} to`);
    must(checkGuestAccepts(inv, guest, dev, allowInsecurePV));
    const stub = STUB_DRIVER[inv.hypervisor];
    if (dev.driver !== stub) throw new PtcError(ErrorCode.NOT_BOUND, `${bdf} is bound to ${dev.driver ?? 'no driver'}, not ${stub}; bind it before attaching`);
    const live = takesHotplug(guest);
    // An explicit hot attach into a guest that is not live would otherwise "succeed" with nothing done.
    if (mode === 'hot' && !live) throw new PtcError(ErrorCode.GUEST_NOT_RUNNING, `cannot hotplug ${bdf} into ${guestName}: it is ${guest.state}; attach it cold (to its config) or start the guest first`);
    const wantHot = mode !== 'cold' && live;
    if (wantHot && chooseAttachMode(guest, inv.capabilities.includes('hotplug')).mode === 'cold') {
      throw new PtcError(ErrorCode.HOTPLUG_UNSUPPORTED, chooseAttachMode(guest, inv.capabilities.includes('hotplug')).reason ?? `${guestName} cannot take a hotplug`);
    }
    let changed = false;
    let hotplugged = false;
    if (mode !== 'hot') {
      changed = await guestConfigEdit(ctx, () => ctx.backend.addToGuestConfig(guestName, bdf));
      ctx.checkpoint('attach:after-config');
    }
    if (wantHot && !guest.liveDevices.includes(bdf)) {
      await guardedHotplug(ctx, bdf, () => ctx.backend.hotplug(guestName, bdf), { action: 'attach', bdf, guest: guestName });
      changed = true;
      hotplugged = true;
      ctx.checkpoint('attach:after-hotplug');
    }
    const after = await guestAfter(ctx, guestName);
    const hot = after.liveDevices.includes(bdf);
    const cold = after.configDevices.includes(bdf);
    if ((wantHot && !hot) || (mode !== 'hot' && !cold)) {
      throw new PtcError(ErrorCode.ATTACH_FAILED, `attach reported success but ${guestName} has ${bdf} live: ${hot}, in config: ${cold}`);
    }
    // The next guest of a device that cannot be reset is checked against this one (rule: no data between tenants).
    await ctx.records.setTenant(bdf, guestName, inv.bootId);
    return { bdf, guest: guestName, hot, cold, changed, hotplugged, guestRebootNeeded: guest.state === 'running' && !hot };
  },

  detach: async (ctx, { bdf, guest: guestName, mode }) => {
    const inv = await inventory(ctx);
    must(findDevice(inv, bdf));
    const guest = must(findGuest(inv, guestName)).guest;
    if (mode !== 'hot') requireReadableConfig(ctx, guest, `detach ${bdf} from`);
    let changed = false;
    let hotplugged = false;
    if (mode !== 'cold' && guest.liveDevices.includes(bdf)) {
      await guardedHotplug(ctx, bdf, () => ctx.backend.hotunplug(guestName, bdf), { action: 'detach', bdf, guest: guestName });
      changed = true;
      hotplugged = true;
    }
    if (mode !== 'hot') {
      changed = (await guestConfigEdit(ctx, () => ctx.backend.removeFromGuestConfig(guestName, bdf))) || changed;
    }
    const after = await guestAfter(ctx, guestName);
    const hot = after.liveDevices.includes(bdf);
    const cold = after.configDevices.includes(bdf);
    if ((mode !== 'cold' && hot) || (mode !== 'hot' && cold)) {
      throw new PtcError(ErrorCode.COMMAND_FAILED, `detach reported success but ${guestName} still has ${bdf} live: ${hot}, in config: ${cold}`);
    }
    return { bdf, guest: guestName, hot, cold, changed, hotplugged, guestRebootNeeded: false };
  },

  save: guestLifecycle('save'),
  restore: guestLifecycle('restore'),
  migrate: guestLifecycle('migrate'),

  'guest-status': async (ctx, { guest: guestName }) => {
    const guest = must(findGuest(await inventory(ctx), guestName)).guest;
    return {
      guest: guest.name,
      state: guest.state,
      liveDevices: guest.liveDevices,
      configDevices: guest.configDevices,
      pinned: guest.liveDevices.length > 0 || guest.configDevices.length > 0,
    };
  },
};
