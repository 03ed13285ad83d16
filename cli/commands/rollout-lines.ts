import type { RolloutReport } from '../../workflows/rollout-book.js';
import type { RolloutProgress } from '../../workflows/definitions.js';

// The rollout's lines for people, apart from rollout.ts so that `ptctl status` prints them without
// loading the Temporal client that following and controlling a rollout need.

export function describeRolloutProgress(p: Pick<RolloutProgress, 'total' | 'counts' | 'paused' | 'stopReason' | 'running'>): string {
  const done = p.counts.succeeded + p.counts.failed + p.counts.cancelled + p.counts.skipped;
  const parts = [`${done}/${p.total} hosts done`, `${p.counts.succeeded} ok`, `${p.counts.failed} failed`];
  if (p.counts.cancelled) parts.push(`${p.counts.cancelled} cancelled`);
  if (p.counts.skipped) parts.push(`${p.counts.skipped} skipped`);
  if (p.running.length) parts.push(`running: ${p.running.slice(0, 5).join(' ')}${p.running.length > 5 ? ' …' : ''}`);
  if (p.paused) parts.push('PAUSED');
  if (p.stopReason) parts.push(`stopped: ${p.stopReason}`);
  return parts.join(', ');
}

export function describeRolloutReport(r: RolloutReport): string {
  const lines = [`rollout ${r.name}: ${describeRolloutProgress({ ...r, paused: false, running: [] })}`];
  for (const p of r.problems) lines.push(`  ${p.hostId}${p.canary ? ' (canary)' : ''}: ${p.state}${p.details.length ? ` — ${p.details.join('; ')}` : ''}`);
  if (r.problemsOmitted) lines.push(`  … and ${r.problemsOmitted} more hosts that did not succeed (counted above); \`ptctl list --rollout ${r.name}\` lists the operations of the hosts that started`);
  return lines.join('\n');
}
