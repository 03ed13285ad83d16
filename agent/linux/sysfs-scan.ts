import type { PciAddress } from '../../schemas/pci-address.js';
import type { ScannedDevice } from '../backend.js';
import type { NetworkUse } from './host-usage.js';
import type { HostTree } from './host-tree.js';
import type { PciNames } from './pci-names.js';
import { lastBdf, PCI_DEVICES, type PciSysfs } from './pci-sysfs.js';

/** "0x8086\n" → "8086"; null when the file is missing or not `width` hex digits. */
export function sysfsHex(text: string | null, width: number): string | null {
  const m = /^(?:0x)?([0-9a-fA-F]+)$/.exec(text?.trim() ?? '');
  if (!m?.[1] || m[1].length !== width) return null;
  return m[1].toLowerCase();
}

export interface DeviceScanContext {
  net: NetworkUse;
  /** In-use sentence per storage controller. */
  storage: ReadonlyMap<PciAddress, string>;
  /** Guests' disks no controller could be found for: every storage controller is then in use. */
  unmappedStorage?: readonly string[];
  slots: ReadonlySet<PciAddress>;
  assignable: ReadonlySet<PciAddress>;
  /** A Xen dom0 (no iommu_groups: Xen owns the IOMMU), where co-assignment follows the topology. */
  xen: boolean;
  /** The driver that holds devices for guests here (pciback, vfio-pci): a device on it is not on a host driver. */
  stubDriver: string;
}

/** What the topology rule needs of a device. */
export interface TopologyDevice {
  bdf: PciAddress;
  class: string;
  /** `reset_method` text; null when the kernel does not say (2.6.18): then FLR cannot be assumed. */
  resetMethod: string | null;
}

/**
 * Co-assignment groups on a Xen dom0, from the topology (DESIGN §5): the functions of a
 * multi-function endpoint that cannot reset one function alone (no FLR) can only go to a guest
 * together. A function whose kernel does not list its reset methods counts as without FLR (fail
 * closed). The group's number is the slot's (domain << 16 | bus << 8 | slot << 3): stable, and not
 * an IOMMU group number, which a dom0 does not have. Devices not in such a group are left out.
 */
export function xenCoAssignmentGroups(devices: readonly TopologyDevice[]): Map<PciAddress, number> {
  const bySlot = new Map<string, TopologyDevice[]>();
  for (const d of devices) {
    if (d.class.startsWith('06')) continue;
    const slot = d.bdf.slice(0, 10);
    bySlot.set(slot, [...(bySlot.get(slot) ?? []), d]);
  }
  const out = new Map<PciAddress, number>();
  for (const [slot, fns] of bySlot) {
    if (fns.length < 2 || fns.every((f) => /\bflr\b/.test(f.resetMethod ?? ''))) continue;
    const [domain = '0', bus = '0', dev = '0'] = slot.split(/[:.]/);
    const id = (parseInt(domain, 16) << 16) | (parseInt(bus, 16) << 8) | (parseInt(dev, 16) << 3);
    for (const f of fns) out.set(f.bdf, id);
  }
  return out;
}

// Bridges (06xx) and base system peripherals (08xx: IOMMUs, interrupt controllers, timers) carry the
// host's buses: taking one away takes down everything behind it, so none is ever idle.
const PLATFORM_CLASSES: Readonly<Record<string, string>> = { '06': 'a bridge', '08': 'a base system peripheral' };

/** The PCI devices sysfs shows, as the kernel sees them now. */
export class SysfsScanner {
  constructor(
    private readonly tree: HostTree,
    private readonly pci: PciSysfs,
    private readonly names: PciNames,
  ) {}

  /**
   * Interfaces per PCI device, from every /sys/class/net entry whose device path runs through it.
   * A virtio NIC keeps its interface a level down (`<bdf>/virtio0/net/eth0`), so listing `<bdf>/net`
   * alone would call the NIC that carries the host's traffic idle. Empty when no interface sits on PCI.
   */
  async interfacesByDevice(): Promise<Map<PciAddress, string[]>> {
    const out = new Map<PciAddress, string[]>();
    for (const iface of await this.tree.list('/sys/class/net')) {
      const path = (await this.tree.realHostPath(`/sys/class/net/${iface}/device`)) ?? (await this.tree.realHostPath(`/sys/class/net/${iface}`));
      const bdf = lastBdf(path);
      if (bdf) out.set(bdf, [...(out.get(bdf) ?? []), iface]);
    }
    return out;
  }

  /** Network interfaces of a device: `net/<if>` (current kernels), `net:<if>` links (2.6.18) and `byDevice`; [] when it has none. */
  async interfaces(bdf: PciAddress, byDevice: ReadonlyMap<PciAddress, string[]>): Promise<string[]> {
    const base = `${PCI_DEVICES}/${bdf}`;
    const legacy = (await this.tree.list(base)).filter((e) => e.startsWith('net:')).map((e) => e.slice('net:'.length));
    return [...new Set([...(await this.tree.list(`${base}/net`)), ...legacy, ...(byDevice.get(bdf) ?? [])])].sort();
  }

