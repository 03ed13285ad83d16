import type { WorkflowHandle } from '@temporalio/client';
import { ErrorCode, PtcError } from '../../schemas/errors.js';
import { PassthroughRequest, type PassthroughResult } from '../../schemas/passthrough.js';
import type { passthroughWorkflow } from '../../workflows/passthrough-workflow.js';
import { TASK_QUEUE, passthroughWorkflowId } from '../../workflows/definitions.js';
import { openTemporal, workflowUiLink } from '../clients.js';
import { type ConnectionFlags, resolveConnection } from '../connection.js';
import { printJson } from '../output.js';

export interface AttachOptions extends ConnectionFlags {
  host?: string | undefined;
  device?: string | undefined;
  guest?: string | undefined;
  strategy?: string | undefined;
  allowInsecurePv?: boolean | undefined;
  wait: boolean;
  json: boolean;
}

/** Validates the flags into a request; nothing is contacted when they are wrong. */
export function parseAttachInput(opts: AttachOptions): PassthroughRequest {
  const parsed = PassthroughRequest.safeParse({
    hostId: opts.host,
    bdf: opts.device,
    guest: opts.guest,
    strategy: opts.strategy ?? 'auto',
    allowInsecurePV: opts.allowInsecurePv ?? false,
  });
  if (!parsed.success) {
    const flagNames: Record<string, string> = { hostId: '--host', bdf: '--device', guest: '--guest', strategy: '--strategy', allowInsecurePV: '--allow-insecure-pv' };
    const msg = parsed.error.issues.map((i) => `${flagNames[String(i.path[0])] ?? 'input'}: ${i.message}`).join('; ');
    throw new PtcError(ErrorCode.INVALID_INPUT, msg);
  }
  return parsed.data;
}

/** A short, sortable, unique-enough suffix for `op/<host>/<bdf>/<n>`. */
export const newOpSuffix = (): string => `${Date.now().toString(36)}${Math.floor(Math.random() * 1296).toString(36).padStart(2, '0')}`;

export function describeResult(r: PassthroughResult): string {
  const where = r.mode === null ? 'already in place' : `strategy ${r.strategy ?? '-'}, attach ${r.mode}`;
  const lines = [`attached ${r.bdf} to ${r.guest} on ${r.hostId} (${where})${r.guestRebootNeeded ? '; the guest must reboot to see it' : ''}`];
  for (const s of r.steps) lines.push(`  ${s.step.padEnd(10)} ${s.detail}`);
  return lines.join('\n');
}

/** `ptctl attach`: starts the passthrough saga for one device and, with --wait, reports its outcome. */
export async function attachCommand(opts: AttachOptions): Promise<void> {
  const req = parseAttachInput(opts);
  const conn = await resolveConnection(opts);
  const { client, close } = await openTemporal(conn);
  try {
    const workflowId = passthroughWorkflowId(req.hostId, req.bdf, newOpSuffix());
    const handle: WorkflowHandle<typeof passthroughWorkflow> = await client.workflow.start<typeof passthroughWorkflow>('passthroughWorkflow', {
      taskQueue: TASK_QUEUE,
      workflowId,
      args: [req],
    });
    const link = workflowUiLink(conn, workflowId);
    if (!opts.wait) {
      if (opts.json) printJson({ ok: true, workflowId, ui: link });
      else process.stdout.write(`started ${workflowId}${link ? `\n  ${link}` : ''}\n`);
      return;
    }
    const result = await handle.result();
    if (opts.json) printJson({ ok: true, workflowId, ui: link, result });
    else process.stdout.write(`${describeResult(result)}\nop ${workflowId}${link ? `  ${link}` : ''}\n`);
  } finally {
    await close();
  }
}
