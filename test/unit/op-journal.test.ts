import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JOURNAL_VERSION, OpJournal } from '../../agent/op-journal.js';
import type { AgentReply } from '../../schemas/agent-protocol.js';
import { ErrorCode, isPtcError } from '../../schemas/errors.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function journalPath(): string {
  const d = mkdtempSync(join(tmpdir(), 'ptctl-journal-'));
  dirs.push(d);
  return join(d, 'journal.jsonl');
}
const reply = (n: number): AgentReply => ({ ok: true, bootId: 'b', result: { n } });
const line = (opId: string, at: string): string => JSON.stringify({ opId, command: 'hide', argsKey: '{}', reply: reply(1), at });
const HEADER = JSON.stringify({ journal: 'ptctl-op-journal', version: JOURNAL_VERSION });

void describe('op journal', () => {
  void it('cuts a torn last line on open, so the next record is not glued to it and lost', async () => {
    const path = journalPath();
    writeFileSync(path, `${HEADER}\n${line('a', new Date().toISOString())}\n{"opId":"b","comm`);
    const j = await OpJournal.open(path);
    assert.equal(j.report.tornBytes, '{"opId":"b","comm'.length);
    assert.ok(readFileSync(path, 'utf8').endsWith('\n'), 'the file ends on a whole line');
    await j.record('c', 'hide', '{}', reply(3));
    const again = await OpJournal.open(path);
    assert.deepEqual(again.lookup('c', 'hide', '{}'), reply(3), 'the record written after the torn line survives a restart');
    assert.deepEqual(again.lookup('a', 'hide', '{}'), reply(1));
    assert.equal(again.lookup('b', 'hide', '{}'), null);
  });

  void it('migrates a version 1 file (no header) and keeps its entries', async () => {
    const path = journalPath();
    writeFileSync(path, `${line('old-1', new Date().toISOString())}\n${line('old-2', new Date().toISOString())}\n`);
    const j = await OpJournal.open(path);
    assert.equal(j.report.migratedFrom, 1);
    assert.equal(j.size, 2);
    assert.equal(readFileSync(path, 'utf8').split('\n')[0], HEADER);
    assert.deepEqual((await OpJournal.open(path)).lookup('old-2', 'hide', '{}'), reply(1));
  });

  void it('sets aside a journal of a newer version instead of crash-looping on it', async () => {
    const path = journalPath();
    writeFileSync(path, `${JSON.stringify({ journal: 'ptctl-op-journal', version: JOURNAL_VERSION + 1 })}\n{"something":"new"}\n`);
    const j = await OpJournal.open(path, undefined, () => 42);
    assert.equal(j.size, 0);
    assert.equal(j.report.setAside, `${path}.v${JOURNAL_VERSION + 1}.42`);
    assert.match(readFileSync(`${path}.v${JOURNAL_VERSION + 1}.42`, 'utf8'), /something/);
    await j.record('x', 'hide', '{}', reply(1));
    assert.deepEqual((await OpJournal.open(path)).lookup('x', 'hide', '{}'), reply(1));
  });

  void it('compacts when large: young entries and the newest ones stay, old ones go', async () => {
    const path = journalPath();
    let now = Date.parse('2026-01-01T00:00:00Z');
    const limits = { maxEntries: 10, retainMs: 60_000, keepNewest: 3 };
    const j = await OpJournal.open(path, limits, () => now);
    for (let i = 0; i < 10; i++) {
      await j.record(`op-${i}`, 'hide', '{}', reply(i));
      now += i < 6 ? 3600_000 : 1000; // op-0..op-5 an hour apart, then a burst
    }
    assert.equal(j.size, 10);
    await j.record('op-10', 'hide', '{}', reply(10));
    const lines = readFileSync(path, 'utf8').trim().split('\n');
    assert.equal(lines[0], HEADER);
    const kept = lines.slice(1).map((l) => (JSON.parse(l) as { opId: string }).opId);
    // op-6..op-10 are younger than a minute; op-5 is an hour older (not among the newest 3 either).
    assert.deepEqual(kept, ['op-6', 'op-7', 'op-8', 'op-9', 'op-10']);
    const reopened = await OpJournal.open(path, limits, () => now);
    assert.deepEqual(reopened.lookup('op-10', 'hide', '{}'), reply(10));
    assert.equal(reopened.lookup('op-0', 'hide', '{}'), null);
    assert.ok(!readdirSync(join(path, '..')).some((f) => f.endsWith('.tmp')), 'no temp file left');
  });

  void it('still refuses an op id reused for another request', async () => {
    const j = await OpJournal.open(journalPath());
    await j.record('same', 'hide', '{"bdf":"0000:01:00.0"}', reply(1));
    assert.throws(() => j.lookup('same', 'hide', '{"bdf":"0000:02:00.0"}'), (e) => isPtcError(e, ErrorCode.OP_ID_REUSED));
  });
});
