import { ErrorCode, PtcError } from '../../schemas/errors.js';
import type { PassthroughResult } from '../../schemas/passthrough.js';
import { type PassthroughProgress, passthroughProgressQuery, rolloutProgressQuery } from '../../workflows/definitions.js';
import type { RolloutReport } from '../../workflows/rollout-book.js';
import { describeRolloutProgress, describeRolloutReport } from './rollout-lines.js';
import { workflowUiLink } from '../temporal-connection.js';
import { type ConnectionFlags, resolveConnection } from '../connection.js';
import { WorkflowEndedError, failureDetailsOf, failureInfo } from '../failure-info.js';
import { printJson } from '../output.js';
import { openWorkflowReader } from '../workflow-reader.js';
import type { WorkflowVersionView } from '../../transport/workflow-version.js';

export interface StatusOptions extends ConnectionFlags {
  id: string;
  json: boolean;
}

/** "\n  build: ptctl/wf-… (pinned)", or nothing for a workflow only unversioned workers ran. */
const versionLine = (v: WorkflowVersionView): string => (v.buildId ? `\n  build: ${v.deploymentName ?? ''}/${v.buildId}${v.behavior ? ` (${v.behavior})` : ''}` : '');

/** `ptctl status <op-id>`: where an operation is (step, waits) or how it ended (outcome, residue). */
export async function statusCommand(opts: StatusOptions): Promise<void> {
  const conn = await resolveConnection(opts, process.env, 'viewer');
  // Not the SDK client: a status read needs three calls, and loading that client was most of its time.
  const reader = await openWorkflowReader(conn);
  try {
    const run = await reader.describe(opts.id);
    if (!run) throw new PtcError(ErrorCode.INVALID_INPUT, `no operation ${opts.id} (ids look like op/<host>/<bdf>/<n>; it may still be queued: see \`ptctl hosts\`)`);
    const { status, version } = run;
    const link = workflowUiLink(conn, opts.id);
    if (opts.id.startsWith('rollout/')) {
      if (status === 'RUNNING') {
        const progress = await reader.query(run, rolloutProgressQuery);
        if (opts.json) printJson({ id: opts.id, status, progress, version, ui: link });
        else process.stdout.write(`${opts.id}: running, ${describeRolloutProgress(progress)}${versionLine(version)}${link ? `\n  ${link}` : ''}\n`);
      } else {
        const report = await reader.result<RolloutReport>(run);
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
      progress = await reader.query(run, passthroughProgressQuery);
    } else {
      try {
        result = await reader.result<PassthroughResult>(run);
      } catch (err) {
        if (!(err instanceof WorkflowEndedError)) throw err;
        error = failureInfo(err.cause) ?? { code: ErrorCode.OPERATION_FAILED, message: err.message };
        details = failureDetailsOf(err.cause);
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
    reader.close();
  }
}
