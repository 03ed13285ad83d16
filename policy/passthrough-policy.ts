import { ErrorCode } from '../schemas/errors.js';
import { type Guest, type HostInventory, type PciDevice, STUB_DRIVER } from '../schemas/inventory.js';
import type { AttachMode, BindStrategy, ConcreteBindStrategy } from '../schemas/passthrough.js';
import { compareBdf, type PciAddress } from '../schemas/pci-address.js';

/**
 * The host safety rules of DESIGN §4 as pure functions over an inventory. The agent applies them
 * before it touches the host and the workflow applies them in preflight, so both refuse the same
 * things with the same code and sentence.
 */
export type Refusal = { ok: false; code: ErrorCode; message: string };
export type Verdict<T = object> = ({ ok: true } & T) | Refusal;

export const refuse = (code: ErrorCode, message: string): Refusal => ({ ok: false, code, message });

/** The refusal for an address the host does not have. */
export function deviceNotFound(hostId: string, bdf: PciAddress): Refusal {
  return refuse(ErrorCode.DEVICE_NOT_FOUND, `host ${hostId} has no PCI device ${bdf}; \`ptctl hosts --host ${hostId}\` lists its devices`);
}

export function findDevice(inv: HostInventory, bdf: PciAddress): Verdict<{ device: PciDevice }> {
  const device = inv.devices.find((d) => d.bdf === bdf);
  if (!device) return deviceNotFound(inv.hostId, bdf);
  return { ok: true, device };
}

export function findGuest(inv: HostInventory, name: string): Verdict<{ guest: Guest }> {
  const guest = inv.guests.find((g) => g.name === name);
  if (!guest) {
    const known = inv.guests.map((g) => g.name).join(', ') || 'none';
    return refuse(ErrorCode.GUEST_NOT_FOUND, `host ${inv.hostId} has no guest ${name} (guests: ${known})`);
  }
  return { ok: true, guest };
}

/** PCI-to-PCI bridges and root ports (class 0604) carry the group's bus; vfio lets them stay on pcieport. */
export function isBridgePort(device: PciDevice): boolean {
  return device.class.startsWith('0604');
}

/**
 * Devices that must move with `bdf` because they share its IOMMU group (rule 10): every endpoint of
 * the group. A bridge or root port in the group is not a companion: it stays on its driver.
 */
export function iommuCompanions(inv: HostInventory, device: PciDevice): PciDevice[] {
  if (device.iommuGroup === null) return [];
  return inv.devices.filter((d) => d.bdf !== device.bdf && d.iommuGroup === device.iommuGroup && !isBridgePort(d)).sort((a, b) => compareBdf(a.bdf, b.bdf));
}

/** Rules 1 and 10: a device the host uses, or one sharing an IOMMU group with it, cannot be hidden. */
export function checkHideable(inv: HostInventory, device: PciDevice): Verdict {
  if (device.inUse !== null) {
    return refuse(
      ErrorCode.DEVICE_IN_USE,
      `${device.bdf} is in use by host ${inv.hostId}: ${device.inUse}; it cannot be hidden. Pick an idle device (\`ptctl hosts\` shows which are)`,
    );
  }
  const busy = iommuCompanions(inv, device).find((d) => d.inUse !== null);
  if (busy) {
    return refuse(
      ErrorCode.IOMMU_GROUP_IN_USE,
      `${device.bdf} shares IOMMU group ${device.iommuGroup} with ${busy.bdf}, which host ${inv.hostId} uses (${busy.inUse}); the group can only be passed through as a whole`,
    );
  }
  return { ok: true };
}

/**
 * Rules preflight added after workflows had run with it: a running workflow replays its recorded
 * preflight with the rules of its first run (the workflow passes what `patched()` says); everyone
 * else applies them all.
 */
export interface PreflightRules {
  /** Refuse a guest whose config the agent cannot read (GUEST_CONFIG_INVALID). */
  guestConfig: boolean;
  /** SR-IOV: no reboot strategy for a VF, no reload of a PF's driver. */
  sriov: boolean;
}
export const CURRENT_RULES: PreflightRules = { guestConfig: true, sriov: true };

/** Rule 2: reloading a driver drops every device it drives, so only when none of the others is in use. */
export function checkReloadSafe(inv: HostInventory, device: PciDevice, rules: PreflightRules = CURRENT_RULES): Verdict {
  const driver = device.hostDriver;
  if (driver === null) return refuse(ErrorCode.RELOAD_UNSAFE, `${device.bdf} has no host driver to reload; use the dynamic or reboot strategy`);
  const busy = inv.devices.find((d) => d.bdf !== device.bdf && d.driver === driver && d.inUse !== null);
  if (busy) {
    return refuse(
      ErrorCode.RELOAD_UNSAFE,
      `reloading ${driver} to move ${device.bdf} would also drop ${busy.bdf}, which host ${inv.hostId} uses (${busy.inUse}); use --strategy dynamic or reboot`,
    );
  }
  // A PF's driver creates its VFs: unloading it removes them, whoever holds them (sriovVfs is absent
  // from older agents' inventories, so their verdicts do not change).
  const pf = rules.sriov ? inv.devices.find((d) => (d.bdf === device.bdf || d.driver === driver) && (d.sriovVfs?.length ?? 0) > 0) : undefined;
  if (pf) {
    return refuse(
      ErrorCode.RELOAD_UNSAFE,
      `reloading ${driver} to move ${device.bdf} would remove the SR-IOV VFs ${pf.sriovVfs?.join(', ') ?? ''} of ${pf.bdf} on host ${inv.hostId}; use --strategy dynamic`,
    );
  }
  return { ok: true };
}

