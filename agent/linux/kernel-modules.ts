import type { DriverName } from '../../schemas/ids.js';
import type { PciAddress } from '../../schemas/pci-address.js';
import { ErrorCode, PtcError } from '../../schemas/errors.js';
import type { HideConfig } from '../backend.js';
import { effectiveHidden, KMOD_DIALECT, type ModprobeDialect, parseModprobeConf, renderModprobeConf, RHEL5_DIALECT, withHidden, withoutHidden } from '../modprobe-conf.js';
import { type CommandRunner, mustRun } from './command-runner.js';
import type { HostRelease } from './host-release.js';
import type { HostTree } from './host-tree.js';
import { basename } from 'node:path';
import { bdfsIn, PCI_DRIVERS, PCIBACK_DIR, type PciSysfs } from './pci-sysfs.js';

/** RHEL 5's module-init-tools reads this file. */
export const RHEL5_MODPROBE_FILE = '/etc/modprobe.conf';
/** Current kmod ignores /etc/modprobe.conf entirely and reads only /etc/modprobe.d/*.conf. */
export const KMOD_MODPROBE_FILE = '/etc/modprobe.d/ptctl-pciback.conf';

function normalizeModule(name: string): string {
  // kmod treats '-' and '_' in module names as the same character.
  return name.replace(/-/g, '_');
}

/** Module names listed in modules.dep or modules.builtin ("kernel/drivers/xen/xen-pciback/xen-pciback.ko: …"). */
export function modulesListed(text: string): Set<string> {
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    const path = line.split(':')[0]?.trim() ?? '';
    const m = /([^/]+)\.ko(?:\.(?:gz|xz|zst))?$/.exec(path);
    if (m?.[1]) out.add(normalizeModule(m[1]));
  }
  return out;
}

/** Kernel modules on a real host: which modprobe file counts, loading pciback, reloading a driver. */
export class LinuxKernelModules {
  private readonly available = new Map<string, boolean>();

  constructor(
    private readonly tree: HostTree,
    private readonly runner: CommandRunner,
    private readonly pci: PciSysfs,
    private readonly release: () => HostRelease,
  ) {}

  /** RHEL 5: /etc/modprobe.conf and `pciback`; every other host: ptctl's own file in /etc/modprobe.d and `xen-pciback`. */
  modprobe(): { file: string; dialect: ModprobeDialect } {
    return this.release().rhel5 ? { file: RHEL5_MODPROBE_FILE, dialect: RHEL5_DIALECT } : { file: KMOD_MODPROBE_FILE, dialect: KMOD_DIALECT };
  }

  /** pciback's hide= list in the modprobe file this host reads, as ptctl edits it. */
  hideConfig(): HideConfig {
    const { file, dialect } = this.modprobe();
    return {
      file,
      hidden: (text) => effectiveHidden(parseModprobeConf(text, dialect)),
      withHidden: (text, bdf, driver) => renderModprobeConf(withHidden(parseModprobeConf(text, dialect), bdf, driver), dialect),
      withoutHidden: (text, bdf, stillNeeded) => renderModprobeConf(withoutHidden(parseModprobeConf(text, dialect), bdf, stillNeeded), dialect),
    };
  }

  /** Devices the modprobe file hides (ptctl's and foreign hide= lines); [] when the file does not exist. */
  async hidden(): Promise<PciAddress[]> {
    const { file, dialect } = this.modprobe();
    return effectiveHidden(parseModprobeConf((await this.tree.files.read(file)) ?? '', dialect));
  }

  /**
   * Every other source of pciback's hide= list that is read after ptctl's modprobe file, so its list
   * wins (rule 15): on kmod hosts the /etc/modprobe.d/*.conf files that sort after ptctl's (kmod reads
   * them in name order and the last value of an option wins), and on every host the kernel command
   * line (`xen-pciback.hide=`, which a built-in pciback reads and kmod applies after the files); only
   * those whose list leaves `bdf` out. [] when ptctl's file is the one that counts.
   */
  async winningHideSources(bdf: PciAddress): Promise<{ source: string; hidden: PciAddress[] }[]> {
    const { file } = this.modprobe();
    const out: { source: string; hidden: PciAddress[] }[] = [];
    const hideOf = (text: string): PciAddress[] | null => {
      let last: PciAddress[] | null = null;
      for (const line of text.split('\n')) {
        const m = /^\s*options\s+(?:xen[-_]pciback|pciback)\s+(?:.*\s)?hide=(\S+)/.exec(line);
        if (m) last = bdfsIn(m[1] ?? '');
      }
      return last;
    };
    if (file.startsWith('/etc/modprobe.d/')) {
      const mine = basename(file);
      for (const name of (await this.tree.list('/etc/modprobe.d')).filter((n) => n.endsWith('.conf') && n > mine)) {
        const hidden = hideOf((await this.tree.text(`/etc/modprobe.d/${name}`)) ?? '');
        if (hidden !== null) out.push({ source: `/etc/modprobe.d/${name}`, hidden });
      }
    }
    const cmdline = /(?:^|\s)(?:xen[-_]pciback|pciback)\.hide=(\S+)/.exec((await this.tree.text('/proc/cmdline')) ?? '');
    if (cmdline) out.push({ source: '/proc/cmdline', hidden: bdfsIn(cmdline[1] ?? '') });
    return out.filter((s) => !s.hidden.includes(bdf));
  }

