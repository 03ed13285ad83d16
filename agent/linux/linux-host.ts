import type { DriverName, GuestName } from '../../schemas/ids.js';
import type { HostCapability, Hypervisor } from '../../schemas/inventory.js';
import type { PciAddress } from '../../schemas/pci-address.js';
import { ErrorCode, PtcError } from '../../schemas/errors.js';
import type { HostBackend, HostScan } from '../backend.js';
import type { HostFiles } from '../host-files.js';
import type { ModprobeDialect } from '../modprobe-conf.js';
import type { CommandRunner } from './command-runner.js';
import { type HostRelease, readHostRelease, readHypervisor } from './host-release.js';
import { HostTree, type SysfsWriteObserver } from './host-tree.js';
import { type GuestDisk, guestPhyDisks, readNetworkUse, readStorageUse } from './host-usage.js';
import { LinuxKernelModules } from './kernel-modules.js';
import { LinuxPciDrivers } from './pci-drivers.js';
import { PciNames } from './pci-names.js';
import { PCIBACK_DIR, PciSysfs } from './pci-sysfs.js';
import { LinuxPower } from './power.js';
import { SysfsScanner } from './sysfs-scan.js';
import { guestConfigCandidates, guestNameFromFile, guestNameOf, XEN_AUTO_DIR, XEN_CONFIG_DIR } from '../xen-guest-config.js';
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
}

