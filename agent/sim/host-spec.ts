/**
 * One declarative description of a Linux/Xen host: what its kernel shows (PCI devices, drivers and
 * their modules, interfaces, bridges, disks and what holds them, mounts) and the files it boots with
 * (modprobe files, command line, guest configs). The simulated hosts (profiles.ts) and the unit
 * tests' fixture trees are both built from it by SimTree, so there is one model of a host, not two.
 */

export interface HostDisk {
  name: string;
  /** "8:0"; partitions get consecutive minors. */
  dev?: string;
  partitions?: string[];
}

export interface HostPciDevice {
  bdf: string;
  /** Hex without 0x: vendor and device 4 digits, class 6 (020000) or 4 (0200, padded with 00). */
  vendor: string;
  device: string;
  class: string;
  /** Bound at boot; null or absent: no driver. */
  driver?: string | null;
  /** The driver the host gives it when pciback lets go (drivers_probe, driver load); defaults to `driver`. */
  hostDriver?: string;
  /** The module behind the host driver when its name differs (driver `virtio-pci`, module `virtio_pci`). */
  module?: string;
  /** Only on KVM-style kernels: Xen dom0 has no /sys/kernel/iommu_groups. */
  iommuGroup?: number;
  /** Interfaces of a NIC; they exist only while the device is on its host driver, as in the kernel. */
  net?: string[];
  /** A child device that holds the interfaces, as virtio NICs have: `<bdf>/virtio0/net/eth1`. */
  netParent?: string;
  /** Disks behind a storage controller. */
  disks?: HostDisk[];
  /** `boot_vga` of a VGA device: true for the one the firmware used for the console. */
  bootVga?: boolean;
  /** `driver_override` as set by driverctl or libvirt; absent: the kernel has no such file (2.6.18). */
  driverOverride?: string | null;
  /** `reset_method` (kernels ≥ 5.15), e.g. "flr bus", and a `reset` file; "": the kernel cannot reset it (neither file); absent: the kernel does not say. */
  resetMethod?: string;
}

export interface HostInterface {
  operstate: 'up' | 'down' | 'unknown';
  /** Bridge or bond the interface is enslaved to (`master` link, and `brif/<if>` in the bridge). */
  master?: string;
  /** Global addresses `ip -o addr show` prints for it, e.g. "192.168.1.10/24". */
  addresses?: string[];
  /** A Linux bridge (`bridge/` and `brif/` in sysfs). */
  bridge?: boolean;
}

export interface HostDeviceMapper {
  /** dm-0 */
  name: string;
  /** The /dev/mapper name, e.g. VolGroup00-LogVol00 (LVM doubles a '-' inside a VG or LV name). */
  mapperName: string;
  /** Partitions or disks under it, e.g. sda2; each gets a `holders/<name>` link back. */
  slaves: string[];
  /** `dm/uuid`: "LVM-…" for logical volumes. */
  uuid?: string;
  /** Other names udev gives it, e.g. /dev/guests/vm-hvm for an LV. */
  devLinks?: string[];
}

export interface HostSpec {
  devices: HostPciDevice[];
  /** Drivers registered without devices bound to them now. */
  drivers?: string[];
  /** pciback registered (module loaded or built in) with these slots; absent: not loaded. */
  pciback?: { slots?: string[]; removeSlot?: boolean; newSlot?: boolean };
  /** Interfaces not backed by a PCI device (bridges, bonds, guests' vifs) and the state of every interface. */
  interfaces?: Record<string, HostInterface>;
  /** Kernel 2.6.18 layout: `net:<if>` links in the device directory instead of `net/<if>`. */
  legacyNetLinks?: boolean;
  /** IPv4 routes: [iface, "default" | "a.b.c.d/len"]. */
  routes?: [string, string][];
  mounts?: [source: string, target: string, fstype?: string][];
  swaps?: string[];
  deviceMappers?: HostDeviceMapper[];
  /** Framebuffers (`/sys/class/graphics/fb0/device`) and the PCI device behind each. */
  framebuffers?: Record<string, string>;
  bootId?: string;
  kernelRelease?: string;
  /** Module file names listed in modules.dep, e.g. "kernel/drivers/xen/xen-pciback/xen-pciback.ko". */
  modules?: string[];
  xen?: boolean;
  redhatRelease?: string;
  osRelease?: string;
  /** /proc/cmdline. */
  cmdline?: string;
  machineId?: string;
  /** Extra files, by host path (modprobe files, tools). */
  files?: Record<string, string>;
  /** Xen guest configs: /etc/xen/<name>. */
  guests?: Record<string, string>;
}
