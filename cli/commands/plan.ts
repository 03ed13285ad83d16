import { readFile } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { LineCounter, isNode, parseDocument } from 'yaml';
import { ErrorCode, PtcError } from '../../schemas/errors.js';
import { type AssignmentResolution, type Plan, type PlanResolution, planFileError, validatePlan } from '../../schemas/plan.js';
import { planHasRefusals, resolvePlan } from '../../policy/plan-resolution.js';
import { openNats, readHostInventories } from '../clients.js';
import { type ConnectionFlags, resolveConnection } from '../connection.js';
import { FleetProgress } from '../fleet-progress.js';
import { streamJson } from '../output.js';
import { type StreamEnd, writeStream } from '../stream-output.js';

/** `ptctl plan` exit codes: 0 when everything in the plan can be done (or is done), 2 when it cannot. */
export const PLAN_EXIT_OK = 0;
export const PLAN_EXIT_REFUSED = 2;

/**
 * Parses a plan file's text (YAML, or JSON, which YAML reads too). Throws one PtcError(INVALID_INPUT)
 * that lists every problem: YAML syntax errors by line and column; otherwise every schema problem as a
 * `path: message` line with the line it is on.
 */
export function parsePlanFile(text: string, source: string): Plan {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw planFileError(
      source,
      doc.errors.map((e) => {
        const { line, col } = lineCounter.linePos(e.pos[0]);
        return `line ${line}, column ${col}: ${e.message.split('\n')[0] ?? e.message}`;
      }),
    );
  }
  // A missing key has no node: point at the nearest enclosing one that exists.
  const locate = (path: readonly PropertyKey[]): number | null => {
    for (let n = path.length; n > 0; n--) {
      const node: unknown = doc.getIn(path.slice(0, n), true);
      if (isNode(node) && node.range) return lineCounter.linePos(node.range[0]).line;
    }
    return null;
  };
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw planFileError(source, [`(plan): ${(err as Error).message}`]);
  }
  if (raw === null || raw === undefined) throw planFileError(source, ['(plan): the file is empty; a plan needs at least name, hosts and assignments']);
  return validatePlan(raw, source, locate);
}

/** Reads and parses a plan file; nothing is contacted before it is valid. */
export async function readPlanFile(path: string): Promise<Plan> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new PtcError(ErrorCode.INVALID_INPUT, `cannot read plan file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  return parsePlanFile(text, path);
}

const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

function renderAssignment(a: AssignmentResolution, hostId: string): string[] {
  switch (a.status) {
    case 'done':
      return [`  = ${a.bdf} already attached to ${a.guest}`];
    case 'refused':
      return [`  ! ${a.bdf ?? a.selector} → ${a.guest} refused: ${a.code}: ${a.message}`];
    case 'change': {
      const state = `${a.driver ?? 'no driver'}${a.hide ? '' : ', already hidden'}`;
      const lines = [`  + ${a.hide ? 'hide ' : ''}${a.bdf} (${state}) → bind ${a.strategy} to ${a.stubDriver} → attach ${a.mode} to ${a.guest}`];
      if (a.companions.length > 0) lines.push(`      also hides ${a.companions.join(', ')} (same IOMMU group)`);
      if (a.rebootNeeded) lines.push(`      reboot needed: ${hostId} reboots so ${a.stubDriver} claims the device at boot`);
      if (a.guestRebootNeeded) lines.push(`      guest reboot needed: ${a.attachNote ?? `${a.guest} sees the device at its next boot`}`);
      else if (a.attachNote) lines.push(`      note: ${a.attachNote}`);
      return lines;
    }
  }
}

/**
 * The human `ptctl plan` output, like a terraform plan: host by host, `+` for a change, `=` for an
 * assignment already in place, `!` for a refusal, then unknown and excluded hosts and a summary line.
 * One piece per host (each ending in a newline), so a 100,000-host plan is written as it is rendered.
 */
export function* renderPlan(r: PlanResolution): Generator<string, void, undefined> {
  for (const h of r.hosts) {
    let text = `${h.hostId}:\n`;
    for (const a of h.assignments) for (const line of renderAssignment(a, h.hostId)) text += `${line}\n`;
    yield text;
  }
  for (const id of r.unknown) yield `? ${id}: unknown host: no agent reports it (\`ptctl hosts\` lists the known hosts)\n`;
  for (const x of r.excluded) yield `- ${x.hostId}: excluded: ${x.reason}\n`;
  if (r.hosts.length > 0 || r.unknown.length > 0 || r.excluded.length > 0) yield '\n';
  const s = r.summary;
  if (r.hosts.length === 0 && r.unknown.length === 0) yield `Plan ${r.name}: no host in the inventory matches the plan's hosts.\n`;
  else {
    const reboots = s.rebootNeeded > 0 ? ` (${plural(s.rebootNeeded, 'host reboot')})` : '';
    yield `Plan ${r.name}: ${plural(s.toChange, 'host')} to change${reboots}, ${s.alreadyDone} already done, ${s.refused} refused, ${s.unknown} unknown.\n`;
  }
}

/** What `ptctl plan` prints for `r` (the text, or with `json` the PlanResolution), streamed to `out`. */
export function writePlan(r: PlanResolution, json: boolean, out: Writable = process.stdout): Promise<StreamEnd> {
  return json ? streamJson(r, out) : writeStream(out, renderPlan(r));
}

/** 2 when anything the plan wants is refused or names a host nobody reports; 0 otherwise. */
export const planExitCode = (r: PlanResolution): number => (planHasRefusals(r) ? PLAN_EXIT_REFUSED : PLAN_EXIT_OK);

export interface PlanOptions extends ConnectionFlags {
  file: string;
  json: boolean;
}

/**
 * `ptctl plan FILE`: resolves the plan against the agents' live inventory and prints what would change;
 * changes nothing. Returns the exit code (see planExitCode) instead of throwing for refusals.
 */
export async function planCommand(opts: PlanOptions): Promise<number> {
  const plan = await readPlanFile(opts.file);
  const conn = await resolveConnection(opts, process.env, 'viewer');
  const nc = await openNats(conn);
  const progress = new FleetProgress();
  let resolution: PlanResolution;
  try {
    const inventories = await readHostInventories(nc, progress.inventoriesRead);
    progress.resolving(inventories.length);
    resolution = resolvePlan(plan, inventories);
  } finally {
    await nc.close();
  }
  // A reader that went away ('closed') changes nothing about the verdict.
  await writePlan(resolution, opts.json);
  return planExitCode(resolution);
}
