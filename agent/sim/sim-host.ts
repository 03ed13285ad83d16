import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { z } from 'zod';
import type { DriverName, GuestName } from '../../schemas/ids.js';
import { GuestState, GuestVirt, HostCapability, Hypervisor, OsRelease } from '../../schemas/inventory.js';
import { compareBdf, type PciAddress } from '../../schemas/pci-address.js';
import { ErrorCode, PtcError } from '../../schemas/errors.js';
import type { HostBackend, HostScan, ScannedDevice } from '../backend.js';
import { HostFiles, readJson, writeJsonAtomic } from '../host-files.js';
import { type ModprobeDialect, effectiveHidden, parseModprobeConf } from '../modprobe-conf.js';
import { parseGuestConfig } from '../xen-guest-config.js';
import { DEFAULT_PROFILE, SIM_PROFILES, type SimProfile, initialGuestConfig } from './profiles.js';

/** The Red Hat guide's warning: >512 hotplugs of an assigned device in a brief period crash the kernel. */
export const KERNEL_HOTPLUG_LIMIT = 512;
export const KERNEL_HOTPLUG_WINDOW_MS = 60_000;

export const SimFaults = z.object({
  attachFailureProbability: z.number().min(0).max(1).default(0).describe('chance that a hotplug fails in the toolstack'),
  rebootMs: z.number().int().nonnegative().default(2000).describe('how long a reboot keeps the host silent'),
  rebootHangs: z.boolean().default(false).describe('a reboot never comes back (until power-cycled)'),
  uplinkDropMs: z.number().int().nonnegative().default(5000).describe('silence after the uplink driver is reloaded'),
  crashAtStep: z.string().max(64).nullable().default(null).describe('the agent process exits at this named step'),
  rebootAtStep: z.string().max(64).nullable().default(null).describe('the host reboots (once) when the agent reaches this named step'),
  seed: z.number().int().default(1).describe('seed of the fault dice, so a run can be repeated'),
});
export type SimFaults = z.infer<typeof SimFaults>;
export type SimFaultsInput = z.input<typeof SimFaults>;

const SimDeviceState = z.object({
  bdf: z.string(),
  vendor: z.string(),
  device: z.string(),
  class: z.string(),
  description: z.string(),
  hostDriver: z.string(),
  iommuGroup: z.number(),
  netdev: z.string().nullable(),
  role: z.enum(['uplink', 'root-disk']).nullable(),
  driver: z.string().nullable(),
});
type SimDeviceState = z.infer<typeof SimDeviceState>;

const SimGuestState = z.object({
  name: z.string(),
  virt: GuestVirt,
  os: OsRelease,
  state: GuestState,
  acpiphp: z.boolean(),
  liveDevices: z.array(z.string()),
});

/** The simulated kernel's state, persisted so it survives an agent restart. */
const SimState = z.object({
  version: z.literal(1),
  profile: z.string(),
  os: OsRelease,
  hypervisor: Hypervisor,
  iommu: z.boolean(),
  capabilities: z.array(HostCapability),
  pcibackModule: z.enum(['pciback', 'xen-pciback']),
  modprobeFile: z.string(),
  bootId: z.string(),
  bootCount: z.number().int(),
  /** Set when the simulated kernel has failed; cleared only by a reboot or power cycle. */
  failure: z.string().nullable(),
  /** Epoch ms when a reboot in progress completes; null when up. */
  bootCompletesAt: z.number().nullable(),
  silentUntil: z.number().nullable(),
  pcibackLoaded: z.boolean(),
  pcibackSlots: z.array(z.string()),
  devices: z.array(SimDeviceState),
  guests: z.array(SimGuestState),
  hotplugs: z.record(z.string(), z.array(z.number())),
  diceState: z.number().int(),
  /** Guests with a saved image on this host (xm save), which xm restore brings back. */
  savedGuests: z.array(z.string()).default([]),
});
type SimState = z.infer<typeof SimState>;

