import type { DriverName, GuestName } from '../../schemas/ids.js';
import { type HostCapability, type Hypervisor, STUB_DRIVER } from '../../schemas/inventory.js';
import type { PciAddress } from '../../schemas/pci-address.js';
import { ErrorCode, PtcError } from '../../schemas/errors.js';
import type { GuestConfigDevices, HideConfig, HostBackend, HostScan, StubState } from '../backend.js';
import type { HostFiles } from '../host-files.js';
import type { ModprobeDialect } from '../modprobe-conf.js';
import type { CommandRunner } from './command-runner.js';
import { type HostRelease, readHostRelease } from './host-release.js';
import { HostTree, type SysfsWriteObserver } from './host-tree.js';
import { type GuestDisk, guestPhyDisks, readNetworkUse, readOpenGpuNodes, readStorageUse } from './host-usage.js';
import { LinuxKernelModules } from './kernel-modules.js';
import { LinuxPciDrivers } from './pci-drivers.js';
import { PciNames } from './pci-names.js';
import { PCIBACK_DIR, PciSysfs } from './pci-sysfs.js';
import { blockDisksOf, guestOsOf, HOSTDEV_XML_DIR, hostdevsOf, hostdevXml, interfacesOf, LibvirtToolstack } from './libvirt-toolstack.js';
import { VFIO_PCI, VFIO_PCI_DIR, VfioPciDrivers } from './vfio-drivers.js';
import { DRIVERCTL_DIR, VFIO_HIDE_CONFIG } from '../vfio-rules.js';
import { LinuxPower } from './power.js';
import { SysfsScanner } from './sysfs-scan.js';
import {
  guestConfigCandidates,
  guestConfigDevices,
  guestNameFromFile,
  guestNameOf,
  parseGuestConfig,
  renderGuestConfig,
  withGuestDevice,
  withoutGuestDevice,
  XEN_AUTO_DIR,
  XEN_CONFIG_DIR,
} from '../xen-guest-config.js';
import { guestOsFromConfig, guestVirtFromConfig, isGuestName, type ToolstackName, XenToolstack } from './xen-toolstack.js';

export interface LinuxHostOptions {
  /** `/` on a real host; a fixture tree in tests. Every /sys, /proc, /etc, /dev and /lib path is read under it. */
  root: string;
  /** Runs every program the backend needs (ip, modprobe, xl/xm, reboot). */
  runner: CommandRunner;
  /** The Xen toolstack; `auto` (the default): xm on RHEL 5, else xl, unless only the other one is installed. */
  toolstack?: ToolstackName | 'auto';
  /** Interfaces the agent's own NATS connection uses: always in use. */
  uplinkInterfaces?: string[];
  /** Called after each sysfs control write; tests put a fake kernel here. */
  onSysfsWrite?: SysfsWriteObserver;
  /** How long a sysfs control write may block before it fails (default SYSFS_WRITE_TIMEOUT_MS). */
  sysfsWriteTimeoutMs?: number;
  /** Sysfs writes in a supervised child process; default: on a real host (no `onSysfsWrite`). */
  isolateSysfsWrites?: boolean;
}

const TOOL_DIRS = ['/usr/sbin', '/sbin', '/usr/bin', '/bin', '/usr/local/sbin'];
/** Where libvirt keeps the definitions of qemu:///system domains. */
const LIBVIRT_CONFIG_DIR = '/etc/libvirt/qemu';

/** What the toolstack says about guests that the device scan needs. */
interface GuestFacts {
  guests: HostScan['guests'];
  /** Xen domain ids: a `vifD.N` belongs to domain D. */
  domains: Map<number, string>;
  /** libvirt: the guest each `vnetN` belongs to. */
  owners: Map<string, string>;
  disks: GuestDisk[];
}

/**
 * The host backend for a real Xen dom0: sysfs and procfs under a root prefix, modprobe and the
 * xl/xm toolstack through one CommandRunner, /etc files through HostFiles. Like the simulator it
 * does one effect per method; safety rules and verification stay in the agent's handlers.
 */
