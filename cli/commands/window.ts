import { ScheduleAlreadyRunning, ScheduleNotFoundError, ScheduleOverlapPolicy } from '@temporalio/client';
import { readFile } from 'node:fs/promises';
import { durationFlag } from '../flags.js';
import { parse as parseYaml } from 'yaml';
import { ErrorCode, PtcError } from '../../schemas/errors.js';
import { RolloutName } from '../../schemas/rollout.js';
import { WindowSpec, type WindowSpecInput, windowScheduleId } from '../../schemas/window.js';
import { TASK_QUEUE } from '../../workflows/definitions.js';
import { openTemporal } from '../clients.js';
import { type ConnectionFlags, resolveConnection } from '../connection.js';
import { printJson } from '../output.js';
import { readPlanFile } from './plan.js';

export interface WindowCreateOptions extends ConnectionFlags {
  name: string;
  cron: string;
  timezone: string;
  duration: string;
  cutoff?: string | undefined;
  expectedHost?: string | undefined;
  plan: string;
  json: boolean;
}


/** Temporal refuses a catch-up window under 10 s. */
const MIN_CATCHUP_MS = 10_000;

/**
 * How late a missed firing may still run: while a host could still start in the window (its duration
 * minus the cutoff and one host's expected time). Temporal's default is a year.
 */
export function catchupWindowMs(input: WindowSpecInput): number {
  const spec = WindowSpec.parse(input);
  return Math.max(MIN_CATCHUP_MS, spec.durationMs - spec.cutoffMs - spec.expectedHostMs);
}

/** `ptctl window create`: a Temporal Schedule whose every firing runs the plan's remaining work in the window. */
export async function windowCreateCommand(opts: WindowCreateOptions): Promise<void> {
  const name = RolloutName.safeParse(opts.name);
  if (!name.success) throw new PtcError(ErrorCode.INVALID_INPUT, `window name: ${name.error.issues[0]?.message ?? 'invalid'}`);
  if (opts.cron.trim().split(/\s+/).length !== 5) throw new PtcError(ErrorCode.INVALID_INPUT, `--cron: "${opts.cron}" is not a 5-field cron expression like "0 2 * * 6"`);
  try {
    new Intl.DateTimeFormat('en', { timeZone: opts.timezone });
  } catch {
    throw new PtcError(ErrorCode.INVALID_INPUT, `--timezone: "${opts.timezone}" is not an IANA time zone like Europe/Berlin`);
  }
  // Validated now (every problem reported before the schedule exists); stored as written, because each
  // firing validates and resolves it again against the inventory of that moment.
  await readPlanFile(opts.plan);
  const plan: unknown = parseYaml(await readFile(opts.plan, 'utf8'));
  const spec: WindowSpecInput = {
    name: name.data,
    durationMs: durationFlag(opts.duration, '--duration'),
    ...(opts.cutoff !== undefined ? { cutoffMs: durationFlag(opts.cutoff, '--cutoff') } : {}),
    ...(opts.expectedHost !== undefined ? { expectedHostMs: durationFlag(opts.expectedHost, '--expected-host') } : {}),
    plan,
  };
  const conn = await resolveConnection(opts, process.env, 'operator');
  const { client, close } = await openTemporal(conn);
  try {
    await client.schedule.create({
      scheduleId: windowScheduleId(name.data),
      spec: { cronExpressions: [opts.cron], timezone: opts.timezone },
      action: { type: 'startWorkflow', workflowType: 'windowWorkflow', taskQueue: TASK_QUEUE, workflowId: `window/${name.data}`, args: [spec] },
      // A window still running when the next one is due is not doubled up. A firing missed during an
      // outage is still taken while a host could start in it; later ones are dropped by the server (the
      // window workflow, opening at the due time, would start nothing anyway).
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: catchupWindowMs(spec) },
    });
    if (opts.json) printJson({ ok: true, schedule: windowScheduleId(name.data), spec: { ...spec, plan: undefined } });
    else process.stdout.write(`window ${name.data}: "${opts.cron}" ${opts.timezone}, open ${opts.duration}, plan ${opts.plan} (schedule ${windowScheduleId(name.data)})\n`);
  } catch (err) {
    if (err instanceof ScheduleAlreadyRunning) throw new PtcError(ErrorCode.INVALID_INPUT, `window ${name.data} already exists; delete it first (ptctl window delete ${name.data})`);
    throw err;
  } finally {
    await close();
  }
}

export async function windowListCommand(opts: ConnectionFlags & { json: boolean }): Promise<void> {
  const conn = await resolveConnection(opts, process.env, 'viewer');
  const { client, close } = await openTemporal(conn);
  try {
    const windows: Array<{ name: string; cron: string[]; timezone: string | undefined; next: string | null; paused: boolean }> = [];
    for await (const s of client.schedule.list()) {
      if (!s.scheduleId.startsWith('window-')) continue;
      const d = await client.schedule.getHandle(s.scheduleId).describe();
      windows.push({
        name: s.scheduleId.slice('window-'.length),
        cron: d.spec.calendars?.map((c) => JSON.stringify(c)) ?? [],
        timezone: d.spec.timezone,
        next: d.info.nextActionTimes[0]?.toISOString() ?? null,
        paused: d.state.paused,
      });
    }
    if (opts.json) printJson(windows);
    else if (windows.length === 0) process.stdout.write('no windows\n');
    else for (const w of windows) process.stdout.write(`${w.name}: next ${w.next ?? '-'} (${w.timezone ?? 'UTC'})${w.paused ? ', paused' : ''}\n`);
  } finally {
    await close();
  }
}

export async function windowDeleteCommand(opts: ConnectionFlags & { name: string; json: boolean }): Promise<void> {
  const conn = await resolveConnection(opts, process.env, 'operator');
  const { client, close } = await openTemporal(conn);
  try {
    await client.schedule.getHandle(windowScheduleId(opts.name)).delete();
    if (opts.json) printJson({ ok: true, deleted: opts.name });
    else process.stdout.write(`deleted window ${opts.name}\n`);
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) throw new PtcError(ErrorCode.INVALID_INPUT, `no window ${opts.name} (ptctl window list)`);
    throw err;
  } finally {
    await close();
  }
}