export interface SimHostOptions {
  hostDir: string;
  hostId: string;
  profile?: string | SimProfile;
  faults?: SimFaultsInput;
  now?: () => number;
}

function simError(message: string): PtcError {
  return new PtcError(ErrorCode.COMMAND_FAILED, message);
}

/**
 * A simulated RHEL/Xen host that behaves like the kernel where it matters: a device named in
 * `hide=` moves to pciback only after a driver reload, a reboot or a dynamic bind; reloading a driver
 * drops all its devices (the uplink too, which silences the host); more than 512 hotplugs of a device
 * within 60 s fail the kernel until reboot. Its /etc files are real files under `hostDir`, written by
 * the same agent code that edits a real host.
 */
export class SimHost implements HostBackend {
  readonly files: HostFiles;
  readonly faults: SimFaults;
  private readonly now: () => number;
  private readonly statePath: string;
  private state!: SimState;
  private readonly bootListeners: Array<() => void> = [];
  private bootTimer: NodeJS.Timeout | null = null;

  private constructor(readonly hostId: string, hostDir: string, faults: SimFaults, now: () => number) {
    this.files = new HostFiles(hostDir);
    this.faults = faults;
    this.now = now;
    this.statePath = join(hostDir, 'sim-state.json');
  }

  /** Opens the host's persisted state, creating it from the profile on first use. */
  static async open(options: SimHostOptions): Promise<SimHost> {
    const host = new SimHost(options.hostId, options.hostDir, SimFaults.parse(options.faults ?? {}), options.now ?? Date.now);
    const existing = await readJson(host.statePath);
    if (existing === null) {
      const profile = typeof options.profile === 'object' ? options.profile : SIM_PROFILES[options.profile ?? DEFAULT_PROFILE];
      if (!profile) throw new PtcError(ErrorCode.INVALID_INPUT, `unknown simulated host profile "${typeof options.profile === 'string' ? options.profile : options.profile?.name ?? ''}"; known: ${Object.keys(SIM_PROFILES).join(', ')}`);
      await host.create(profile);
    } else {
      host.state = SimState.parse(existing);
    }
    host.scheduleBootCompletion();
    return host;
  }

  private async create(profile: SimProfile): Promise<void> {
    this.state = {
      version: 1,
      profile: profile.name,
      os: profile.os,
      hypervisor: profile.hypervisor,
      iommu: profile.iommu,
      capabilities: profile.capabilities,
      pcibackModule: profile.pcibackModule,
      modprobeFile: profile.modprobeFile,
      bootId: randomUUID(),
      bootCount: 1,
      failure: null,
      bootCompletesAt: null,
      silentUntil: null,
      pcibackLoaded: false,
      pcibackSlots: [],
      devices: profile.devices.map((d) => ({
        bdf: d.bdf, vendor: d.vendor, device: d.device, class: d.class, description: d.description,
        hostDriver: d.driver, iommuGroup: d.iommuGroup, netdev: d.netdev, role: d.role, driver: d.driver,
      })),
      guests: profile.guests.map((g) => ({ ...g, liveDevices: [] })),
      hotplugs: {},
      diceState: this.faults.seed,
      savedGuests: [],
    };
    if ((await this.files.read(profile.modprobeFile)) === null) await this.files.writeAtomic(profile.modprobeFile, profile.modprobeConf);
    for (const guest of profile.guests) {
      const path = this.guestConfigPath(guest.name);
      if ((await this.files.read(path)) === null) await this.files.writeAtomic(path, initialGuestConfig(guest));
    }
    await this.save();
  }

  private async save(): Promise<void> {
    await writeJsonAtomic(this.statePath, this.state);
  }

  modprobe(): { file: string; dialect: ModprobeDialect } {
    return { file: this.state.modprobeFile, dialect: { module: this.state.pcibackModule, modprobe: '/sbin/modprobe' } };
  }

