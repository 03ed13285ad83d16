import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type TestStack, auditEvents, runCli, startTestStack } from '../helpers/stack.js';
import { quietTemporalRuntime } from '../helpers/temporal-env.js';

const modprobe = (t: TestStack, host: string): Promise<string> => readFile(join(t.hostRoot(host), 'etc', 'modprobe.conf'), 'utf8');

void describe('plan and apply a fleet rollout on the real stack', () => {
  let t: TestStack;
  let env: NodeJS.ProcessEnv;
  let planFile: string;
  before(async () => {
    quietTemporalRuntime();
    t = await startTestStack({ simHosts: ['sim-1', 'sim-2', 'sim-3', 'sim-4'], agentTimeoutMs: 3000, fleet: { hosts: { 'sim-1': { faults: { attachFailureProbability: 1 } } } } });
    env = { PTC_NATS_URL: '', PTC_NATS_CREDS: '', PTC_TEMPORAL_ADDRESS: '' };
    planFile = join(t.dir, 'nic.yaml');
    await writeFile(planFile, ['name: nic', 'hosts:', '  idPattern: "sim-*"', 'assignments:', '  - device: "0000:09:00.0"', '    guest: vm-hvm', ''].join('\n'));
  });
  after(async () => {
    await t[Symbol.asyncDispose]();
  });

  void it('plans every host without changing any', async () => {
    const before = await modprobe(t, 'sim-2');
    const res = await runCli(['plan', planFile, '--dir', t.dir], env);
    assert.equal(res.code, 0, res.stderr);
    for (const host of ['sim-1', 'sim-2', 'sim-3', 'sim-4']) assert.match(res.stdout, new RegExp(`${host}:\\n\\s+\\+ hide 0000:09:00\\.0`));
    assert.equal(await modprobe(t, 'sim-2'), before);
  });

  void it('exits 2 from plan when an assignment is refused', async () => {
    const bad = join(t.dir, 'uplink.yaml');
    await writeFile(bad, ['name: uplink', 'hosts:', '  names: [sim-2]', 'assignments:', '  - device: "0000:01:00.0"', '    guest: vm-hvm', ''].join('\n'));
    const res = await runCli(['plan', bad, '--dir', t.dir], env);
    assert.equal(res.code, 2, res.stdout + res.stderr);
    assert.match(res.stdout, /DEVICE_IN_USE/);
  });

  void it('stops at the failing canary before any other host is touched', async () => {
    const res = await runCli(['apply', planFile, '--dir', t.dir, '--canary', '1', '--max-parallel', '3', '--wait'], env);
    assert.equal(res.code, 1, res.stdout + res.stderr);
    assert.match(res.stderr.trim(), /^ptctl: OPERATION_FAILED: rollout nic stopped: canary sim-1 failed$/);
    assert.match(res.stdout, /sim-2: skipped/);
    for (const host of ['sim-2', 'sim-3', 'sim-4']) {
      assert.ok(!(await modprobe(t, host)).includes('hide='), `${host} was not touched`);
      const commands = (await auditEvents(t.nc, host)).filter((e) => e.kind === 'received');
      assert.equal(commands.length, 0, `${host} received no command`);
    }
    assert.ok(!(await modprobe(t, 'sim-1')).includes('hide='), 'the canary compensated');
  });

  void it('rolls out to the healthy hosts, two at a time, and reports it', async () => {
    const healthy = join(t.dir, 'healthy.yaml');
    await writeFile(healthy, ['name: healthy', 'hosts:', '  names: [sim-2, sim-3, sim-4]', 'assignments:', '  - device: "0000:09:00.0"', '    guest: vm-hvm', 'rollout:', '  canary: 1', '  maxParallel: 2', ''].join('\n'));
    const res = await runCli(['apply', healthy, '--dir', t.dir, '--wait'], env);
    assert.equal(res.code, 0, res.stdout + res.stderr);
    assert.match(res.stdout, /rollout healthy: 3\/3 hosts done, 3 ok, 0 failed/);
    for (const host of ['sim-2', 'sim-3', 'sim-4']) assert.ok((await modprobe(t, host)).includes('options pciback hide=(0000:09:00.0)'));
    const status = await runCli(['status', 'rollout/healthy', '--dir', t.dir, '--json'], env);
    assert.equal(status.code, 0, status.stderr);
    const report = (JSON.parse(status.stdout) as { report: { counts: Record<string, number> } }).report;
    assert.equal(report.counts.succeeded, 3);
    // Re-planning now shows the work as done.
    const again = await runCli(['plan', healthy, '--dir', t.dir], env);
    assert.match(again.stdout, /= 0000:09:00\.0 already attached to vm-hvm/);
  });
});
