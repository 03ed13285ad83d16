import { constants, existsSync, readdirSync, readFileSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename, relative, sep } from 'node:path';
import { ErrorCode, PtcError } from '../../schemas/errors.js';
import { HostFiles } from '../host-files.js';
import { SysfsWriter } from './sysfs-writer.js';

/** One write to a sysfs control file, as the kernel receives it. */
export interface SysfsWrite {
  /** Host path, e.g. `/sys/bus/pci/drivers/pciback/new_slot`. */
  path: string;
  data: string;
}

/**
 * Called after each sysfs control write returned. Tests plug a fake kernel in here (it applies the
 * write to the fixture tree, or throws like the kernel does); an agent could log the write.
 */
export type SysfsWriteObserver = (write: SysfsWrite) => void | Promise<void>;

function missing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/**
 * The host's /sys, /proc, /dev and /lib under a root prefix: `/` on a real host, a fixture tree in
 * tests. Reads answer null or [] for what does not exist, because on a live host "absent" is a fact
 * (no driver, module not loaded), not an error. Fixture trees use relative symlinks, as sysfs does,
 * so links resolve inside the root.
 *
 * Reads are synchronous system calls behind an async API. A scan reads hundreds of tiny kernel
 * attributes; through fs/promises each costs several trips to libuv's four-thread pool (readFile is
 * open, fstat, read, close), so a scan spent more than half of its 50 ms waiting in that queue and
 * every agent command paid it (measured with HostFiles' reads made the same way: 52 → 4.4 ms p50 per
 * scan of a simulated host). sysfs and procfs attributes are answered from kernel memory; the one
 * read that can block for long, a PCI `config` of a device waking from D3cold, is bounded by the
 * kernel's PM timeouts. Writes, which run driver code and can hang for good, stay out of this process
 * (SysfsWriter).
 */
export class HostTree {
  readonly files: HostFiles;
  private realRoot: string | null = null;

  /** Set on real hosts: control writes run in a supervised child (see SysfsWriter). */
  private readonly writer: SysfsWriter | null;

  constructor(
    readonly root: string,
    private readonly observer?: SysfsWriteObserver,
    /** A sysfs write that has not returned by then fails, so one hung driver does not wedge the agent's queue. */
    private readonly writeTimeoutMs = SYSFS_WRITE_TIMEOUT_MS,
    /** Writes in a child process (default: when no simulated kernel observes them, i.e. on a real host). */
    isolateWrites = observer === undefined,
  ) {
    this.files = new HostFiles(root);
    this.writer = isolateWrites ? new SysfsWriter() : null;
  }

  /** Stops the writer process, if one runs. */
  close(): void {
    this.writer?.close();
  }

  path(hostPath: string): string {
    return this.files.resolve(hostPath);
  }

  /** The file's text, or null when it does not exist. */
  async text(hostPath: string): Promise<string | null> {
    return this.textSync(hostPath);
  }

  /** The file's bytes (sysfs `config`), or null when it does not exist. */
  async bytes(hostPath: string): Promise<Buffer | null> {
    try {
      return readFileSync(this.path(hostPath));
    } catch (err) {
      if (missing(err)) return null;
      throw err;
    }
  }

  /** When the file was last modified (ms since the epoch), or null when it does not exist. */
  async mtimeMs(hostPath: string): Promise<number | null> {
    try {
      return statSync(this.path(hostPath)).mtimeMs;
    } catch (err) {
      if (missing(err)) return null;
      throw err;
    }
  }

  /** The file's text, or null when it does not exist, for callers that answer synchronously. */
  textSync(hostPath: string): string | null {
    try {
      return readFileSync(this.path(hostPath), 'utf8');
    } catch (err) {
      if (missing(err)) return null;
      throw err;
    }
  }

  /** The last component of a symlink's target (`driver` → `e1000`), or null when there is no link. */
  async linkName(hostPath: string): Promise<string | null> {
    try {
      return basename(readlinkSync(this.path(hostPath)));
    } catch (err) {
      if (missing(err) || (err as NodeJS.ErrnoException).code === 'EINVAL') return null;
      throw err;
    }
  }

  /** Whether the path exists (following links). */
  async exists(hostPath: string): Promise<boolean> {
    try {
      statSync(this.path(hostPath));
      return true;
    } catch (err) {
      if (missing(err)) return false;
      throw err;
    }
  }

  existsSync(hostPath: string): boolean {
    return existsSync(this.path(hostPath));
  }

  /** Directory entries, sorted; [] when the directory does not exist. */
  async list(hostPath: string): Promise<string[]> {
    try {
      return readdirSync(this.path(hostPath)).sort();
    } catch (err) {
      if (missing(err)) return [];
      throw err;
    }
  }

