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
  /** The kernel offers a reset for the device (its sysfs `reset` file); null when the host does not say (Xen dom0s). */
  resettable: boolean | null;
  /** An SR-IOV virtual function's physical function (its `physfn` link); null for any other device. */
  sriovPf?: PciAddress | null;
  /** An SR-IOV physical function's virtual functions (its `virtfnN` links); absent when it has none. */
  sriovVfs?: PciAddress[];
}

export interface HostScan {
  os: OsRelease;
  hypervisor: Hypervisor;
  iommu: boolean;
  capabilities: HostCapability[];
  devices: ScannedDevice[];
  /** Running and defined guests; what their persistent configs hold comes from `guestConfigDevices`. */
  guests: Omit<Guest, 'configDevices' | 'configProblem'>[];
}

/** One device as the stub driver sees it: the facts `verify` judges a bind or a give-back by. */
export interface StubState {
  hypervisor: Hypervisor;
  driver: DriverName | null;
  inPcibackSlots: boolean;
  assignable: boolean;
}

/** What the host is and what it has: one full rescan per call. */
export interface HostScanner {
  scan(): Promise<HostScan>;
  /**
   * One device's driver, slots and assignable state, read now from the same sources as `scan` (the
   * values `scan` would report for it), without scanning the rest of the host; null when `scan` would
   * not list the device (absent from the bus, or ids unreadable).
   */
  stubState(bdf: PciAddress): Promise<StubState | null>;
}

/**
 * The file the host reads at boot to keep devices from their host drivers, and how ptctl edits its
 * managed part: pciback's hide= in the modprobe file on Xen, vfio-pci override rules on KVM. Text
 * outside ptctl's block is kept byte for byte.
 */
export interface HideConfig {
  readonly file: string;
  /** Every device the file keeps from its host driver (ptctl's and hand-written entries). */
  hidden(text: string): PciAddress[];
  /** `driver` is the device's host driver (Xen redirects its loading through pciback); null when none holds it. */
  withHidden(text: string, bdf: PciAddress, driver: DriverName | null): string;
  /** `driversStillNeeded`: host drivers of the devices that stay hidden. */
  withoutHidden(text: string, bdf: PciAddress, driversStillNeeded: readonly DriverName[]): string;
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
  /** The hide configuration of this host: the modprobe file on Xen, the vfio-pci rules on KVM. */
  hideConfig(): HideConfig;
  /**
   * Other sources read after `hideConfig().file` that would keep `bdf` from being hidden (rule 15):
   * a later hide= list without it, or an override giving it to another driver; [] when none.
   */
  winningHideSources(bdf: PciAddress): Promise<{ source: string; hidden: PciAddress[]; reason?: string }[]>;
}

/** PCI driver binding through sysfs. */
export interface PciDrivers {
  /**
   * Unbinds the device from its driver and binds it to the host's stub driver (STUB_DRIVER): pciback
   * (`new_slot` only when not in `slots`) on Xen, vfio-pci through `driver_override` on KVM.
   */
  bindStub(bdf: PciAddress): Promise<void>;
  /** Unbinds the device from the stub driver and binds it to `driver` (or lets the kernel probe when null). */
  bindHostDriver(bdf: PciAddress, driver: DriverName | null): Promise<void>;
  /**
   * For a device ptctl holds no record of (someone else bound it): the host driver the kernel's module
   * aliases name for it, loaded; null when none does or the host cannot say. On KVM a bare reprobe
   * would hand such a device back to vfio-pci when a `new_id` taught it the device's ids.
   */
  aliasedDriver(bdf: PciAddress): Promise<DriverName | null>;
}

/** What a guest's persistent config gives it. */
export interface GuestConfigDevices {
  /** Devices the config gives the guest at its next start. */
  configDevices: PciAddress[];
  /** Why the config cannot be read safely; its guest is then fenced and every address it names counts as held. */
  configProblem: string | null;
}

/** The toolstack (xl, or xm on RHEL 5; libvirt on KVM) and guest configs. */
export interface Toolstack {
  /** Where a guest's persistent config lives, for messages: its file on Xen, libvirt's domain XML on KVM. */
  guestConfigPath(guest: GuestName): string;
  /** The devices the guest's persistent config holds; null when the guest has no config. */
  guestConfigDevices(guest: GuestName): Promise<GuestConfigDevices | null>;
  /** Adds the device to the guest's persistent config; false when it was there. Throws GUEST_NOT_FOUND without a config. */
  addToGuestConfig(guest: GuestName, bdf: PciAddress): Promise<boolean>;
  /** Removes the device from the guest's persistent config; false when it was not there. */
  removeFromGuestConfig(guest: GuestName, bdf: PciAddress): Promise<boolean>;
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
 * Everything the agent needs from a host, composed from the domains above. One implementation,
 * `linux` (sysfs, modprobe, xl/xm on Xen; vfio-pci and virsh on KVM), which `sim` runs over a
 * simulated kernel. Each method does
 * one effect; safety checks, idempotency and verification live in the agent's command handlers so both
 * backends get exactly the same rules.
 */
export interface HostBackend extends HostScanner, KernelModules, PciDrivers, Toolstack, Power {
  /** Files under the host's root, where /etc/modprobe.conf and /etc/xen/<guest> live. */
  readonly files: HostFiles;
  close(): Promise<void>;
}
