import { durationFlag } from '../flags.js';
import { z } from 'zod';
import { ErrorCode, PtcError } from '../../schemas/errors.js';
import { HostOperation, type OperationKind, type PassthroughResult } from '../../schemas/passthrough.js';
import { passthroughWorkflowId } from '../../workflows/definitions.js';
import { openTemporal, requesterOf } from '../clients.js';
import { workflowUiLink } from '../temporal-connection.js';
import { type ConnectionFlags, resolveConnection } from '../connection.js';
import { waitForOperation } from '../operations.js';
import { submitOperation } from '../../transport/host-operations.js';
import { locateOperation } from '../../transport/operation-lookup.js';
import { printJson } from '../output.js';

export interface OperationOptions extends ConnectionFlags {
  host?: string | undefined;
  device?: string | undefined;
  guest?: string | undefined;
  strategy?: string | undefined;
  allowInsecurePv?: boolean | undefined;
  deadline?: string | undefined;
  throttleBudget?: string | undefined;
  throttleWindow?: string | undefined;
  wait: boolean;
  json: boolean;
}

const FLAG_NAMES: Record<string, string> = {
  hostId: '--host',
  bdf: '--device',
  guest: '--guest',
  strategy: '--strategy',
  allowInsecurePV: '--allow-insecure-pv',
  deadlineMs: '--deadline',
  throttle: '--throttle-budget/--throttle-window',
};

const duration = (value: string | undefined, flag: string): number | undefined => (value === undefined ? undefined : durationFlag(value, flag));

/** Validates the flags into a host operation; nothing is contacted when they are wrong. */
export function parseOperationInput(kind: OperationKind, opts: OperationOptions, suffix: string = newOpSuffix()): HostOperation {
  const budget = opts.throttleBudget === undefined ? undefined : z.coerce.number().safeParse(opts.throttleBudget).data ?? Number.NaN;
  const throttle = budget === undefined && opts.throttleWindow === undefined ? undefined : { budget: budget ?? 32, windowMs: duration(opts.throttleWindow, '--throttle-window') ?? 10 * 60_000 };
  const request = {
    hostId: opts.host,
    bdf: opts.device,
    guest: opts.guest,
    deadlineMs: duration(opts.deadline, '--deadline'),
    throttle,
    ...(kind === 'attach' ? { strategy: opts.strategy ?? 'auto', allowInsecurePV: opts.allowInsecurePv ?? false } : {}),
  };
  const workflowId = typeof opts.host === 'string' && typeof opts.device === 'string' ? passthroughWorkflowId(opts.host, opts.device.toLowerCase(), suffix) : 'invalid';
  const parsed = HostOperation.safeParse({ kind, workflowId, request });
  if (!parsed.success) {
    const msg = parsed.error.issues.map((i) => `${FLAG_NAMES[String(i.path[1])] ?? String(i.path[1] ?? 'input')}: ${i.message}`).join('; ');
    throw new PtcError(ErrorCode.INVALID_INPUT, msg);
  }
  return parsed.data;
}

/** A short, sortable, unique-enough suffix for `op/<host>/<bdf>/<n>`. */
export const newOpSuffix = (): string => `${Date.now().toString(36)}${Math.floor(Math.random() * 1296).toString(36).padStart(2, '0')}`;

export function describeResult(r: PassthroughResult): string {
  const verb = r.kind === 'attach' ? `attached ${r.bdf} to ${r.guest}` : `released ${r.bdf} from ${r.guest}`;
  const how = r.kind === 'attach' ? (r.mode === null ? ' (already in place)' : ` (strategy ${r.strategy ?? '-'}, attach ${r.mode})`) : '';
  return `${verb} on ${r.hostId}${how}${r.guestRebootNeeded ? '; the guest must reboot to see it' : ''}`;
}

/** `ptctl attach` / `ptctl detach`: queues the operation on the host's entity and, with --wait, follows it. */
export async function operationCommand(kind: OperationKind, opts: OperationOptions): Promise<void> {
  const op = parseOperationInput(kind, opts);
  const conn = await resolveConnection(opts, process.env, 'operator');
  op.request.requestedBy = await requesterOf(conn);
  const { client, close } = await openTemporal(conn);
  try {
    await submitOperation(client, op);
    const { workflowId } = op;
    const where = await locateOperation(client, op.request.hostId, workflowId).catch(() => null);
    const position = where?.state === 'queued' ? Math.max(0, where.position) : 0;
    const link = workflowUiLink(conn, workflowId);
    if (!opts.wait) {
      if (opts.json) printJson({ ok: true, workflowId, position, ui: link });
      else process.stdout.write(`queued ${workflowId}${position > 0 ? ` (${position} ahead on ${op.request.hostId})` : ''}${link ? `\n  ${link}` : ''}\n`);
      return;
    }
    const say = opts.json ? () => undefined : (line: string) => void process.stdout.write(`  ${line}\n`);
    if (!opts.json) say(`op ${workflowId}${link ? `  ${link}` : ''}`);
    const result = await waitForOperation(client, op.request.hostId, workflowId, say);
    if (opts.json) printJson({ ok: true, workflowId, ui: link, result });
    else process.stdout.write(`${describeResult(result)}\n`);
  } finally {
    await close();
  }
}