export class LinuxHost implements HostBackend {
  readonly files: HostFiles;
  private readonly tree: HostTree;
  private readonly runner: CommandRunner;
  private readonly uplinks: readonly string[];
  private readonly pci: PciSysfs;
  private readonly modules: LinuxKernelModules;
  private readonly drivers: LinuxPciDrivers;
  private readonly vfio: VfioPciDrivers;
  private readonly libvirt: LibvirtToolstack;
  private readonly power: LinuxPower;
  private readonly scanner: SysfsScanner;
  private readonly toolstackChoice: ToolstackName | 'auto';
  private releaseCache: HostRelease | null = null;
  private toolstackCache: XenToolstack | null = null;
  private xenIommuCache: boolean | null = null;
  private platformCache: Hypervisor | null = null;
  /**
   * libvirt definitions read by the last scan: the inventory asks for each guest's config devices right
   * after the scan, and a second `virsh dumpxml --inactive` per guest per heartbeat is pure waste.
   * Dropped at every scan and by ptctl's own config edits.
   */
  private readonly kvmConfigs = new Map<string, Awaited<ReturnType<LibvirtToolstack['configXml']>>>();

  constructor(options: LinuxHostOptions) {
    this.tree = new HostTree(options.root, options.onSysfsWrite, options.sysfsWriteTimeoutMs, options.isolateSysfsWrites ?? options.onSysfsWrite === undefined);
    this.files = this.tree.files;
    this.runner = options.runner;
    this.uplinks = [...(options.uplinkInterfaces ?? [])];
    this.toolstackChoice = options.toolstack ?? 'auto';
    this.pci = new PciSysfs(this.tree);
    this.modules = new LinuxKernelModules(this.tree, this.runner, this.pci, () => this.release());
    this.drivers = new LinuxPciDrivers(this.tree, this.runner, this.pci, this.modules);
    this.vfio = new VfioPciDrivers(this.tree, this.runner, this.pci, this.modules.modprobe().dialect.modprobe);
    this.libvirt = new LibvirtToolstack(this.runner);
    this.power = new LinuxPower(this.tree, this.runner);
    this.scanner = new SysfsScanner(this.tree, this.pci, new PciNames(this.tree));
  }

  /** The host's release, read once: it does not change while the agent runs. Unknown 0 when no release file says. */
  private release(): HostRelease {
    this.releaseCache ??= readHostRelease(this.tree);
    return this.releaseCache;
  }

  /**
   * 'xen' in a Xen domain (/proc/xen, or /sys/hypervisor/type says xen), 'kvm' otherwise: a host
   * whose guests run under QEMU/KVM and libvirt. Read once; it cannot change while the agent runs.
   */
  get platform(): Hypervisor {
    this.platformCache ??= this.tree.existsSync('/proc/xen') || this.tree.textSync('/sys/hypervisor/type')?.trim() === 'xen' ? 'xen' : 'kvm';
    return this.platformCache;
  }

  private installed(tool: string): boolean {
    return TOOL_DIRS.some((d) => this.tree.existsSync(`${d}/${tool}`));
  }

  /** The toolstack this host answers to, chosen once. */
  get toolstack(): XenToolstack {
    if (this.toolstackCache) return this.toolstackCache;
    let name: ToolstackName;
    if (this.toolstackChoice !== 'auto') {
      name = this.toolstackChoice;
    } else {
      const preferred: ToolstackName = this.release().rhel5 ? 'xm' : 'xl';
      const other: ToolstackName = preferred === 'xm' ? 'xl' : 'xm';
      name = !this.installed(preferred) && this.installed(other) ? other : preferred;
    }
    this.toolstackCache = new XenToolstack(this.runner, name);
    return this.toolstackCache;
  }

  // --- HostScanner ---------------------------------------------------------------------------

