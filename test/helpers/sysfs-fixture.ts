import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, realpathSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import type { SysfsWrite } from '../../agent/linux/host-tree.js';

/**
 * Fixture host trees for the linux backend: a temp dir laid out like a dom0's /sys, /proc, /etc, /dev
 * and /lib, with relative symlinks where sysfs has them, so the backend reads it exactly as it reads
 * a real host. A FakeKernel applies control-file writes the way the kernel would (or ignores them).
 */

export interface FixtureDisk {
  name: string;
  /** "8:0"; partitions get consecutive minors. */
  dev?: string;
  partitions?: string[];
}

export interface FixtureDevice {
  bdf: string;
  /** Hex without 0x: vendor and device 4 digits, class 6 (020000) or 4 (0200, padded with 00). */
  vendor: string;
  device: string;
  class: string;
  driver?: string | null;
  /** The driver the host gives it when pciback lets go (drivers_probe, driver load); defaults to `driver`. */
  hostDriver?: string;
  iommuGroup?: number;
  /** Interfaces of a NIC; they exist only while the device is on its host driver, as in the kernel. */
  net?: string[];
  /** A child device that holds the interfaces, as virtio NICs have: `<bdf>/virtio0/net/eth1`. */
  netParent?: string;
  /** Disks behind a storage controller. */
  disks?: FixtureDisk[];
}

export interface FixtureInterface {
  operstate: 'up' | 'down' | 'unknown';
  /** Bridge or bond the interface is enslaved to (`master` link). */
  master?: string;
}

export interface FixtureDeviceMapper {
  /** dm-0 */
  name: string;
  /** The /dev/mapper name, e.g. VolGroup00-LogVol00. */
  mapperName: string;
  /** Partitions or disks under it, e.g. sda2. */
  slaves: string[];
}

export interface FixtureHostSpec {
  devices: FixtureDevice[];
  /** Drivers registered without devices bound to them now. */
  drivers?: string[];
  /** pciback registered (module loaded) with these slots; absent: not loaded. */
  pciback?: { slots?: string[]; removeSlot?: boolean };
  /** Interfaces not backed by a PCI device (bridges, bonds) and the state of every interface. */
  interfaces?: Record<string, FixtureInterface>;
  /** Kernel 2.6.18 layout: `net:<if>` links in the device directory instead of `net/<if>`. */
  legacyNetLinks?: boolean;
  /** IPv4 routes: [iface, "default" | "a.b.c.d/len"]. */
  routes?: [string, string][];
  mounts?: [source: string, target: string, fstype?: string][];
  swaps?: string[];
  deviceMappers?: FixtureDeviceMapper[];
  bootId?: string;
  kernelRelease?: string;
  /** Module file names listed in modules.dep, e.g. "kernel/drivers/xen/xen-pciback/xen-pciback.ko". */
  modules?: string[];
  xen?: boolean;
  redhatRelease?: string;
  osRelease?: string;
  /** Extra files, by host path. */
  files?: Record<string, string>;
  /** Xen guest configs: /etc/xen/<name>. */
  guests?: Record<string, string>;
}

export const PCIBACK = 'pciback';

/** A kernel's refusal of a sysfs write, as Node reports a failed write(2). */
function kernelRefuses(code: string, message: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`${code}: ${message}`);
  err.code = code;
  return err;
}

export class FixtureHost {
  readonly root: string;
  readonly kernel: FakeKernel;

  constructor(readonly spec: FixtureHostSpec) {
    this.root = realpathSync(mkdtempSync(join(tmpdir(), 'ptctl-linux-')));
    this.kernel = new FakeKernel(this);
    this.build();
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
    if (existsSync(join(realParent, basename(hostPath))) || isLink(join(realParent, basename(hostPath)))) unlinkSync(join(realParent, basename(hostPath)));
    symlinkSync(relative(realParent, this.path(targetHostPath)) || '.', join(realParent, basename(hostPath)));
  }

  unlink(hostPath: string): void {
    if (isLink(this.path(hostPath)) || existsSync(this.path(hostPath))) rmSync(this.path(hostPath), { recursive: true, force: true });
  }

  readLinkName(hostPath: string): string | null {
    return isLink(this.path(hostPath)) ? basename(readlinkSync(this.path(hostPath))) : null;
  }

  cleanup(): void {
    rmSync(this.root, { recursive: true, force: true });
  }

