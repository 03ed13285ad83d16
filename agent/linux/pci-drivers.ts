import type { DriverName } from '../../schemas/ids.js';
import type { PciAddress } from '../../schemas/pci-address.js';
import { ErrorCode, PtcError } from '../../schemas/errors.js';
import type { PciDrivers } from '../backend.js';
import { type CommandRunner, mustRun } from './command-runner.js';
import type { HostTree } from './host-tree.js';
import type { LinuxKernelModules } from './kernel-modules.js';
import { DRIVERS_PROBE, PCI_DEVICES, PCI_DRIVERS, PCIBACK, PCIBACK_DIR, type PciSysfs } from './pci-sysfs.js';

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
   * Loads pciback when absent, unbinds the device from its driver (when it has one), writes
   * `new_slot` only when the address is not in `slots` (rule 13), then `bind`. Returns at once when
   * the device is already on pciback. Throws DEVICE_NOT_FOUND for an unknown address and
   * COMMAND_FAILED when modprobe fails or the kernel refuses a write.
   */
  async bindPciback(bdf: PciAddress): Promise<void> {
    await this.requirePresent(bdf);
    const current = await this.pci.driverOf(bdf);
    if (current === PCIBACK) return;
    await this.modules.ensurePciback();
    if (current !== null) await this.tree.writeControl(`${PCI_DEVICES}/${bdf}/driver/unbind`, bdf);
    if (!(await this.pci.pcibackSlots()).includes(bdf)) await this.tree.writeControl(`${PCIBACK_DIR}/new_slot`, bdf);
    await this.tree.writeControl(`${PCIBACK_DIR}/bind`, bdf);
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
