import { EventKind, type AuditEvent } from '../../schemas/agent-protocol.js';
import { ErrorCode, PtcError } from '../../schemas/errors.js';
import { HostId } from '../../schemas/ids.js';
import { readAuditEvents } from '../../transport/audit-events.js';
import { openNats } from '../clients.js';
import { type ConnectionFlags, resolveConnection } from '../connection.js';
import { durationFlag } from '../flags.js';

export interface EventsOptions extends ConnectionFlags {
  host?: string | undefined;
  kind?: string | undefined;
  since?: string | undefined;
  follow: boolean;
  json: boolean;
}

/** `--since`: an ISO time, or a duration back from now ("10m", "2h"). */
export function parseSince(value: string, now = Date.now()): Date {
  if (/^\d{4}-\d{2}-\d{2}/.test(value)) {
    const at = new Date(value);
    if (Number.isNaN(at.getTime())) throw new PtcError(ErrorCode.INVALID_INPUT, `--since: "${value}" is not a valid time`);
    return at;
  }
  return new Date(now - durationFlag(value, '--since'));
}

export function formatEvent(e: AuditEvent): string {
  const what = e.detail.error && typeof e.detail.error === 'object' && 'code' in e.detail.error ? ` ${String(e.detail.error.code)}` : '';
  return `${e.at}  ${e.hostId.padEnd(12)} ${e.kind.padEnd(9)} ${(e.command ?? '-').padEnd(12)} ${e.opId ?? '-'}${e.requestedBy ? `  by ${e.requestedBy}` : ''}${what}`;
}

/** `ptctl events`: the audit stream, filtered, as lines or JSON (one object per line with --follow). */
export async function eventsCommand(opts: EventsOptions): Promise<void> {
  if (opts.host !== undefined && !HostId.safeParse(opts.host).success) throw new PtcError(ErrorCode.INVALID_INPUT, `--host: "${opts.host}" is not a host id`);
  if (opts.kind !== undefined && !EventKind.safeParse(opts.kind).success) throw new PtcError(ErrorCode.INVALID_INPUT, `--kind: "${opts.kind}" is not one of ${EventKind.options.join(', ')}`);
  const since = opts.since === undefined ? undefined : parseSince(opts.since);
  const conn = await resolveConnection(opts, process.env, 'viewer');
  const nc = await openNats(conn, 'ptctl-events');
  const abort = new AbortController();
  const stop = (): void => abort.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const collected: AuditEvent[] = [];
  try {
    await readAuditEvents(
      nc,
      { hostId: opts.host, kind: opts.kind, since },
      (e) => {
        if (opts.json && !opts.follow) collected.push(e);
        else process.stdout.write(`${opts.json ? JSON.stringify(e) : formatEvent(e)}\n`);
      },
      { follow: opts.follow, signal: abort.signal },
    );
    if (opts.json && !opts.follow) process.stdout.write(JSON.stringify(collected, null, 2) + '\n');
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await nc.close();
  }
}
