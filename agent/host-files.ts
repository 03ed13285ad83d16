import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';

/**
 * Files of a host under a root prefix: `/` on a real host, `<dir>/hosts/<hostId>` for a simulated
 * one, a fixture tree in tests. Writes are atomic (temp file + fsync + rename) so a crash never leaves
 * a half-written modprobe file, and the previous content is kept as `<file>.ptctl.bak`.
 */
export class HostFiles {
  /** The root, absolute and normalized, and the same with one trailing separator. */
  private readonly base: string;
  private readonly under: string;

  constructor(readonly root: string) {
    this.base = resolve(root);
    this.under = this.base.endsWith(sep) ? this.base : `${this.base}${sep}`;
  }

  /**
   * Absolute path of a host path such as `/etc/modprobe.conf`. A prefix test on the normalized join,
   * not path.relative: a scan resolves some 300 paths, and relative() resolves both of its arguments.
   */
  resolve(hostPath: string): string {
    const resolved = join(this.base, hostPath);
    if (resolved !== this.base && !resolved.startsWith(this.under)) throw new Error(`path ${hostPath} escapes the host root`);
    return resolved;
  }

  /**
   * Returns the file's text, or null when it does not exist. A synchronous read, as HostTree's: every
   * command reads the hide configuration and each guest's config, small local files, and a trip
   * through libuv's thread pool for each cost more than the read.
   */
  async read(hostPath: string): Promise<string | null> {
    try {
      return readFileSync(this.resolve(hostPath), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  /**
   * The backup and the new text are written and fsynced side by side (two fsyncs in flight cost about
   * one: every hide and unhide pays this before its reply), then renamed in order, backup first. A
   * crash leaves the old file (with the old or the new backup) or the new file with its backup, as
   * when the two were written one after the other; a failed write renames nothing and leaves no temp file.
   */
  async writeAtomic(hostPath: string, text: string): Promise<void> {
    const target = this.resolve(hostPath);
    await mkdir(dirname(target), { recursive: true });
    const previous = await this.read(hostPath);
    const backup = `${target}.ptctl.bak`;
    const written = await Promise.allSettled([previous === null ? Promise.resolve(null) : writeSynced(backup, previous), writeSynced(target, text)]);
    const failed = written.find((w): w is PromiseRejectedResult => w.status === 'rejected');
    if (failed) {
      for (const w of written) if (w.status === 'fulfilled' && w.value !== null) await unlink(w.value).catch(() => undefined);
      throw failed.reason;
    }
    const [bakTmp, newTmp] = written.map((w) => (w.status === 'fulfilled' ? w.value : null));
    if (bakTmp) await rename(bakTmp, backup);
    if (newTmp) await rename(newTmp, target);
  }
}

/** Writes `text` to a new temp file beside `target` and fsyncs it; its path. */
async function writeSynced(target: string, text: string): Promise<string> {
  const tmp = `${target}.${randomBytes(4).toString('hex')}.tmp`;
  const handle = await open(tmp, 'w', 0o644);
  try {
    await handle.writeFile(text, 'utf8');
    await handle.sync();
  } catch (err) {
    await handle.close();
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await handle.close();
  return tmp;
}

async function writeDurably(target: string, text: string): Promise<void> {
  await rename(await writeSynced(target, text), target);
}

/** Writes JSON state atomically; used by the simulator and the agent's own records. */
export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeDurably(path, JSON.stringify(value, null, 2) + '\n');
}

export async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as unknown;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

