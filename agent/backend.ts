import type { DriverName, GuestName } from '../schemas/ids.js';
import type { Guest, HostCapability, Hypervisor, OsRelease } from '../schemas/inventory.js';
import type { PciAddress } from '../schemas/pci-address.js';
import type { ModprobeDialect } from './modprobe-conf.js';
import type { HostFiles } from './host-files.js';

/** A device as the host's kernel shows it now, before the agent adds config-derived facts. */
export interface ScannedDevice {
  bdf: PciAddress;
  vendor: string;
  device: string;
  class: string;
  description: string;
  /** Bound driver now (sysfs `driver` link); null when unbound. */
  driver: DriverName | null;
  /** The driver the host normally gives this device; null when none is known. */
  hostDriver: DriverName | null;
  iommuGroup: number | null;
  netdev: string | null;
  /** Why the host needs the device right now; null when idle. */
  inUse: string | null;
  /** BDF listed in pciback's `slots`. */
  inPcibackSlots: boolean;
  /** Listed by the toolstack as assignable (`xl pci-assignable-list`). */
  assignable: boolean;
}

export interface HostScan {
  os: OsRelease;
  hypervisor: Hypervisor;
  iommu: boolean;
  capabilities: HostCapability[];
  devices: ScannedDevice[];
  /** Running and defined guests; `configDevices` comes from their config files. */
  guests: Omit<Guest, 'configDevices'>[];
}

/** What the host is and what it has: one full rescan per call. */
export interface HostScanner {
  scan(): Promise<HostScan>;
}

/** Kernel modules: where modprobe reads its config on this host, and reloading a driver. */
export interface KernelModules {
  /** The file this host's modprobe really reads, and the pciback module's name there. */
  modprobe(): { file: string; dialect: ModprobeDialect };
  /**
   * `modprobe -r` and `modprobe` of a driver. Hidden devices of that driver go to pciback: through the
   * install line when pciback loads now, through `new_slot` when pciback was loaded before.
   */
  reloadDriver(driver: DriverName): Promise<void>;
  /** Other hide= sources read after `modprobe().file`, whose list wins over ptctl's (rule 15); [] when none. */
  winningHideSources(): Promise<{ source: string; hidden: PciAddress[] }[]>;
}

/** PCI driver binding through sysfs. */
export interface PciDrivers {
  /** Unbinds the device from its driver and binds it to pciback (`new_slot` only when not in `slots`). */
  bindPciback(bdf: PciAddress): Promise<void>;
  /** Unbinds the device from pciback and binds it to `driver` (or lets the kernel probe when null). */
  bindHostDriver(bdf: PciAddress, driver: DriverName | null): Promise<void>;
}

/** The Xen toolstack (xl, or xm on RHEL 5) and guest configs. */
export interface Toolstack {
  /** Path of a guest's config file on the host (under `files`). */
  guestConfigPath(guest: GuestName): string;
  hotplug(guest: GuestName, bdf: PciAddress): Promise<void>;
  hotunplug(guest: GuestName, bdf: PciAddress): Promise<void>;
  /** `xl save`: the guest stops, its memory goes to a file on this host. */
  saveGuest(guest: GuestName): Promise<void>;
  /** `xl restore` of a guest saved on this host. */
  restoreGuest(guest: GuestName): Promise<void>;
  /** `xl migrate` to another host; the guest leaves this one. */
  migrateGuest(guest: GuestName, target: string): Promise<void>;
}

/** Boots and liveness. */
export interface Power {
  /** Current boot id; a new value means the host rebooted. */
  bootId(): Promise<string>;
  /** False while the host cannot answer (rebooting, kernel failed, uplink dropped). */
  responsive(): boolean;
  /** Starts a reboot and returns at once; the host stops answering until it is back. */
  reboot(): Promise<void>;
  /** Registers a callback for a completed boot (the simulator calls it; a real host restarts the agent). */
  onBoot(listener: () => void): void;
}

/**
 * Everything the agent needs from a host, composed from the domains above. Two implementations:
 * `linux` (sysfs, modprobe, xl/xm) and `sim` (a simulated kernel with the same files). Each method does
 * one effect; safety checks, idempotency and verification live in the agent's command handlers so both
 * backends get exactly the same rules.
 */
export interface HostBackend extends HostScanner, KernelModules, PciDrivers, Toolstack, Power {
  /** Files under the host's root, where /etc/modprobe.conf and /etc/xen/<guest> live. */
  readonly files: HostFiles;
  close(): Promise<void>;
}
