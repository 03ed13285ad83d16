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
/**
 * Current kmod ignores /etc/modprobe.conf entirely and reads only /etc/modprobe.d/*.conf. The name
 * does not sort last (a `zz-local.conf` with its own hide= is read after it and wins): ptctl keeps it,
 * because hosts already hide devices through it and a rename would have to move their lists, and
 * instead refuses a hide while a later file sets hide= without the device (winningHideSources).
 */
export const KMOD_MODPROBE_FILE = '/etc/modprobe.d/ptctl-pciback.conf';

/** A source of pciback's hide= list that wins over ptctl's file; `reason` is the whole refusal sentence when the usual one does not fit. */
export interface HideSource {
  source: string;
  hidden: PciAddress[];
  reason?: string;
}

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
  async winningHideSources(bdf: PciAddress): Promise<HideSource[]> {
    const { file, dialect } = this.modprobe();
    const cmdline = /(?:^|\s)(?:xen[-_]pciback|pciback)\.hide=(\S+)/.exec((await this.tree.text('/proc/cmdline')) ?? '');
    const cmdlineHidden = cmdline ? bdfsIn(cmdline[1] ?? '') : [];
    // A built-in pciback never sees modprobe.d: its parameters come from the kernel command line only.
    if ((await this.builtIn(dialect.module)) && !cmdlineHidden.includes(bdf)) {
      return [
        {
          source: '/proc/cmdline',
          hidden: cmdlineHidden,
          reason: `${dialect.module} is built into this kernel (modules.builtin), so it ignores ${file} and only xen-pciback.hide= on the kernel command line hides devices; add ${bdf} to xen-pciback.hide= in the boot loader's command line (now: ${cmdlineHidden.join(', ') || 'none'}) and reboot`,
        },
      ];
    }
    const early = await this.initramfsSource(dialect.module, file, bdf);
    if (early) return [early];
    const out: HideSource[] = [];
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
    if (cmdline) out.push({ source: '/proc/cmdline', hidden: cmdlineHidden });
    return out.filter((s) => !s.hidden.includes(bdf));
  }

  /** The running kernel's release; null when /proc does not say. */
  private async kernelRelease(): Promise<string | null> {
    const release = (await this.tree.text('/proc/sys/kernel/osrelease'))?.trim();
    return release && !release.includes('/') ? release : null;
  }

  /** Whether the module is compiled into the running kernel: in modules.builtin and not in modules.dep. */
  private async builtIn(module: string): Promise<boolean> {
    const release = await this.kernelRelease();
    if (release === null) return false;
    const builtin = await this.tree.text(`/lib/modules/${release}/modules.builtin`);
    if (builtin === null || !modulesListed(builtin).has(normalizeModule(module))) return false;
    return !modulesListed((await this.tree.text(`/lib/modules/${release}/modules.dep`)) ?? '').has(normalizeModule(module));
  }

  /**
   * pciback loaded from the initramfs (named in initramfs-tools' modules file or in a dracut
   * add_drivers/force_drivers) reads the copy of /etc/modprobe.d the image was built with, so an
   * edit of ptctl's file does nothing at the next boot until the image is rebuilt. The safe answer is
   * to refuse before writing: a hide that "succeeds" and is lost at boot is the failure rule 15 is
   * about, and a hide line written without the image would surface at some later rebuild (a kernel
   * update) and take the device from the host unannounced. The refusal lifts once ptctl's file lists
   * the device and the image is newer than the file (the operator added it and rebuilt), or when
   * pciback no longer loads early. Null when pciback does not load from the initramfs.
   */
  private async initramfsSource(module: string, file: string, bdf: PciAddress): Promise<HideSource | null> {
    const named = (word: string): boolean => normalizeModule(word) === normalizeModule(module) || normalizeModule(word) === 'pciback';
    let source: string | null = null;
    let rebuild = '';
    const tools = '/etc/initramfs-tools/modules';
    if ((await this.tree.text(tools))?.split('\n').some((l) => named(l.replace(/#.*/, '').trim().split(/\s+/)[0] ?? ''))) {
      source = tools;
      rebuild = 'update-initramfs -u';
    }
    for (const name of (await this.tree.list('/etc/dracut.conf.d')).filter((n) => n.endsWith('.conf'))) {
      const text = (await this.tree.text(`/etc/dracut.conf.d/${name}`)) ?? '';
      const drivers = [...text.matchAll(/^\s*(?:add_drivers|force_drivers)\+?=\s*["']([^"']*)["']/gm)].flatMap((m) => (m[1] ?? '').split(/\s+/));
      if (source === null && drivers.some(named)) {
        source = `/etc/dracut.conf.d/${name}`;
        rebuild = 'dracut -f';
      }
    }
    if (source === null) return null;
    const release = await this.kernelRelease();
    const images = release === null ? [] : [`/boot/initrd.img-${release}`, `/boot/initramfs-${release}.img`];
    const times: number[] = [];
    for (const image of images) {
      const t = await this.tree.mtimeMs(image);
      if (t !== null) times.push(t);
    }
    const imageTime = times.length > 0 ? Math.max(...times) : null;
    const fileTime = await this.tree.mtimeMs(file);
    const listed = effectiveHidden(parseModprobeConf((await this.tree.files.read(file)) ?? '', this.modprobe().dialect)).includes(bdf);
    if (listed && imageTime !== null && fileTime !== null && imageTime >= fileTime) return null;
    return {
      source,
      hidden: [],
      reason: `${module} loads from the initramfs (${source}), which keeps the copy of ${file} it was built with, so a hide= written now would be lost at the next boot; add ${bdf} to hide= in ${file}, run \`${rebuild}\`, then retry (or stop loading ${module} from the initramfs)`,
    };
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