  deviceDir(bdf: string): string {
    return `/sys/devices/pci${bdf.slice(0, 7)}/${bdf}`;
  }

  /** A registered PCI driver directory with its control files. */
  addDriver(driver: string): void {
    const dir = `/sys/bus/pci/drivers/${driver}`;
    if (this.exists(dir)) return;
    this.mkdir(dir);
    for (const f of ['bind', 'unbind', 'new_id', 'remove_id']) this.write(`${dir}/${f}`, '');
  }

  /** pciback registered: slots, new_slot, remove_slot (optional: old pciback lacks it), bind, unbind. */
  addPciback(slots: readonly string[], removeSlot = true): void {
    this.addDriver(PCIBACK);
    const dir = `/sys/bus/pci/drivers/${PCIBACK}`;
    this.write(`${dir}/slots`, slots.map((s) => `${s}\n`).join(''));
    this.write(`${dir}/new_slot`, '');
    if (removeSlot) this.write(`${dir}/remove_slot`, '');
    this.write(`${dir}/permissive`, '');
  }

  private build(): void {
    const s = this.spec;
    this.write('/sys/bus/pci/drivers_probe', '');
    this.write('/sys/bus/pci/rescan', '');
    this.mkdir('/sys/bus/pci/devices');
    this.mkdir('/sys/block');
    this.mkdir('/sys/class/net');
    this.mkdir('/sys/kernel/iommu_groups');
    for (const d of s.drivers ?? []) this.addDriver(d);
    if (s.pciback) this.addPciback(s.pciback.slots ?? [], s.pciback.removeSlot ?? true);
    let diskMajorMinor = 0;
    for (const dev of s.devices) {
      const dir = this.deviceDir(dev.bdf);
      this.write(`${dir}/vendor`, `0x${dev.vendor}\n`);
      this.write(`${dir}/device`, `0x${dev.device}\n`);
      this.write(`${dir}/class`, `0x${dev.class.length === 4 ? `${dev.class}00` : dev.class}\n`);
      this.link(`/sys/bus/pci/devices/${dev.bdf}`, dir);
      if (dev.iommuGroup !== undefined) {
        this.mkdir(`/sys/kernel/iommu_groups/${dev.iommuGroup}/devices`);
        this.link(`/sys/kernel/iommu_groups/${dev.iommuGroup}/devices/${dev.bdf}`, dir);
        this.link(`${dir}/iommu_group`, `/sys/kernel/iommu_groups/${dev.iommuGroup}`);
      }
      if (dev.driver) {
        this.addDriver(dev.driver);
        this.kernel.setDriver(dev.bdf, dev.driver);
      }
      dev.disks?.forEach((disk, i) => {
        const scsi = `${dir}/host${i}/target${i}:0:0/${i}:0:0:0`;
        const blockDir = `${scsi}/block/${disk.name}`;
        const [major, minor] = (disk.dev ?? `8:${diskMajorMinor}`).split(':').map(Number) as [number, number];
        diskMajorMinor = minor + 16;
        this.write(`${blockDir}/dev`, `${major}:${minor}\n`);
        this.link(`${blockDir}/device`, scsi);
        (disk.partitions ?? []).forEach((p, j) => {
          this.write(`${blockDir}/${p}/dev`, `${major}:${minor + j + 1}\n`);
          this.write(`${blockDir}/${p}/partition`, `${j + 1}\n`);
        });
        this.link(`/sys/block/${disk.name}`, blockDir);
      });
    }
    // Interfaces no PCI device owns: bridges and bonds (the kernel's /sys/devices/virtual/net).
    const virtual = Object.entries(s.interfaces ?? {}).filter(([name]) => !s.devices.some((d) => d.net?.includes(name)));
    for (const [name, iface] of virtual) {
      this.write(`/sys/devices/virtual/net/${name}/operstate`, `${iface.operstate}\n`);
      this.link(`/sys/class/net/${name}`, `/sys/devices/virtual/net/${name}`);
    }
    for (const [name, iface] of virtual) if (iface.master) this.link(`/sys/class/net/${name}/master`, `/sys/class/net/${iface.master}`);
    for (const dm of s.deviceMappers ?? []) {
      const dir = `/sys/devices/virtual/block/${dm.name}`;
      this.write(`${dir}/dev`, `253:${dm.name.replace(/\D/g, '')}\n`);
      this.write(`${dir}/dm/name`, `${dm.mapperName}\n`);
      for (const slave of dm.slaves) this.link(`${dir}/slaves/${slave}`, this.blockPath(slave));
      this.link(`/sys/block/${dm.name}`, dir);
      // udev's layout. (RHEL 5 has device nodes in /dev/mapper: the backend maps those by device
      // number, which a fixture cannot create without root.)
      this.write(`/dev/${dm.name}`, '');
      this.link(`/dev/mapper/${dm.mapperName}`, `/dev/${dm.name}`);
    }
    this.write('/proc/net/route', procNetRoute(s.routes ?? []));
    this.write('/proc/mounts', ['rootfs / rootfs rw 0 0', 'proc /proc proc rw 0 0', 'sysfs /sys sysfs rw 0 0', ...(s.mounts ?? []).map(([src, target, fs]) => `${src} ${target.replace(/ /g, '\\040')} ${fs ?? 'ext4'} rw,relatime 0 0`)].join('\n') + '\n');
    this.write('/proc/swaps', ['Filename\t\t\t\tType\t\tSize\tUsed\tPriority', ...(s.swaps ?? []).map((d) => `${d}                               partition\t2097148\t0\t-2`)].join('\n') + '\n');
    this.write('/proc/sys/kernel/random/boot_id', `${s.bootId ?? '2d6c6a0e-6f5b-4c55-9a57-0d6ab3b1f7a1'}\n`);
    if (s.kernelRelease) {
      this.write('/proc/sys/kernel/osrelease', `${s.kernelRelease}\n`);
      this.write(`/lib/modules/${s.kernelRelease}/modules.dep`, (s.modules ?? []).map((m) => `${m}:\n`).join(''));
    }
    if (s.xen) {
      this.mkdir('/proc/xen');
      this.write('/proc/xen/capabilities', 'control_d\n');
      this.write('/sys/hypervisor/type', 'xen\n');
    }
    if (s.redhatRelease !== undefined) this.write('/etc/redhat-release', `${s.redhatRelease}\n`);
    if (s.osRelease !== undefined) this.write('/etc/os-release', s.osRelease);
    for (const [name, text] of Object.entries(s.guests ?? {})) this.write(`/etc/xen/${name}`, text);
    for (const [path, text] of Object.entries(s.files ?? {})) this.write(path, text);
    this.kernel.syncInterfaces();
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
    throw new Error(`fixture has no disk or partition ${name}`);
  }
}

