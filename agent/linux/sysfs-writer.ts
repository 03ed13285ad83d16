import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { ErrorCode, PtcError } from '../../schemas/errors.js';

/**
 * The writer process: one write(2) per request line, its outcome as a reply line. Inline so it runs
 * from the single-file agent bundle as from the package (no file to find), started as `node -e`: an
 * argument array, no shell.
 */
const WRITER_SOURCE = `
const { openSync, writeSync, closeSync, constants } = require('node:fs');
require('node:readline').createInterface({ input: process.stdin }).on('line', (line) => {
  const { id, path, data } = JSON.parse(line);
  let reply;
  try {
    const fd = openSync(path, constants.O_WRONLY | constants.O_APPEND);
    try { writeSync(fd, data); } finally { closeSync(fd); }
    reply = { id, ok: true };
  } catch (err) {
    reply = { id, ok: false, code: err.code || null, message: String(err.message || err) };
  }
  process.stdout.write(JSON.stringify(reply) + '\\n');
});
`;

interface Pending {
  /** The writer the request went to: a killed writer's exit fails only its own requests. */
  child: ChildProcessWithoutNullStreams;
  resolve: () => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * Sysfs control writes in a supervised child process. A write runs the driver's probe or remove inside
 * the kernel; a driver that hangs there keeps the writing thread until it returns, if ever. In the
 * agent's own process that thread is one of libuv's four, and a few hung writes would stall every file
 * read the agent does. Here the hung write holds only the child: after the timeout the child is killed
 * (or abandoned, if the kernel will not let it die), the write fails, and the next one gets a new child.
 */
export class SysfsWriter {
  private child: ChildProcessWithoutNullStreams | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;

  private start(): ChildProcessWithoutNullStreams {
    if (this.child) return this.child;
    const child = spawn(process.execPath, ['-e', WRITER_SOURCE], { stdio: ['pipe', 'pipe', 'pipe'] });
    child.unref();
    for (const s of [child.stdin, child.stdout, child.stderr] as const) (s as unknown as { unref?: () => void }).unref?.();
    createInterface({ input: child.stdout }).on('line', (line) => {
      const reply = JSON.parse(line) as { id: number; ok: boolean; code?: string | null; message?: string };
      const p = this.pending.get(reply.id);
      if (!p) return;
      this.pending.delete(reply.id);
      clearTimeout(p.timer);
      if (reply.ok) p.resolve();
      else p.reject(Object.assign(new Error(reply.message ?? 'write failed'), { code: reply.code ?? undefined }));
    });
    child.on('exit', () => {
      if (this.child === child) this.child = null;
      this.failAll(child, new PtcError(ErrorCode.COMMAND_FAILED, 'the sysfs writer process exited'));
    });
    child.on('error', (err) => this.failAll(child, err));
    this.child = child;
    return child;
  }

  private failAll(child: ChildProcessWithoutNullStreams, err: Error): void {
    for (const [id, p] of this.pending) {
      if (p.child !== child) continue;
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(err);
    }
  }

  /** Appends `data` to the file at `absPath` in the child; rejects with `timeoutMessage` (COMMAND_FAILED) after `timeoutMs`. */
  write(absPath: string, data: string, timeoutMs: number, timeoutMessage: string): Promise<void> {
    const child = this.start();
    const id = this.nextId++;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        // Stuck in the kernel: let it go; the next write starts a fresh writer.
        if (this.child === child) this.child = null;
        child.kill('SIGKILL');
        reject(new PtcError(ErrorCode.COMMAND_FAILED, timeoutMessage));
      }, timeoutMs);
      this.pending.set(id, { child, resolve, reject, timer });
      child.stdin.write(`${JSON.stringify({ id, path: absPath, data })}\n`);
    });
  }

  close(): void {
    this.child?.kill('SIGKILL');
    this.child = null;
  }
}
