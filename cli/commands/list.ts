import { z } from 'zod';
import { ErrorCode, PtcError, describeZodError } from '../../schemas/errors.js';
import { HostId } from '../../schemas/ids.js';
import { Outcome } from '../../schemas/passthrough.js';
import { PciAddress } from '../../schemas/pci-address.js';
import { RolloutName } from '../../schemas/rollout.js';
import { PtcBdf, PtcFailedHosts, PtcGuest, PtcHostId, PtcOutcome, PtcRollout } from '../../workflows/visibility.js';
import { type ListedExecution, openWorkflowReader } from '../workflow-reader.js';
import { type ConnectionFlags, resolveConnection } from '../connection.js';
import { printJson } from '../output.js';

const RolloutOutcome = z.enum(['succeeded', 'failed', 'cancelled', 'stopped']);
const ListKind = z.enum(['operations', 'rollouts']);

/** `ptctl list` filters; every value is schema-checked, so it can go into a visibility query verbatim. */
export const ListFilters = z
  .object({
    kind: ListKind.default('operations'),
    host: HostId.optional(),
    device: PciAddress.optional(),
    rollout: RolloutName.optional(),
    outcome: z.union([Outcome, RolloutOutcome]).optional(),
    running: z.boolean().default(false),
    limit: z.coerce.number().int().min(1).max(10_000).default(100),
  })
  .strict();
export type ListFilters = z.infer<typeof ListFilters>;

const OPERATION_TYPES = ['passthroughWorkflow', 'releaseWorkflow'];

/** The visibility query for the filters: the same text works with `temporal workflow list --query`. */
export function listQuery(f: ListFilters): string {
  const types = f.kind === 'operations' ? OPERATION_TYPES : ['rolloutWorkflow'];
  const clauses = [types.length === 1 ? `WorkflowType = '${types[0]}'` : `WorkflowType IN (${types.map((t) => `'${t}'`).join(', ')})`];
  if (f.host) clauses.push(`${PtcHostId.name} = '${f.host}'`);
  if (f.device) clauses.push(`${PtcBdf.name} = '${f.device}'`);
  if (f.rollout) clauses.push(`${PtcRollout.name} = '${f.rollout}'`);
  if (f.outcome) clauses.push(`${PtcOutcome.name} = '${f.outcome}'`);
  if (f.running) clauses.push(`ExecutionStatus = 'Running'`);
  return clauses.join(' AND ');
}

export interface ListedWorkflow {
  id: string;
  type: string;
  status: string;
  host: string | null;
  device: string | null;
  guest: string | null;
  rollout: string | null;
  outcome: string | null;
  failedHosts: number | null;
  startedAt: string;
  closedAt: string | null;
}

function listed(wf: ListedExecution): ListedWorkflow {
  const sa = wf.searchAttributes;
  return {
    id: wf.workflowId,
    type: wf.type,
    status: wf.status,
    host: sa.get(PtcHostId) ?? null,
    device: sa.get(PtcBdf) ?? null,
    guest: sa.get(PtcGuest) ?? null,
    rollout: sa.get(PtcRollout) ?? null,
    outcome: sa.get(PtcOutcome) ?? null,
    failedHosts: sa.get(PtcFailedHosts) ?? null,
    startedAt: wf.startTime.toISOString(),
    closedAt: wf.closeTime?.toISOString() ?? null,
  };
}

export interface ListOptions extends ConnectionFlags {
  filters: Record<string, unknown>;
  json: boolean;
}

/** `ptctl list`: operations by host, device, rollout or outcome, or rollouts by outcome, from Temporal visibility. */
export async function listCommand(opts: ListOptions): Promise<void> {
  const parsed = ListFilters.safeParse(opts.filters);
  if (!parsed.success) throw new PtcError(ErrorCode.INVALID_INPUT, describeZodError(parsed.error, 'list'));
  const filters = parsed.data;
  const query = listQuery(filters);
  const conn = await resolveConnection(opts);
  // The CLI's own reader, not the SDK client: loading that client was most of a list's time.
  const reader = await openWorkflowReader(conn);
  try {
    const rows = (await reader.list(query, filters.limit)).map(listed);
    if (opts.json) {
      printJson({ query, workflows: rows });
      return;
    }
    if (rows.length === 0) {
      process.stdout.write(`nothing matches ${query}\n`);
      return;
    }
    for (const r of rows) {
      const what = filters.kind === 'operations' ? `${r.host ?? '?'} ${r.device ?? '?'} → ${r.guest ?? '?'}` : `failed hosts ${r.failedHosts ?? '-'}`;
      process.stdout.write(`${r.id}  ${r.status.toLowerCase()}  ${r.outcome ?? '-'}  ${what}  started ${r.startedAt}\n`);
    }
    process.stdout.write(`${rows.length} shown (query: ${query})\n`);
  } finally {
    reader.close();
  }
}
