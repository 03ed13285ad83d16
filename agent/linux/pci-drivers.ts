import type { DriverName } from '../../schemas/ids.js';
import type { PciAddress } from '../../schemas/pci-address.js';
import { ErrorCode, PtcError } from '../../schemas/errors.js';
import type { PciDrivers } from '../backend.js';
import { type CommandRunner, mustRun } from './command-runner.js';
import type { HostTree } from './host-tree.js';
import type { LinuxKernelModules } from './kernel-modules.js';
import { DRIVERS_PROBE, normalizeOverride, PCI_DEVICES, PCI_DRIVERS, PCIBACK, PCIBACK_DIR, type PciSysfs } from './pci-sysfs.js';

/**
 * Driver binding through sysfs control files, the way `xl pci-assignable-add/-remove` does it. Each
 * method reads the state first and returns at once when it is already as wanted; whether the kernel
 * really moved the device is for the caller to judge by state (rule 12).
 */
export class LinuxPciDrivers implements PciDrivers {
  constructor(
    private readonly tree: HostTree,
    private readonly runner: CommandRunner,
    private readonly pci: PciSysfs,
    private readonly modules: LinuxKernelModules,
  ) {}

  private async requirePresent(bdf: PciAddress): Promise<void> {
    if (!(await this.pci.present(bdf))) throw new PtcError(ErrorCode.DEVICE_NOT_FOUND, `no PCI device ${bdf} in ${PCI_DEVICES}`);
  }

  /**
   * Loads pciback when absent, then, as one transaction (rule 14): sets `driver_override` to pciback
   * where the kernel has that file (an override left by driverctl or libvirt would otherwise win over
   * `new_slot` and make pciback's probe fail), unbinds the device from its driver (when it has one),
   * writes `new_slot` only when the address is not in `slots` (rule 13), then `bind`. When a write
   * fails part-way, the device goes back where it was (override restored, the slot it got removed,
   * its driver bound again or the kernel asked to probe it) before the failure is reported. Returns
   * at once when the device is already on pciback. Throws DEVICE_NOT_FOUND for an unknown address and
   * COMMAND_FAILED when modprobe fails or the kernel refuses a write (saying where the device is now).
   */
  async bindStub(bdf: PciAddress): Promise<void> {
    await this.requirePresent(bdf);
    const current = await this.pci.driverOf(bdf);
    if (current === PCIBACK) return;
    await this.modules.ensurePciback();
    const overridePath = `${PCI_DEVICES}/${bdf}/driver_override`;
    const previousOverride = (await this.tree.exists(overridePath)) ? normalizeOverride(await this.tree.text(overridePath)) : undefined;
    const hadSlot = (await this.pci.pcibackSlots()).includes(bdf);
    try {
      if (previousOverride !== undefined) await this.tree.writeControl(overridePath, PCIBACK);
      if (current !== null) await this.tree.writeControl(`${PCI_DEVICES}/${bdf}/driver/unbind`, bdf);
      if (!hadSlot) await this.tree.writeControl(`${PCIBACK_DIR}/new_slot`, bdf);
      await this.tree.writeControl(`${PCIBACK_DIR}/bind`, bdf);
    } catch (err) {
      const where = await this.rollBack(bdf, current, previousOverride, hadSlot);
      const message = err instanceof Error ? err.message : String(err);
      throw new PtcError(ErrorCode.COMMAND_FAILED, `binding ${bdf} to pciback failed (${message}); ${where}`, { cause: err });
    }
  }

  /** Undoes a part-done bindStub; returns where the device is now, for the error message. Never throws. */
  private async rollBack(bdf: PciAddress, original: string | null, previousOverride: string | null | undefined, hadSlot: boolean): Promise<string> {
    const attempt = (path: string, data: string): Promise<boolean> => this.pci.attempt(path, data);
    if (previousOverride !== undefined) await attempt(`${PCI_DEVICES}/${bdf}/driver_override`, previousOverride ?? '');
    if ((await this.pci.driverOf(bdf)) === PCIBACK) await attempt(`${PCIBACK_DIR}/unbind`, bdf);
    if (!hadSlot && (await this.tree.exists(`${PCIBACK_DIR}/remove_slot`)) && (await this.pci.pcibackSlots()).includes(bdf)) await attempt(`${PCIBACK_DIR}/remove_slot`, bdf);
    if (original !== null && (await this.pci.driverOf(bdf)) === null) {
      if (!(await attempt(`${PCI_DRIVERS}/${original}/bind`, bdf))) await attempt(DRIVERS_PROBE, bdf);
    }
    return this.pci.rollbackOutcome(bdf, original);
  }

  /**
   * Unbinds the device from pciback, drops its slot (`remove_slot`, when pciback has that file and
   * the address is in `slots`) so pciback does not claim it again, then binds `driver`, loading its
   * module first when the driver is not registered; with a null driver, asks the kernel to probe
   * (`drivers_probe`). Returns at once when the device is already on `driver` (or, for null, on any
   * host driver). Throws DEVICE_NOT_FOUND for an unknown address, COMMAND_FAILED when the device is
   * on another driver than pciback, or when a command or a write fails.
   */
  async bindHostDriver(bdf: PciAddress, driver: DriverName | null): Promise<void> {
    await this.requirePresent(bdf);
    const current = await this.pci.driverOf(bdf);
    if (current !== null && current !== PCIBACK) {
      if (driver === null || current === driver) return;
      throw new PtcError(ErrorCode.COMMAND_FAILED, `${bdf} is bound to ${current}, not pciback; refusing to move it to ${driver}`);
    }
    if (current === PCIBACK) await this.tree.writeControl(`${PCIBACK_DIR}/unbind`, bdf);
    // ptctl's own override would keep every other driver from probing the device.
    const overridePath = `${PCI_DEVICES}/${bdf}/driver_override`;
    if ((await this.tree.exists(overridePath)) && normalizeOverride(await this.tree.text(overridePath)) === PCIBACK) await this.tree.writeControl(overridePath, '');
    if ((await this.tree.exists(`${PCIBACK_DIR}/remove_slot`)) && (await this.pci.pcibackSlots()).includes(bdf)) {
      await this.tree.writeControl(`${PCIBACK_DIR}/remove_slot`, bdf);
    }
    if (driver === null) {
      await this.tree.writeControl(DRIVERS_PROBE, bdf);
      return;
    }
    if (!(await this.tree.exists(`${PCI_DRIVERS}/${driver}`))) {
      // Loading the module probes every driverless device it matches, this one included.
      await mustRun(this.runner, [this.modules.modprobe().dialect.modprobe, driver]);
      if ((await this.pci.driverOf(bdf)) === driver) return;
    }
    await this.tree.writeControl(`${PCI_DRIVERS}/${driver}/bind`, bdf);
  }
}
