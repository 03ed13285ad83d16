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
  /** In-use sentence per GPU whose device nodes processes hold open. */
  openGpuNodes?: ReadonlyMap<PciAddress, string>;
}

/** What the topology rule needs of a device. */
export interface TopologyDevice {
  bdf: PciAddress;
  class: string;
  /** `reset_method` text; null when the kernel does not say (2.6.18): then FLR cannot be assumed. */
  resetMethod: string | null;
  /** The outermost bridge above it whose secondary bus is conventional PCI; null or absent when none. */
  conventionalBridge?: PciAddress | null;
  /** An SR-IOV virtual function: the SR-IOV specification requires FLR of every VF, so its slot's other VFs are not companions. */
  sriovVf?: boolean;
}

const PCI_CAP_EXP = 0x10;
const PCI_EXP_TYPE_PCI_BRIDGE = 0x7;

/**
 * The PCI Express device/port type from a device's config space (sysfs `config`), or null when it
 * has no PCI Express capability (conventional PCI). The capability list is what lspci reads and it is
 * in `config` on every kernel, while `current_link_speed` and friends appeared only in 4.13: on a
 * RHEL 5 dom0 their absence would say nothing. Undefined when the list cannot be read (fewer than
 * 64 bytes, as a non-root reader gets).
 */
export function pciExpressType(config: Uint8Array | null): number | null | undefined {
  if (config === null || config.length < 64) return undefined;
  const status = (config[0x06] ?? 0) | ((config[0x07] ?? 0) << 8);
  if (!(status & 0x10)) return null;
  let at = (config[0x34] ?? 0) & 0xfc;
  for (let hops = 0; at >= 0x40 && hops < 48; hops++) {
    if (at + 3 >= config.length) return undefined;
    if (config[at] === PCI_CAP_EXP) return ((config[at + 2] ?? 0) >> 4) & 0xf;
    at = (config[at + 1] ?? 0) & 0xfc;
  }
  return null;
}

/**
 * Whether the bus behind a bridge is conventional PCI, where every device reaches the IOMMU with the
 * bridge's requester id: a bridge without a PCI Express capability, or a PCI Express-to-PCI bridge.
 * A bridge whose config space cannot be read counts as one (fail closed: a larger group is safe).
 */
export function conventionalBehind(config: Uint8Array | null): boolean {
  const type = pciExpressType(config);
  return type === undefined || type === null || type === PCI_EXP_TYPE_PCI_BRIDGE;
}

/**
 * Co-assignment groups on a Xen dom0, from the topology (DESIGN §5): the functions of a
 * multi-function endpoint that cannot reset one function alone (no FLR) can only go to a guest
 * together. A function whose kernel does not list its reset methods counts as without FLR (fail
 * closed). The group's number is the slot's (domain << 16 | bus << 8 | slot << 3): stable, and not
 * an IOMMU group number, which a dom0 does not have. Devices not in such a group are left out.
 */
export function xenCoAssignmentGroups(devices: readonly TopologyDevice[]): Map<PciAddress, number> {
  const idOf = (bdf: string): number => {
    const [domain = '0', bus = '0', dev = '0', fn = '0'] = bdf.split(/[:.]/);
    return (parseInt(domain, 16) << 16) | (parseInt(bus, 16) << 8) | (parseInt(dev, 16) << 3) | parseInt(fn, 16);
  };
  const bySlot = new Map<string, TopologyDevice[]>();
  const byBridge = new Map<PciAddress, TopologyDevice[]>();
  for (const d of devices) {
    if (d.class.startsWith('06')) continue;
    const slot = d.bdf.slice(0, 10);
    bySlot.set(slot, [...(bySlot.get(slot) ?? []), d]);
    if (d.conventionalBridge) byBridge.set(d.conventionalBridge, [...(byBridge.get(d.conventionalBridge) ?? []), d]);
  }
  const out = new Map<PciAddress, number>();
  for (const [slot, fns] of bySlot) {
    if (fns.length < 2 || fns.every((f) => f.sriovVf === true || /\bflr\b/.test(f.resetMethod ?? ''))) continue;
    for (const f of fns) out.set(f.bdf, idOf(`${slot}.0`));
  }
  // Behind a conventional PCI bridge the IOMMU sees one requester id for the whole bus (the
  // bridge's): the devices there can only go to one guest together. The group is numbered after the
  // bridge, and it swallows a multi-function group behind it.
  for (const [bridge, behind] of byBridge) {
    if (behind.length < 2) continue;
    for (const d of behind) out.set(d.bdf, idOf(bridge));
  }
  return out;
}

