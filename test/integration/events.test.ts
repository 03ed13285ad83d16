import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AuditEvent } from '../../schemas/agent-protocol.js';
import { PTCTL_ENTRY } from '../../cli/tools.js';
import { DEV_PERSON } from '../../cli/dev-stack.js';
import { type TestStack, runCli, startTestStack } from '../helpers/stack.js';
import { quietTemporalRuntime } from '../helpers/temporal-env.js';

void describe('ptctl events over the audit stream, as the viewer', () => {
  let t: TestStack;
  // Empty values count as unset: the CLI uses the dev stack's operator and viewer identities.
  const env = { PTC_NATS_URL: '', PTC_NATS_CREDS: '', PTC_TEMPORAL_ADDRESS: '' };
  before(async () => {
    quietTemporalRuntime();
    t = await startTestStack({ simHosts: ['sim-1', 'sim-2'], agentTimeoutMs: 3000 });
  });
  after(async () => {
    await t[Symbol.asyncDispose]();
  });

  void it('--follow shows a live rollout\'s agent events with the operator identity that applied it', async () => {
    const follower = spawn(process.execPath, [PTCTL_ENTRY, 'events', '--follow', '--json', '--dir', t.dir], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const seen: AuditEvent[] = [];
    let buffer = '';
    let stderr = '';
    follower.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    follower.stdout.on('data', (d: Buffer) => {
      buffer += d.toString();
      const lines = buffer.split('\n');
      buffer = lines.pop() ?? '';
      for (const line of lines) if (line.trim()) seen.push(AuditEvent.parse(JSON.parse(line)));
    });
    const exited = new Promise<number | null>((r) => follower.on('close', (code) => r(code)));
    try {
      const plan = join(t.dir, 'nic.yaml');
      await writeFile(plan, ['name: audited', 'hosts:', '  names: [sim-1, sim-2]', 'assignments:', '  - device: "0000:09:00.0"', '    guest: vm-hvm', ''].join('\n'));
      const applied = await runCli(['apply', plan, '--dir', t.dir, '--canary', '0', '--max-parallel', '2', '--wait'], env);
      assert.equal(applied.code, 0, applied.stderr + applied.stdout);
      const hotplugged = (): AuditEvent[] => seen.filter((e) => e.kind === 'hotplug' && e.opId?.includes('audited'));
      const until = Date.now() + 20_000;
      while (hotplugged().length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(hotplugged().map((e) => e.hostId).sort(), ['sim-1', 'sim-2'], `follower saw: ${seen.map((e) => `${e.hostId}/${e.kind}/${e.opId}`).join(', ')}; ${stderr}`);
      const ofRollout = seen.filter((e) => e.opId?.includes('audited'));
      assert.ok(ofRollout.length > 4);
      for (const e of ofRollout) assert.match(e.requestedBy ?? '', new RegExp(`^operator-${DEV_PERSON}(@|$)`), `${e.kind} ${e.command} ${e.opId}: ${e.requestedBy}`);
    } finally {
      follower.kill('SIGINT');
    }
    assert.equal(await exited, 0, `the follower ends cleanly on Ctrl-C: ${stderr}`);

    // Without --follow: the stored events, filtered by host and kind.
    const listed = await runCli(['events', '--host', 'sim-2', '--kind', 'hotplug', '--json', '--dir', t.dir], env);
    assert.equal(listed.code, 0, listed.stderr);
    const events = (JSON.parse(listed.stdout) as unknown[]).map((e) => AuditEvent.parse(e));
    assert.ok(events.length >= 1 && events.every((e) => e.hostId === 'sim-2' && e.kind === 'hotplug'));
    const text = await runCli(['events', '--host', 'sim-2', '--since', '10m', '--dir', t.dir], env);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /sim-2\s+hotplug.*by operator-/);
    const bad = await runCli(['events', '--kind', 'nope', '--dir', t.dir], env);
    assert.notEqual(bad.code, 0);
  });
});
