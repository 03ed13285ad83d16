import { randomUUID } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { GuestState } from '../../schemas/inventory.js';
import type { PciAddress } from '../../schemas/pci-address.js';
import type { CommandResult, CommandRunner } from '../linux/command-runner.js';
import type { SysfsWrite } from '../linux/host-tree.js';
import { readJson, writeJsonAtomic } from '../host-files.js';
import { type ModprobeDialect, KMOD_DIALECT, RHEL5_DIALECT, effectiveHidden, parseModprobeConf } from '../modprobe-conf.js';
import { parseGuestConfig } from '../xen-guest-config.js';
import { guestPhyDisks } from '../linux/host-usage.js';
import { parseVfioRules, VFIO_RULES_FILE, DRIVERCTL_DIR } from '../vfio-rules.js';
import { hostdevsOf } from '../linux/libvirt-toolstack.js';
import { type SimGuestSpec, vnetOf } from './profiles.js';
import type { SimProfile } from './profiles.js';
import { PCIBACK, SimTree, VFIO_PCI } from './sim-tree.js';

/** The Red Hat guide's warning: >512 hotplugs of an assigned device in a brief period crash the kernel. */
export const KERNEL_HOTPLUG_LIMIT = 512;
export const KERNEL_HOTPLUG_WINDOW_MS = 60_000;

export const SimFaults = z.object({
  attachFailureProbability: z.number().min(0).max(1).default(0).describe('chance that a hotplug fails in the toolstack'),
  rebootMs: z.number().int().nonnegative().default(2000).describe('how long a reboot keeps the host silent'),
  reloadMs: z.number().int().nonnegative().max(600_000).default(0).describe('how long loading a device driver\'s module takes (its probe of the devices): a driver reload pays it once'),
  attachMs: z.number().int().nonnegative().max(600_000).default(0).describe('how long a hotplug attach takes in the toolstack'),
  rebootHangs: z.boolean().default(false).describe('a reboot never comes back (until power-cycled)'),
  uplinkDropMs: z.number().int().nonnegative().default(5000).describe('silence after the uplink NIC lost its driver'),
  crashAtStep: z.string().max(64).nullable().default(null).describe('the agent process exits at this named step'),
  rebootAtStep: z.string().max(64).nullable().default(null).describe('the host reboots (once) when the agent reaches this named step'),
  refuseWrites: z
    .array(z.object({ path: z.string().min(1).max(200), code: z.enum(['EBUSY', 'ENODEV', 'EINVAL', 'EIO']) }))
    .default([])
    .describe('sysfs control writes the kernel refuses once each (path or its ending, e.g. /pciback/bind)'),
  seed: z.number().int().default(1).describe('seed of the fault dice, so a run can be repeated'),
});
export type SimFaults = z.infer<typeof SimFaults>;
export type SimFaultsInput = z.input<typeof SimFaults>;

const SimDomain = z.object({
  name: z.string(),
  id: z.number().int(),
  state: GuestState,
  liveDevices: z.array(z.string()),
});

/** What the simulated kernel and toolstack remember beyond the tree itself, persisted across agent restarts. */
const SimState = z.object({
  version: z.literal(2),
  profile: z.string(),
  bootId: z.string(),
  bootCount: z.number().int(),
  /** Set when the simulated kernel has failed; cleared only by a reboot or power cycle. */
  failure: z.string().nullable(),
  /** Epoch ms when a reboot in progress completes; null when up. */
  bootCompletesAt: z.number().nullable(),
  silentUntil: z.number().nullable(),
  domains: z.array(SimDomain),
  hotplugs: z.record(z.string(), z.array(z.number())),
  diceState: z.number().int(),
  savedGuests: z.array(z.string()),
  /** Refusals not yet used (they survive an agent restart, like the kernel's state). */
  refusals: z.array(z.object({ path: z.string(), code: z.enum(['EBUSY', 'ENODEV', 'EINVAL', 'EIO']) })),
});
type SimState = z.infer<typeof SimState>;

const ok = (stdout = ''): CommandResult => ({ code: 0, stdout, stderr: '' });
const fail = (stderr: string, code = 1): CommandResult => ({ code, stdout: '', stderr: `${stderr}\n` });
const normalizeModule = (name: string): string => name.replace(/-/g, '_');

export interface SimKernelOptions {
  hostDir: string;
  hostId: string;
  profile: SimProfile;
  faults: SimFaults;
  now: () => number;
}