const ASPEED = '1a03';
const AMI_USB_VENDOR = '046b';

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
      for (const d of out) {
        // The bridges a device sits behind are the PCI addresses of its sysfs device path before its own.
        const path = (await this.tree.realHostPath(`${PCI_DEVICES}/${d.bdf}`)) ?? '';
        const above = path.split('/').filter((c) => c !== d.bdf && lastBdf(`/${c}`) === c);
        let conventionalBridge: PciAddress | null = null;
        for (const bridge of above) {
          if (conventionalBehind(await this.tree.bytes(`${PCI_DEVICES}/${bridge}/config`))) {
            conventionalBridge = bridge;
            break;
          }
        }
        topology.push({ bdf: d.bdf, class: d.class, resetMethod: await this.tree.text(`${PCI_DEVICES}/${d.bdf}/reset_method`), conventionalBridge, sriovVf: d.sriovPf !== undefined });
      }
      const groups = xenCoAssignmentGroups(topology);
      for (const d of out) d.iommuGroup = groups.get(d.bdf) ?? null;
    }
    return out;
  }

  /**
   * USB devices under a USB host controller (`usbN/N-P[.P…]`, through hubs) made by a BMC: vendor
   * 046b is American Megatrends, whose MegaRAC firmware runs most ASPEED BMCs and presents its
   * virtual hub, keyboard/mouse, media and LAN-over-USB NIC with that id. Other BMC makers' ids are
   * not listed here. "046b:ff10 (Virtual Keyboard and Mouse)" per device; [] when there are none.
   */
  private async bmcUsbDevices(base: string): Promise<string[]> {
    const out: string[] = [];
    const walk = async (dir: string, depth: number): Promise<void> => {
      if (depth > 6) return;
      for (const entry of await this.tree.list(dir)) {
        if (!(depth === 0 ? /^usb\d+$/ : /^\d+-[\d.]+$/).test(entry)) continue;
        const at = `${dir}/${entry}`;
        const vendor = (await this.tree.text(`${at}/idVendor`))?.trim().toLowerCase();
        if (depth > 0 && vendor === AMI_USB_VENDOR) {
          const product = (await this.tree.text(`${at}/product`))?.trim();
          out.push(`${vendor}:${(await this.tree.text(`${at}/idProduct`))?.trim() ?? '?'}${product ? ` (${product})` : ''}`);
        }
        await walk(at, depth + 1);
      }
    };
    await walk(base, 0);
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

  /** A device's vendor, device and class (class and subclass) ids; null when one cannot be read: `devices` leaves such a device out. */
  async ids(bdf: PciAddress): Promise<{ vendor: string; device: string; pciClass: string } | null> {
    const base = `${PCI_DEVICES}/${bdf}`;
    const vendor = sysfsHex(await this.tree.text(`${base}/vendor`), 4);
    const device = sysfsHex(await this.tree.text(`${base}/device`), 4);
    // class is "0x020000": class, subclass, programming interface; ptctl keeps class and subclass.
    const pciClass = sysfsHex(await this.tree.text(`${base}/class`), 6)?.slice(0, 4) ?? null;
    if (vendor === null || device === null || pciClass === null) return null;
    return { vendor, device, pciClass };
  }

  private async device(bdf: PciAddress, ctx: DeviceScanContext, byDevice: ReadonlyMap<PciAddress, string[]>, consoles: ReadonlyMap<PciAddress, string[]>): Promise<ScannedDevice | null> {
    const base = `${PCI_DEVICES}/${bdf}`;
    const ids = await this.ids(bdf);
    if (ids === null) return null;
    const { vendor, device, pciClass } = ids;
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
    // A BMC's VGA (ASPEED's AST chips) is the remote console an operator reaches the host through.
    if (vendor === ASPEED && pciClass.startsWith('03')) reasons.push("it is the BMC's VGA (ASPEED), the host's remote console");
    if (pciClass === '0c03') {
      const bmc = await this.bmcUsbDevices(base);
      if (bmc.length > 0) reasons.push(`it carries the BMC's virtual USB devices ${bmc.join(', ')} (remote keyboard, media or LAN over USB)`);
    }
    const gpuNodes = ctx.openGpuNodes?.get(bdf);
    if (gpuNodes !== undefined) reasons.push(gpuNodes);
    const entries = await this.tree.list(base);
    const vfs: PciAddress[] = [];
    for (const entry of entries.filter((e) => /^virtfn\d+$/.test(e)).sort((a, b) => Number(a.slice(6)) - Number(b.slice(6)))) {
      const vf = lastBdf(await this.tree.realHostPath(`${base}/${entry}`));
      if (vf) vfs.push(vf);
    }
    // Only a VF has `physfn`: the listing just read says so without resolving a path most devices lack.
    const physfn = entries.includes('physfn') ? lastBdf(await this.tree.realHostPath(`${base}/physfn`)) : null;
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
      ...(physfn ? { sriovPf: physfn } : {}),
      ...(vfs.length > 0 ? { sriovVfs: vfs } : {}),
    };
  }
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
