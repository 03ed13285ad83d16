import { randomBytes } from 'node:crypto';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { ErrorCode, PtcError } from '../../schemas/errors.js';
import type { PlanResolution } from '../../schemas/plan.js';
import { type MaxFailures, RolloutName, RolloutOptions } from '../../schemas/rollout.js';
import { planHasRefusals, resolvePlan, toRolloutInput } from '../../policy/plan-resolution.js';
import { TASK_QUEUE, rolloutWorkflowId } from '../../workflows/definitions.js';
import type { rolloutWorkflow } from '../../workflows/rollout-workflow.js';
import { PtcRollout } from '../../workflows/visibility.js';
import { storeRolloutInput } from '../../transport/rollout-hosts.js';
import { openNats, openTemporal, readHostInventories, requesterOf } from '../clients.js';
import { workflowUiLink } from '../temporal-connection.js';
import { type ConnectionFlags, resolveConnection } from '../connection.js';
import { FleetProgress } from '../fleet-progress.js';
import { printJson, streamJson } from '../output.js';
import { writeStream } from '../stream-output.js';
import { readPlanFile, renderPlan } from './plan.js';
import { followRollout } from './rollout.js';
import { describeRolloutReport } from './rollout-lines.js';

export interface ApplyOptions extends ConnectionFlags {
  file: string;
  name?: string | undefined;
  canary?: string | undefined;
  maxParallel?: string | undefined;
  maxFailures?: string | undefined;
  wait: boolean;
  json: boolean;
}

/**
 * Each apply is a run of its own: its id goes into every operation id, so applying a plan again after a
 * host was fixed works on that host again, while retries inside this run stay idempotent.
 */
export function newRunId(): string {
  return `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`.slice(0, 16);
}

/** "3" → at most 3 failed hosts; "10%" → at most 10% of the rollout's hosts. */
export function parseMaxFailures(text: string): MaxFailures {
  const percent = /^(\d+(?:\.\d+)?)%$/.exec(text);
  if (percent) return { percent: Number(percent[1]) };
  if (/^\d+$/.test(text)) return { count: Number(text) };
  throw new PtcError(ErrorCode.INVALID_INPUT, `--max-failures: "${text}" is not a count like 3 or a percentage like 10%`);
}

function* planThenBlankLine(r: PlanResolution): Generator<string, void, undefined> {
  yield* renderPlan(r);
  yield '\n';
}

/**
 * `ptctl apply FILE`: resolves the plan against live inventory (as `ptctl plan` shows it), then starts
 * `rollout/<name>` for the hosts with work. Refused assignments are left out and listed. With --wait it
 * follows the rollout and exits non-zero unless every host succeeded.
 */
export async function applyCommand(opts: ApplyOptions): Promise<number> {
  const plan = await readPlanFile(opts.file);
  const name = RolloutName.safeParse(opts.name ?? plan.name);
  if (!name.success) throw new PtcError(ErrorCode.INVALID_INPUT, `--name: ${name.error.issues[0]?.message ?? 'invalid'}`);
  const options = RolloutOptions.safeParse({
    ...plan.rollout,
    ...(opts.canary !== undefined ? { canary: Number(opts.canary) } : {}),
    ...(opts.maxParallel !== undefined ? { maxParallel: Number(opts.maxParallel) } : {}),
    ...(opts.maxFailures !== undefined ? { maxFailures: parseMaxFailures(opts.maxFailures) } : {}),
  });
  if (!options.success) throw new PtcError(ErrorCode.INVALID_INPUT, options.error.issues.map((i) => `--${String(i.path[0]).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}: ${i.message}`).join('; '));

  const conn = await resolveConnection(opts, process.env, 'operator');
  const nc = await openNats(conn);
  const progress = new FleetProgress();
  let resolution;
  let input;
  let rebootHosts: Set<string>;
  try {
    const inventories = await readHostInventories(nc, progress.inventoriesRead);
    progress.resolving(inventories.length);
    resolution = resolvePlan(plan, inventories);
    const all = toRolloutInput(plan, resolution);
    // Reboot-needing hosts can be reserved for maintenance windows: apply (run any time) leaves them.
    rebootHosts = new Set(plan.rebootsOnlyInWindows ? resolution.hosts.filter((h) => h.rebootNeeded).map((h) => h.hostId) : []);
    const requestedBy = await requesterOf(conn);
    const hosts = all.hosts.filter((h) => !rebootHosts.has(h.hostId)).map((h) => ({ ...h, requests: h.requests.map((r) => ({ ...r, requestedBy })) }));
    // A reader that went away while the plan was shown does not stop the apply, as before streaming.
    if (!opts.json) await writeStream(process.stdout, planThenBlankLine(resolution));
    if (!opts.json && rebootHosts.size > 0) process.stdout.write(`left for a maintenance window (they need a reboot): ${[...rebootHosts].join(', ')}\n`);
    if (hosts.length === 0) {
      if (opts.json) await streamJson({ ok: true, rollout: null, reason: 'nothing to change', resolution });
      else process.stdout.write('nothing to change.\n');
      return planHasRefusals(resolution) ? 2 : 0;
    }
    const run = newRunId();
    // The hosts go to KV and the workflow gets their reference: a start payload of any fleet size fits.
    input = { ...(await storeRolloutInput(nc, { ...all, hosts, name: name.data, options: options.data }, `${name.data}.${run}`)), run, requestedBy };
  } finally {
    await nc.close();
  }
  const { requestedBy, ...startInput } = input;
  const hostCount = startInput.hostsRef?.count ?? 0;

  const { client, close } = await openTemporal(conn);
  try {
    const workflowId = rolloutWorkflowId(name.data);
    try {
      await client.workflow.start<typeof rolloutWorkflow>('rolloutWorkflow', { taskQueue: TASK_QUEUE, workflowId, args: [startInput], memo: { requestedBy }, typedSearchAttributes: [{ key: PtcRollout, value: name.data }] });
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) throw new PtcError(ErrorCode.INVALID_INPUT, `rollout ${name.data} is already running: follow it with \`ptctl status ${workflowId}\`, or give this one another --name`);
      throw err;
    }
    const link = workflowUiLink(conn, workflowId);
    if (!opts.wait) {
      if (opts.json) printJson({ ok: true, rollout: workflowId, run: startInput.run, hosts: hostCount, ui: link });
      else process.stdout.write(`started ${workflowId} (run ${startInput.run}): ${hostCount} host(s), canary ${startInput.options.canary}, max parallel ${startInput.options.maxParallel}${link ? `\n  ${link}` : ''}\n`);
      return 0;
    }
    if (!opts.json) process.stdout.write(`${workflowId}: ${hostCount} host(s), canary ${startInput.options.canary}, max parallel ${startInput.options.maxParallel}, max failures ${JSON.stringify(startInput.options.maxFailures)}${link ? `\n  ${link}` : ''}\n`);
    const report = await followRollout(client, workflowId, opts.json);
    const clean = report.counts.failed === 0 && report.counts.cancelled === 0 && report.counts.skipped === 0;
    if (opts.json) printJson({ ok: clean, rollout: workflowId, report });
    else process.stdout.write(`${describeRolloutReport(report)}\n`);
    if (!clean && !opts.json) process.stderr.write(`ptctl: ${ErrorCode.OPERATION_FAILED}: rollout ${name.data} ${report.stopReason ? `stopped: ${report.stopReason}` : `finished with ${report.counts.failed} failed host(s)`}\n`);
    return clean ? 0 : 1;
  } finally {
    await close();
  }
}