  /**
   * One full rescan. Devices: every PCI function sysfs lists (none → []). Guests: on Xen the domains
   * except Domain-0 plus guests defined by /etc/xen/<name> that are not running; on KVM libvirt's
   * domains ([] without virsh). Throws COMMAND_FAILED when the toolstack cannot list guests or a
   * running guest's devices: an inventory that silently lost them would let a device be handed out twice.
   */
  async scan(): Promise<HostScan> {
    const hypervisor = this.platform;
    const xen = hypervisor === 'xen';
    // Guests first: their interfaces (vifD.N, vnetN) and block disks make devices in use.
    const { guests, domains, owners, disks } = xen ? await this.xenGuests() : await this.kvmGuests();
    const net = await readNetworkUse(this.tree, this.runner, this.uplinks, domains, owners);
    const storage = await readStorageUse(this.tree, disks, this.runner);
    let slots: Set<PciAddress>;
    let assignable: Set<PciAddress>;
    if (xen) {
      slots = new Set(await this.pci.pcibackSlots());
      // An unreadable assignable list counts as empty: verification then fails rather than passes.
      assignable = new Set((await this.toolstack.assignable()) ?? []);
    } else {
      const states = await this.vfio.states(await this.pci.devices());
      slots = states.overridden;
      assignable = states.assignable;
    }
    const devices = await this.scanner.devices({ net, storage: storage.byController, unmappedStorage: storage.unmapped, slots, assignable, xen, stubDriver: STUB_DRIVER[hypervisor], openGpuNodes: await readOpenGpuNodes(this.tree) });
    return {
      os: this.release().os,
      hypervisor,
      iommu: await this.iommu(hypervisor),
      capabilities: await this.capabilities(hypervisor),
      devices,
      guests,
    };
  }

  /**
   * `scan`'s own sources for one device: listed on the bus with readable ids (else null), its `driver`
   * link; on Xen pciback's `slots` and the toolstack's assignable list, on KVM its override and its
   * group's viability (vfio states of this device alone: they are per device).
   */
  async stubState(bdf: PciAddress): Promise<StubState | null> {
    const hypervisor = this.platform;
    if (!(await this.pci.devices()).includes(bdf) || (await this.scanner.ids(bdf)) === null) return null;
    const driver = await this.pci.driverOf(bdf);
    if (hypervisor === 'xen') {
      const inPcibackSlots = (await this.pci.pcibackSlots()).includes(bdf);
      // An unreadable assignable list counts as empty, as in the scan: verification then fails rather than passes.
      const assignable = ((await this.toolstack.assignable()) ?? []).includes(bdf);
      return { hypervisor, driver, inPcibackSlots, assignable };
    }
    const states = await this.vfio.states([bdf]);
    return { hypervisor, driver, inPcibackSlots: states.overridden.has(bdf), assignable: states.assignable.has(bdf) };
  }

  /**
   * Xen: `virt_caps` of `xl info` / `xm info` has hvm_directio or pv_directio (false when the line
   * or the command is missing; a definite answer is kept, it cannot change before a reboot).
   * Elsewhere: /sys/kernel/iommu_groups is not empty.
   */
  private async iommu(hypervisor: Hypervisor): Promise<boolean> {
    if (hypervisor !== 'xen') return (await this.tree.list('/sys/kernel/iommu_groups')).length > 0;
    if (this.xenIommuCache !== null) return this.xenIommuCache;
    const caps = await this.toolstack.virtCaps();
    if (caps === null) return false;
    this.xenIommuCache = caps.some((c) => c.includes('directio'));
    return this.xenIommuCache;
  }

