#!/usr/bin/env node
// The replay corpus: workflow histories from real runs, replayed in CI against every build so a workflow
// change that running histories cannot survive fails before it ships.
//
//   node scripts/replay-corpus.mjs capture LABEL   runs the workflow and integration tests with history
//                                                  export on, then keeps a representative set (every
//                                                  distinct shape per workflow type) in test/replay/corpus/LABEL/
//
// Each release adds its own LABEL folder; old folders stay, because workflows started by an old release
// may still be running when the new one is deployed.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const [verb, label, ...rest] = process.argv.slice(2);
const fromIdx = rest.indexOf('--from');
const from = fromIdx >= 0 ? rest[fromIdx + 1] : undefined;
if (verb !== 'capture' || !label || !/^[a-z0-9][a-z0-9.-]*$/.test(label)) {
  process.stderr.write('usage: node scripts/replay-corpus.mjs capture LABEL [--from DIR]   (LABEL like turn1, 0.2.0; DIR: histories exported earlier)\n');
  process.exit(2);
}
/** Per workflow type, at most this many shapes are kept: the richest first. */
const PER_TYPE = 10;
/** A history larger than this is left out: the corpus lives in git. */
const MAX_BYTES = 1_500_000;

const raw = from ?? mkdtempSync(join(tmpdir(), 'ptc-corpus-'));
if (!from) {
  const res = spawnSync(process.execPath, [join(root, 'scripts', 'run-tests.mjs'), 'workflow', 'integration'], {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, PTC_EXPORT_HISTORIES: raw },
  });
  if (res.status !== 0) process.stderr.write('replay-corpus: some tests failed; keeping the histories they produced anyway\n');
}

/** What a history exercises: its event types, activities, timers, signals, children, and how it ended. */
function shapeOf(stored) {
  const events = stored.history.events ?? [];
  const parts = new Set();
  for (const e of events) {
    const type = String(e.eventType).replace(/^EVENT_TYPE_/, '');
    parts.add(type);
    const attrs = Object.values(e).find((v) => v && typeof v === 'object' && !Array.isArray(v) && ('activityType' in v || 'signalName' in v || 'workflowType' in v));
    if (attrs?.activityType?.name) parts.add(`activity:${attrs.activityType.name}`);
    if (attrs?.signalName) parts.add(`signal:${attrs.signalName}`);
    if (type.startsWith('START_CHILD') && attrs?.workflowType?.name) parts.add(`child:${attrs.workflowType.name}`);
  }
  return { events: events.length, parts };
}

const candidates = [];
for (const file of readdirSync(raw)) {
  const path = join(raw, file);
  const bytes = statSync(path).size;
  if (bytes > MAX_BYTES) continue;
  const stored = JSON.parse(readFileSync(path, 'utf8'));
  const { events, parts } = shapeOf(stored);
  // A history whose last task is still open replays only up to there; a closed one says the most.
  candidates.push({ file, bytes, stored, events, parts, signature: `${stored.workflowType}|${[...parts].sort().join(',')}` });
}

const byType = new Map();
for (const c of candidates) {
  const list = byType.get(c.stored.workflowType) ?? [];
  list.push(c);
  byType.set(c.stored.workflowType, list);
}
const out = join(root, 'test', 'replay', 'corpus', label);
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const index = [];
for (const [type, list] of [...byType].sort(([a], [b]) => a.localeCompare(b))) {
  // Greedy cover: keep the history that adds the most not-yet-seen parts, smallest first on ties.
  const seen = new Set();
  const kept = [];
  const signatures = new Set();
  while (kept.length < PER_TYPE) {
    let best = null;
    let bestGain = 0;
    for (const c of list) {
      if (signatures.has(c.signature)) continue;
      const gain = [...c.parts].filter((p) => !seen.has(p)).length;
      if (gain > bestGain || (gain === bestGain && gain > 0 && best && c.bytes < best.bytes)) {
        best = c;
        bestGain = gain;
      }
    }
    // Covered every part: fill up with other shapes, smallest first (same events, other paths and data).
    best ??= list.filter((c) => !signatures.has(c.signature)).sort((a, b) => a.bytes - b.bytes)[0] ?? null;
    if (!best) break;
    kept.push(best);
    signatures.add(best.signature);
    for (const p of best.parts) seen.add(p);
  }
  for (const c of kept) {
    const name = `${type}--${String(kept.indexOf(c) + 1).padStart(2, '0')}.json`;
    writeFileSync(join(out, name), `${JSON.stringify(c.stored)}\n`);
    index.push({ file: name, workflowType: type, workflowId: c.stored.workflowId, events: c.events, covers: [...c.parts].sort() });
  }
}
writeFileSync(join(out, 'index.json'), `${JSON.stringify({ label, capturedFrom: 'npm test workflow + integration suites', histories: index }, null, 2)}\n`);
if (!from) rmSync(raw, { recursive: true, force: true });
process.stderr.write(`replay-corpus: kept ${index.length} histories of ${byType.size} workflow types in test/replay/corpus/${label}/\n`);