  guestConfigPath(guest: GuestName): string {
    return `/etc/xen/${guest}`;
  }

  async bootId(): Promise<string> {
    return Promise.resolve(this.state.bootId);
  }

  /** Simulated-kernel facts for tests and the demo's read-back. */
  get kernel(): Readonly<Pick<SimState, 'failure' | 'bootCount' | 'pcibackLoaded' | 'pcibackSlots' | 'hotplugs'>> {
    return this.state;
  }

  responsive(): boolean {
    const now = this.now();
    if (this.state.failure !== null) return false;
    if (this.state.bootCompletesAt !== null) return false;
    return this.state.silentUntil === null || now >= this.state.silentUntil;
  }

  onBoot(listener: () => void): void {
    this.bootListeners.push(listener);
  }

  async close(): Promise<void> {
    if (this.bootTimer) clearTimeout(this.bootTimer);
    this.bootTimer = null;
    return Promise.resolve();
  }

  private async modprobeState(): Promise<{ hidden: PciAddress[]; installDrivers: readonly string[] }> {
    const { file, dialect } = this.modprobe();
    const conf = parseModprobeConf((await this.files.read(file)) ?? '', dialect);
    return { hidden: effectiveHidden(conf), installDrivers: conf.managed.drivers };
  }

  private async guestConfigDevices(guest: GuestName): Promise<PciAddress[]> {
    const text = await this.files.read(this.guestConfigPath(guest));
    return text === null ? [] : [...parseGuestConfig(text).devices];
  }

  private device(bdf: PciAddress): SimDeviceState {
    const dev = this.state.devices.find((d) => d.bdf === bdf);
    if (!dev) throw new PtcError(ErrorCode.DEVICE_NOT_FOUND, `no PCI device ${bdf} on host ${this.hostId}`);
    return dev;
  }

  private guest(name: GuestName): SimState['guests'][number] {
    const guest = this.state.guests.find((g) => g.name === name);
    if (!guest) throw new PtcError(ErrorCode.GUEST_NOT_FOUND, `no guest ${name} on host ${this.hostId}`);
    return guest;
  }

  async scan(): Promise<HostScan> {
    const devices: ScannedDevice[] = this.state.devices
      .map((d) => {
        const onHostDriver = d.driver !== null && d.driver === d.hostDriver;
        return {
          bdf: d.bdf,
          vendor: d.vendor,
          device: d.device,
          class: d.class,
          description: d.description,
          driver: d.driver,
          hostDriver: d.hostDriver,
          iommuGroup: this.state.iommu ? d.iommuGroup : null,
          netdev: onHostDriver ? d.netdev : null,
          inUse: onHostDriver && d.role !== null ? inUseReason(d) : null,
          inPcibackSlots: this.state.pcibackLoaded && this.state.pcibackSlots.includes(d.bdf),
          assignable: d.driver === 'pciback',
        };
      })
      .sort((a, b) => compareBdf(a.bdf, b.bdf));
    return {
      os: this.state.os,
      hypervisor: this.state.hypervisor,
      iommu: this.state.iommu,
      capabilities: this.state.capabilities,
      devices,
      guests: this.state.guests.map((g) => ({ name: g.name, virt: g.virt, os: g.os, state: g.state, acpiphp: g.acpiphp, liveDevices: [...g.liveDevices] })),
    };
  }

  /** `modprobe pciback` (a no-op when loaded): at load it takes its hide= list as its slots. */
  private async loadPciback(): Promise<void> {
    if (this.state.pcibackLoaded) return;
    const { hidden } = await this.modprobeState();
    this.state.pcibackLoaded = true;
    this.state.pcibackSlots = [...hidden];
    for (const d of this.state.devices) if (d.driver === null && hidden.includes(d.bdf)) d.driver = 'pciback';
  }