  /**
   * On Xen: reboot and hotplug always; dynamic-bind and reload when pciback can take a device at run
   * time: loaded with a `new_slot` file, or not loaded yet and its module exists (it reads hide= as
   * it loads). An old pciback loaded at boot without `new_slot` takes devices only at the next boot.
   * On KVM: dynamic-bind and reboot (the vfio-pci override rules apply at boot) when vfio-pci is
   * there or can be loaded, hotplug when virsh is installed; never reload: a device moves to vfio-pci
   * by its own override, not by its driver's reload.
   */
  private async capabilities(hypervisor: Hypervisor): Promise<HostCapability[]> {
    if (hypervisor !== 'xen') {
      const vfio = (await this.tree.exists(VFIO_PCI_DIR)) || (await this.modules.moduleAvailable(VFIO_PCI));
      return [...(vfio ? (['dynamic-bind', 'reboot'] as const) : []), ...(this.installed('virsh') ? (['hotplug'] as const) : [])];
    }
    const loaded = await this.pci.pcibackLoaded();
    const runtime = loaded ? await this.tree.exists(`${PCIBACK_DIR}/new_slot`) : await this.modules.moduleAvailable(this.modprobe().dialect.module);
    return [...(runtime ? (['dynamic-bind', 'reload'] as const) : []), 'reboot', 'hotplug'];
  }

  /** Xen's guests, the running domains' ids (a `vifD.N` interface belongs to domain D) and the guests' `phy:` disks. */
  private async xenGuests(): Promise<GuestFacts> {
    const toolstack = this.toolstack;
    const out: HostScan['guests'] = [];
    // A domain whose name the schema cannot carry is one ptctl cannot address either.
    const domains = (await toolstack.domains()).filter((d) => isGuestName(d.name));
    const ids = new Map(domains.flatMap((d) => (d.id === null ? [] : [[d.id, d.name] as const])));
    for (const d of domains) {
      const { name } = d;
      const config = await this.files.read(this.guestConfigPath(name));
      const live = d.id !== null && d.state !== 'stopped';
      let liveDevices: PciAddress[] = [];
      let state = d.state;
      if (live) {
        try {
          liveDevices = await toolstack.guestDevices(name);
        } catch (err) {
          // A guest that powered off between `xl list` and `xl pci-list` (seen on the real Xen right after
          // a hot unplug) is stopped, not an error; one that still runs and cannot be listed is.
          if ((await toolstack.domains()).some((still) => still.name === name && still.id !== null)) throw err;
          state = 'stopped';
        }
      }
      out.push({ name, virt: guestVirtFromConfig(config), os: guestOsFromConfig(config), state, acpiphp: true, liveDevices });
    }
    const seen = new Set<string>(domains.map((d) => d.name));
    for (const dir of [XEN_CONFIG_DIR, XEN_AUTO_DIR]) {
      for (const file of await this.tree.list(dir)) {
        const entry = guestNameFromFile(file);
        if (!isGuestName(entry) || seen.has(entry)) continue;
        const config = await this.files.read(`${dir}/${file}`).catch((err: NodeJS.ErrnoException) => {
          if (err.code === 'EISDIR') return null;
          throw err;
        });
        // Only a config whose name = matches its file name is a guest ptctl can address (examples, xl.conf and scripts are not).
        if (config === null || guestNameOf(config) !== entry) continue;
        seen.add(entry);
        out.push({ name: entry, virt: guestVirtFromConfig(config), os: guestOsFromConfig(config), state: 'stopped', acpiphp: true, liveDevices: [] });
      }
    }
    const disks: GuestDisk[] = [];
    for (const g of out) disks.push(...guestPhyDisks(g.name, (await this.files.read(this.guestConfigPath(g.name))) ?? ''));
    // What the running guests' backends hold now: a disk attached live is in no config file.
    for (const g of out) {
      if (g.state === 'stopped') continue;
      const live = await toolstack.blockDevices(g.name);
      // Unreadable: a path no controller has, so every storage controller counts as in use (fail closed).
      if (live === null) disks.push({ guest: g.name, path: `(${toolstack.name} block-list ${g.name} could not be read)` });
      else for (const path of live) if (!disks.some((d) => d.guest === g.name && d.path === path)) disks.push({ guest: g.name, path });
    }
    return { guests: out, domains: ids, owners: new Map(), disks };
  }

