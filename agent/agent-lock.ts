import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, open, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { ErrorCode, PtcError } from '../schemas/errors.js';

const LockFile = z.object({
  pid: z.number().int().positive(),
  /** The holder's start time in clock ticks since boot (/proc/<pid>/stat field 22): a reused pid is not the holder. */
  pidStart: z.string().nullable(),
  instance: z.string(),
  hostId: z.string(),
  at: z.string(),
});
type LockFile = z.infer<typeof LockFile>;

export const LOCK_FILE = 'agent.lock';

/** Field 22 of /proc/<pid>/stat, or null where there is no procfs. The command name (field 2) may hold spaces and parentheses. */
export function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else; it still holds the lock.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether the lock's holder is still the process that wrote it (a dead pid, or a pid reused by another program, is not). */
function held(lock: LockFile): boolean {
  if (!alive(lock.pid)) return false;
  const start = processStartTime(lock.pid);
  return lock.pidStart === null || start === null || start === lock.pidStart;
}

/**
 * Rule 16, on one machine: the agent's state dir belongs to one running agent. The lock is a file
 * created with O_EXCL holding the holder's pid and start time; a lock whose holder is gone (crash,
 * SIGKILL, reboot) is taken over. A second agent gets AGENT_DUPLICATE naming the pid that holds it.
 */
export class StateDirLock {
  private constructor(
    private readonly path: string,
    private readonly content: LockFile,
    /** The instance id of the agent that held this state dir before (crashed or stopped), if any. */
    readonly previousInstance: string | null,
  ) {}

  static async acquire(stateDir: string, hostId: string, instance: string): Promise<StateDirLock> {
    await mkdir(stateDir, { recursive: true });
    const path = join(stateDir, LOCK_FILE);
    const content: LockFile = { pid: process.pid, pidStart: processStartTime(process.pid), instance, hostId, at: new Date().toISOString() };
    let previous: string | null = null;
    // Bounded: each round either creates the lock, finds a live holder, or removes one stale lock.
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const handle = await open(path, 'wx', 0o600);
        try {
          await handle.writeFile(JSON.stringify(content) + '\n');
          await handle.sync();
        } finally {
          await handle.close();
        }
        return new StateDirLock(path, content, previous ?? (await readInstanceRecord(stateDir)));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const text = await readFile(path, 'utf8').catch(() => null);
      if (text === null) continue;
      let existing: LockFile | null = null;
      try {
        const parsed = LockFile.safeParse(JSON.parse(text));
        existing = parsed.success ? parsed.data : null;
      } catch {
        existing = null;
      }
      if (existing && held(existing) && !(existing.pid === process.pid && existing.instance === instance)) {
        throw new PtcError(
          ErrorCode.AGENT_DUPLICATE,
          `another ptctl agent (pid ${existing.pid}, host ${existing.hostId}) already runs on ${stateDir} (lock ${path}); stop it first (systemctl stop ptctl-agent) or use another --state-dir`,
        );
      }
      // Stale (holder dead, or a torn lock written by a crash mid-create): take it over, unless it changed meanwhile.
      previous = existing?.instance ?? previous;
      if ((await readFile(path, 'utf8').catch(() => null)) === text) await unlink(path).catch(() => undefined);
    }
    throw new PtcError(ErrorCode.AGENT_DUPLICATE, `could not take the agent lock ${path}: another agent keeps replacing it`);
  }

  /** The instance id this lock was taken for. */
  get instance(): string {
    return this.content.instance;
  }

  /** Takes the lock for a new agent instance (a random id). */
  static async forNewAgent(stateDir: string, hostId: string): Promise<StateDirLock> {
    return StateDirLock.acquire(stateDir, hostId, randomUUID());
  }

  /** Removes the lock if it is still this agent's. */
  async release(): Promise<void> {
    const text = await readFile(this.path, 'utf8').catch(() => null);
    if (text !== null && text.trim() === JSON.stringify(this.content)) await unlink(this.path).catch(() => undefined);
  }
}

const INSTANCE_FILE = 'agent.instance';

/** The instance id the last agent on this state dir ran as: its heartbeat in KV is this agent's own past, not a rival's. */
async function readInstanceRecord(stateDir: string): Promise<string | null> {
  const text = await readFile(join(stateDir, INSTANCE_FILE), 'utf8').catch(() => null);
  return text === null || text.trim() === '' ? null : text.trim();
}

export async function writeInstanceRecord(stateDir: string, instance: string): Promise<void> {
  const handle = await open(join(stateDir, INSTANCE_FILE), 'w', 0o600);
  try {
    await handle.writeFile(instance + '\n');
    await handle.sync();
  } finally {
    await handle.close();
  }
}