  async bindPciback(bdf: PciAddress): Promise<void> {
    const dev = this.device(bdf);
    await this.loadPciback();
    dev.driver = null;
    // The kernel rejects a second new_slot for the same BDF; the caller guards it, the sim enforces it.
    if (!this.state.pcibackSlots.includes(bdf)) this.state.pcibackSlots.push(bdf);
    dev.driver = 'pciback';
    await this.save();
  }

  async bindHostDriver(bdf: PciAddress, driver: DriverName | null): Promise<void> {
    const dev = this.device(bdf);
    this.state.pcibackSlots = this.state.pcibackSlots.filter((b) => b !== bdf);
    dev.driver = driver ?? dev.hostDriver;
    await this.save();
  }

  async reloadDriver(driver: DriverName): Promise<void> {
    const affected = this.state.devices.filter((d) => d.hostDriver === driver);
    if (affected.length === 0) throw simError(`modprobe -r ${driver}: module ${driver} is not loaded`);
    // modprobe -r: every device of the driver loses it; an uplink among them silences the host.
    for (const d of affected) {
      if (d.driver === driver) {
        d.driver = null;
        if (d.role === 'uplink') this.state.silentUntil = this.now() + this.faults.uplinkDropMs;
      }
    }
    const { hidden, installDrivers } = await this.modprobeState();
    // A pciback that is already loaded read its hide= list long ago: hidden devices it does not know
    // yet must be given to it through new_slot, or the driver would take them straight back.
    if (this.state.pcibackLoaded) {
      for (const d of affected) if (hidden.includes(d.bdf) && !this.state.pcibackSlots.includes(d.bdf)) this.state.pcibackSlots.push(d.bdf);
    }
    // modprobe <driver>: an install line loads pciback first, which claims the hidden devices.
    if (installDrivers.includes(driver)) await this.loadPciback();
    for (const d of affected) {
      if (d.driver !== null) continue;
      d.driver = this.state.pcibackLoaded && this.state.pcibackSlots.includes(d.bdf) ? 'pciback' : driver;
    }
    await this.save();
  }

  async reboot(): Promise<void> {
    this.state.bootCompletesAt = this.faults.rebootHangs ? Number.MAX_SAFE_INTEGER : this.now() + this.faults.rebootMs;
    await this.save();
    this.scheduleBootCompletion();
  }

  /** Out-of-band power cycle (IPMI in real life): the only way back from a failed kernel or a hung reboot. */
  async powerCycle(): Promise<void> {
    this.state.bootCompletesAt = this.now();
    await this.completeBoot();
  }

  private scheduleBootCompletion(): void {
    if (this.bootTimer) clearTimeout(this.bootTimer);
    this.bootTimer = null;
    const at = this.state.bootCompletesAt;
    if (at === null || at === Number.MAX_SAFE_INTEGER) return;
    this.bootTimer = setTimeout(() => void this.completeBoot(), Math.max(0, at - this.now()));
    this.bootTimer.unref();
  }

  private async completeBoot(): Promise<void> {
    // A power cycle during a reboot completes that boot: the reboot's own timer must not boot it again.
    if (this.bootTimer) clearTimeout(this.bootTimer);
    this.bootTimer = null;
    const { hidden, installDrivers } = await this.modprobeState();
    this.state.bootId = randomUUID();
    this.state.bootCount += 1;
    this.state.failure = null;
    this.state.bootCompletesAt = null;
    this.state.silentUntil = null;
    this.state.hotplugs = {};
    // At boot each driver loads through its install line, so pciback (with hide=) claims hidden devices
    // first, but only for drivers that have an install line: that is why the guide adds one.
    const pcibackFirst = hidden.length > 0 && this.state.devices.some((d) => hidden.includes(d.bdf) && installDrivers.includes(d.hostDriver));
    this.state.pcibackLoaded = pcibackFirst;
    this.state.pcibackSlots = pcibackFirst ? [...hidden] : [];
    for (const d of this.state.devices) {
      d.driver = pcibackFirst && hidden.includes(d.bdf) && installDrivers.includes(d.hostDriver) ? 'pciback' : d.hostDriver;
    }
    // Guests come back from their configs; only devices that are on pciback can be given to them.
    for (const g of this.state.guests) {
      const configured = await this.guestConfigDevices(g.name);
      g.liveDevices = g.state === 'running' ? configured.filter((b) => this.state.devices.find((d) => d.bdf === b)?.driver === 'pciback') : [];
    }
    await this.save();
    for (const listener of this.bootListeners) listener();
  }