function isLink(path: string): boolean {
  try {
    readlinkSync(path);
    return true;
  } catch {
    return false;
  }
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

/**
 * Applies sysfs control writes to a FixtureHost the way the kernel does: driver links move, pciback's
 * slots change, a NIC's interfaces appear on its host driver and vanish on pciback. In `ignore` mode
 * it accepts every write and changes nothing: the "reported success, device still on the host
 * driver" kernel. Plug `observer` into LinuxHost's `onSysfsWrite`; `writes` keeps them in order.
 */
export class FakeKernel {
  mode: 'obey' | 'ignore' = 'obey';
  readonly writes: SysfsWrite[] = [];
  private readonly hostDrivers = new Map<string, string>();

  constructor(private readonly host: FixtureHost) {
    for (const d of host.spec.devices) {
      const hostDriver = d.hostDriver ?? (d.driver && d.driver !== PCIBACK ? d.driver : undefined);
      if (hostDriver) this.hostDrivers.set(d.bdf, hostDriver);
    }
  }

  readonly observer = (write: SysfsWrite): void => {
    this.writes.push(write);
    if (this.mode === 'ignore') return;
    this.apply(write.path, write.data.trim());
  };

  driverOf(bdf: string): string | null {
    return this.host.readLinkName(`/sys/bus/pci/devices/${bdf}/driver`);
  }

  slots(): string[] {
    return (this.host.read(`/sys/bus/pci/drivers/${PCIBACK}/slots`) ?? '').split('\n').filter((l) => l !== '');
  }

  pcibackLoaded(): boolean {
    return this.host.exists(`/sys/bus/pci/drivers/${PCIBACK}`);
  }

  private setSlots(slots: readonly string[]): void {
    this.host.write(`/sys/bus/pci/drivers/${PCIBACK}/slots`, slots.map((s) => `${s}\n`).join(''));
  }

  setDriver(bdf: string, driver: string | null): void {
    const link = `${this.host.deviceDir(bdf)}/driver`;
    this.host.unlink(link);
    if (driver !== null) this.host.link(link, `/sys/bus/pci/drivers/${driver}`);
    this.syncInterfaces();
  }

  /** A NIC has its interfaces exactly while a host (non-pciback) driver holds it. */
  syncInterfaces(): void {
    for (const dev of this.host.spec.devices) {
      const dir = this.host.deviceDir(dev.bdf);
      const driver = this.driverOf(dev.bdf);
      const present = driver !== null && driver !== PCIBACK;
      for (const iface of dev.net ?? []) {
        const parent = dev.netParent ? `${dir}/${dev.netParent}` : dir;
        const real = this.host.spec.legacyNetLinks ? `/sys/devices/virtual/net/${iface}` : `${parent}/net/${iface}`;
        if (present) {
          if (!this.host.exists(`${real}/operstate`)) this.host.write(`${real}/operstate`, `${this.host.spec.interfaces?.[iface]?.operstate ?? 'down'}\n`);
          if (this.host.spec.legacyNetLinks) this.host.link(`${dir}/net:${iface}`, real);
          this.host.link(`/sys/class/net/${iface}`, real);
          if (!this.host.spec.legacyNetLinks) this.host.link(`${real}/device`, parent);
          const master = this.host.spec.interfaces?.[iface]?.master;
          if (master) this.host.link(`${real}/master`, `/sys/class/net/${master}`);
        } else {
          this.host.unlink(`/sys/class/net/${iface}`);
          this.host.unlink(this.host.spec.legacyNetLinks ? `${dir}/net:${iface}` : real);
          if (this.host.spec.legacyNetLinks) this.host.unlink(real);
        }
      }
    }
  }

  /** `modprobe <pciback>`: registers pciback with its hide= list as slots; it claims hidden devices that are driverless. */
  loadPciback(hidden: readonly string[]): void {
    this.host.addPciback(hidden);
    for (const bdf of hidden) if (this.host.exists(`/sys/bus/pci/devices/${bdf}`) && this.driverOf(bdf) === null) this.setDriver(bdf, PCIBACK);
  }

  /** `modprobe -r <driver>`: its devices lose it and the driver directory goes away. */
  unloadDriver(driver: string): void {
    for (const d of this.host.spec.devices) if (this.driverOf(d.bdf) === driver) this.setDriver(d.bdf, null);
    this.host.unlink(`/sys/bus/pci/drivers/${driver}`);
  }

  /** `modprobe <driver>` (without an install line): the driver takes every driverless device it matches. */
  loadDriver(driver: string): void {
    this.host.addDriver(driver);
    for (const [bdf, hostDriver] of this.hostDrivers) if (hostDriver === driver && this.driverOf(bdf) === null) this.setDriver(bdf, driver);
  }

  private apply(path: string, bdf: string): void {
    const device = (p: string): void => {
      if (!this.host.exists(`/sys/bus/pci/devices/${p}`)) throw kernelRefuses('ENODEV', `no device ${p}`);
    };
    const unbindFrom = (driver: string | null): void => {
      device(bdf);
      if (driver === null || this.driverOf(bdf) !== driver) throw kernelRefuses('ENODEV', `${bdf} is not bound to ${driver ?? 'that driver'}`);
      this.setDriver(bdf, null);
    };
    let m: RegExpExecArray | null;
    if ((m = /^\/sys\/bus\/pci\/devices\/([^/]+)\/driver\/unbind$/.exec(path))) {
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
      // pciback's probe accepts only addresses in its slots; other drivers match by id.
      if (driver === PCIBACK ? !this.slots().includes(bdf) : this.hostDrivers.get(bdf) !== driver) throw kernelRefuses('ENODEV', `${driver} does not match ${bdf}`);
      this.setDriver(bdf, driver);
    } else if (path === '/sys/bus/pci/drivers_probe') {
      device(bdf);
      if (this.driverOf(bdf) !== null) return;
      const hostDriver = this.hostDrivers.get(bdf);
      if (this.pcibackLoaded() && this.slots().includes(bdf)) this.setDriver(bdf, PCIBACK);
      else if (hostDriver && this.host.exists(`/sys/bus/pci/drivers/${hostDriver}`)) this.setDriver(bdf, hostDriver);
    } else {
      throw new Error(`FakeKernel: no model for a write to ${path}`);
    }
  }
}

/** Builds a fixture host tree in a temp dir; call `cleanup()` when done. */
export function buildFixtureHost(spec: FixtureHostSpec): FixtureHost {
  return new FixtureHost(spec);
}
