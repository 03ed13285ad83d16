import type { DriverName } from '../../schemas/ids.js';
import type { PciAddress } from '../../schemas/pci-address.js';
import { ErrorCode, PtcError } from '../../schemas/errors.js';
import { STUB_DRIVER } from '../../schemas/inventory.js';
import type { PciDrivers } from '../backend.js';
import { type CommandRunner, mustRun } from './command-runner.js';
import type { HostTree } from './host-tree.js';
import { DRIVERS_PROBE, normalizeOverride, PCI_DEVICES, PCI_DRIVERS, type PciSysfs } from './pci-sysfs.js';

export const VFIO_PCI = STUB_DRIVER.kvm;
export const VFIO_PCI_DIR = `${PCI_DRIVERS}/${VFIO_PCI}`;

/** Drivers a device of a vfio group may stay on while the group is used (the kernel's own list: stubs and bridge ports). */
const GROUP_SAFE_DRIVERS = new Set([VFIO_PCI, 'pci-stub', 'pcieport']);

/**
 * Binding to vfio-pci the way libvirt does it: `driver_override` names vfio-pci, the device leaves its
 * driver, `drivers_probe` lets the bus match it. Never `new_id`: that adds the vendor:device id to
 * vfio-pci's table, so it claims every device with that id (the host's other, identical NIC) and
 * takes the device back at every reprobe, which is how devices end up "stuck on vfio-pci".
 */
export class VfioPciDrivers implements PciDrivers {
  constructor(
    private readonly tree: HostTree,
    private readonly runner: CommandRunner,
    private readonly pci: PciSysfs,
    private readonly modprobe: string,
  ) {}

  private overridePath(bdf: PciAddress): string {
    return `${PCI_DEVICES}/${bdf}/driver_override`;
  }

  /** `driver_override` now; undefined when the kernel has no such file (before Linux 3.16). */
  async override(bdf: PciAddress): Promise<string | null | undefined> {
    const path = this.overridePath(bdf);
    return (await this.tree.exists(path)) ? normalizeOverride(await this.tree.text(path)) : undefined;
  }

  private async requireOverride(bdf: PciAddress): Promise<string | null> {
    if (!(await this.pci.present(bdf))) throw new PtcError(ErrorCode.DEVICE_NOT_FOUND, `no PCI device ${bdf} in ${PCI_DEVICES}`);
    const override = await this.override(bdf);
    if (override === undefined) throw new PtcError(ErrorCode.COMMAND_FAILED, `${bdf} has no driver_override file: this kernel is older than Linux 3.16, which ptctl needs to bind a single device to vfio-pci`);
    return override;
  }

  private async ensureLoaded(driver: string): Promise<void> {
    if (await this.tree.exists(`${PCI_DRIVERS}/${driver}`)) return;
    await mustRun(this.runner, [this.modprobe, driver]);
    if (!(await this.tree.exists(`${PCI_DRIVERS}/${driver}`))) throw new PtcError(ErrorCode.COMMAND_FAILED, `${this.modprobe} ${driver} succeeded but ${PCI_DRIVERS}/${driver} does not exist`);
  }

  /**
   * Loads vfio-pci when absent; then, as one transaction (rule 14): `driver_override` = vfio-pci, unbind
   * from the current driver, `drivers_probe`. When a step fails, or the bus gives the device to another
   * driver, the override is restored and the device goes back to its driver before the failure is
   * reported. Returns at once when the device is on vfio-pci through its override already.
   */
  async bindStub(bdf: PciAddress): Promise<void> {
    const previousOverride = await this.requireOverride(bdf);
    const current = await this.pci.driverOf(bdf);
    if (current === VFIO_PCI && previousOverride === VFIO_PCI) return;
    await this.ensureLoaded(VFIO_PCI);
    try {
      await this.tree.writeControl(this.overridePath(bdf), VFIO_PCI);
      if (current !== null && current !== VFIO_PCI) await this.tree.writeControl(`${PCI_DEVICES}/${bdf}/driver/unbind`, bdf);
      if ((await this.pci.driverOf(bdf)) === null) await this.tree.writeControl(DRIVERS_PROBE, bdf);
      const now = await this.pci.driverOf(bdf);
      if (now !== VFIO_PCI) throw new Error(`the bus gave it to ${now ?? 'no driver'}`);
    } catch (err) {
      const where = await this.rollBack(bdf, current, previousOverride);
      const message = err instanceof Error ? err.message : String(err);
      throw new PtcError(ErrorCode.COMMAND_FAILED, `binding ${bdf} to vfio-pci failed (${message}); ${where}`, { cause: err });
    }
  }