/**
 * The kernel and toolstack of a simulated host, under the real linux backend: the host's /sys,
 * /proc and /etc are a SimTree in its folder, sysfs writes reach `observer`, and `modprobe`, `ip`,
 * `xm`/`xl` and `/sbin/reboot` reach `run` instead of execFile. It behaves like the kernel where it
 * matters: a device named in hide= moves to pciback only when pciback loads (a reload through an
 * install line, a boot, `modprobe pciback`) or by a dynamic bind; the uplink NIC losing its driver
 * silences the host; more than 512 hotplugs of a device within 60 s fail the kernel until a power
 * cycle; a reboot gives a new boot id, re-reads the modprobe files and the command line, and restarts
 * the running guests from their configs.
 */
export class SimKernel implements CommandRunner {
  readonly tree: SimTree;
  private readonly statePath: string;
  private state!: SimState;
  private readonly bootListeners: Array<() => void> = [];
  private bootTimer: NodeJS.Timeout | null = null;
  /** Time the command being run takes on a real host (a driver's probe, a hotplug), paid before it answers. */
  private commandTakesMs = 0;

  private constructor(private readonly opts: SimKernelOptions) {
    this.tree = new SimTree(opts.profile.spec, opts.hostDir);
    this.statePath = join(opts.hostDir, 'sim-state.json');
    this.tree.kernel.onDriverChange = (bdf, driver) => this.driverChanged(bdf, driver);
  }

  /** Opens the host's persisted kernel, building its tree from the profile on first use. */
  static async open(opts: SimKernelOptions): Promise<SimKernel> {
    const kernel = new SimKernel(opts);
    const existing = await readJson(kernel.statePath);
    const parsed = existing === null ? null : SimState.safeParse(existing);
    if (parsed?.success) {
      kernel.state = parsed.data;
    } else {
      const bootId = randomUUID();
      kernel.state = {
        version: 2,
        profile: opts.profile.name,
        bootId,
        bootCount: 1,
        failure: null,
        bootCompletesAt: null,
        silentUntil: null,
        domains: opts.profile.guests.filter((g) => g.state !== 'stopped').map((g) => ({ name: g.name, id: g.domId, state: g.state, liveDevices: [] })),
        hotplugs: {},
        diceState: opts.faults.seed,
        savedGuests: [],
        refusals: opts.faults.refuseWrites,
      };
      kernel.tree.kernel.refusals.push(...kernel.state.refusals);
      kernel.tree.rebuildKernel(bootId);
      kernel.tree.buildFiles(false);
      await kernel.save();
      kernel.scheduleBootCompletion();
      return kernel;
    }
    kernel.tree.kernel.refusals.push(...kernel.state.refusals);
    kernel.scheduleBootCompletion();
    return kernel;
  }

  get faults(): SimFaults {
    return this.opts.faults;
  }

  /** Simulated-kernel facts for tests and the demo's read-back. */
  get facts(): { failure: string | null; bootCount: number; bootId: string; hotplugs: Readonly<Record<string, number[]>>; pcibackLoaded: boolean; pcibackSlots: string[] } {
    return { failure: this.state.failure, bootCount: this.state.bootCount, bootId: this.state.bootId, hotplugs: this.state.hotplugs, pcibackLoaded: this.tree.kernel.pcibackLoaded(), pcibackSlots: this.tree.kernel.slots() };
  }

  private async save(): Promise<void> {
    this.state.refusals = [...this.tree.kernel.refusals];
    await writeJsonAtomic(this.statePath, this.state);
  }

  // --- sysfs --------------------------------------------------------------------------------

  /** LinuxHost's `onSysfsWrite`: the write reaches the kernel model, whose reaction is persisted. */
  readonly observer = async (write: SysfsWrite): Promise<void> => {
    try {
      this.tree.kernel.observer(write);
    } finally {
      await this.save();
    }
  };

  /** Interfaces that carry the default route: their NIC losing its driver cuts the host off. */
  private driverChanged(bdf: string, driver: string | null): void {
    const dev = this.opts.profile.spec.devices.find((d) => d.bdf === bdf);
    const uplinks = new Set((this.opts.profile.spec.routes ?? []).filter(([, dest]) => dest === 'default').map(([iface]) => iface));
    const hostDriver = this.tree.kernel.hostDriverOf(bdf);
    if (dev?.net?.some((i) => uplinks.has(i)) && driver !== hostDriver) this.state.silentUntil = this.opts.now() + this.opts.faults.uplinkDropMs;
  }

  // --- power --------------------------------------------------------------------------------

  responsive(): boolean {
    if (this.state.failure !== null || this.state.bootCompletesAt !== null) return false;
    return this.state.silentUntil === null || this.opts.now() >= this.state.silentUntil;
  }

  onBoot(listener: () => void): void {
    this.bootListeners.push(listener);
  }

  close(): void {
    if (this.bootTimer) clearTimeout(this.bootTimer);
    this.bootTimer = null;
  }

  /** Out-of-band power cycle (IPMI in real life): the only way back from a failed kernel or a hung reboot. */
  async powerCycle(): Promise<void> {
    this.state.bootCompletesAt = this.opts.now();
    await this.completeBoot();
  }

