import { compareBdf, type PciAddress, PciAddress as PciAddressSchema } from '../../schemas/pci-address.js';
import type { HostTree } from './host-tree.js';

export const PCI_DEVICES = '/sys/bus/pci/devices';
export const PCI_DRIVERS = '/sys/bus/pci/drivers';
/** The driver's name in sysfs is `pciback` whatever the module is called (pciback or xen-pciback). */
export const PCIBACK = 'pciback';
export const PCIBACK_DIR = `${PCI_DRIVERS}/${PCIBACK}`;
export const DRIVERS_PROBE = '/sys/bus/pci/drivers_probe';

/**
 * What the PciAddress schema accepts, in either case: a quick test that turns away the many sysfs path
 * components that are not addresses (lastBdf looks at every component of a path, a scan at hundreds
 * of paths) before the schema, which builds an error object for each one it rejects.
 */
const BDF_SHAPE = /^[0-9a-f]{4}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]$/i;

export function asBdf(text: string): PciAddress | null {
  const trimmed = text.trim();
  if (!BDF_SHAPE.test(trimmed)) return null;
  const parsed = PciAddressSchema.safeParse(trimmed);
  return parsed.success ? parsed.data : null;
}

/** Every PCI address in a text, in order of appearance (pciback's `slots` holds one per line). */
export function bdfsIn(text: string): PciAddress[] {
  return [...text.matchAll(/[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]/g)].flatMap((m) => {
    const b = asBdf(m[0]);
    return b ? [b] : [];
  });
}

/**
 * The PCI function a sysfs device path belongs to: its last PCI address component (bridges and
 * switches come first: /sys/devices/pci0000:00/0000:00:1c.0/0000:02:00.0/host0/… → 0000:02:00.0).
 * Null for a path without one (virtual devices) or no path.
 */
export function lastBdf(hostPath: string | null | undefined): PciAddress | null {
  if (!hostPath) return null;
  return (
    hostPath
      .split('/')
      .map((c) => asBdf(c))
      .filter((b): b is PciAddress => b !== null)
      .pop() ?? null
  );
}

/** Read-only PCI facts from sysfs that the driver and module domains share. */
export class PciSysfs {
  constructor(private readonly tree: HostTree) {}

  /** PCI addresses present on the bus, sorted; [] when sysfs has none. */
  async devices(): Promise<PciAddress[]> {
    return (await this.tree.list(PCI_DEVICES)).flatMap((name) => asBdf(name) ?? []).sort(compareBdf);
  }

  async present(bdf: PciAddress): Promise<boolean> {
    return this.tree.exists(`${PCI_DEVICES}/${bdf}`);
  }

  /** The driver bound now (basename of the `driver` link); null when unbound. */
  async driverOf(bdf: PciAddress): Promise<string | null> {
    return this.tree.linkName(`${PCI_DEVICES}/${bdf}/driver`);
  }

  /** Devices bound to `driver` now; [] when none (or the driver is not loaded). */
  async boundTo(driver: string): Promise<PciAddress[]> {
    const out: PciAddress[] = [];
    for (const bdf of await this.devices()) if ((await this.driverOf(bdf)) === driver) out.push(bdf);
    return out;
  }

  /** A write made while undoing a failed step: its failure is reported through where the device ends up, so it never throws. */
  async attempt(path: string, data: string): Promise<boolean> {
    return this.tree.writeControl(path, data).then(
      () => true,
      () => false,
    );
  }

  /** Where a rolled-back device is now, for the failure's sentence. Never throws. */
  async rollbackOutcome(bdf: PciAddress, original: string | null): Promise<string> {
    const now = await this.driverOf(bdf).catch(() => null);
    if (now === original) return `rolled back: ${bdf} is on ${original ?? 'no driver'} again`;
    return `rolling back failed: ${bdf} is on ${now ?? 'no driver'}, was on ${original ?? 'no driver'}`;
  }

  /** Whether pciback is registered (module loaded or built in). */
  async pcibackLoaded(): Promise<boolean> {
    return this.tree.exists(PCIBACK_DIR);
  }

  /** pciback's `slots`: the addresses it will claim; [] when pciback is not loaded. */
  async pcibackSlots(): Promise<PciAddress[]> {
    return bdfsIn((await this.tree.text(`${PCIBACK_DIR}/slots`)) ?? '');
  }
}

/** `driver_override` as the kernel prints it ("(null)\n" when unset) → the driver name, or null. */
export function normalizeOverride(text: string | null): string | null {
  const t = text?.trim() ?? '';
  return t === '' || t === '(null)' ? null : t;
}
