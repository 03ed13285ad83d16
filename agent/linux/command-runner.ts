import { execFile } from 'node:child_process';
import { ErrorCode, PtcError } from '../../schemas/errors.js';

export interface CommandResult {
  /** Exit code; 127 when the program could not be started, 124 when it was killed on timeout. */
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  timeoutMs?: number;
}

/**
 * The one way the linux backend runs a program (rule 9): an argument array, never a shell. A program
 * that fails returns its code; `run` itself never rejects for a failed or missing program, so callers
 * judge the code and the host's state, not an exception.
 */
export interface CommandRunner {
  run(argv: readonly string[], opts?: RunOptions): Promise<CommandResult>;
}

export const DEFAULT_COMMAND_TIMEOUT_MS = 60_000;
const MAX_OUTPUT_BYTES = 16 * 1024 * 1024;
export const EXIT_NOT_STARTED = 127;
export const EXIT_TIMED_OUT = 124;

/** The last non-empty line of stderr (else stdout): where xl, xm and modprobe say why they failed. */
export function lastLine(result: CommandResult): string {
  const last = (text: string): string | undefined =>
    text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '')
      .pop();
  return last(result.stderr) ?? last(result.stdout) ?? '(no output)';
}

export function commandFailed(argv: readonly string[], result: CommandResult): PtcError {
  return new PtcError(ErrorCode.COMMAND_FAILED, `${argv.join(' ')} failed (exit ${result.code}): ${lastLine(result)}`);
}

/** Runs a command and returns its stdout; throws COMMAND_FAILED (with the command and stderr's last line) on a non-zero exit. */
export async function mustRun(runner: CommandRunner, argv: readonly string[], opts?: RunOptions): Promise<string> {
  const result = await runner.run(argv, opts);
  if (result.code !== 0) throw commandFailed(argv, result);
  return result.stdout;
}

/** Runs programs with `execFile`: no shell, output captured, killed when it overruns its timeout. */
export class ExecRunner implements CommandRunner {
  constructor(private readonly defaults: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}) {}

  run(argv: readonly string[], opts: RunOptions = {}): Promise<CommandResult> {
    const [file, ...args] = argv;
    if (file === undefined || file === '') return Promise.resolve({ code: EXIT_NOT_STARTED, stdout: '', stderr: 'empty command line' });
    const timeoutMs = opts.timeoutMs ?? this.defaults.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    return new Promise((resolve) => {
      execFile(
        file,
        args,
        {
          shell: false,
          timeout: timeoutMs,
          // SIGTERM can be ignored by a wedged toolstack; an agent that waits on it forever answers nothing.
          killSignal: 'SIGKILL',
          maxBuffer: MAX_OUTPUT_BYTES,
          encoding: 'utf8',
          // xl, xm, ip and modprobe are parsed by their English output.
          env: { ...(this.defaults.env ?? process.env), LC_ALL: 'C' },
        },
        (error, stdout, stderr) => {
          if (error === null) {
            resolve({ code: 0, stdout, stderr });
            return;
          }
          const code: unknown = error.code;
          if (typeof code === 'number') {
            resolve({ code, stdout, stderr });
          } else if (error.killed && error.signal !== null) {
            const why = error.signal === 'SIGKILL' ? `killed after ${timeoutMs} ms (timeout)` : `killed by ${error.signal}`;
            resolve({ code: EXIT_TIMED_OUT, stdout, stderr: appendLine(stderr, `${file}: ${why}`) });
          } else if (error.signal) {
            resolve({ code: 128 + signalNumber(error.signal), stdout, stderr: appendLine(stderr, `${file}: killed by ${error.signal}`) });
          } else if (typeof code === 'string' && code.startsWith('ERR_CHILD_PROCESS_STDIO_MAXBUFFER')) {
            resolve({ code: 1, stdout, stderr: appendLine(stderr, `${file}: output exceeded ${MAX_OUTPUT_BYTES} bytes`) });
          } else {
            // ENOENT, EACCES…: the program never ran. 127 is what a shell would report.
            resolve({ code: EXIT_NOT_STARTED, stdout, stderr: appendLine(stderr, `${file}: ${error.message}`) });
          }
        },
      );
    });
  }
}

function appendLine(text: string, line: string): string {
  return text === '' || text.endsWith('\n') ? `${text}${line}\n` : `${text}\n${line}\n`;
}

function signalNumber(signal: NodeJS.Signals): number {
  const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGTERM: 15 };
  return numbers[signal] ?? 0;
}

/** One canned answer of a RecordingRunner. */
export interface CannedCommand {
  /** The exact argv, or a predicate over it. */
  match: readonly string[] | ((argv: readonly string[]) => boolean);
  /** The answer (missing fields: code 0, empty output), or a function that computes it and may change a fixture. */
  result?: Partial<CommandResult> | ((argv: readonly string[]) => Partial<CommandResult> | Promise<Partial<CommandResult>>);
  /** How many calls it answers; unlimited when absent. */
  times?: number;
}

/** Thrown by RecordingRunner for a command nobody expected, so a test fails loudly instead of passing on a default. */
export class UnexpectedCommandError extends Error {
  override readonly name = 'UnexpectedCommandError';
  constructor(readonly argv: readonly string[]) {
    super(`RecordingRunner: unexpected command ${JSON.stringify(argv)}`);
  }
}

/**
 * A CommandRunner for tests: records every argv in order and answers from canned results. Among the
 * constructor's list the first match wins; `on` adds an answer that wins over all earlier ones. An
 * unmatched command throws (and is still recorded) rather than returning a default.
 */
export class RecordingRunner implements CommandRunner {
  readonly calls: string[][] = [];
  /** The options of each call, in the order of `calls` (tests check per-verb timeouts). */
  readonly options: (RunOptions | undefined)[] = [];
  private readonly canned: { command: CannedCommand; used: number }[] = [];

  constructor(canned: readonly CannedCommand[] = []) {
    for (const c of [...canned].reverse()) this.on(c.match, c.result, c.times);
  }

  /** Adds an answer that wins over the ones given before, so a test can override a fixture host's defaults. */
  on(match: CannedCommand['match'], result: CannedCommand['result'] = {}, times?: number): this {
    this.canned.unshift({ command: { match, result, ...(times === undefined ? {} : { times }) }, used: 0 });
    return this;
  }

  async run(argv: readonly string[], opts?: RunOptions): Promise<CommandResult> {
    this.calls.push([...argv]);
    this.options.push(opts);
    const entry = this.canned.find(({ command, used }) => (command.times === undefined || used < command.times) && matches(command.match, argv));
    if (!entry) throw new UnexpectedCommandError(argv);
    entry.used += 1;
    const result = typeof entry.command.result === 'function' ? await entry.command.result(argv) : (entry.command.result ?? {});
    return { code: result.code ?? 0, stdout: result.stdout ?? '', stderr: result.stderr ?? '' };
  }

  /** The calls `ignore` does not match: lets a test look at effects without the scan's read-only commands. */
  callsExcept(ignore: (argv: readonly string[]) => boolean): string[][] {
    return this.calls.filter((c) => !ignore(c));
  }

  clear(): void {
    this.calls.length = 0;
    this.options.length = 0;
  }
}

function matches(match: CannedCommand['match'], argv: readonly string[]): boolean {
  if (typeof match === 'function') return match(argv);
  return match.length === argv.length && match.every((a, i) => a === argv[i]);
}