  /** Every device in sorted BDF order; [] when sysfs lists none. Devices whose ids cannot be read are left out. */
  async devices(ctx: DeviceScanContext): Promise<ScannedDevice[]> {
    const out: ScannedDevice[] = [];
    const byDevice = await this.interfacesByDevice();
    const consoles = await this.framebuffers();
    for (const bdf of await this.pci.devices()) {
      const device = await this.device(bdf, ctx, byDevice, consoles);
      if (device) out.push(device);
    }
    if (ctx.xen && out.every((d) => d.iommuGroup === null)) {
      const topology: TopologyDevice[] = [];
      for (const d of out) topology.push({ bdf: d.bdf, class: d.class, resetMethod: await this.tree.text(`${PCI_DEVICES}/${d.bdf}/reset_method`) });
      const groups = xenCoAssignmentGroups(topology);
      for (const d of out) d.iommuGroup = groups.get(d.bdf) ?? null;
    }
    return out;
  }

  /** Framebuffers per PCI device (`/sys/class/graphics/fb*\/device`): the console is drawn on them. */
  private async framebuffers(): Promise<Map<PciAddress, string[]>> {
    const out = new Map<PciAddress, string[]>();
    for (const fb of await this.tree.list('/sys/class/graphics')) {
      if (!/^fb\d+$/.test(fb)) continue;
      const bdf = lastBdf(await this.tree.realHostPath(`/sys/class/graphics/${fb}/device`));
      if (bdf) out.set(bdf, [...(out.get(bdf) ?? []), fb]);
    }
    return out;
  }

  private async device(bdf: PciAddress, ctx: DeviceScanContext, byDevice: ReadonlyMap<PciAddress, string[]>, consoles: ReadonlyMap<PciAddress, string[]>): Promise<ScannedDevice | null> {
    const base = `${PCI_DEVICES}/${bdf}`;
    const vendor = sysfsHex(await this.tree.text(`${base}/vendor`), 4);
    const device = sysfsHex(await this.tree.text(`${base}/device`), 4);
    // class is "0x020000": class, subclass, programming interface; ptctl keeps class and subclass.
    const pciClass = sysfsHex(await this.tree.text(`${base}/class`), 6)?.slice(0, 4) ?? null;
    if (vendor === null || device === null || pciClass === null) return null;
    const driver = await this.pci.driverOf(bdf);
    const group = await this.tree.linkName(`${base}/iommu_group`);
    const onHostDriver = driver !== null && driver !== ctx.stubDriver;
    const ifaces = onHostDriver ? await this.interfaces(bdf, byDevice) : [];
    const netdev = ifaces[0] ?? null;

    const reasons: string[] = [];
    for (const iface of ifaces) {
      const why = await ctx.net.reason(iface);
      if (why !== null) reasons.push(why);
    }
    const storage = ctx.storage.get(bdf);
    if (storage !== undefined) reasons.push(storage);
    if (pciClass.startsWith('01') && ctx.unmappedStorage && ctx.unmappedStorage.length > 0) {
      reasons.push(`${ctx.unmappedStorage.join(', ')} cannot be traced to a controller, so every storage controller counts as in use`);
    }
    // The console: the VGA device the firmware booted on (vgacon needs no PCI driver), or a framebuffer.
    if ((await this.tree.text(`${base}/boot_vga`))?.trim() === '1') reasons.push("it is the boot VGA device, which shows the host's console");
    const fbs = consoles.get(bdf);
    if (fbs) reasons.push(`it drives framebuffer ${fbs.join(', ')}, the host's console`);
    const platform = PLATFORM_CLASSES[pciClass.slice(0, 2)];
    if (platform !== undefined) reasons.push(`it is ${platform} (class ${pciClass}) the host's hardware depends on`);

    const description = await this.names.describe(vendor, device, pciClass);
    return {
      bdf,
      vendor,
      device,
      class: pciClass,
      description: netdev === null ? description : `${description} (${netdev})`.slice(0, 200),
      driver,
      hostDriver: onHostDriver ? driver : null,
      iommuGroup: group !== null && /^\d+$/.test(group) ? Number(group) : null,
      netdev,
      inUse: reasons.length === 0 ? null : clip(reasons.join('; '), 300),
      inPcibackSlots: ctx.slots.has(bdf),
      assignable: ctx.assignable.has(bdf),
      // The kernel shows `reset` (and `reset_method`) only for a device it can reset. On a Xen dom0 pciback
      // resets devices itself and co-assignment already covers functions without FLR, so it does not say.
      resettable: ctx.xen ? null : await this.tree.exists(`${base}/reset`),
    };
  }
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
