import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { windowScheduleId } from '../../schemas/window.js';
import { fitsInWindow } from '../../schemas/rollout.js';
import type { WindowReport } from '../../workflows/window-workflow.js';
import { type TestStack, runCli, startTestStack } from '../helpers/stack.js';
import { quietTemporalRuntime } from '../helpers/temporal-env.js';

void describe('window cutoff arithmetic', () => {
  void it('starts a host only when its expected time ends before the window end minus the cutoff', () => {
    const window = { endsAt: 100_000, cutoffMs: 20_000, expectedHostMs: 30_000 };
    assert.equal(fitsInWindow(50_000, window), true, '50 + 30 = 80 ≤ 100 - 20');
    assert.equal(fitsInWindow(50_001, window), false);
    assert.equal(fitsInWindow(0, { endsAt: 10_000, cutoffMs: 0, expectedHostMs: 10_000 }), true);
  });
});

void describe('maintenance windows as Temporal Schedules (dev server)', () => {
  let t: TestStack;
  let env: NodeJS.ProcessEnv;
  let planFile: string;
  before(async () => {
    quietTemporalRuntime();
    t = await startTestStack({ simHosts: ['sim-1', 'sim-2'], agentTimeoutMs: 3000 });
    env = { PTC_NATS_URL: '', PTC_NATS_CREDS: '', PTC_TEMPORAL_ADDRESS: '' };
    planFile = join(t.dir, 'nic.yaml');
    await writeFile(planFile, ['name: nic', 'hosts:', '  idPattern: "sim-*"', 'assignments:', '  - device: "0000:09:00.0"', '    guest: vm-hvm', 'rollout:', '  canary: 0', '  maxParallel: 2', ''].join('\n'));
  });
  after(async () => {
    await t[Symbol.asyncDispose]();
  });

  async function fire(name: string): Promise<WindowReport> {
    const schedule = t.client.schedule.getHandle(windowScheduleId(name));
    const before = (await schedule.describe()).info.recentActions.length;
    await schedule.trigger();
    for (;;) {
      const recent = (await schedule.describe()).info.recentActions;
      const action = recent.length > before ? recent[recent.length - 1] : undefined;
      if (action) return (await t.client.workflow.getHandle(action.action.workflow.workflowId).result()) as WindowReport;
      await new Promise((r) => setTimeout(r, 300));
    }
  }

  const hidden = async (host: string): Promise<boolean> => (await readFile(join(t.hostRoot(host), 'etc', 'modprobe.conf'), 'utf8')).includes('hide=(0000:09:00.0)');

  void it('starts no host past the cutoff; the leftover completes in a later window', async () => {
    // Far-future cron: the test fires it by hand. 10 min expected per host cannot fit a 5 min window.
    const tight = await runCli(['window', 'create', 'night', '--dir', t.dir, '--cron', '0 3 1 1 *', '--timezone', 'Europe/Berlin', '--duration', '5m', '--cutoff', '1m', '--expected-host', '10m', '--plan', planFile], env);
    assert.equal(tight.code, 0, tight.stderr);
    const list = await runCli(['window', 'list', '--dir', t.dir, '--json'], env);
    assert.deepEqual((JSON.parse(list.stdout) as Array<{ name: string; timezone: string }>).map((w) => [w.name, w.timezone]), [['night', 'Europe/Berlin']]);

    const first = await fire('night');
    assert.equal(first.rollout?.counts.skipped, 2);
    assert.equal(first.rollout?.counts.succeeded, 0);
    assert.match(first.rollout?.stopReason ?? '', /the window closes at/);
    assert.equal(await hidden('sim-1'), false, 'no host was touched');
    assert.equal(await hidden('sim-2'), false);

    // The operator widens the window; its next firing picks up everything left over.
    assert.equal((await runCli(['window', 'delete', 'night', '--dir', t.dir], env)).code, 0);
    const wide = await runCli(['window', 'create', 'night', '--dir', t.dir, '--cron', '0 3 1 1 *', '--duration', '2h', '--cutoff', '10m', '--expected-host', '5m', '--plan', planFile], env);
    assert.equal(wide.code, 0, wide.stderr);
    const second = await fire('night');
    assert.equal(second.rollout?.counts.succeeded, 2, JSON.stringify(second.rollout));
    assert.equal(await hidden('sim-1'), true);
    assert.equal(await hidden('sim-2'), true);

    // A window with nothing left to do reports so and starts no rollout.
    const third = await fire('night');
    assert.equal(third.rollout, null);
    assert.equal((await runCli(['window', 'delete', 'night', '--dir', t.dir], env)).code, 0);
    const gone = await runCli(['window', 'delete', 'nope', '--dir', t.dir], env);
    assert.equal(gone.code, 2);
    assert.match(gone.stderr, /^ptctl: INVALID_INPUT: no window nope/);
  });

  void it('a firing that comes late after an outage opens at its due time: past the cutoff it starts no host', async () => {
    const eth4Plan = join(t.dir, 'eth4.yaml');
    await writeFile(eth4Plan, ['name: eth4', 'hosts:', '  idPattern: "sim-*"', 'assignments:', '  - device: "0000:0b:00.0"', '    guest: vm-hvm', 'rollout:', '  canary: 0', '  maxParallel: 2', ''].join('\n'));
    const created = await runCli(['window', 'create', 'late', '--dir', t.dir, '--cron', '0 3 1 1 *', '--timezone', 'Europe/Berlin', '--duration', '2h', '--cutoff', '30m', '--expected-host', '5m', '--plan', eth4Plan], env);
    assert.equal(created.code, 0, created.stderr);
    const schedule = t.client.schedule.getHandle(windowScheduleId('late'));
    const described = await schedule.describe();
    // Missed firings are taken only while a host could still start: 2h - 30m - 5m, not Temporal's year.
    assert.equal(described.policies.catchupWindow, 85 * 60_000);
    // The server runs the firing that was due on 1 January 03:00 Berlin now, as it would after an outage.
    await schedule.backfill({ start: new Date('2026-01-01T01:30:00Z'), end: new Date('2026-01-01T02:30:00Z'), overlap: 'ALLOW_ALL' });
    let workflowId: string | undefined;
    for (let i = 0; i < 100 && !workflowId; i++) {
      workflowId = (await schedule.describe()).info.recentActions.at(-1)?.action.workflow.workflowId;
      if (!workflowId) await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(workflowId, 'the backfilled firing started');
    const report = (await t.client.workflow.getHandle(workflowId).result()) as WindowReport;
    assert.equal(report.opensAt, '2026-01-01T02:00:00.000Z', 'the window opened when it was due');
    assert.equal(report.rollout?.counts.succeeded, 0);
    assert.equal(report.rollout?.counts.skipped, 2);
    assert.match(report.rollout?.stopReason ?? '', /the window closes at 2026-01-01T04:00:00.000Z/);
    for (const host of ['sim-1', 'sim-2']) assert.doesNotMatch(await readFile(join(t.hostRoot(host), 'etc', 'modprobe.conf'), 'utf8'), /0000:0b:00\.0/, `${host} was not touched`);
  });
});