  /**
   * libvirt's domains: live devices and interfaces from the running XML, OS and block disks from the
   * definition. A RHEL 5 guest's acpiphp is asked through its QEMU guest agent; one that does not
   * answer counts as without it (rule 7: attach cold and say the guest must reboot).
   */
  private async kvmGuests(): Promise<GuestFacts> {
    const facts: GuestFacts = { guests: [], domains: new Map(), owners: new Map(), disks: [] };
    this.kvmConfigs.clear();
    if (!this.installed('virsh')) return facts;
    for (const d of (await this.libvirt.domains()).filter((x) => isGuestName(x.name))) {
      const name = d.name;
      let state = d.state;
      let live: string | null = null;
      if (state !== 'stopped') {
        try {
          live = await this.libvirt.liveXml(name);
        } catch (err) {
          if ((await this.libvirt.domains()).some((still) => still.name === name && still.state !== 'stopped')) throw err;
          state = 'stopped';
        }
      }
      const config = await this.libvirt.configXml(name);
      this.kvmConfigs.set(name, config);
      const xml = (config !== null && 'xml' in config ? config.xml : null) ?? live ?? '';
      const os = guestOsOf(xml);
      const rhel5 = os.name === 'rhel' && os.version.split('.')[0] === '5';
      const acpiphp = !rhel5 || (state === 'running' && (await this.libvirt.acpiphpLoaded(name)) === true);
      for (const iface of live === null ? [] : interfacesOf(live)) facts.owners.set(iface, name);
      for (const path of blockDisksOf(live ?? xml)) facts.disks.push({ guest: name, path });
      facts.guests.push({ name, virt: 'kvm', os, state, acpiphp, liveDevices: live === null ? [] : hostdevsOf(live) });
    }
    return facts;
  }

  // --- KernelModules -------------------------------------------------------------------------

  /** RHEL 5: /etc/modprobe.conf with `pciback`; every other host: /etc/modprobe.d/ptctl-pciback.conf with `xen-pciback`. */
  modprobe(): { file: string; dialect: ModprobeDialect } {
    return this.modules.modprobe();
  }

  /**
   * `modprobe -r <driver>`, then its hidden devices to pciback (new_slot when not in slots, and bind;
   * or loading pciback when it is not loaded), then `modprobe <driver>`, which runs even when moving a
   * device failed. Throws COMMAND_FAILED with the command and stderr's last line.
   */
  async reloadDriver(driver: DriverName): Promise<void> {
    if (this.platform !== 'xen') throw new PtcError(ErrorCode.STRATEGY_UNSUPPORTED, `a KVM host moves a device to vfio-pci by its own driver_override, not by reloading ${driver}; use the dynamic or reboot strategy`);
    await this.modules.reloadDriver(driver);
  }

  /** Xen: pciback's hide= in the modprobe file; KVM: ptctl's vfio-pci override rules. */
  hideConfig(): HideConfig {
    return this.platform === 'xen' ? this.modules.hideConfig() : VFIO_HIDE_CONFIG;
  }

  /**
   * Xen: /etc/modprobe.d files sorting after ptctl's (kmod hosts) and /proc/cmdline whose hide= leaves
   * `bdf` out. KVM: a driverctl override that gives `bdf` to another driver (its udev rule runs after ours).
   */
  async winningHideSources(bdf: PciAddress): Promise<{ source: string; hidden: PciAddress[]; reason?: string }[]> {
    if (this.platform === 'xen') return this.modules.winningHideSources(bdf);
    const source = `${DRIVERCTL_DIR}/pci-${bdf}`;
    const driver = (await this.tree.text(source))?.trim();
    return driver === undefined || driver === '' || driver === VFIO_PCI ? [] : [{ source, hidden: [] }];
  }

  // --- PciDrivers ----------------------------------------------------------------------------

  /**
   * Xen: `modprobe <module>` when pciback is absent, unbind from the current driver (when bound),
   * new_slot only when the address is not in slots, bind. KVM: vfio-pci through driver_override and
   * drivers_probe. Returns at once when the device is already on the stub driver; throws DEVICE_NOT_FOUND for an unknown address, COMMAND_FAILED when a command or write fails.
   */
  async bindStub(bdf: PciAddress): Promise<void> {
    await (this.platform === 'xen' ? this.drivers : this.vfio).bindStub(bdf);
  }