/** Dotted versions compared numerically: "5.10" is newer than "5.4". */
export function versionAtLeast(version: string, minimum: string): boolean {
  const a = version.split('.').map(Number);
  const b = minimum.split('.').map(Number);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    if (x !== y) return x > y;
  }
  return true;
}

/** Rules 3, 4 and 5: which guests may take a device at all. */
export function checkGuestAccepts(inv: HostInventory, guest: Guest, device: PciDevice, allowInsecurePV: boolean): Verdict {
  if (device.assignedTo !== null && device.assignedTo !== guest.name) {
    return refuse(ErrorCode.DEVICE_ASSIGNED, `${device.bdf} is already assigned to guest ${device.assignedTo}; detach it there first`);
  }
  if (guest.virt === 'pv') {
    if (guest.os.name === 'rhel' && versionAtLeast(guest.os.version, '6')) {
      return refuse(ErrorCode.PV_UNSUPPORTED, `PCI passthrough to para-virtualized RHEL ${guest.os.version} guests is insecure and unsupported; run ${guest.name} fully virtualized (HVM)`);
    }
    if (!allowInsecurePV) {
      return refuse(ErrorCode.PV_INSECURE, `${guest.name} is a PV guest: passthrough lets it reach dom0's DMA address space; set allowInsecurePV only if you accept that risk`);
    }
  }
  if (guest.virt === 'kvm' && device.resettable === false && device.lastGuest && device.lastGuest !== guest.name) {
    // Without a reset the device keeps what the last guest left in it (buffers, firmware state).
    return refuse(
      ErrorCode.DEVICE_NOT_RESETTABLE,
      `${device.bdf} has no reset the kernel can use, and it held ${device.lastGuest}'s data since the host booted; giving it to ${guest.name} could expose that data. Reboot ${inv.hostId} (the platform resets its buses) or give it back to ${device.lastGuest}`,
    );
  }
  if (guest.virt === 'kvm' && !inv.iommu) {
    // vfio-pci refuses a device without an IOMMU group; there is no unsafe mode worth offering.
    return refuse(ErrorCode.IOMMU_REQUIRED, `passthrough to KVM guest ${guest.name} needs an IOMMU; enable VT-d/AMD-Vi (intel_iommu=on) on ${inv.hostId}`);
  }
  if (guest.virt === 'hvm') {
    // The 5.4 floor is a RHEL 5 fact (fully virtualized passthrough arrived in 5.4). Other distributions
    // ship a toolstack that has it; for them the IOMMU is what matters.
    if (inv.os.name === 'rhel' && !versionAtLeast(inv.os.version, '5.4')) {
      return refuse(ErrorCode.HVM_UNSUPPORTED, `passthrough to fully virtualized guest ${guest.name} needs a RHEL 5.4 or newer host; ${inv.hostId} runs ${inv.os.name} ${inv.os.version}`);
    }
    if (!inv.iommu) {
      return refuse(ErrorCode.IOMMU_REQUIRED, `passthrough to fully virtualized guest ${guest.name} needs an IOMMU; enable VT-d/AMD-Vi (iommu=1) on ${inv.hostId}`);
    }
  }
  return { ok: true };
}

/** A guest QEMU runs now: running, or on KVM paused (QEMU adds a device to a paused machine; a paused Xen domain cannot answer pcifront). */
export function takesHotplug(guest: Guest): boolean {
  return guest.state === 'running' || (guest.virt === 'kvm' && guest.state === 'paused');
}

/**
 * Rule 7 and the guest's state decide how to attach: hot into a running guest that can take it,
 * cold (config only) otherwise, and say when the guest must reboot to see the device.
 */
export function chooseAttachMode(guest: Guest, hostCanHotplug: boolean): { mode: AttachMode; guestRebootNeeded: boolean; reason: string | null } {
  if (!takesHotplug(guest)) return { mode: 'cold', guestRebootNeeded: false, reason: `${guest.name} is ${guest.state}: the device is added to its config for its next start` };
  if (!hostCanHotplug) return { mode: 'cold', guestRebootNeeded: true, reason: 'the host cannot hotplug PCI devices' };
  if (guest.virt === 'kvm' && guest.os.name === 'rhel' && guest.os.version.split('.')[0] === '5' && !guest.acpiphp) {
    return { mode: 'cold', guestRebootNeeded: true, reason: `acpiphp is not loaded in ${guest.name} (RHEL 5 on KVM needs it for hotplug): reboot the guest or run \`modprobe acpiphp\` in it` };
  }
  return { mode: 'both', guestRebootNeeded: false, reason: null };
}