  /**
   * Directory entries, sorted; [] when it does not exist; null when it exists but cannot be read
   * (`/proc/<pid>/fd` of a process the agent may not inspect), which a caller must not read as empty.
   */
  async listReadable(hostPath: string): Promise<string[] | null> {
    try {
      return readdirSync(this.path(hostPath)).sort();
    } catch (err) {
      if (missing(err)) return [];
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') return null;
      throw err;
    }
  }

  /** The host path a path resolves to after all links (`/sys/block/sda/device` → `/sys/devices/…`); null when absent or outside the root. */
  async realHostPath(hostPath: string): Promise<string | null> {
    return this.realHostPathSync(hostPath);
  }

  /** realHostPath for callers that answer synchronously (the guest config path). */
  realHostPathSync(hostPath: string): string | null {
    try {
      return this.hostPathOf(realpathSync.native(this.path(hostPath)));
    } catch (err) {
      if (missing(err)) return null;
      throw err;
    }
  }

  private hostPathOf(real: string): string | null {
    this.realRoot ??= realpathSync(this.root);
    const rel = relative(this.realRoot, real);
    if (rel.startsWith('..')) return null;
    return `/${rel.split(sep).join('/')}`;
  }

  /** `major:minor` of a block special file, or null when it is not one. */
  async blockDeviceNumber(hostPath: string): Promise<string | null> {
    try {
      const st = statSync(this.path(hostPath));
      return st.isBlockDevice() ? majorMinor(st.rdev) : null;
    } catch (err) {
      if (missing(err)) return null;
      throw err;
    }
  }

  /** `major:minor` of the filesystem a path lives on (what /dev/root stands for); null when the path does not exist. */
  async fileSystemDeviceNumber(hostPath: string): Promise<string | null> {
    try {
      return majorMinor(statSync(this.path(hostPath)).dev);
    } catch (err) {
      if (missing(err)) return null;
      throw err;
    }
  }

  /**
   * Writes one PCI address to a sysfs control file (bind, unbind, new_slot, remove_slot,
   * drivers_probe) the way `echo $BDF > file` does: one write(2) of the address and a newline. Never
   * creates the file: a missing control file means the driver or the device is not there. The kernel
   * ignores the offset of attribute writes; O_APPEND keeps every write visible in a fixture tree.
   * Throws COMMAND_FAILED when the kernel refuses the write.
   */
  async writeControl(hostPath: string, bdf: string): Promise<void> {
    const data = `${bdf}\n`;
    const stuck = `writing ${bdf} to ${hostPath} did not return within ${this.writeTimeoutMs / 1000} s (the kernel is stuck in the driver); the agent goes on, check the device before retrying`;
    try {
      if (this.writer) {
        await this.writer.write(this.path(hostPath), data, this.writeTimeoutMs, stuck);
      } else {
        await withTimeout(this.writeTimeoutMs, stuck, async () => {
          const handle = await open(this.path(hostPath), constants.O_WRONLY | constants.O_APPEND);
          try {
            await handle.write(data);
          } finally {
            await handle.close();
          }
        });
      }
      await this.observer?.({ path: hostPath, data });
    } catch (err) {
      if (err instanceof PtcError) throw err;
      const code = (err as NodeJS.ErrnoException).code;
      throw new PtcError(ErrorCode.COMMAND_FAILED, `writing ${bdf} to ${hostPath} failed: ${code ?? (err as Error).message}`, { cause: err });
    }
  }
}

/** A driver's probe or remove runs inside the write: seconds for a slow one, never this long for a healthy one. */
export const SYSFS_WRITE_TIMEOUT_MS = 30_000;

/**
 * Fails with COMMAND_FAILED when `work` has not settled in time. The write itself cannot be cancelled
 * (it sits in a libuv thread, in the kernel); what this buys is that the agent answers, reports, and
 * serves the next command instead of waiting forever.
 */
async function withTimeout(ms: number, message: string, work: () => Promise<void>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new PtcError(ErrorCode.COMMAND_FAILED, message)), ms);
  });
  try {
    await Promise.race([work(), expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** Linux's dev_t encoding (glibc's gnu_dev_major / gnu_dev_minor). */
function majorMinor(dev: number): string {
  const d = BigInt(dev);
  const major = ((d >> 8n) & 0xfffn) | ((d >> 32n) & 0xfffff000n);
  const minor = (d & 0xffn) | ((d >> 12n) & 0xffffff00n);
  return `${major}:${minor}`;
}