  /**
   * Xen: pciback/unbind, remove_slot (when pciback has it and the address is in slots), then
   * `<driver>/bind`, or `drivers_probe` when driver is null. Returns at once when the device is already
   * on that driver (for null: on any host driver). KVM: vfio-pci/unbind and a reprobe with the
   * driver named in driver_override. Throws DEVICE_NOT_FOUND for an unknown address,
   * COMMAND_FAILED when the device is on a driver other than pciback or a command or write fails.
   */
  async bindHostDriver(bdf: PciAddress, driver: DriverName | null): Promise<void> {
    await (this.platform === 'xen' ? this.drivers : this.vfio).bindHostDriver(bdf, driver);
  }

  /** KVM: the driver kmod's aliases name for the device; null on Xen, where pciback's own slots decide a reprobe. */
  async aliasedDriver(bdf: PciAddress): Promise<DriverName | null> {
    return this.platform === 'xen' ? null : this.vfio.aliasedDriver(bdf);
  }

  // --- Toolstack -----------------------------------------------------------------------------

  /**
   * Xen: the first of `/etc/xen/<guest>`, `/etc/xen/<guest>.cfg`, `/etc/xen/auto/<guest>[.cfg]` that
   * exists, with an autostart symlink followed to its file (an atomic write must replace the file, not
   * the link); `/etc/xen/<guest>` when none exists. KVM: libvirt's domain XML (edited through virsh only).
   */
  guestConfigPath(guest: GuestName): string {
    if (this.platform !== 'xen') return `${LIBVIRT_CONFIG_DIR}/${guest}.xml`;
    for (const candidate of guestConfigCandidates(guest)) {
      if (!this.tree.existsSync(candidate)) continue;
      return this.tree.realHostPathSync(candidate) ?? candidate;
    }
    return `${XEN_CONFIG_DIR}/${guest}`;
  }

  /** Xen: the config file's `pci = [...]` (fenced when unparseable); KVM: the definition's hostdevs. Null without a config. */
  async guestConfigDevices(guest: GuestName): Promise<GuestConfigDevices | null> {
    if (this.platform === 'xen') {
      const text = await this.files.read(this.guestConfigPath(guest));
      return text === null ? null : guestConfigDevices(text);
    }
    const config = this.kvmConfigs.has(guest) ? (this.kvmConfigs.get(guest) ?? null) : await this.libvirt.configXml(guest);
    if (config === null) return null;
    return 'xml' in config ? { configDevices: hostdevsOf(config.xml), configProblem: null } : { configDevices: [], configProblem: config.problem.slice(0, 500) };
  }

  async addToGuestConfig(guest: GuestName, bdf: PciAddress): Promise<boolean> {
    if (this.platform === 'xen') return this.editXenConfig(guest, (text) => renderGuestConfig(withGuestDevice(parseGuestConfig(text), bdf)));
    const held = await this.guestConfigDevices(guest);
    if (held === null) throw new PtcError(ErrorCode.GUEST_NOT_FOUND, `libvirt has no domain ${guest} defined`);
    if (held.configDevices.includes(bdf)) return false;
    this.kvmConfigs.delete(guest);
    await this.libvirt.attach(guest, await this.hostdevFile(bdf), 'config');
    return true;
  }

  async removeFromGuestConfig(guest: GuestName, bdf: PciAddress): Promise<boolean> {
    if (this.platform === 'xen') return this.editXenConfig(guest, (text) => renderGuestConfig(withoutGuestDevice(parseGuestConfig(text), bdf)));
    const held = await this.guestConfigDevices(guest);
    if (held === null || !held.configDevices.includes(bdf)) return false;
    this.kvmConfigs.delete(guest);
    await this.libvirt.detach(guest, await this.hostdevFile(bdf), bdf, 'config');
    return true;
  }