  /**
   * Whether `modprobe <module>` can find the module for the running kernel (listed in its modules.dep
   * or modules.builtin). False when the kernel release or those files cannot be read. Cached: the
   * kernel does not change while the agent runs.
   */
  async moduleAvailable(module: string): Promise<boolean> {
    const cached = this.available.get(module);
    if (cached !== undefined) return cached;
    const release = (await this.tree.text('/proc/sys/kernel/osrelease'))?.trim();
    if (!release || release.includes('/')) return false;
    let found = false;
    for (const file of ['modules.dep', 'modules.builtin']) {
      const text = await this.tree.text(`/lib/modules/${release}/${file}`);
      if (text !== null && modulesListed(text).has(normalizeModule(module))) found = true;
    }
    this.available.set(module, found);
    return found;
  }

  /** Loads pciback when its driver directory is absent. Throws COMMAND_FAILED when modprobe fails or the driver still does not appear. */
  async ensurePciback(): Promise<void> {
    if (await this.pci.pcibackLoaded()) return;
    const { dialect } = this.modprobe();
    await mustRun(this.runner, [dialect.modprobe, dialect.module]);
    if (!(await this.pci.pcibackLoaded())) {
      throw new PtcError(ErrorCode.COMMAND_FAILED, `${dialect.modprobe} ${dialect.module} succeeded but ${PCIBACK_DIR} does not exist; is this a Xen dom0 kernel?`);
    }
  }

  /** The module behind a driver (its sysfs `module` link: driver `virtio-pci` is module `virtio_pci`); the driver's own name when there is no link. */
  private async moduleOf(driver: DriverName): Promise<string> {
    return (await this.tree.linkName(`${PCI_DRIVERS}/${driver}/module`)) ?? driver;
  }

  /**
   * `modprobe -r` then `modprobe` of a driver. Its devices that the modprobe file hides go to
   * pciback on the way: when pciback is loaded, through `new_slot` (only for addresses not yet in
   * `slots`) and `bind`; when it is not, by loading it between the two (it reads hide= as it loads).
   * The driver is loaded again even when moving a device failed, so the host never keeps its other
   * devices driverless. Throws COMMAND_FAILED with the command and stderr's last line.
   */
  async reloadDriver(driver: DriverName): Promise<void> {
    const { dialect } = this.modprobe();
    const module = await this.moduleOf(driver);
    const hidden = await this.hidden();
    const moving = (await this.pci.boundTo(driver)).filter((b) => hidden.includes(b));
    await mustRun(this.runner, [dialect.modprobe, '-r', module]);
    let failure: { err: unknown } | null = null;
    try {
      if (moving.length > 0) {
        if (await this.pci.pcibackLoaded()) {
          const slots = await this.pci.pcibackSlots();
          for (const bdf of moving) {
            // Rule 13: the kernel does not take an address twice.
            if (!slots.includes(bdf)) await this.tree.writeControl(`${PCIBACK_DIR}/new_slot`, bdf);
            // new_slot only adds the address to pciback's list; nothing probes the driverless device
            // again until `modprobe <driver>` registers the driver, which would take it straight back.
            await this.tree.writeControl(`${PCIBACK_DIR}/bind`, bdf);
          }
        } else {
          // The install line would load pciback inside `modprobe <driver>`, but busybox modprobe
          // ignores install lines: loading it here works with every modprobe.
          await mustRun(this.runner, [dialect.modprobe, dialect.module]);
        }
      }
    } catch (err) {
      failure = { err };
    }
    await mustRun(this.runner, [dialect.modprobe, module]);
    if (failure) throw failure.err;
  }
}