  /** Undoes a part-done bindStub; returns where the device is now. Never throws. */
  private async rollBack(bdf: PciAddress, original: string | null, previousOverride: string | null): Promise<string> {
    const attempt = (path: string, data: string): Promise<boolean> => this.pci.attempt(path, data);
    if ((await this.pci.driverOf(bdf)) === VFIO_PCI && original !== VFIO_PCI) await attempt(`${VFIO_PCI_DIR}/unbind`, bdf);
    if (original !== null && (await this.pci.driverOf(bdf)) === null) {
      // Named for the reprobe, so nothing else (vfio-pci's dynamic ids included) takes it first.
      await attempt(this.overridePath(bdf), original);
      await attempt(DRIVERS_PROBE, bdf);
    }
    await attempt(this.overridePath(bdf), previousOverride ?? '');
    return this.pci.rollbackOutcome(bdf, original);
  }

  /**
   * Unbinds the device from vfio-pci and gives it to `driver`: its module loaded when absent, then
   * `driver_override` = that driver for the reprobe (so a vfio-pci that learnt the device's id through
   * someone's `new_id` cannot take it back), then the override cleared. With a null driver the
   * override is cleared and the kernel probes. Returns at once when the device is on `driver` already
   * (for null: on any driver but vfio-pci); throws COMMAND_FAILED when it is on another driver.
   */
  async bindHostDriver(bdf: PciAddress, driver: DriverName | null): Promise<void> {
    await this.requireOverride(bdf);
    const current = await this.pci.driverOf(bdf);
    if (current !== null && current !== VFIO_PCI) {
      if (driver === null || current === driver) {
        if ((await this.override(bdf)) === VFIO_PCI) await this.tree.writeControl(this.overridePath(bdf), '');
        return;
      }
      throw new PtcError(ErrorCode.COMMAND_FAILED, `${bdf} is bound to ${current}, not vfio-pci; refusing to move it to ${driver}`);
    }
    if (driver !== null) await this.ensureLoaded(driver);
    await this.tree.writeControl(this.overridePath(bdf), driver ?? '');
    if (current === VFIO_PCI) await this.tree.writeControl(`${VFIO_PCI_DIR}/unbind`, bdf);
    await this.tree.writeControl(DRIVERS_PROBE, bdf);
    if (driver !== null) await this.tree.writeControl(this.overridePath(bdf), '');
  }

  /**
   * Devices vfio-pci holds for ptctl's purpose: on vfio-pci through their own override, with the
   * group's device node present and the group viable (every endpoint on vfio-pci, pci-stub or no
   * driver; bridge ports may stay on pcieport). `overridden`: devices whose override is vfio-pci.
   */
  async states(devices: readonly PciAddress[]): Promise<{ overridden: Set<PciAddress>; assignable: Set<PciAddress> }> {
    const overridden = new Set<PciAddress>();
    const assignable = new Set<PciAddress>();
    for (const bdf of devices) {
      if ((await this.override(bdf)) === VFIO_PCI) overridden.add(bdf);
      if ((await this.pci.driverOf(bdf)) !== VFIO_PCI) continue;
      const group = await this.tree.linkName(`${PCI_DEVICES}/${bdf}/iommu_group`);
      if (group === null || !(await this.tree.exists(`/dev/vfio/${group}`))) continue;
      let viable = true;
      for (const member of await this.tree.list(`/sys/kernel/iommu_groups/${group}/devices`)) {
        const driver = await this.tree.linkName(`${PCI_DEVICES}/${member}/driver`);
        if (driver !== null && !GROUP_SAFE_DRIVERS.has(driver)) viable = false;
      }
      if (viable) assignable.add(bdf);
    }
    return { overridden, assignable };
  }
}