/** Rule 2 plus host capabilities: the least disruptive safe way to bind; an unsafe explicit choice is refused. */
export function chooseStrategy(inv: HostInventory, device: PciDevice, requested: BindStrategy, rules: PreflightRules = CURRENT_RULES): Verdict<{ strategy: ConcreteBindStrategy }> {
  const can = (c: 'dynamic-bind' | 'reload' | 'reboot'): boolean => inv.capabilities.includes(c);
  const reloadVerdict = checkReloadSafe(inv, device, rules);
  // A VF exists only once its PF's driver has created it, after the boot has bound pciback: hide= at
  // boot never finds it, so a reboot binds nothing. (sriovPf is absent from older agents' inventories.)
  const vfRefusal = rules.sriov && device.sriovPf
    ? refuse(ErrorCode.STRATEGY_UNSUPPORTED, `${device.bdf} is an SR-IOV VF of ${device.sriovPf}, which exists only after ${device.sriovPf}'s driver creates it at boot, so a reboot cannot bind it to ${STUB_DRIVER[inv.hypervisor]}; use --strategy dynamic`)
    : null;
  if (requested === 'auto') {
    if (can('dynamic-bind')) return { ok: true, strategy: 'dynamic' };
    if (can('reload') && reloadVerdict.ok) return { ok: true, strategy: 'reload' };
    if (can('reboot')) return vfRefusal ?? { ok: true, strategy: 'reboot' };
    return refuse(ErrorCode.STRATEGY_UNSUPPORTED, `host ${inv.hostId} offers no way to bind ${device.bdf} to ${STUB_DRIVER[inv.hypervisor]}`);
  }
  const capability = requested === 'dynamic' ? 'dynamic-bind' : requested;
  if (requested === 'reboot' && vfRefusal) return vfRefusal;
  if (!can(capability)) return refuse(ErrorCode.STRATEGY_UNSUPPORTED, `host ${inv.hostId} does not support the ${requested} strategy needed to bind ${device.bdf}; use --strategy auto`);
  if (requested === 'reload' && !reloadVerdict.ok) return reloadVerdict;
  return { ok: true, strategy: requested };
}

export interface PreflightPlan {
  strategy: ConcreteBindStrategy;
  mode: AttachMode;
  guestRebootNeeded: boolean;
  attachNote: string | null;
  /** The device and its IOMMU companions, all of which are hidden and bound together. */
  devicesToHide: PciAddress[];
  /** Device already bound to pciback and attached as wanted: nothing to do. */
  alreadyDone: boolean;
}

/** Every rule for one device → one guest, in the order a person would check them. */
export function preflight(
  inv: HostInventory,
  req: { bdf: PciAddress; guest: string; strategy: BindStrategy; allowInsecurePV: boolean },
  rules: PreflightRules = CURRENT_RULES,
): Verdict<{ plan: PreflightPlan }> {
  const found = findDevice(inv, req.bdf);
  if (!found.ok) return found;
  const guestFound = findGuest(inv, req.guest);
  if (!guestFound.ok) return guestFound;
  const { device } = found;
  const { guest } = guestFound;
  const alreadyAttached = device.driver === STUB_DRIVER[inv.hypervisor] && guest.configDevices.includes(device.bdf) && (guest.state !== 'running' || guest.liveDevices.includes(device.bdf));
  if (!alreadyAttached) {
    const hideable = checkHideable(inv, device);
    if (!hideable.ok) return hideable;
  }
  if (!alreadyAttached && rules.guestConfig && guest.configProblem) {
    // The agent refuses to edit such a config (it fences the guest); refusing here keeps the plan and
    // the saga from hiding and binding a device that could never reach the guest.
    return refuse(ErrorCode.GUEST_CONFIG_INVALID, `the config of guest ${guest.name} on ${inv.hostId} cannot be read safely (${guest.configProblem}); fix the file, then retry`);
  }
  const accepts = checkGuestAccepts(inv, guest, device, req.allowInsecurePV);
  if (!accepts.ok) return accepts;
  const strategy = chooseStrategy(inv, device, req.strategy, rules);
  if (!strategy.ok) return strategy;
  const attach = chooseAttachMode(guest, inv.capabilities.includes('hotplug'));
  const devicesToHide = [device.bdf, ...iommuCompanions(inv, device).map((d) => d.bdf)].sort(compareBdf);
  return {
    ok: true,
    plan: {
      strategy: strategy.strategy,
      mode: attach.mode,
      guestRebootNeeded: attach.guestRebootNeeded,
      attachNote: attach.reason,
      devicesToHide,
      alreadyDone: alreadyAttached,
    },
  };
}
