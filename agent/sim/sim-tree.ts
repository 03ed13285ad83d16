import { existsSync, mkdirSync, readFileSync, readlinkSync, realpathSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import type { SysfsWrite } from '../linux/host-tree.js';
import type { HostSpec } from './host-spec.js';

export const PCIBACK = 'pciback';
export const VFIO_PCI = 'vfio-pci';

/** Host paths a boot rebuilds: what the kernel shows. /etc (the files ptctl edits) survives a reboot. */
const KERNEL_DIRS = ['/sys', '/proc', '/dev', '/lib/modules'];

/** A kernel's refusal of a sysfs write, as Node reports a failed write(2). */
function kernelRefuses(code: string, message: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`${code}: ${message}`);
  err.code = code;
  return err;
}

function isLink(path: string): boolean {
  try {
    readlinkSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * A host's /sys, /proc, /dev, /lib and /etc laid out under a root folder from a HostSpec, with
 * relative symlinks where sysfs has them, so the linux backend reads it exactly as it reads a real
 * host. Its `kernel` applies sysfs control writes the way the kernel does.
 */
export class SimTree {
  readonly kernel: SysfsKernel;

  constructor(
    readonly spec: HostSpec,
    readonly root: string,
  ) {
    mkdirSync(root, { recursive: true });
    this.kernel = new SysfsKernel(this);
  }

  /** Builds the kernel's view and, where absent, the host's files. */
  build(): this {
    this.buildKernel();
    this.buildFiles(false);
    return this;
  }

  path(hostPath: string): string {
    return join(this.root, hostPath);
  }

  write(hostPath: string, text: string): void {
    mkdirSync(dirname(this.path(hostPath)), { recursive: true });
    writeFileSync(this.path(hostPath), text);
  }

  read(hostPath: string): string | null {
    return existsSync(this.path(hostPath)) ? readFileSync(this.path(hostPath), 'utf8') : null;
  }

  exists(hostPath: string): boolean {
    return existsSync(this.path(hostPath));
  }

  mkdir(hostPath: string): void {
    mkdirSync(this.path(hostPath), { recursive: true });
  }

  /** A relative symlink at `hostPath` to `targetHostPath`, computed from the link's real directory, as sysfs links are. */
  link(hostPath: string, targetHostPath: string): void {
    const parent = dirname(this.path(hostPath));
    mkdirSync(parent, { recursive: true });
    const realParent = realpathSync(parent);
    const at = join(realParent, basename(hostPath));
    if (existsSync(at) || isLink(at)) unlinkSync(at);
    symlinkSync(relative(realParent, this.path(targetHostPath)) || '.', at);
  }

  unlink(hostPath: string): void {
    if (isLink(this.path(hostPath)) || existsSync(this.path(hostPath))) rmSync(this.path(hostPath), { recursive: true, force: true });
  }

  readLinkName(hostPath: string): string | null {
    return isLink(this.path(hostPath)) ? basename(readlinkSync(this.path(hostPath))) : null;
  }

  /** The device's sysfs directory: under the directories of the bridges it sits behind, as the kernel's device path runs. */
  deviceDir(bdf: string): string {
    const parent = this.spec.devices.find((d) => d.bdf === bdf)?.parent;
    return parent === undefined ? `/sys/devices/pci${bdf.slice(0, 7)}/${bdf}` : `${this.deviceDir(parent)}/${bdf}`;
  }

  /** A registered PCI driver directory with its control files, and its `module` link when it is a module. */
  addDriver(driver: string, module?: string): void {
    const dir = `/sys/bus/pci/drivers/${driver}`;
    if (this.exists(dir)) return;
    this.mkdir(dir);
    for (const f of ['bind', 'unbind', 'new_id', 'remove_id']) this.write(`${dir}/${f}`, '');
    if (module !== undefined && module !== driver) {
      this.mkdir(`/sys/module/${module}/drivers`);
      this.link(`${dir}/module`, `/sys/module/${module}`);
    }
  }

  /** pciback registered: slots, new_slot (old pciback may lack it), remove_slot (optional too), bind, unbind. */
  addPciback(slots: readonly string[], removeSlot = true, newSlot = true): void {
    this.addDriver(PCIBACK);
    const dir = `/sys/bus/pci/drivers/${PCIBACK}`;
    this.write(`${dir}/slots`, slots.map((s) => `${s}\n`).join(''));
    if (newSlot) this.write(`${dir}/new_slot`, '');
    if (removeSlot) this.write(`${dir}/remove_slot`, '');
    this.write(`${dir}/permissive`, '');
  }

  /** Removes and rebuilds what the kernel shows (a boot): /sys, /proc, /dev, /lib/modules. */
  rebuildKernel(bootId: string): void {
    for (const dir of KERNEL_DIRS) this.unlink(dir);
    this.buildKernel(bootId);
  }

  /** The host's files from the spec; `overwrite` false keeps what is there (ptctl's edits survive). */
  buildFiles(overwrite: boolean): void {
    const s = this.spec;
    const put = (path: string, text: string): void => {
      if (overwrite || !this.exists(path)) this.write(path, text);
    };
    if (s.redhatRelease !== undefined) put('/etc/redhat-release', `${s.redhatRelease}\n`);
    if (s.osRelease !== undefined) put('/etc/os-release', s.osRelease);
    if (s.machineId !== undefined) put('/etc/machine-id', `${s.machineId}\n`);
    for (const [name, text] of Object.entries(s.guests ?? {})) put(`/etc/xen/${name}`, text);
    for (const [path, text] of Object.entries(s.files ?? {})) put(path, text);
  }

  private buildKernel(bootId?: string): void {
    const s = this.spec;
    this.write('/sys/bus/pci/drivers_probe', '');
    this.write('/sys/bus/pci/rescan', '');
    this.mkdir('/sys/bus/pci/devices');
    this.mkdir('/sys/block');
    this.mkdir('/sys/class/net');
    // Xen owns the IOMMU: a dom0 has no iommu_groups directory at all.
    if (!s.xen) this.mkdir('/sys/kernel/iommu_groups');
    for (const d of s.drivers ?? []) this.addDriver(d);
    if (s.pciback) this.addPciback(s.pciback.slots ?? [], s.pciback.removeSlot ?? true, s.pciback.newSlot ?? true);
    // First, so that NICs can join them: interfaces no PCI device owns: bridges, bonds, guests' vifs (the kernel's /sys/devices/virtual/net).
    const virtual = Object.entries(s.interfaces ?? {}).filter(([name]) => !s.devices.some((d) => d.net?.includes(name)));
    for (const [name, iface] of virtual) {
      this.write(`/sys/devices/virtual/net/${name}/operstate`, `${iface.operstate}\n`);
      if (iface.bridge) {
        this.write(`/sys/devices/virtual/net/${name}/bridge/bridge_id`, '8000.000000000000\n');
        this.mkdir(`/sys/devices/virtual/net/${name}/brif`);
      }
      if (iface.macvtap) this.mkdir(`/sys/devices/virtual/net/${name}/macvtap/tap${20 + virtual.findIndex(([n]) => n === name)}`);
      // sysfs shows /sys/class/net of the reader's own network namespace only.
      if (!iface.otherNetns) this.link(`/sys/class/net/${name}`, `/sys/devices/virtual/net/${name}`);
    }
    for (const [name, iface] of virtual) if (iface.master) this.enslave(name, iface.master);
    let diskMajorMinor = 0;
    for (const dev of s.devices) {
      const dir = this.deviceDir(dev.bdf);
      this.write(`${dir}/vendor`, `0x${dev.vendor}\n`);
      this.write(`${dir}/device`, `0x${dev.device}\n`);
      this.write(`${dir}/class`, `0x${dev.class.length === 4 ? `${dev.class}00` : dev.class}\n`);
      if (dev.bootVga !== undefined) this.write(`${dir}/boot_vga`, dev.bootVga ? '1\n' : '0\n');
      if (dev.driverOverride !== undefined) this.write(`${dir}/driver_override`, `${dev.driverOverride ?? '(null)'}\n`);
      // The kernel shows `reset` (and `reset_method`) only for a device it can reset.
      if (dev.resetMethod !== undefined && dev.resetMethod !== '') {
        this.write(`${dir}/reset_method`, `${dev.resetMethod}\n`);
        this.write(`${dir}/reset`, '');
      }
      writeFileSync(this.path(`${dir}/config`), configSpace(dev));
      this.link(`/sys/bus/pci/devices/${dev.bdf}`, dir);
      if (dev.iommuGroup !== undefined) {
        this.mkdir(`/sys/kernel/iommu_groups/${dev.iommuGroup}/devices`);
        this.link(`/sys/kernel/iommu_groups/${dev.iommuGroup}/devices/${dev.bdf}`, dir);
        this.link(`${dir}/iommu_group`, `/sys/kernel/iommu_groups/${dev.iommuGroup}`);
      }
      if (dev.driver) {
        this.addDriver(dev.driver, dev.driver === PCIBACK ? undefined : dev.module);
        this.kernel.setDriver(dev.bdf, dev.driver);
      }
      dev.disks?.forEach((disk, i) => {
        const scsi = `${dir}/host${i}/target${i}:0:0/${i}:0:0:0`;
        const blockDir = `${scsi}/block/${disk.name}`;
        const [major, minor] = (disk.dev ?? `8:${diskMajorMinor}`).split(':').map(Number) as [number, number];
        diskMajorMinor = minor + 16;
        this.write(`${blockDir}/dev`, `${major}:${minor}\n`);
        this.mkdir(`${blockDir}/holders`);
        this.mkdir(`${blockDir}/slaves`);
        this.link(`${blockDir}/device`, scsi);
        (disk.partitions ?? []).forEach((p, j) => {
          this.write(`${blockDir}/${p}/dev`, `${major}:${minor + j + 1}\n`);
          this.write(`${blockDir}/${p}/partition`, `${j + 1}\n`);
          this.mkdir(`${blockDir}/${p}/holders`);
        });
        this.link(`/sys/block/${disk.name}`, blockDir);
      });
    }
    for (const pf of s.devices) {
      if (!pf.sriovVfs) continue;
      this.write(`${this.deviceDir(pf.bdf)}/sriov_totalvfs`, `${Math.max(pf.sriovVfs.length, 8)}\n`);
      this.write(`${this.deviceDir(pf.bdf)}/sriov_numvfs`, `${pf.sriovVfs.length}\n`);
      pf.sriovVfs.forEach((vf, i) => {
        this.link(`${this.deviceDir(pf.bdf)}/virtfn${i}`, this.deviceDir(vf));
        this.link(`${this.deviceDir(vf)}/physfn`, this.deviceDir(pf.bdf));
      });
    }
    for (const dev of s.devices) {
      for (const u of dev.usb ?? []) {
        // A device behind a hub sits in the hub's directory: usb1/1-3/1-3.1.
        const hops = u.port.split('.').map((_, i, all) => `${u.bus}-${all.slice(0, i + 1).join('.')}`);
        const usbDir = `${this.deviceDir(dev.bdf)}/usb${u.bus}/${hops.join('/')}`;
        this.write(`${usbDir}/idVendor`, `${u.idVendor}\n`);
        this.write(`${usbDir}/idProduct`, `${u.idProduct}\n`);
        if (u.product !== undefined) this.write(`${usbDir}/product`, `${u.product}\n`);
      }
      for (const minor of dev.drm ?? []) {
        this.mkdir(`${this.deviceDir(dev.bdf)}/drm/${minor}`);
        this.link(`${this.deviceDir(dev.bdf)}/drm/${minor}/device`, this.deviceDir(dev.bdf));
        this.link(`/sys/class/drm/${minor}`, `${this.deviceDir(dev.bdf)}/drm/${minor}`);
        this.write(`/dev/dri/${minor}`, '');
      }
    }
    for (const head of s.nvmeHeads ?? []) {
      const dir = `/sys/devices/virtual/nvme-subsystem/nvme-subsys0/${head.name}`;
      const [major, minor] = (head.dev ?? '259:0').split(':').map(Number) as [number, number];
      this.write(`${dir}/dev`, `${major}:${minor}\n`);
      this.mkdir(`${dir}/holders`);
      this.mkdir(`${dir}/slaves`);
      for (const path of head.paths) this.link(`${dir}/multipath/${path}`, this.blockPath(path));
      (head.partitions ?? []).forEach((p, j) => {
        this.write(`${dir}/${p}/dev`, `${major}:${minor + j + 1}\n`);
        this.write(`${dir}/${p}/partition`, `${j + 1}\n`);
        this.mkdir(`${dir}/${p}/holders`);
      });
      this.link(`/sys/block/${head.name}`, dir);
    }
    for (const dm of s.deviceMappers ?? []) {
      const dir = `/sys/devices/virtual/block/${dm.name}`;
      this.write(`${dir}/dev`, `253:${dm.name.replace(/\D/g, '')}\n`);
      this.write(`${dir}/dm/name`, `${dm.mapperName}\n`);
      if (dm.uuid !== undefined) this.write(`${dir}/dm/uuid`, `${dm.uuid}\n`);
      this.mkdir(`${dir}/holders`);
      for (const slave of dm.slaves) {
        this.link(`${dir}/slaves/${slave}`, this.blockPath(slave));
        this.link(`${this.blockPath(slave)}/holders/${dm.name}`, dir);
      }
      this.link(`/sys/block/${dm.name}`, dir);
      // udev's layout. (RHEL 5 has device nodes in /dev/mapper: the backend maps those by device
      // number, which a tree cannot create without root.)
      this.write(`/dev/${dm.name}`, '');
      this.link(`/dev/mapper/${dm.mapperName}`, `/dev/${dm.name}`);
      for (const extra of dm.devLinks ?? []) this.link(extra, `/dev/${dm.name}`);
    }
    for (const [fb, bdf] of Object.entries(s.framebuffers ?? {})) {
      this.mkdir(`/sys/devices/virtual/graphics/${fb}`);
      this.link(`/sys/devices/virtual/graphics/${fb}/device`, this.deviceDir(bdf));
      this.link(`/sys/class/graphics/${fb}`, `/sys/devices/virtual/graphics/${fb}`);
    }
    for (const pool of s.zfsPools ?? []) this.write(`/proc/spl/kstat/zfs/${pool}/state`, 'ONLINE\n');
    for (const fs of s.btrfs ?? []) {
      this.write(`/sys/fs/btrfs/${fs.uuid}/label`, `${fs.label ?? ''}\n`);
      for (const dev of fs.devices) this.link(`/sys/fs/btrfs/${fs.uuid}/devices/${dev}`, this.blockPath(dev));
    }
    for (const proc of s.processes ?? []) {
      this.write(`/proc/${proc.pid}/comm`, `${proc.comm}\n`);
      this.mkdir(`/proc/${proc.pid}/fd`);
      proc.open.forEach((node, i) => this.link(`/proc/${proc.pid}/fd/${i + 3}`, node));
    }
    this.write('/proc/net/route', procNetRoute(s.routes ?? []));
    this.write('/proc/mounts', ['rootfs / rootfs rw 0 0', 'proc /proc proc rw 0 0', 'sysfs /sys sysfs rw 0 0', ...(s.mounts ?? []).map(([src, target, fs]) => `${src} ${target.replace(/ /g, '\\040')} ${fs ?? 'ext4'} rw,relatime 0 0`)].join('\n') + '\n');
    this.write('/proc/swaps', ['Filename\t\t\t\tType\t\tSize\tUsed\tPriority', ...(s.swaps ?? []).map((d) => `${d}                               partition\t2097148\t0\t-2`)].join('\n') + '\n');
    this.write('/proc/cmdline', `${s.cmdline ?? 'ro root=/dev/VolGroup00/LogVol00'}\n`);
    this.write('/proc/sys/kernel/random/boot_id', `${bootId ?? s.bootId ?? '2d6c6a0e-6f5b-4c55-9a57-0d6ab3b1f7a1'}\n`);
    if (s.kernelRelease) {
      this.write('/proc/sys/kernel/osrelease', `${s.kernelRelease}\n`);
      this.write(`/lib/modules/${s.kernelRelease}/modules.dep`, (s.modules ?? []).map((m) => `${m}:\n`).join(''));
      if (s.builtinModules) this.write(`/lib/modules/${s.kernelRelease}/modules.builtin`, s.builtinModules.map((m) => `${m}\n`).join(''));
    }
    if (s.xen) {
      this.mkdir('/proc/xen');
      this.write('/proc/xen/capabilities', 'control_d\n');
      this.write('/sys/hypervisor/type', 'xen\n');
    }
    this.kernel.syncInterfaces();
  }

  /** `name` becomes a port of `master`: its `master` link, and `brif/<name>` in a bridge. */
  enslave(name: string, master: string): void {
    this.link(`/sys/class/net/${name}/master`, `/sys/class/net/${master}`);
    if (this.spec.interfaces?.[master]?.bridge) this.link(`/sys/class/net/${master}/brif/${name}`, `/sys/class/net/${name}`);
  }

  /** Host path of a disk or partition directory in the device tree. */
  blockPath(name: string): string {
    for (const dev of this.spec.devices) {
      for (const [i, disk] of (dev.disks ?? []).entries()) {
        const blockDir = `${this.deviceDir(dev.bdf)}/host${i}/target${i}:0:0/${i}:0:0:0/block/${disk.name}`;
        if (disk.name === name) return blockDir;
        if (disk.partitions?.includes(name)) return `${blockDir}/${name}`;
      }
    }
    const dm = this.spec.deviceMappers?.find((d) => d.name === name);
    if (dm) return `/sys/devices/virtual/block/${dm.name}`;
    for (const head of this.spec.nvmeHeads ?? []) {
      const dir = `/sys/devices/virtual/nvme-subsystem/nvme-subsys0/${head.name}`;
      if (head.name === name) return dir;
      if (head.partitions?.includes(name)) return `${dir}/${name}`;
    }
    throw new Error(`host spec has no disk or partition ${name}`);
  }
}

/**
 * The first 256 bytes of a device's config space as sysfs `config` shows them: ids, class, header
 * type (1 for a PCI-to-PCI bridge) and a capability list holding a PCI Express capability unless the
 * device is conventional PCI. Its device/port type: root port for a bridge, endpoint otherwise.
 */
export function configSpace(dev: { vendor: string; device: string; class: string; pcie?: boolean }): Buffer {
  const c = Buffer.alloc(256);
  c.writeUInt16LE(parseInt(dev.vendor, 16), 0);
  c.writeUInt16LE(parseInt(dev.device, 16), 2);
  const cls = dev.class.length === 4 ? `${dev.class}00` : dev.class;
  c.writeUInt8(parseInt(cls.slice(4, 6), 16), 0x09);
  c.writeUInt8(parseInt(cls.slice(2, 4), 16), 0x0a);
  c.writeUInt8(parseInt(cls.slice(0, 2), 16), 0x0b);
  const bridge = cls.startsWith('0604');
  c.writeUInt8(bridge ? 1 : 0, 0x0e);
  if (dev.pcie !== false) {
    c.writeUInt16LE(0x0010, 0x06);
    c.writeUInt8(0x40, 0x34);
    c.writeUInt8(0x10, 0x40);
    c.writeUInt16LE(0x0002 | ((bridge ? 4 : 0) << 4), 0x42);
  }
  return c;
}

function leHex(octets: number[]): string {
  return octets
    .slice()
    .reverse()
    .map((o) => o.toString(16).toUpperCase().padStart(2, '0'))
    .join('');
}

/** /proc/net/route as the kernel prints it (addresses in little-endian hex). */
export function procNetRoute(routes: readonly [string, string][]): string {
  const header = 'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT';
  const rows = routes.map(([iface, dest]) => {
    const isDefault = dest === 'default';
    const [addr, len] = isDefault ? ['0.0.0.0', '0'] : (dest.split('/') as [string, string]);
    const octets = addr.split('.').map(Number);
    const bits = Number(len);
    const mask = [0, 1, 2, 3].map((i) => Math.max(0, Math.min(8, bits - i * 8))).map((b) => (0xff << (8 - b)) & 0xff);
    const gateway = isDefault ? leHex([octets[0] ?? 10, 0, 0, 1]) : '00000000';
    const flags = isDefault ? '0003' : '0001';
    return `${iface}\t${leHex(octets)}\t${gateway}\t${flags}\t0\t0\t0\t${leHex(mask)}\t0\t0\t0`;
  });
  return [header, ...rows].join('\n') + '\n';
}

/** A write the kernel will refuse once: how a test or a fault injects EBUSY or ENODEV. */
export interface RefusedWrite {
  /** Host path, or its ending (`/pciback/bind`). */
  path: string;
  code: 'EBUSY' | 'ENODEV' | 'EINVAL' | 'EIO';
}

/**
 * Applies sysfs control writes to a SimTree the way the kernel does: driver links move, pciback's
 * slots change, a NIC's interfaces appear on its host driver and vanish off it, `driver_override`
 * decides which driver may probe a device (so it wins over pciback's `new_slot`), and a driver that
 * refuses the probe leaves the device on no driver. In `ignore` mode it accepts every write and
 * changes nothing: the "reported success, device still on the host driver" kernel. Plug `observer`
 * into LinuxHost's `onSysfsWrite`; `writes` keeps them in order.
 */
export class SysfsKernel {
  mode: 'obey' | 'ignore' = 'obey';
  readonly writes: SysfsWrite[] = [];
  /** Writes refused once each, in order (fault injection). */
  readonly refusals: RefusedWrite[] = [];
  /** Called when a device's driver changes (the simulated host watches the uplink). */
  onDriverChange: ((bdf: string, driver: string | null) => void) | null = null;
  private readonly hostDrivers = new Map<string, string>();
  /** Ids added with `new_id` ("8086 10d3") per driver: the driver then matches every device with them. */
  private readonly dynamicIds = new Map<string, Set<string>>();

  constructor(private readonly host: SimTree) {
    for (const d of host.spec.devices) {
      const hostDriver = d.hostDriver ?? (d.driver && d.driver !== PCIBACK ? d.driver : undefined);
      if (hostDriver) this.hostDrivers.set(d.bdf, hostDriver);
    }
  }

  readonly observer = (write: SysfsWrite): void => {
    this.writes.push(write);
    const refused = this.refusals.findIndex((r) => write.path === r.path || write.path.endsWith(r.path));
    if (refused >= 0) {
      const [r] = this.refusals.splice(refused, 1);
      throw kernelRefuses(r?.code ?? 'EIO', `${write.path} refused (injected)`);
    }
    if (this.mode === 'ignore') return;
    this.apply(write.path, write.data.replace(/\n$/, ''));
  };

  /** The host driver of a device (what drivers_probe or loading its module gives it); null when none. */
  hostDriverOf(bdf: string): string | null {
    return this.hostDrivers.get(bdf) ?? null;
  }

  driverOf(bdf: string): string | null {
    return this.host.readLinkName(`/sys/bus/pci/devices/${bdf}/driver`);
  }

  slots(): string[] {
    return (this.host.read(`/sys/bus/pci/drivers/${PCIBACK}/slots`) ?? '').split('\n').filter((l) => l !== '');
  }

  pcibackLoaded(): boolean {
    return this.host.exists(`/sys/bus/pci/drivers/${PCIBACK}`);
  }

  /** `driver_override` of a device; null when unset or when the kernel has no such file. */
  override(bdf: string): string | null {
    const text = this.host.read(`${this.host.deviceDir(bdf)}/driver_override`)?.trim();
    return text === undefined || text === '' || text === '(null)' ? null : text;
  }

  private setSlots(slots: readonly string[]): void {
    this.host.write(`/sys/bus/pci/drivers/${PCIBACK}/slots`, slots.map((s) => `${s}\n`).join(''));
  }

  setDriver(bdf: string, driver: string | null): void {
    const link = `${this.host.deviceDir(bdf)}/driver`;
    const before = this.driverOf(bdf);
    this.host.unlink(link);
    if (driver !== null) this.host.link(link, `/sys/bus/pci/drivers/${driver}`);
    this.syncInterfaces();
    this.syncVfioNodes();
    if (before !== driver) this.onDriverChange?.(bdf, driver);
  }

  /** `/dev/vfio/<group>` exists while a device of the group is on vfio-pci, as vfio creates it. */
  private syncVfioNodes(): void {
    const groups = new Map<number, boolean>();
    for (const d of this.host.spec.devices) {
      if (d.iommuGroup === undefined) continue;
      groups.set(d.iommuGroup, (groups.get(d.iommuGroup) ?? false) || this.driverOf(d.bdf) === VFIO_PCI);
    }
    for (const [group, bound] of groups) {
      if (bound && !this.host.exists(`/dev/vfio/${group}`)) this.host.write(`/dev/vfio/${group}`, '');
      if (!bound) this.host.unlink(`/dev/vfio/${group}`);
    }
  }

  /** Whether `vfio-pci` could open the device's group: every endpoint on vfio-pci, pci-stub or no driver, bridges on pcieport. */
  groupViable(bdf: string): boolean {
    const group = this.host.spec.devices.find((d) => d.bdf === bdf)?.iommuGroup;
    if (group === undefined) return false;
    return this.host.spec.devices.filter((d) => d.iommuGroup === group).every((d) => [null, VFIO_PCI, 'pci-stub', 'pcieport'].includes(this.driverOf(d.bdf)));
  }

  /** A NIC has its interfaces exactly while a host (non-pciback) driver holds it; a port rejoins its bridge. */
  syncInterfaces(): void {
    for (const dev of this.host.spec.devices) {
      const dir = this.host.deviceDir(dev.bdf);
      const driver = this.driverOf(dev.bdf);
      const present = driver !== null && driver !== PCIBACK;
      for (const iface of dev.net ?? []) {
        const parent = dev.netParent ? `${dir}/${dev.netParent}` : dir;
        const real = this.host.spec.legacyNetLinks ? `/sys/devices/virtual/net/${iface}` : `${parent}/net/${iface}`;
        const master = this.host.spec.interfaces?.[iface]?.master;
        if (present) {
          if (!this.host.exists(`${real}/operstate`)) this.host.write(`${real}/operstate`, `${this.host.spec.interfaces?.[iface]?.operstate ?? 'down'}\n`);
          if (this.host.spec.legacyNetLinks) this.host.link(`${dir}/net:${iface}`, real);
          this.host.link(`/sys/class/net/${iface}`, real);
          if (!this.host.spec.legacyNetLinks) this.host.link(`${real}/device`, parent);
          if (master) this.host.enslave(iface, master);
          for (const [upper, u] of Object.entries(this.host.spec.interfaces ?? {})) {
            if (u.lower !== iface) continue;
            this.host.link(`${real}/upper_${upper}`, `/sys/devices/virtual/net/${upper}`);
            this.host.link(`/sys/devices/virtual/net/${upper}/lower_${iface}`, real);
          }
        } else {
          this.host.unlink(`/sys/class/net/${iface}`);
          if (master) this.host.unlink(`/sys/class/net/${master}/brif/${iface}`);
          this.host.unlink(this.host.spec.legacyNetLinks ? `${dir}/net:${iface}` : real);
          if (this.host.spec.legacyNetLinks) this.host.unlink(real);
        }
      }
    }
  }

  /** Whether `driver` may probe `bdf`: driver_override first (it wins over pciback's slots), then ids (static or `new_id`) or slots. */
  private matches(bdf: string, driver: string): boolean {
    const override = this.override(bdf);
    if (override !== null) return override === driver;
    if (driver === PCIBACK) return this.slots().includes(bdf);
    return this.hostDrivers.get(bdf) === driver || this.hasDynamicId(bdf, driver);
  }

  private hasDynamicId(bdf: string, driver: string): boolean {
    const dev = this.host.spec.devices.find((d) => d.bdf === bdf);
    return dev !== undefined && (this.dynamicIds.get(driver)?.has(`${dev.vendor} ${dev.device}`) ?? false);
  }

  /**
   * The driver the bus gives a driverless device on a probe: the override when it names a registered
   * driver (and nothing else), else pciback for a slot, a driver that learnt its id through `new_id`
   * (registered before the host driver reloads: the "stuck on vfio-pci" report), then its host driver.
   */
  private probe(bdf: string): void {
    if (this.driverOf(bdf) !== null) return;
    const registered = (d: string): boolean => this.host.exists(`/sys/bus/pci/drivers/${d}`);
    const override = this.override(bdf);
    if (override !== null) {
      if (registered(override)) this.setDriver(bdf, override);
      return;
    }
    if (this.pcibackLoaded() && this.matches(bdf, PCIBACK)) return this.setDriver(bdf, PCIBACK);
    for (const driver of this.dynamicIds.keys()) if (registered(driver) && this.hasDynamicId(bdf, driver)) return this.setDriver(bdf, driver);
    const hostDriver = this.hostDrivers.get(bdf);
    if (hostDriver && registered(hostDriver)) this.setDriver(bdf, hostDriver);
  }

  /** `modprobe vfio-pci`: registers the driver; it takes the driverless devices whose override names it. */
  loadVfio(): void {
    this.host.addDriver(VFIO_PCI, 'vfio_pci');
    for (const d of this.host.spec.devices) if (this.driverOf(d.bdf) === null && this.override(d.bdf) === VFIO_PCI) this.setDriver(d.bdf, VFIO_PCI);
  }

  /** `modprobe <pciback>`: registers pciback with its hide= list as slots; it claims hidden devices that are driverless. */
  loadPciback(hidden: readonly string[], newSlot = true): void {
    if (!this.pcibackLoaded()) this.host.addPciback(hidden, true, newSlot);
    for (const bdf of hidden) if (this.host.exists(`/sys/bus/pci/devices/${bdf}`) && this.driverOf(bdf) === null && this.matches(bdf, PCIBACK)) this.setDriver(bdf, PCIBACK);
  }

  /** `modprobe -r <driver>`: its devices lose it and the driver directory goes away. */
  unloadDriver(driver: string): void {
    for (const d of this.host.spec.devices) if (this.driverOf(d.bdf) === driver) this.setDriver(d.bdf, null);
    this.host.unlink(`/sys/bus/pci/drivers/${driver}`);
  }

  /** `modprobe <driver>` (without an install line): the driver takes every driverless device it matches. */
  loadDriver(driver: string, module?: string): void {
    this.host.addDriver(driver, module);
    for (const [bdf, hostDriver] of this.hostDrivers) if (hostDriver === driver && this.driverOf(bdf) === null && this.matches(bdf, driver)) this.setDriver(bdf, driver);
  }

  private apply(path: string, data: string): void {
    const bdf = data.trim();
    const device = (p: string): void => {
      if (!this.host.exists(`/sys/bus/pci/devices/${p}`)) throw kernelRefuses('ENODEV', `no device ${p}`);
    };
    const unbindFrom = (driver: string | null): void => {
      device(bdf);
      if (driver === null || this.driverOf(bdf) !== driver) throw kernelRefuses('ENODEV', `${bdf} is not bound to ${driver ?? 'that driver'}`);
      this.setDriver(bdf, null);
    };
    let m: RegExpExecArray | null;
    if ((m = /^\/sys\/bus\/pci\/devices\/([^/]+)\/driver_override$/.exec(path))) {
      // Writing a name sets the override; an empty write clears it.
      this.host.write(path.replace(/^\/sys\/bus\/pci\/devices\/[^/]+/, this.host.deviceDir(m[1] ?? '')), `${data.trim() === '' ? '(null)' : data.trim()}\n`);
    } else if ((m = /^\/sys\/bus\/pci\/devices\/([^/]+)\/driver\/unbind$/.exec(path))) {
      unbindFrom(this.driverOf(m[1] ?? ''));
    } else if (path === `/sys/bus/pci/drivers/${PCIBACK}/new_slot`) {
      if (this.slots().includes(bdf)) throw kernelRefuses('EEXIST', `${bdf} is already in pciback's slots`);
      this.setSlots([...this.slots(), bdf]);
    } else if (path === `/sys/bus/pci/drivers/${PCIBACK}/remove_slot`) {
      if (!this.slots().includes(bdf)) throw kernelRefuses('ENOENT', `${bdf} is not in pciback's slots`);
      this.setSlots(this.slots().filter((s) => s !== bdf));
    } else if ((m = /^\/sys\/bus\/pci\/drivers\/([^/]+)\/unbind$/.exec(path))) {
      unbindFrom(m[1] ?? null);
    } else if ((m = /^\/sys\/bus\/pci\/drivers\/([^/]+)\/bind$/.exec(path))) {
      const driver = m[1] ?? '';
      device(bdf);
      if (this.driverOf(bdf) !== null) throw kernelRefuses('EBUSY', `${bdf} already has a driver`);
      // The bus matches driver_override first, then pciback's slots or the driver's ids.
      if (!this.matches(bdf, driver)) throw kernelRefuses('ENODEV', `${driver} does not match ${bdf}`);
      this.setDriver(bdf, driver);
    } else if (path === '/sys/bus/pci/drivers_probe') {
      device(bdf);
      this.probe(bdf);
    } else if ((m = /^\/sys\/bus\/pci\/drivers\/([^/]+)\/(new_id|remove_id)$/.exec(path))) {
      // "8086 10d3": the driver's dynamic id table; new_id also probes every driverless device with the id.
      const driver = m[1] ?? '';
      if (!this.host.exists(`/sys/bus/pci/drivers/${driver}`)) throw kernelRefuses('ENOENT', `${driver} is not registered`);
      const id = data.trim().toLowerCase().split(/\s+/).slice(0, 2).join(' ');
      if (!/^[0-9a-f]{4} [0-9a-f]{4}$/.test(id)) throw kernelRefuses('EINVAL', `${path}: "${data}" is not "vendor device"`);
      const ids = this.dynamicIds.get(driver) ?? new Set<string>();
      if (m[2] === 'remove_id') {
        if (!ids.delete(id)) throw kernelRefuses('ENODEV', `${driver} has no dynamic id ${id}`);
      } else {
        ids.add(id);
        this.dynamicIds.set(driver, ids);
        for (const d of this.host.spec.devices) if (this.driverOf(d.bdf) === null && this.override(d.bdf) === null && this.hasDynamicId(d.bdf, driver)) this.setDriver(d.bdf, driver);
      }
    } else {
      throw new Error(`SysfsKernel: no model for a write to ${path}`);
    }
  }
}
