import { WorkflowNotFoundError } from '@temporalio/client';
import { ErrorCode, PtcError } from '../../schemas/errors.js';
import type { PassthroughResult } from '../../schemas/passthrough.js';
import { type PassthroughProgress, passthroughProgressQuery, rolloutProgressQuery } from '../../workflows/definitions.js';
import type { RolloutReport } from '../../workflows/rollout-book.js';
import { describeRolloutProgress, describeRolloutReport } from './rollout.js';
import { openTemporal, workflowUiLink } from '../clients.js';
import { type ConnectionFlags, resolveConnection } from '../connection.js';
import { errorInfo, failureDetails } from '../failures.js';
import { printJson } from '../output.js';
import { type WorkflowVersionView, workflowVersion } from '../../transport/worker-deployment.js';

export interface StatusOptions extends ConnectionFlags {
  id: string;
  json: boolean;
}

/** "\n  build: ptctl/wf-… (pinned)", or nothing for a workflow only unversioned workers ran. */
const versionLine = (v: WorkflowVersionView): string => (v.buildId ? `\n  build: ${v.deploymentName ?? ''}/${v.buildId}${v.behavior ? ` (${v.behavior})` : ''}` : '');

/** `ptctl status <op-id>`: where an operation is (step, waits) or how it ended (outcome, residue). */
export async function statusCommand(opts: StatusOptions): Promise<void> {
  const conn = await resolveConnection(opts, process.env, 'viewer');
  const { client, close } = await openTemporal(conn);
  try {
    const handle = client.workflow.getHandle(opts.id);
    let description;
    try {
      description = await handle.describe();
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) throw new PtcError(ErrorCode.INVALID_INPUT, `no operation ${opts.id} (ids look like op/<host>/<bdf>/<n>; it may still be queued: see \`ptctl hosts\`)`);
      throw err;
    }
    const status = description.status.name;
    const link = workflowUiLink(conn, opts.id);
    const version = workflowVersion(description.raw);
    if (opts.id.startsWith('rollout/')) {
      if (status === 'RUNNING') {
        const progress = await handle.query(rolloutProgressQuery);
        if (opts.json) printJson({ id: opts.id, status, progress, version, ui: link });
        else process.stdout.write(`${opts.id}: running, ${describeRolloutProgress(progress)}${versionLine(version)}${link ? `\n  ${link}` : ''}\n`);
      } else {
        const report = (await handle.result()) as RolloutReport;
        if (opts.json) printJson({ id: opts.id, status, report, version, ui: link });
        else process.stdout.write(`${describeRolloutReport(report)}${versionLine(version)}${link ? `\n  ${link}` : ''}\n`);
      }
      return;
    }
    let progress: PassthroughProgress | null = null;
    let result: PassthroughResult | null = null;
    let error: { code: string; message: string } | null = null;
    let details: unknown = null;
    if (status === 'RUNNING') {
      progress = await handle.query(passthroughProgressQuery);
    } else {
      try {
        result = (await handle.result()) as PassthroughResult;
      } catch (err) {
        error = errorInfo(err);
        details = failureDetails(err);
      }
    }
    const steps = progress?.steps ?? result?.steps ?? (details as { steps?: PassthroughResult['steps'] } | null)?.steps ?? [];
    const outcome = result?.outcome ?? (details as { outcome?: string } | null)?.outcome ?? (status === 'RUNNING' ? null : 'failed');
    if (opts.json) {
      printJson({ id: opts.id, status, step: progress?.step ?? 'done', waitingFor: progress?.waitingFor ?? null, outcome, steps, result, error, details, version, ui: link });
      return;
    }
    const out = [`${opts.id}: ${status.toLowerCase()}${outcome ? `, outcome ${outcome}` : ''}`];
    if (progress) out.push(`  step: ${progress.step}${progress.waitingFor ? `, waiting for ${progress.waitingFor}` : ''}`);
    for (const s of steps) out.push(`  ${s.step.padEnd(10)} ${s.detail}`);
    if (error) out.push(`  error: ${error.code}: ${error.message}`);
    const residue = (details as { residue?: string[] } | null)?.residue ?? [];
    for (const r of residue) out.push(`  left on the host: ${r}`);
    const build = versionLine(version);
    if (build) out.push(build.slice(1));
    if (link) out.push(`  ${link}`);
    process.stdout.write(out.join('\n') + '\n');
  } finally {
    await close();
  }
}
