import type { DriverName, GuestName } from '../../schemas/ids.js';
import type { PciAddress } from '../../schemas/pci-address.js';
import { ErrorCode, PtcError } from '../../schemas/errors.js';
import type { GuestConfigDevices, HideConfig, HostBackend, HostScan, StubState } from '../backend.js';
import type { HostFiles } from '../host-files.js';
import type { ModprobeDialect } from '../modprobe-conf.js';
import { LinuxHost } from '../linux/linux-host.js';
import { DEFAULT_PROFILE, SIM_PROFILES, type SimProfile } from './profiles.js';
import { SimFaults, type SimFaultsInput, SimKernel } from './sim-kernel.js';

export { KERNEL_HOTPLUG_LIMIT, KERNEL_HOTPLUG_WINDOW_MS, SimFaults, type SimFaultsInput } from './sim-kernel.js';

export interface SimHostOptions {
  hostDir: string;
  hostId: string;
  profile?: string | SimProfile;
  faults?: SimFaultsInput;
  now?: () => number;
}

/**
 * A simulated host: the real `linux` backend over a simulated kernel and toolstack (SimKernel) whose
 * tree lives in the host's folder. Every scan, in-use decision, bind, reload and verification is the
 * linux backend's own; only power comes from the simulated kernel, which can reboot itself and say
 * when it answers again (a real host's agent restarts with it instead).
 */
export class SimHost implements HostBackend {
  readonly files: HostFiles;

  private constructor(
    readonly hostId: string,
    readonly kernel: SimKernel,
    readonly linux: LinuxHost,
  ) {
    this.files = linux.files;
  }

  static async open(options: SimHostOptions): Promise<SimHost> {
    const profile = typeof options.profile === 'object' ? options.profile : SIM_PROFILES[options.profile ?? DEFAULT_PROFILE];
    if (!profile) throw new PtcError(ErrorCode.INVALID_INPUT, `unknown simulated host profile "${typeof options.profile === 'string' ? options.profile : ''}"; known: ${Object.keys(SIM_PROFILES).join(', ')}`);
    const kernel = await SimKernel.open({ hostDir: options.hostDir, hostId: options.hostId, profile, faults: SimFaults.parse(options.faults ?? {}), now: options.now ?? Date.now });
    const linux = new LinuxHost({ root: options.hostDir, runner: kernel, onSysfsWrite: kernel.observer });
    return new SimHost(options.hostId, kernel, linux);
  }

  get faults(): SimFaults {
    return this.kernel.faults;
  }

  scan(): Promise<HostScan> {
    return this.linux.scan();
  }

  stubState(bdf: PciAddress): Promise<StubState | null> {
    return this.linux.stubState(bdf);
  }

  modprobe(): { file: string; dialect: ModprobeDialect } {
    return this.linux.modprobe();
  }

  reloadDriver(driver: DriverName): Promise<void> {
    return this.linux.reloadDriver(driver);
  }

  hideConfig(): HideConfig {
    return this.linux.hideConfig();
  }

  winningHideSources(bdf: PciAddress): Promise<{ source: string; hidden: PciAddress[]; reason?: string }[]> {
    return this.linux.winningHideSources(bdf);
  }

  bindStub(bdf: PciAddress): Promise<void> {
    return this.linux.bindStub(bdf);
  }

  bindHostDriver(bdf: PciAddress, driver: DriverName | null): Promise<void> {
    return this.linux.bindHostDriver(bdf, driver);
  }

  aliasedDriver(bdf: PciAddress): Promise<DriverName | null> {
    return this.linux.aliasedDriver(bdf);
  }

  guestConfigPath(guest: GuestName): string {
    return this.linux.guestConfigPath(guest);
  }

  guestConfigDevices(guest: GuestName): Promise<GuestConfigDevices | null> {
    return this.linux.guestConfigDevices(guest);
  }

  addToGuestConfig(guest: GuestName, bdf: PciAddress): Promise<boolean> {
    return this.linux.addToGuestConfig(guest, bdf);
  }

  removeFromGuestConfig(guest: GuestName, bdf: PciAddress): Promise<boolean> {
    return this.linux.removeFromGuestConfig(guest, bdf);
  }

  hotplug(guest: GuestName, bdf: PciAddress): Promise<void> {
    return this.linux.hotplug(guest, bdf);
  }

  hotunplug(guest: GuestName, bdf: PciAddress): Promise<void> {
    return this.linux.hotunplug(guest, bdf);
  }

  saveGuest(guest: GuestName): Promise<void> {
    return this.linux.saveGuest(guest);
  }

  restoreGuest(guest: GuestName): Promise<void> {
    return this.linux.restoreGuest(guest);
  }

  migrateGuest(guest: GuestName, target: string): Promise<void> {
    return this.linux.migrateGuest(guest, target);
  }

  bootId(): Promise<string> {
    return this.linux.bootId();
  }

  responsive(): boolean {
    return this.kernel.responsive();
  }

  /** `/sbin/reboot` through the linux backend; the simulated kernel goes silent and boots again. */
  reboot(): Promise<void> {
    return this.linux.reboot();
  }

  onBoot(listener: () => void): void {
    this.kernel.onBoot(listener);
  }

  /** Out-of-band power cycle (IPMI): the way back from a failed kernel or a hung reboot. */
  powerCycle(): Promise<void> {
    return this.kernel.powerCycle();
  }

  async close(): Promise<void> {
    this.kernel.close();
    await this.linux.close();
  }
}