  async hotplug(guestName: GuestName, bdf: PciAddress): Promise<void> {
    const guest = this.guest(guestName);
    const dev = this.device(bdf);
    if (guest.state !== 'running') throw simError(`xm pci-attach ${guestName} ${bdf}: domain is not running`);
    if (dev.driver !== 'pciback') throw simError(`xm pci-attach ${guestName} ${bdf}: device is not assignable (driver ${dev.driver ?? 'none'})`);
    await this.countHotplug(bdf);
    if (this.roll() < this.faults.attachFailureProbability) {
      await this.save();
      throw new PtcError(ErrorCode.ATTACH_FAILED, `xm pci-attach ${guestName} ${bdf}: Error: Timed out waiting for device model action (injected fault)`);
    }
    if (!guest.liveDevices.includes(bdf)) guest.liveDevices.push(bdf);
    await this.save();
  }

  async hotunplug(guestName: GuestName, bdf: PciAddress): Promise<void> {
    const guest = this.guest(guestName);
    if (!guest.liveDevices.includes(bdf)) throw simError(`xm pci-detach ${guestName} ${bdf}: device is not attached`);
    await this.countHotplug(bdf);
    guest.liveDevices = guest.liveDevices.filter((b) => b !== bdf);
    await this.save();
  }

  async saveGuest(guestName: GuestName): Promise<void> {
    const guest = this.guest(guestName);
    if (guest.state !== 'running') throw simError(`xm save ${guestName}: domain is not running`);
    guest.state = 'stopped';
    this.state.savedGuests = [...new Set([...this.state.savedGuests, guestName])];
    await this.save();
  }

  async restoreGuest(guestName: GuestName): Promise<void> {
    const guest = this.guest(guestName);
    if (!this.state.savedGuests.includes(guestName)) throw simError(`xm restore: no saved image of ${guestName}`);
    guest.state = 'running';
    this.state.savedGuests = this.state.savedGuests.filter((g) => g !== guestName);
    await this.save();
  }

  async migrateGuest(guestName: GuestName, target: string): Promise<void> {
    const guest = this.guest(guestName);
    if (guest.state !== 'running') throw simError(`xm migrate ${guestName} ${target}: domain is not running`);
    // The guest now runs elsewhere: this host no longer has it.
    this.state.guests = this.state.guests.filter((g) => g.name !== guestName);
    await this.save();
  }

  private async countHotplug(bdf: PciAddress): Promise<void> {
    const now = this.now();
    const recent = (this.state.hotplugs[bdf] ?? []).filter((t) => now - t < KERNEL_HOTPLUG_WINDOW_MS);
    recent.push(now);
    this.state.hotplugs[bdf] = recent;
    if (recent.length > KERNEL_HOTPLUG_LIMIT) {
      this.state.failure = `kernel error: interrupt tracking overflow after ${recent.length} hotplugs of ${bdf} within ${KERNEL_HOTPLUG_WINDOW_MS / 1000} s`;
      await this.save();
      throw simError(`host ${this.hostId} stopped answering: ${this.state.failure}`);
    }
  }

  /** Deterministic dice (mulberry32) so a faulty run can be replayed from its seed. */
  private roll(): number {
    let t = (this.state.diceState += 0x6d2b79f5);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}

function inUseReason(d: SimDeviceState): string {
  return d.role === 'uplink'
    ? `${d.netdev ?? 'its interface'} carries the host's management uplink (default route)`
    : 'it controls the disk with the root filesystem (/ is mounted from it)';
}
