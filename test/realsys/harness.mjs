// Host side of the real-system harnesses (test/xen, test/kvm): PASS/FAIL lines, bounded build phases,
// an overlay cpio appended to an initramfs, QEMU with its serial console read line by line (and
// waited on), the step server a guest's scenario asks for its next step, and one agent call over
// NATS. Node built-ins only (the NATS parts take the project's modules as arguments).
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export const secs = (ms) => (ms / 1000).toFixed(1);
/** A console line without terminal escapes and carriage returns. */
export const clean = (line) => line.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1bc/g, '').replace(/\r/g, '');

/** --name VALUE and --flag parsing for the harness scripts. */
export function cliArgs(argv = process.argv.slice(2)) {
  return {
    flag: (name) => argv.includes(name),
    opt: (name, dflt) => {
      const i = argv.indexOf(name);
      return i >= 0 && argv[i + 1] ? argv[i + 1] : dflt;
    },
  };
}

/**
 * The run's report: check() prints one PASS/FAIL line, finish() runs the cleanups (last added first),
 * prints the timings, the log path and the summary, and exits (1 on any FAIL or no check at all).
 */
export function createReport(tag) {
  const results = [];
  const timings = {};
  const cleanups = [];
  const t0 = Date.now();
  const report = {
    results,
    timings,
    cleanups,
    logPath: '',
    note: (msg) => process.stderr.write(`${tag}: ${msg}\n`),
    check(name, ok, seen) {
      results.push({ name, ok });
      process.stdout.write(`${ok ? 'PASS' : 'FAIL'} ${name}: ${seen}\n`);
    },
    async finish(code, extraTimes = []) {
      for (const c of cleanups.reverse()) await Promise.resolve().then(c).catch(() => undefined);
      const parts = Object.entries(timings).map(([k, v]) => `${k} ${secs(v)}s`).concat(extraTimes);
      process.stdout.write(`time: ${parts.join(', ')}; total ${secs(Date.now() - t0)}s\n`);
      if (report.logPath && existsSync(report.logPath)) process.stdout.write(`log: ${report.logPath}\n`);
      const failed = results.filter((r) => !r.ok).length;
      process.stdout.write(failed ? `${tag}: ${failed} of ${results.length} checks FAILED\n` : `${tag}: all ${results.length} checks passed\n`);
      process.exit(code ?? (failed || results.length === 0 ? 1 : 0));
    },
  };
  return report;
}

/** Runs argv with a time limit (inherited stdio); records its time; a failure is a FAIL line. */
export function phase(report, name, argv, { limitSec, cwd, env = {} }) {
  const start = Date.now();
  const r = spawnSync(argv[0], argv.slice(1), {
    cwd,
    stdio: ['ignore', 'inherit', 'inherit'],
    timeout: limitSec * 1000,
    killSignal: 'SIGKILL',
    env: { ...process.env, ...env },
  });
  report.timings[name] = Date.now() - start;
  if (r.status !== 0) {
    const why = r.error ? r.error.message : r.signal ? `killed by ${r.signal} (limit ${limitSec}s)` : `exit ${r.status}`;
    report.check(name, false, `${argv.join(' ')} failed: ${why}`);
    return false;
  }
  return true;
}

/**
 * Per-run files without a rebuild: a copy of baseImg with a cpio of overlayDir appended (the kernel
 * unpacks concatenated archives; later files win). Returns true on success.
 */
export function appendOverlay(baseImg, overlayDir, outImg) {
  mkdirSync(path.dirname(outImg), { recursive: true });
  const r = spawnSync('bash', ['-c',
    'set -euo pipefail; cp "$1" "$3"; cd "$2"; find . -mindepth 1 | LC_ALL=C sort | cpio --create --format=newc --owner=0:0 --quiet >>"$3"',
    'overlay', baseImg, overlayDir, outImg], { stdio: 'inherit', timeout: 120_000 });
  return r.status === 0;
}

/** A log file under logDir named PREFIX-<timestamp>.log. */
export function newLogPath(logDir, prefix) {
  mkdirSync(logDir, { recursive: true });
  return path.join(logDir, `${prefix}-${new Date().toISOString().replace(/[:.]/g, '-')}.log`);
}

/**
 * Starts QEMU with its output in logPath and in `lines` (cleaned). waitConsole(re, ms, from) resolves
 * with the first match from line index `from` on, or null on timeout or QEMU's exit. A global limit
 * kills QEMU (timedOut() says so); kill() is also registered as a cleanup of the report.
 */