  private async startReboot(): Promise<void> {
    this.state.bootCompletesAt = this.opts.faults.rebootHangs ? Number.MAX_SAFE_INTEGER : this.opts.now() + this.opts.faults.rebootMs;
    await this.save();
    this.scheduleBootCompletion();
  }

  private scheduleBootCompletion(): void {
    if (this.bootTimer) clearTimeout(this.bootTimer);
    this.bootTimer = null;
    const at = this.state.bootCompletesAt;
    if (at === null || at === Number.MAX_SAFE_INTEGER) return;
    this.bootTimer = setTimeout(() => void this.completeBoot(), Math.max(0, at - this.opts.now()));
    this.bootTimer.unref();
  }

  private async completeBoot(): Promise<void> {
    // A power cycle during a reboot completes that boot: the reboot's own timer must not boot it again.
    if (this.bootTimer) clearTimeout(this.bootTimer);
    this.bootTimer = null;
    this.state.bootId = randomUUID();
    this.state.bootCount += 1;
    this.state.failure = null;
    this.state.bootCompletesAt = null;
    this.state.silentUntil = null;
    this.state.hotplugs = {};
    this.tree.rebuildKernel(this.state.bootId);
    if (this.kvm) {
      this.bootKvm();
      await this.save();
      for (const listener of this.bootListeners) listener();
      return;
    }
    const { hidden, installModules } = this.modprobeConfig();
    const k = this.tree.kernel;
    // At boot pciback (with hide=) gets a hidden device first only when something loads it first: the
    // driver's install line, or a pciback the kernel loads early (built in, or from the initrd).
    const early = this.opts.profile.pcibackAtBoot === true;
    const claimed = hidden.filter((bdf) => {
      const dev = this.opts.profile.spec.devices.find((d) => d.bdf === bdf);
      if (!dev) return false;
      const module = normalizeModule(dev.module ?? k.hostDriverOf(bdf) ?? '');
      return early || dev.driver === null || dev.driver === undefined || installModules.has(module);
    });
    if (early || claimed.some((bdf) => installModules.has(normalizeModule(this.moduleOfDevice(bdf))))) {
      for (const bdf of claimed) k.setDriver(bdf, null);
      // A pciback that is there from the start read hide= as it started.
      if (early) this.tree.addPciback(hidden, this.opts.profile.spec.pciback?.removeSlot ?? true, this.opts.profile.spec.pciback?.newSlot ?? true);
      k.loadPciback(hidden, this.opts.profile.spec.pciback?.newSlot ?? true);
    }
    // Guests come back from their configs; only devices on pciback can be given to them.
    for (const d of this.state.domains) {
      const text = this.tree.read(`/etc/xen/${d.name}`);
      const configured = text === null ? [] : tryDevices(text);
      d.state = 'running';
      d.liveDevices = configured.filter((b) => k.driverOf(b) === PCIBACK);
    }
    await this.save();
    for (const listener of this.bootListeners) listener();
  }

  /** A KVM host's devices appear through udev: ptctl's rules name vfio-pci, driverctl's (read after ours) may name another driver. */
  private get kvm(): boolean {
    return this.opts.profile.spec.xen !== true;
  }

  private bootKvm(): void {
    const k = this.tree.kernel;
    const overrides = new Map<string, string>();
    for (const bdf of parseVfioRules(this.tree.read(VFIO_RULES_FILE) ?? '').hidden) overrides.set(bdf, VFIO_PCI);
    for (const d of this.opts.profile.spec.devices) {
      const driverctl = this.tree.read(`${DRIVERCTL_DIR}/pci-${d.bdf}`)?.trim();
      if (driverctl) overrides.set(d.bdf, driverctl);
    }
    for (const [bdf, driver] of overrides) {
      if (!this.tree.exists(`/sys/bus/pci/devices/${bdf}`)) continue;
      this.tree.write(`${this.tree.deviceDir(bdf)}/driver_override`, `${driver}\n`);
      if (k.driverOf(bdf) !== null) k.setDriver(bdf, null);
      if (driver === VFIO_PCI) k.loadVfio();
      else if (this.tree.exists(`/sys/bus/pci/drivers/${driver}`)) k.setDriver(bdf, driver);
    }
    // Guests start from their definitions; QEMU opens the groups of their hostdevs, which must be on vfio-pci.
    for (const d of this.state.domains) {
      const configured = hostdevsOf(this.tree.read(domainXmlPath(d.name)) ?? '');
      d.state = 'running';
      d.liveDevices = configured.filter((b) => k.driverOf(b) === VFIO_PCI && k.groupViable(b));
    }
  }

  private moduleOfDevice(bdf: string): string {
    const dev = this.opts.profile.spec.devices.find((d) => d.bdf === bdf);
    return dev?.module ?? this.tree.kernel.hostDriverOf(bdf) ?? '';
  }