const TOOL_DIRS = ['/usr/sbin', '/sbin', '/usr/bin', '/bin', '/usr/local/sbin'];

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
  private readonly power: LinuxPower;
  private readonly scanner: SysfsScanner;
  private readonly toolstackChoice: ToolstackName | 'auto';
  private releaseCache: HostRelease | null = null;
  private toolstackCache: XenToolstack | null = null;
  private xenIommuCache: boolean | null = null;

  constructor(options: LinuxHostOptions) {
    this.tree = new HostTree(options.root, options.onSysfsWrite, options.sysfsWriteTimeoutMs);
    this.files = this.tree.files;
    this.runner = options.runner;
    this.uplinks = [...(options.uplinkInterfaces ?? [])];
    this.toolstackChoice = options.toolstack ?? 'auto';
    this.pci = new PciSysfs(this.tree);
    this.modules = new LinuxKernelModules(this.tree, this.runner, this.pci, () => this.release());
    this.drivers = new LinuxPciDrivers(this.tree, this.runner, this.pci, this.modules);
    this.power = new LinuxPower(this.tree, this.runner);
    this.scanner = new SysfsScanner(this.tree, this.pci, new PciNames(this.tree));
  }

  /** The host's release, read once: it does not change while the agent runs. Unknown 0 when no release file says. */
  private release(): HostRelease {
    this.releaseCache ??= readHostRelease(this.tree);
    return this.releaseCache;
  }

  /** The toolstack this host answers to, chosen once. */
  get toolstack(): XenToolstack {
    if (this.toolstackCache) return this.toolstackCache;
    let name: ToolstackName;
    if (this.toolstackChoice !== 'auto') {
      name = this.toolstackChoice;
    } else {
      const installed = (tool: string): boolean => TOOL_DIRS.some((d) => this.tree.existsSync(`${d}/${tool}`));
      const preferred: ToolstackName = this.release().rhel5 ? 'xm' : 'xl';
      const other: ToolstackName = preferred === 'xm' ? 'xl' : 'xm';
      name = !installed(preferred) && installed(other) ? other : preferred;
    }
    this.toolstackCache = new XenToolstack(this.runner, name);
    return this.toolstackCache;
  }

  // --- HostScanner ---------------------------------------------------------------------------

  /**
   * One full rescan. Devices: every PCI function sysfs lists (none → []). Guests: Xen domains except
   * Domain-0, plus guests defined by /etc/xen/<name> that are not running ([] on a non-Xen host).
   * Throws COMMAND_FAILED when the toolstack cannot list guests or a running guest's devices:
   * an inventory that silently lost them would let a device be handed out twice.
   */
  async scan(): Promise<HostScan> {
    const hypervisor = await readHypervisor(this.tree);
    const xen = hypervisor === 'xen';
    // Guests first: their interfaces (vifD.N) and phy: disks make devices in use.
    const { guests, domains } = xen ? await this.guests() : { guests: [], domains: new Map<number, string>() };
    const guestDisks: GuestDisk[] = [];
    for (const g of guests) guestDisks.push(...guestPhyDisks(g.name, (await this.files.read(this.guestConfigPath(g.name))) ?? ''));
    const net = await readNetworkUse(this.tree, this.runner, this.uplinks, domains);
    const storage = await readStorageUse(this.tree, guestDisks);
    const slots = new Set(await this.pci.pcibackSlots());
    // An unreadable assignable list counts as empty: verification then fails rather than passes.
    const assignable = new Set(xen ? ((await this.toolstack.assignable()) ?? []) : []);
    const devices = await this.scanner.devices({ net, storage: storage.byController, unmappedStorage: storage.unmapped, slots, assignable, xen });
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
   * [] elsewhere: this backend binds pciback only.
   */
  private async capabilities(hypervisor: Hypervisor): Promise<HostCapability[]> {
    if (hypervisor !== 'xen') return [];
    const loaded = await this.pci.pcibackLoaded();
    const runtime = loaded ? await this.tree.exists(`${PCIBACK_DIR}/new_slot`) : await this.modules.moduleAvailable(this.modprobe().dialect.module);
    return [...(runtime ? (['dynamic-bind', 'reload'] as const) : []), 'reboot', 'hotplug'];
  }

  /** The guests, and the running domains' ids (a `vifD.N` interface belongs to domain D). */
  private async guests(): Promise<{ guests: HostScan['guests']; domains: Map<number, string> }> {
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
    return { guests: out, domains: ids };
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
    await this.modules.reloadDriver(driver);
  }

  /** /etc/modprobe.d files sorting after ptctl's (kmod hosts) and /proc/cmdline, when they set hide=. */
  async winningHideSources(): Promise<{ source: string; hidden: PciAddress[] }[]> {
    return this.modules.winningHideSources();
  }

  // --- PciDrivers ----------------------------------------------------------------------------

  /**
   * `modprobe <module>` when pciback is absent, unbind from the current driver (when bound), new_slot
   * only when the address is not in slots, bind. Returns at once when the device is already on
   * pciback; throws DEVICE_NOT_FOUND for an unknown address, COMMAND_FAILED when a command or write fails.
   */
  async bindPciback(bdf: PciAddress): Promise<void> {
    await this.drivers.bindPciback(bdf);
  }

  /**
   * pciback/unbind, remove_slot (when pciback has it and the address is in slots), then
   * `<driver>/bind`, or `drivers_probe` when driver is null. Returns at once when the device is already
   * on that driver (for null: on any host driver); throws DEVICE_NOT_FOUND for an unknown address,
   * COMMAND_FAILED when the device is on a driver other than pciback or a command or write fails.
   */
  async bindHostDriver(bdf: PciAddress, driver: DriverName | null): Promise<void> {
    await this.drivers.bindHostDriver(bdf, driver);
  }

  // --- Toolstack -----------------------------------------------------------------------------

  /**
   * The first of `/etc/xen/<guest>`, `/etc/xen/<guest>.cfg`, `/etc/xen/auto/<guest>[.cfg]` that exists,
   * with an autostart symlink followed to its file (an atomic write must replace the file, not the
   * link); `/etc/xen/<guest>` when none exists (callers read it through `files`, which answers null).
   */
  guestConfigPath(guest: GuestName): string {
    for (const candidate of guestConfigCandidates(guest)) {
      if (!this.tree.existsSync(candidate)) continue;
      return this.tree.realHostPathSync(candidate) ?? candidate;
    }
    return `${XEN_CONFIG_DIR}/${guest}`;
  }

  private async requireXen(verb: string): Promise<void> {
    if ((await readHypervisor(this.tree)) !== 'xen') throw new PtcError(ErrorCode.COMMAND_FAILED, `cannot ${verb}: this host is not running under Xen (no /proc/xen)`);
  }

  /** `xl|xm pci-attach <guest> <bdf>`. Throws COMMAND_FAILED on a non-zero exit or a non-Xen host. */
  async hotplug(guest: GuestName, bdf: PciAddress): Promise<void> {
    await this.requireXen(`hotplug ${bdf} into ${guest}`);
    await this.toolstack.attach(guest, bdf);
  }

  /** `xl|xm pci-detach <guest> <bdf>`. Throws COMMAND_FAILED on a non-zero exit or a non-Xen host. */
  async hotunplug(guest: GuestName, bdf: PciAddress): Promise<void> {
    await this.requireXen(`hotunplug ${bdf} from ${guest}`);
    await this.toolstack.detach(guest, bdf);
  }

  /** Saved images live with the agent's state, one per guest. */
  private saveFile(guest: GuestName): string {
    return `/var/lib/ptctl/saved/${guest}.save`;
  }

  /** `xl|xm save <guest> <file>`. Throws COMMAND_FAILED on a non-zero exit or a non-Xen host. */
  async saveGuest(guest: GuestName): Promise<void> {
    await this.requireXen(`save ${guest}`);
    await this.files.writeAtomic(`/var/lib/ptctl/saved/.keep`, '');
    await this.toolstack.save(guest, this.saveFile(guest));
  }

  /** `xl|xm restore <file>` of the image `saveGuest` wrote. */
  async restoreGuest(guest: GuestName): Promise<void> {
    await this.requireXen(`restore ${guest}`);
    await this.toolstack.restore(this.saveFile(guest));
  }

  /** `xl|xm migrate <guest> <target>`. */
  async migrateGuest(guest: GuestName, target: string): Promise<void> {
    await this.requireXen(`migrate ${guest}`);
    await this.toolstack.migrate(guest, target);
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

  /** No-op: the backend holds no open handles or timers. */
  async close(): Promise<void> {}
}
