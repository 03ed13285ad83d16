import { ErrorCode, PtcError } from '../../schemas/errors.js';
import type { Power } from '../backend.js';
import { type CommandRunner, mustRun } from './command-runner.js';
import type { HostTree } from './host-tree.js';

export const BOOT_ID_PATH = '/proc/sys/kernel/random/boot_id';
export const REBOOT_ARGV: readonly string[] = ['/sbin/reboot'];

/** Boots of a real host: the kernel's boot id, and /sbin/reboot. A real reboot also ends the agent, which starts again with the host. */
export class LinuxPower implements Power {
  private rebooting = false;

  constructor(
    private readonly tree: HostTree,
    private readonly runner: CommandRunner,
  ) {}

  /** The kernel's boot id (a new one after every boot). Throws COMMAND_FAILED when procfs does not have it. */
  async bootId(): Promise<string> {
    const id = (await this.tree.text(BOOT_ID_PATH))?.trim();
    if (!id) throw new PtcError(ErrorCode.COMMAND_FAILED, `${BOOT_ID_PATH} is missing or empty; is /proc mounted?`);
    return id;
  }

  /** True, until this agent has started a reboot: from then on the host is going down. */
  responsive(): boolean {
    return !this.rebooting;
  }

  /** Runs /sbin/reboot, which returns once init has the request. Throws COMMAND_FAILED when it exits non-zero. */
  async reboot(): Promise<void> {
    await mustRun(this.runner, REBOOT_ARGV);
    this.rebooting = true;
  }

  /** Never calls the listener: after a real boot the agent itself starts again and announces the new boot id. */
  onBoot(_listener: () => void): void {}
}