  // --- modprobe files ------------------------------------------------------------------------

  private dialect(): ModprobeDialect {
    return this.opts.profile.pcibackModule === 'pciback' ? RHEL5_DIALECT : KMOD_DIALECT;
  }

  /** Every file this host's modprobe reads, in its order: /etc/modprobe.conf (RHEL 5), or /etc/modprobe.d/*.conf sorted. */
  private modprobeFiles(): string[] {
    if (this.opts.profile.pcibackModule === 'pciback') return ['/etc/modprobe.conf'];
    let names: string[] = [];
    try {
      names = readdirSync(this.tree.path('/etc/modprobe.d')).filter((n) => n.endsWith('.conf')).sort();
    } catch {
      names = [];
    }
    return names.map((n) => `/etc/modprobe.d/${n}`);
  }

  /** The hide= list pciback would read as it loads (the last one kmod reads wins) and the modules with a pciback install line. */
  private modprobeConfig(): { hidden: PciAddress[]; installModules: Set<string> } {
    let hidden: PciAddress[] = [];
    const installModules = new Set<string>();
    for (const file of this.modprobeFiles()) {
      const conf = parseModprobeConf(this.tree.read(file) ?? '', this.dialect());
      const here = effectiveHidden(conf);
      if (here.length > 0) hidden = here;
      for (const d of conf.managed.drivers) installModules.add(normalizeModule(d));
    }
    const cmdline = /(?:^|\s)(?:xen-pciback|xen_pciback|pciback)\.hide=(\S+)/.exec(this.tree.read('/proc/cmdline') ?? '')?.[1];
    if (cmdline) hidden = [...new Set([...hidden, ...[...cmdline.matchAll(/\(([^)]+)\)/g)].map((m) => m[1] as PciAddress)])];
    return { hidden, installModules };
  }

  // --- commands --------------------------------------------------------------------------------

  async run(argv: readonly string[]): Promise<CommandResult> {
    const [file = '', ...args] = argv;
    const program = file.split('/').pop() ?? '';
    if (this.state.failure !== null) return fail(`${program}: host is not answering: ${this.state.failure}`, 255);
    // Queries (every scan runs several) change nothing: only a changed state costs a durable write.
    const before = JSON.stringify(this.state);
    this.commandTakesMs = 0;
    let result: CommandResult;
    if (program === 'modprobe') result = this.modprobe(args);
    else if (program === 'ip') result = this.ip(args);
    else if (program === 'xm' || program === 'xl') result = await this.toolstack(program, args);
    else if (program === 'virsh') result = this.virsh(args);
    else if (program === 'xenstore-read') result = this.xenstoreRead(args[0] ?? '');
    else if (program === 'ovs-vsctl' && this.ovsBridges().size > 0) result = this.ovsVsctl(args);
    else if (program === 'reboot') {
      await this.startReboot();
      return ok();
    } else return fail(`${file}: No such file or directory`, 127);
    // Read before the save: nothing the kernel runs while this command saves can change what this one costs.
    const takesMs = this.commandTakesMs;
    if (JSON.stringify(this.state) !== before || program === 'modprobe') await this.save();
    if (takesMs > 0) await new Promise((resolve) => setTimeout(resolve, takesMs));
    return result;
  }

  private modprobe(args: readonly string[]): CommandResult {
    if (args[0] === '-R') return this.resolveAlias(args[1] ?? '');
    const remove = args.includes('-r');
    const firstTime = args.includes('--first-time');
    const ignoreInstall = args.includes('--ignore-install');
    const name = args.filter((a) => !a.startsWith('-')).pop();
    if (!name) return fail('modprobe: no module name given');
    const module = normalizeModule(name);
    const k = this.tree.kernel;
    if (module === 'vfio_pci' && this.kvm) {
      if (remove) k.unloadDriver(VFIO_PCI);
      else if (!this.tree.exists(`/sys/bus/pci/drivers/${VFIO_PCI}`)) k.loadVfio();
      return ok();
    }
    if (module === normalizeModule(this.opts.profile.pcibackModule) && !this.kvm) {
      if (remove) {
        k.unloadDriver(PCIBACK);
        return ok();
      }
      if (k.pcibackLoaded()) return firstTime ? fail(`FATAL: Module ${name} already in kernel.`) : ok();
      k.loadPciback(this.modprobeConfig().hidden, this.opts.profile.spec.pciback?.newSlot ?? true);
      return ok();
    }
    const devices = this.opts.profile.spec.devices.filter((d) => normalizeModule(d.module ?? d.hostDriver ?? d.driver ?? '') === module && (d.hostDriver ?? d.driver) !== PCIBACK);
    const driver = devices.map((d) => d.hostDriver ?? d.driver).find((d): d is string => typeof d === 'string');
    if (driver === undefined) return fail(`FATAL: Module ${name} not found.`);
    const loaded = this.tree.exists(`/sys/bus/pci/drivers/${driver}`);
    if (remove) {
      if (!loaded) return fail(`FATAL: Module ${name} is not in kernel.`);
      k.unloadDriver(driver);
      return ok();
    }
    if (loaded) return firstTime ? fail(`FATAL: Module ${name} already in kernel.`) : ok();
    // The install line ptctl writes: `/sbin/modprobe pciback; /sbin/modprobe --first-time --ignore-install <driver>`.
    if (!ignoreInstall && this.modprobeConfig().installModules.has(module) && !k.pcibackLoaded()) {
      k.loadPciback(this.modprobeConfig().hidden, this.opts.profile.spec.pciback?.newSlot ?? true);
    }
    k.loadDriver(driver, devices[0]?.module);
    this.commandTakesMs = this.opts.faults.reloadMs;
    return ok();
  }

  /** kmod's `modprobe -R <modalias>`: the modules whose aliases match, one per line; exit 1 when none. */
  private resolveAlias(alias: string): CommandResult {
    const m = /^pci:v0000([0-9A-F]{4})d0000([0-9A-F]{4})/i.exec(alias);
    const dev = m ? this.opts.profile.spec.devices.find((d) => d.vendor === m[1]?.toLowerCase() && d.device === m[2]?.toLowerCase()) : undefined;
    const driver = dev ? this.tree.kernel.hostDriverOf(dev.bdf) : null;
    if (!dev || driver === null) return fail(`modprobe: FATAL: Module ${alias} not found in directory /lib/modules`);
    return ok(`${normalizeModule(dev.module ?? driver)}\n`);
  }

  private ip(args: readonly string[]): CommandResult {
    if (args.join(' ') !== '-o addr show') return fail(`ip ${args.join(' ')}: not simulated`);
    const lines = ['1: lo    inet 127.0.0.1/8 scope host lo'];
    Object.entries(this.opts.profile.spec.interfaces ?? {}).forEach(([name, iface], i) => {
      if (!this.tree.exists(`/sys/class/net/${name}`)) return;
      for (const addr of iface.addresses ?? []) lines.push(`${i + 2}: ${name}    inet ${addr} scope global ${name}`);
    });
    return ok(`${lines.join('\n')}\n`);
  }

  /** Open vSwitch bridges of the spec and their ports (the interfaces that name them); empty when the host has no OVS. */
  private ovsBridges(): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const [name, iface] of Object.entries(this.opts.profile.spec.interfaces ?? {})) {
      if (iface.ovsBridge !== undefined) out.set(iface.ovsBridge, [...(out.get(iface.ovsBridge) ?? []), name]);
    }
    return out;
  }

  /** `ovs-vsctl list-br` and `list-ports <bridge>`: what ovsdb holds, whether or not the port's device exists now. */
  private ovsVsctl(args: readonly string[]): CommandResult {
    const bridges = this.ovsBridges();
    if (args.length === 1 && args[0] === 'list-br') return ok([...bridges.keys()].sort().map((b) => `${b}\n`).join(''));
    if (args.length === 2 && args[0] === 'list-ports') {
      const ports = bridges.get(args[1] ?? '');
      return ports === undefined ? fail(`ovs-vsctl: no bridge named ${args[1] ?? ''}`) : ok(ports.sort().map((p) => `${p}\n`).join(''));
    }
    return fail(`ovs-vsctl ${args.join(' ')}: not simulated`);
  }

  private domain(name: string): SimState['domains'][number] | undefined {
    return this.state.domains.find((d) => d.name === name);
  }

  private async toolstack(tool: 'xm' | 'xl', args: readonly string[]): Promise<CommandResult> {
    const [verb = '', ...rest] = args;
    const k = this.tree.kernel;
    switch (verb) {
      case 'list': {
        const rows = ['Name                                        ID   Mem VCPUs\tState\tTime(s)', 'Domain-0                                     0  1024     2     r-----     105.5'];
        for (const d of this.state.domains) rows.push(`${d.name.padEnd(44)} ${String(d.id).padStart(2)}  1024     1     ${d.state === 'paused' ? '--p---' : '-b----'}       1.0`);
        return ok(`${rows.join('\n')}\n`);
      }
      case 'info':
        return ok(`host                   : ${this.opts.hostId}\nvirt_caps              : ${this.opts.profile.iommu ? 'hvm hvm_directio' : 'hvm'}\nxen_major              : 3\n`);
      case 'pci-list-assignable-devices':
      case 'pci-assignable-list': {
        const bdfs = this.opts.profile.spec.devices.map((d) => d.bdf).filter((b) => k.driverOf(b) === PCIBACK);
        return ok(bdfs.map((b) => `${b}\n`).join(''));
      }
      case 'block-list': {
        const d = this.domain(rest[0] ?? '');
        if (!d) return fail(`Error: Domain '${rest[0] ?? ''}' does not exist.`);
        const rows = ['Vdev  BE  handle state evt-ch ring-ref BE-path'];
        this.domainDisks(d).forEach((_, i) => rows.push(`${51712 + 16 * i} 0   ${d.id}      4     ${47 + i}     ${8 + i}        /local/domain/0/backend/vbd/${d.id}/${51712 + 16 * i}`));
        return ok(`${rows.join('\n')}\n`);
      }
      case 'pci-list': {
        const d = this.domain(rest[0] ?? '');
        if (!d) return fail(`Error: Domain '${rest[0] ?? ''}' does not exist.`);
        if (tool === 'xl') return ok(['Vdev Device', ...d.liveDevices.map((b, i) => `0${i}.0 ${b}`)].join('\n') + '\n');
        return ok(d.liveDevices.length === 0 ? '' : ['VSlt VFn domain bus  slot func', ...d.liveDevices.map((b, i) => `0x0${i + 5} 0x0 0x${b.slice(0, 4)} 0x${b.slice(5, 7)} 0x${b.slice(8, 10)} 0x${b.slice(11)}`)].join('\n') + '\n');
      }
      case 'pci-attach': {
        const [guest = '', bdf = ''] = rest;
        const d = this.domain(guest);
        if (!d || d.state !== 'running') return fail(`Error: Domain '${guest}' is not running.`);
        if (k.driverOf(bdf) !== PCIBACK) return fail(`Error: pci: device ${bdf} is not assignable (driver ${k.driverOf(bdf) ?? 'none'})`);
        const crash = this.countHotplug(bdf);
        if (crash) return crash;
        if (this.roll() < this.opts.faults.attachFailureProbability) return fail(`Error: Timed out waiting for device model action (injected fault)`);
        if (!d.liveDevices.includes(bdf)) d.liveDevices.push(bdf);
        this.commandTakesMs = this.opts.faults.attachMs;
        return ok();
      }
      case 'pci-detach': {
        const [guest = '', bdf = ''] = rest;
        const d = this.domain(guest);
        if (!d?.liveDevices.includes(bdf)) return fail(`Error: pci: device ${bdf} is not attached to ${guest}`);
        const crash = this.countHotplug(bdf);
        if (crash) return crash;
        d.liveDevices = d.liveDevices.filter((b) => b !== bdf);
        return ok();
      }
      case 'save': {
        const [guest = '', file = ''] = rest;
        const d = this.domain(guest);
        if (!d || d.state !== 'running') return fail(`Error: Domain '${guest}' is not running.`);
        this.tree.write(file, `${guest}\n`);
        this.state.domains = this.state.domains.filter((x) => x !== d);
        this.state.savedGuests = [...new Set([...this.state.savedGuests, guest])];
        return ok();
      }
      case 'restore': {
        const guest = this.tree.read(rest[0] ?? '')?.trim() ?? '';
        if (!this.state.savedGuests.includes(guest)) return fail(`Error: Restore failed: no saved image at ${rest[0] ?? ''}`);
        const spec = this.opts.profile.guests.find((g) => g.name === guest);
        this.state.domains.push({ name: guest, id: spec?.domId ?? 99, state: 'running', liveDevices: [] });
        this.state.savedGuests = this.state.savedGuests.filter((g) => g !== guest);
        return ok();
      }
      case 'migrate': {
        const [guest = '', target = ''] = rest;
        const d = this.domain(guest);
        if (!d || d.state !== 'running') return fail(`Error: Domain '${guest}' is not running.`);
        // The guest, and its managed config, now live on the target host.
        this.state.domains = this.state.domains.filter((x) => x !== d);
        this.tree.unlink(`/etc/xen/${guest}`);
        void target;
        return ok();
      }
      default:
        return fail(`${tool}: unknown command ${verb}`);
    }
  }

  private kvmGuest(name: string): SimGuestSpec | undefined {
    return this.opts.profile.guests.find((g) => g.name === name);
  }

  /** The running domain's XML: its definition with the live hostdevs instead of the configured ones, and its vnet. */
  private liveDomainXml(d: SimState['domains'][number]): string {
    const spec = this.kvmGuest(d.name);
    let xml = withHostdevs(this.tree.read(domainXmlPath(d.name)) ?? `<domain type='kvm'><name>${d.name}</name><devices></devices></domain>`, d.liveDevices);
    if (spec) xml = xml.replace(/(<interface type='bridge'>)/, `$1\n      <target dev='${vnetOf(spec)}'/>`);
    return xml.replace("<domain type='kvm'>", `<domain type='kvm' id='${d.id}'>`);
  }

  /** libvirt's `virsh -c qemu:///system …`, for the verbs the linux backend runs. */
  private virsh(argv: readonly string[]): CommandResult {
    const args = argv[0] === '-c' ? argv.slice(2) : [...argv];
    const [verb = '', ...rest] = args;
    const k = this.tree.kernel;
    const flags = rest.filter((a) => a.startsWith('--'));
    const [name = '', second = ''] = rest.filter((a) => !a.startsWith('--'));
    const defined = (n: string): boolean => this.tree.exists(domainXmlPath(n));
    const noDomain = (n: string): CommandResult => fail(`error: failed to get domain '${n}'`);
    switch (verb) {
      case 'list': {
        const rows = [' Id   Name      State', '------------------------'];
        for (const d of this.state.domains) rows.push(` ${d.id}    ${d.name}   ${d.state === 'paused' ? 'paused' : 'running'}`);
        for (const g of this.opts.profile.guests) if (defined(g.name) && !this.domain(g.name)) rows.push(` -    ${g.name}   shut off`);
        return ok(`${rows.join('\n')}\n\n`);
      }
      case 'dumpxml': {
        const d = this.domain(name);
        if (flags.includes('--inactive') || !d) return defined(name) ? ok(this.tree.read(domainXmlPath(name)) ?? '') : noDomain(name);
        return ok(this.liveDomainXml(d));
      }
      case 'attach-device':
      case 'detach-device': {
        const bdf = hostdevsOf(this.tree.read(second) ?? '')[0];
        if (!bdf) return fail(`error: Failed to open file '${second}': No such file or directory`);
        if (!defined(name)) return noDomain(name);
        const attach = verb === 'attach-device';
        if (flags.includes('--config')) {
          const config = this.tree.read(domainXmlPath(name)) ?? '';
          const held = hostdevsOf(config);
          if (attach && held.includes(bdf)) return fail(`error: Failed to attach device from ${second}\nerror: Requested operation is not valid: PCI device ${bdf} is in use by driver QEMU, domain ${name}`);
          if (!attach && !held.includes(bdf)) return fail(`error: Failed to detach device from ${second}\nerror: device not found: host pci device ${bdf} not found`);
          this.tree.write(domainXmlPath(name), withHostdevs(config, attach ? [...held, bdf] : held.filter((b) => b !== bdf)));
          return ok(`Device ${attach ? 'attached' : 'detached'} successfully\n\n`);
        }
        const d = this.domain(name);
        if (!d) return fail(`error: Failed to ${attach ? 'attach' : 'detach'} device from ${second}\nerror: Requested operation is not valid: domain is not running`);
        if (attach) {
          if (d.liveDevices.includes(bdf)) return fail(`error: Failed to attach device from ${second}\nerror: Requested operation is not valid: PCI device ${bdf} is in use by driver QEMU, domain ${name}`);
          // QEMU's vfio-pci realize: the device must be on vfio-pci and its group viable.
          if (k.driverOf(bdf) !== VFIO_PCI) return fail(`error: Failed to attach device from ${second}\nerror: internal error: qemu unexpectedly closed the monitor: vfio ${bdf}: no such host device: driver ${k.driverOf(bdf) ?? 'none'}`);
          if (!k.groupViable(bdf)) return fail(`error: Failed to attach device from ${second}\nerror: internal error: vfio ${bdf}: group is not viable; please ensure all devices within the iommu_group are bound to their vfio bus driver.`);
        } else if (!d.liveDevices.includes(bdf)) {
          return fail(`error: Failed to detach device from ${second}\nerror: device not found: host pci device ${bdf} not found`);
        }
        const crash = this.countHotplug(bdf);
        if (crash) return crash;
        if (attach && this.roll() < this.opts.faults.attachFailureProbability) return fail(`error: Failed to attach device from ${second}\nerror: internal error: unable to execute QEMU command 'device_add': injected fault`);
        d.liveDevices = attach ? [...d.liveDevices, bdf] : d.liveDevices.filter((b) => b !== bdf);
        if (attach) this.commandTakesMs = this.opts.faults.attachMs;
        return ok(`Device ${attach ? 'attached' : 'detached'} successfully\n\n`);
      }
      case 'suspend':
      case 'resume': {
        const d = this.domain(name);
        if (!d) return fail('error: Requested operation is not valid: domain is not running');
        d.state = verb === 'suspend' ? 'paused' : 'running';
        return ok(`Domain '${name}' ${verb === 'suspend' ? 'suspended' : 'resumed'}\n\n`);
      }
      case 'qemu-agent-command': {
        const d = this.domain(name);
        const spec = this.kvmGuest(name);
        if (!d) return fail('error: Requested operation is not valid: domain is not running');
        if (!spec?.guestAgent || d.state !== 'running') return fail('error: Guest agent is not responding: QEMU guest agent is not connected');
        const command = second;
        if (command.includes('guest-file-open') && command.includes('/sys/module/acpiphp')) {
          return spec.acpiphp ? ok('{"return":1000}\n') : fail("error: internal error: unable to execute QEMU agent command 'guest-file-open': failed to open file '/sys/module/acpiphp/uevent' (mode: 'r'): No such file or directory");
        }
        return ok('{"return":{}}\n');
      }
      case 'save': {
        const d = this.domain(name);
        if (!d) return fail('error: Requested operation is not valid: domain is not running');
        this.tree.write(second, `${name}\n`);
        this.state.domains = this.state.domains.filter((x) => x !== d);
        this.state.savedGuests = [...new Set([...this.state.savedGuests, name])];
        return ok(`\nDomain '${name}' saved to ${second}\n`);
      }
      case 'restore': {
        const guest = this.tree.read(name)?.trim() ?? '';
        if (!this.state.savedGuests.includes(guest)) return fail(`error: Failed to restore domain from ${name}`);
        this.state.domains.push({ name: guest, id: this.kvmGuest(guest)?.domId ?? 99, state: 'running', liveDevices: [] });
        this.state.savedGuests = this.state.savedGuests.filter((g) => g !== guest);
        return ok(`Domain restored from ${name}\n`);
      }
      case 'migrate': {
        const d = this.domain(name);
        if (!d) return fail('error: Requested operation is not valid: domain is not running');
        this.state.domains = this.state.domains.filter((x) => x !== d);
        if (flags.includes('--undefinesource')) this.tree.unlink(domainXmlPath(name));
        return ok();
      }
      default:
        return fail(`error: unknown command: '${verb}'`);
    }
  }

  /** The block devices a running domain's backends hold: its config's phy: disks (the sim has no block-attach). */
  private domainDisks(d: SimState['domains'][number]): string[] {
    return guestPhyDisks(d.name, this.tree.read(`/etc/xen/${d.name}`) ?? '').map((g) => g.path);
  }

  /** `xenstore-read /local/domain/0/backend/vbd/<domid>/<vdev>/params`: the device behind a vbd backend. */
  private xenstoreRead(path: string): CommandResult {
    const m = /^\/local\/domain\/0\/backend\/vbd\/(\d+)\/(\d+)\/params$/.exec(path);
    const d = m ? this.state.domains.find((x) => x.id === Number(m[1])) : undefined;
    const disk = d ? this.domainDisks(d)[(Number(m?.[2]) - 51712) / 16] : undefined;
    return disk === undefined ? fail(`xenstore-read: couldn't read path ${path}`) : ok(`${disk}\n`);
  }

  private countHotplug(bdf: string): CommandResult | null {
    const now = this.opts.now();
    const recent = (this.state.hotplugs[bdf] ?? []).filter((t) => now - t < KERNEL_HOTPLUG_WINDOW_MS);
    recent.push(now);
    this.state.hotplugs[bdf] = recent;
    if (recent.length <= KERNEL_HOTPLUG_LIMIT) return null;
    this.state.failure = `kernel error: interrupt tracking overflow after ${recent.length} hotplugs of ${bdf} within ${KERNEL_HOTPLUG_WINDOW_MS / 1000} s`;
    return fail(`host ${this.opts.hostId} stopped answering: ${this.state.failure}`, 255);
  }

  /** Deterministic dice (mulberry32) so a faulty run can be replayed from its seed. */
  private roll(): number {
    let t = (this.state.diceState += 0x6d2b79f5);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}

function tryDevices(text: string): PciAddress[] {
  try {
    return [...parseGuestConfig(text).devices];
  } catch {
    return [];
  }
}

/** libvirt's saved definition of a qemu:///system domain. */
function domainXmlPath(name: string): string {
  return `/etc/libvirt/qemu/${name}.xml`;
}

/** A domain XML with exactly these PCI hostdevs (managed='no', as ptctl attaches them) before `</devices>`. */
function withHostdevs(xml: string, bdfs: readonly string[]): string {
  const without = xml.replace(/\n?\s*<hostdev\b[^>]*type='pci'[\s\S]*?<\/hostdev>/g, '');
  const blocks = bdfs.map((b) => {
    const [domain = '', bus = '', slotFn = ''] = b.split(':');
    const [slot = '', fn = ''] = slotFn.split('.');
    return `    <hostdev mode='subsystem' type='pci' managed='no'>\n      <source>\n        <address domain='0x${domain}' bus='0x${bus}' slot='0x${slot}' function='0x${fn}'/>\n      </source>\n    </hostdev>`;
  });
  return blocks.length === 0 ? without : without.replace('  </devices>', `${blocks.join('\n')}\n  </devices>`);
}