export function startQemu(report, { bin, args, logPath, verbose, timeoutSec, milestones = [] }) {
  const logFile = createWriteStream(logPath);
  const lines = [];
  const waiters = new Set();
  const seenAt = {};
  const started = Date.now();
  const qemu = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let partial = '';
  let gone = false;
  let timedOut = false;
  const onData = (chunk) => {
    logFile.write(chunk);
    partial += chunk.toString('utf8');
    const parts = partial.split('\n');
    partial = parts.pop();
    for (const raw of parts) {
      const line = clean(raw);
      lines.push(line);
      if (verbose) process.stderr.write(`  | ${line}\n`);
      for (const [name, re] of milestones) {
        if (!seenAt[name] && re.test(line)) {
          seenAt[name] = Date.now() - started;
          if (!verbose) report.note(`${name} at +${secs(seenAt[name])}s`);
        }
      }
      for (const w of waiters) {
        const m = line.match(w.re);
        if (m) {
          waiters.delete(w);
          w.resolve(m);
        }
      }
    }
  };
  qemu.stdout.on('data', onData);
  qemu.stderr.on('data', onData);
  const exit = new Promise((resolve) => {
    qemu.on('error', (err) => resolve({ code: null, error: err }));
    qemu.on('exit', (code, signal) => resolve({ code, signal }));
  });
  const kill = () => {
    if (qemu.exitCode === null && qemu.signalCode === null) qemu.kill('SIGKILL');
  };
  const killer = setTimeout(() => {
    timedOut = true;
    report.note(`global timeout after ${timeoutSec}s: killing QEMU`);
    kill();
  }, timeoutSec * 1000);
  const closed = exit.then(async (r) => {
    if (partial) lines.push(clean(partial)); // a last line without its newline
    partial = '';
    gone = true;
    clearTimeout(killer);
    for (const w of waiters) w.resolve(null);
    waiters.clear();
    await new Promise((resolve) => logFile.end(resolve));
    return r;
  });
  report.cleanups.push(kill);
  function waitConsole(re, ms, from = 0) {
    for (let i = from; i < lines.length; i++) {
      const m = lines[i].match(re);
      if (m) return Promise.resolve(m);
    }
    if (gone) return Promise.resolve(null);
    return new Promise((resolve) => {
      const w = { re, resolve: (m) => { clearTimeout(timer); resolve(m); } };
      const timer = setTimeout(() => {
        waiters.delete(w);
        resolve(null);
      }, ms);
      waiters.add(w);
    });
  }
  return {
    lines,
    seenAt,
    started,
    exit: closed,
    kill,
    gone: () => gone,
    timedOut: () => timedOut,
    waitConsole,
    mark: () => lines.length,
    since: (from, re) => lines.slice(from).filter((l) => re.test(l)),
    find(re) {
      for (const l of lines) {
        const m = l.match(re);
        if (m) return m;
      }
      return null;
    },
  };
}

/**
 * The step server on 127.0.0.1: the guest's scenario connects (through a guestfwd relay), sends its
 * last result and reads one step line. step(line) hands the next step out and waits for the console
 * line "@@PTC step-done NAME rc=N"; it returns { rc (null on timeout), from (console index) }.
 */
export async function startStepServer(report, console) {
  const queue = [];
  let waiter = null;
  const server = net.createServer({ allowHalfOpen: true }, (sock) => {
    sock.on('error', () => {});
    sock.setEncoding('utf8');
    const give = (line) => sock.end(`${line}\n`);
    if (queue.length) give(queue.shift());
    else waiter = give;
    sock.on('close', () => {
      if (waiter === give) waiter = null;
    });
  });
  await new Promise((resolve, reject) => server.listen(0, '127.0.0.1', resolve).on('error', reject));
  report.cleanups.push(() => server.close());
  const send = (line) => {
    if (waiter) {
      const give = waiter;
      waiter = null;
      give(line);
    } else queue.push(line);
  };
  return {
    port: server.address().port,
    send,
    async step(line, ms = 120_000) {
      const con = console();
      const from = con.mark();
      send(line);
      const name = line.split(' ')[0];
      const m = await con.waitConsole(new RegExp(`^@@PTC step-done ${name} rc=(\\d+)`), ms, from);
      return { rc: m ? Number(m[1]) : null, from };
    },
  };
}

/** One agent call as the orchestrator: { ok, result } or { ok: false, code, message }. */
export function agentCaller(client, hostId, prefix) {
  let seq = 0;
  return async function call(command, callArgs, timeoutMs = 120_000) {
    const opId = `${prefix}-${++seq}-${command}`;
    try {
      const { result } = await client.call(hostId, command, callArgs, { opId, timeoutMs });
      return { ok: true, result };
    } catch (err) {
      return { ok: false, code: err.code ?? 'ERROR', message: err.message };
    }
  };
}
export const brief = (r) => (r.ok ? 'ok' : `${r.code}: ${r.message}`);
export const devOf = (inv, bdf) => inv?.devices?.find((d) => d.bdf === bdf);

/** QEMU options cannot carry spaces or commas in these paths. */
export const unsafeQemuPath = (...paths) => paths.some((p) => /[ ,]/.test(p));
