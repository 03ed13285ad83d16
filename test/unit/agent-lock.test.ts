import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LOCK_FILE, StateDirLock, processStartTime, writeInstanceRecord } from '../../agent/agent-lock.js';
import { ErrorCode, isPtcError } from '../../schemas/errors.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function stateDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'ptctl-lock-'));
  dirs.push(d);
  return d;
}
const lockOf = (pid: number, instance: string, pidStart: string | null = processStartTime(pid)): string =>
  JSON.stringify({ pid, pidStart, instance, hostId: 'h1', at: new Date().toISOString() });

/** A pid that is not running: a child that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0']);
  await new Promise((r) => child.on('exit', r));
  return child.pid ?? 999_999;
}

void describe('state dir lock (rule 16 on one machine)', () => {
  void it('refuses a second agent with the holder’s pid, and frees the dir on release', async () => {
    const dir = stateDir();
    const first = await StateDirLock.acquire(dir, 'h1', 'one');
    await assert.rejects(StateDirLock.acquire(dir, 'h1', 'two'), (e) => isPtcError(e, ErrorCode.AGENT_DUPLICATE) && e.message.includes(`pid ${process.pid}`));
    await first.release();
    assert.equal(existsSync(join(dir, LOCK_FILE)), false);
    const second = await StateDirLock.acquire(dir, 'h1', 'two');
    await second.release();
  });

  void it('refuses while another live process holds it', async () => {
    const dir = stateDir();
    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 20000)']);
    try {
      await new Promise((r) => holder.on('spawn', r));
      const pid = holder.pid ?? 0;
      writeFileSync(join(dir, LOCK_FILE), lockOf(pid, 'other'));
      await assert.rejects(StateDirLock.acquire(dir, 'h1', 'me'), (e) => isPtcError(e, ErrorCode.AGENT_DUPLICATE) && e.message.includes(`pid ${pid}`));
    } finally {
      holder.kill('SIGKILL');
    }
  });

  void it('takes over a lock whose holder is dead, remembering its instance as this agent’s past', async () => {
    const dir = stateDir();
    writeFileSync(join(dir, LOCK_FILE), lockOf(await deadPid(), 'crashed', null));
    const lock = await StateDirLock.acquire(dir, 'h1', 'me');
    assert.equal(lock.previousInstance, 'crashed');
    assert.equal((JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8')) as { pid: number }).pid, process.pid);
    await lock.release();
  });

  void it('takes over a lock whose pid now belongs to another program, and a torn lock', async () => {
    const dir = stateDir();
    writeFileSync(join(dir, LOCK_FILE), lockOf(process.pid, 'long-ago', '1'));
    const lock = await StateDirLock.acquire(dir, 'h1', 'me');
    await lock.release();
    writeFileSync(join(dir, LOCK_FILE), '{"pid":12');
    const again = await StateDirLock.acquire(dir, 'h1', 'me');
    await again.release();
  });

  void it('knows the previous instance from the instance record after a clean stop', async () => {
    const dir = stateDir();
    const first = await StateDirLock.acquire(dir, 'h1', 'first');
    await writeInstanceRecord(dir, 'first');
    await first.release();
    const second = await StateDirLock.acquire(dir, 'h1', 'second');
    assert.equal(second.previousInstance, 'first');
    await second.release();
  });
});