  private async editXenConfig(guest: GuestName, edit: (text: string) => string): Promise<boolean> {
    const path = this.guestConfigPath(guest);
    const before = await this.files.read(path);
    if (before === null) throw new PtcError(ErrorCode.GUEST_NOT_FOUND, `guest ${guest} has no config file ${path}`);
    const after = edit(before);
    if (after === before) return false;
    await this.files.writeAtomic(path, after);
    return true;
  }

  /** The hostdev XML for a device, written where virsh can read it; its host path. Throws COMMAND_FAILED without libvirt. */
  private async hostdevFile(bdf: PciAddress): Promise<string> {
    if (!this.installed('virsh')) throw new PtcError(ErrorCode.COMMAND_FAILED, `virsh is not installed: this KVM host has no libvirt to give ${bdf} to a guest`);
    const path = `${HOSTDEV_XML_DIR}/${bdf}.xml`;
    const xml = hostdevXml(bdf);
    if ((await this.files.read(path)) !== xml) await this.files.writeAtomic(path, xml);
    return path;
  }

  /** `xl|xm pci-attach <guest> <bdf>`, or `virsh attach-device --live`. Throws COMMAND_FAILED on a non-zero exit. */
  async hotplug(guest: GuestName, bdf: PciAddress): Promise<void> {
    if (this.platform === 'xen') await this.toolstack.attach(guest, bdf);
    else await this.libvirt.attach(guest, await this.hostdevFile(bdf), 'live');
  }

  /** `xl|xm pci-detach <guest> <bdf>`, or `virsh detach-device --live` until the guest let go. Throws COMMAND_FAILED on a non-zero exit. */
  async hotunplug(guest: GuestName, bdf: PciAddress): Promise<void> {
    if (this.platform === 'xen') await this.toolstack.detach(guest, bdf);
    else await this.libvirt.detach(guest, await this.hostdevFile(bdf), bdf, 'live');
  }

  /** Saved images live with the agent's state, one per guest. */
  private saveFile(guest: GuestName): string {
    return `/var/lib/ptctl/saved/${guest}.save`;
  }

  /** `xl|xm save` or `virsh save` of the guest to a file with the agent's state. */
  async saveGuest(guest: GuestName): Promise<void> {
    await this.files.writeAtomic(`/var/lib/ptctl/saved/.keep`, '');
    if (this.platform === 'xen') await this.toolstack.save(guest, this.saveFile(guest));
    else await this.libvirt.save(guest, this.saveFile(guest));
  }

  /** `xl|xm restore` or `virsh restore` of the image `saveGuest` wrote. */
  async restoreGuest(guest: GuestName): Promise<void> {
    if (this.platform === 'xen') await this.toolstack.restore(this.saveFile(guest));
    else await this.libvirt.restore(this.saveFile(guest));
  }

  /** `xl|xm migrate <guest> <target>`, or `virsh migrate --live` to the target's libvirt. */
  async migrateGuest(guest: GuestName, target: string): Promise<void> {
    if (this.platform === 'xen') await this.toolstack.migrate(guest, target);
    else await this.libvirt.migrate(guest, target);
  }

  // --- Power ---------------------------------------------------------------------------------

  /** /proc/sys/kernel/random/boot_id. Throws COMMAND_FAILED when it is missing. */
  async bootId(): Promise<string> {
    return this.power.bootId();
  }

  /** True until this agent started a reboot. */
  responsive(): boolean {
    return this.power.responsive();
  }

  /** Runs /sbin/reboot and returns; throws COMMAND_FAILED when it exits non-zero. */
  async reboot(): Promise<void> {
    await this.power.reboot();
  }

  /** No-op: a real reboot restarts the agent, which announces the new boot id itself. */
  onBoot(listener: () => void): void {
    this.power.onBoot(listener);
  }

  /** Stops the sysfs writer process, if one was started. */
  async close(): Promise<void> {
    this.tree.close();
  }
}
