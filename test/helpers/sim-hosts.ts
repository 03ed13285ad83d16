import { after } from 'node:test';
import { existsSync, mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SimHost } from '../../agent/sim/sim-host.js';

// A simulated kernel call is a durable (fsync'd) state write: on tmpfs when the machine has one.
const TMP = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();

/** Simulated hosts for one test file, each in a temp dir of its own; all closed and removed when the file's tests end. */
export function simHostHarness(prefix: string): { tempDir(): string; open(options: Omit<Parameters<typeof SimHost.open>[0], 'hostDir'>): Promise<{ host: SimHost; dir: string }> } {
  const dirs: string[] = [];
  const hosts: SimHost[] = [];
  after(async () => {
    for (const h of hosts) await h.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  const tempDir = (): string => {
    const dir = realpathSync(mkdtempSync(join(TMP, `${prefix}-`)));
    dirs.push(dir);
    return dir;
  };
  return {
    tempDir,
    async open(options) {
      const dir = tempDir();
      const host = await SimHost.open({ ...options, hostDir: join(dir, 'host') });
      hosts.push(host);
      return { host, dir };
    },
  };
}
