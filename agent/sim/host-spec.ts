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
  /** The bridge the device sits behind: its sysfs directory nests under the bridge's, as the kernel's device path does. */
  parent?: string;
  /**
   * Whether its config space has a PCI Express capability (default true). A bridge with `false` is a
   * conventional PCI-to-PCI bridge: everything behind it shares its requester id.
   */
  pcie?: boolean;
  /** An SR-IOV physical function's virtual functions (each also listed as a device): `sriov_numvfs`, `virtfnN` here and `physfn` in each VF. */
  sriovVfs?: string[];
  /** USB devices on a USB host controller's root hub: `usb<bus>/<bus>-<port>/idVendor`, `idProduct`, `product`. */
  usb?: { bus: number; port: string; idVendor: string; idProduct: string; product?: string }[];
  /** DRM minors the device's driver made (`card0`, `renderD128`): `/sys/class/drm/<n>/device` and `/dev/dri/<n>`. */
  drm?: string[];
}

export interface HostInterface {
  operstate: 'up' | 'down' | 'unknown';
  /** Bridge or bond the interface is enslaved to (`master` link, and `brif/<if>` in the bridge). */
  master?: string;
  /** Global addresses `ip -o addr show` prints for it, e.g. "192.168.1.10/24". */
  addresses?: string[];
  /** A Linux bridge (`bridge/` and `brif/` in sysfs). */
  bridge?: boolean;
  /** The interface a macvtap, macvlan or VLAN sits on: `upper_<name>` in it, `lower_<lower>` here. */
  lower?: string;
  /** A macvtap: its tap character device shows as `macvtap/tap<ifindex>`. */
  macvtap?: boolean;
  /** Moved into another network namespace (a container's): absent from the host's /sys/class/net, still an `upper_` of its lower. */
  otherNetns?: boolean;
  /** A port of this Open vSwitch bridge (what `ovs-vsctl list-ports` prints); its `master` is `ovs-system`. */
  ovsBridge?: string;
}

/** A native NVMe multipath head (`nvme0n1`, under the subsystem) and the hidden per-controller paths (`nvme0c0n1`) it joins. */
export interface HostNvmeHead {
  name: string;
  dev?: string;
  /** Disks of NVMe controllers (listed as their `disks`): `multipath/<path>` links in the head. */
  paths: string[];
  partitions?: string[];
}

/** A process and the device nodes it holds open (`/proc/<pid>/fd/<n>` links). */
export interface HostProcess {
  pid: number;
  comm: string;
  open: string[];
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
  /** NVMe multipath heads. */
  nvmeHeads?: HostNvmeHead[];
  /** Imported ZFS pools (`/proc/spl/kstat/zfs/<pool>/state`); their vdevs are what `zpool status -P` prints. */
  zfsPools?: string[];
  /** Mounted btrfs filesystems: `/sys/fs/btrfs/<uuid>/devices/<dev>` links to their member devices. */
  btrfs?: { uuid: string; label?: string; devices: string[] }[];
  processes?: HostProcess[];
  /** Framebuffers (`/sys/class/graphics/fb0/device`) and the PCI device behind each. */
  framebuffers?: Record<string, string>;
  bootId?: string;
  kernelRelease?: string;
  /** Module file names listed in modules.dep, e.g. "kernel/drivers/xen/xen-pciback/xen-pciback.ko". */
  modules?: string[];
  /** Module file names listed in modules.builtin (compiled into the kernel: modprobe.d options do not reach them). */
  builtinModules?: string[];
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
