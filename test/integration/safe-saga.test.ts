import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCode, PtcError } from '../../schemas/errors.js';
import type { PassthroughResult } from '../../schemas/passthrough.js';
import { hostEntityWorkflowId, hostStateQuery, passthroughProgressQuery } from '../../workflows/definitions.js';
import { parseOperationInput } from '../../cli/commands/attach.js';
import { waitForOperation } from '../../cli/operations.js';
import { submitOperation } from '../../transport/host-operations.js';
import { errorInfo } from '../../cli/failures.js';
import { type TestStack, auditEvents, runCli, snapshotFiles, startTestStack } from '../helpers/stack.js';
import { quietTemporalRuntime } from '../helpers/temporal-env.js';
import { stepKinds } from '../helpers/history-export.js';

/** Host files that a failed or refused operation must leave byte-identical. */
async function etcFiles(t: TestStack, hostId: string): Promise<Map<string, string>> {
  const all = await snapshotFiles(t.hostRoot(hostId));
  return new Map([...all].filter(([path]) => path.startsWith('etc/') && !path.endsWith('.ptctl.bak')));
}

async function attach(t: TestStack, host: string, device: string, guest: string, extra: Record<string, string> = {}): Promise<PassthroughResult> {
  const op = parseOperationInput('attach', { host, device, guest, wait: true, json: false, ...extra });
  await submitOperation(t.client, op);
  return waitForOperation(t.client, host, op.workflowId);
}

async function driverOf(t: TestStack, host: string, bdf: string): Promise<string | null> {
  const inv = await t.agents.call(host, 'inspect', {}, { opId: `probe/${host}/${Date.now()}/${Math.random()}`, timeoutMs: 10_000 });
  return inv.result.devices.find((d) => d.bdf === bdf)?.driver ?? null;
}

void describe('safe passthrough on the real stack', () => {
  let t: TestStack;
  let cliEnv: NodeJS.ProcessEnv;
  before(async () => {
    quietTemporalRuntime();
    t = await startTestStack({
      simHosts: ['sim-1', 'sim-2', 'sim-3', 'sim-4', 'sim-5', 'sim-6'],
      agentTimeoutMs: 3000,
      fleet: {
        hosts: {
          'sim-3': { faults: { attachFailureProbability: 1 } },
          'sim-4': { faults: { rebootAtStep: 'bind:after-effect', rebootMs: 1500 } },
          'sim-5': { profile: 'rhel5-xen-noiommu' },
          'sim-6': { faults: { rebootMs: 6000 } },
        },
      },
    });
    cliEnv = { PTC_NATS_URL: '', PTC_NATS_CREDS: '', PTC_TEMPORAL_ADDRESS: '' };
  });
  after(async () => {
    await t[Symbol.asyncDispose]();
  });

  void it('(a) undoes an injected attach failure: host and guest files byte-identical, device back on its original driver', async () => {
    const before = await etcFiles(t, 'sim-3');
    const err = await attach(t, 'sim-3', '0000:0b:00.0', 'vm-hvm').then(() => null, (e: unknown) => e);
    assert.ok(err, 'the attach failed');
    assert.equal(errorInfo(err).code, ErrorCode.ATTACH_FAILED);
    assert.match(errorInfo(err).message, /undone: the host is as before/);
    assert.deepEqual(await etcFiles(t, 'sim-3'), before);
    assert.equal(await driverOf(t, 'sim-3', '0000:0b:00.0'), 'e1000e');
  });

  void it('(c) completes correctly when the host reboots between bind and attach', async () => {
    const result = await attach(t, 'sim-4', '0000:09:00.0', 'vm-hvm');
    assert.equal(result.outcome, 'attached');
    assert.ok(result.steps.some((s) => /rebooted unexpectedly/.test(s.detail)), JSON.stringify(result.steps));
    const inv = (await t.agents.call('sim-4', 'inspect', {}, { opId: 'probe/sim-4/after-reboot', timeoutMs: 10_000 })).result;
    assert.equal(inv.devices.find((d) => d.bdf === '0000:09:00.0')?.driver, 'pciback');
    assert.deepEqual(inv.guests.find((g) => g.name === 'vm-hvm')?.liveDevices, ['0000:09:00.0']);
    const boots = (await auditEvents(t.nc, 'sim-4')).filter((e) => e.kind === 'boot');
    assert.equal(boots.length, 2, 'the first boot and the injected reboot');
  });

  void it('(e) refuses to save, restore or migrate a guest that holds a device; allows it for one that does not', async () => {
    // After (c), vm-hvm on sim-4 holds 0000:09:00.0.
    for (const command of ['save', 'restore', 'migrate'] as const) {
      const args = command === 'migrate' ? { guest: 'vm-hvm', target: 'sim-1' } : { guest: 'vm-hvm' };
      await assert.rejects(
        t.agents.call('sim-4', command, args, { opId: `pin/${command}`, timeoutMs: 10_000 }),
        (e: unknown) => e instanceof PtcError && e.code === ErrorCode.GUEST_PINNED && /0000:09:00\.0/.test(e.message),
      );
    }
    const saved = await t.agents.call('sim-4', 'save', { guest: 'vm-pv' }, { opId: 'pin/save-pv', timeoutMs: 10_000 });
    assert.equal(saved.result.state, 'stopped');
    const restored = await t.agents.call('sim-4', 'restore', { guest: 'vm-pv' }, { opId: 'pin/restore-pv', timeoutMs: 10_000 });
    assert.equal(restored.result.state, 'running');
    const refusals = (await auditEvents(t.nc, 'sim-4')).filter((e) => e.kind === 'refused' && e.opId?.startsWith('pin/'));
    assert.equal(refusals.length, 3, 'each refusal is in the audit stream');
  });

  void it('(d) serializes two concurrent operations on one host', async () => {
    const a = parseOperationInput('attach', { host: 'sim-1', device: '0000:09:00.0', guest: 'vm-hvm', wait: true, json: false });
    const b = parseOperationInput('attach', { host: 'sim-1', device: '0000:0b:00.0', guest: 'vm-hvm', wait: true, json: false });
    await Promise.all([submitOperation(t.client, a), submitOperation(t.client, b)]);
    const [ra, rb] = await Promise.all([waitForOperation(t.client, 'sim-1', a.workflowId), waitForOperation(t.client, 'sim-1', b.workflowId)]);
    assert.equal(ra.outcome, 'attached');
    assert.equal(rb.outcome, 'attached');
    const events = (await auditEvents(t.nc, 'sim-1')).filter((e) => e.kind === 'received');
    const idx = (id: string): number[] => events.flatMap((e, i) => (e.opId?.startsWith(`${id}#`) ? [i] : []));
    const [ia, ib] = [idx(a.workflowId), idx(b.workflowId)];
    assert.ok(ia.length > 3 && ib.length > 3);
    assert.ok(Math.max(...ia) < Math.min(...ib) || Math.max(...ib) < Math.min(...ia), 'the two operations\' commands did not interleave');
  });

  void it('releases a device back to its host driver and unpins the guest', async () => {
    const op = parseOperationInput('detach', { host: 'sim-1', device: '0000:09:00.0', guest: 'vm-hvm', wait: true, json: false });
    await submitOperation(t.client, op);
    const result = await waitForOperation(t.client, 'sim-1', op.workflowId);
    assert.equal(result.outcome, 'released');
    assert.equal(await driverOf(t, 'sim-1', '0000:09:00.0'), 'bnx2');
    const modprobe = await readFile(join(t.hostRoot('sim-1'), 'etc', 'modprobe.conf'), 'utf8');
    assert.ok(!modprobe.includes('0000:09:00.0'), modprobe);
    const view = await t.client.workflow.getHandle(hostEntityWorkflowId('sim-1')).query(hostStateQuery);
    assert.deepEqual(view.pinned, { 'vm-hvm': ['0000:0b:00.0'] });
    // Only the steps that take a host's real time are activities; inspect, unhide and verify run as
    // local activities (markers), each saving a server round trip and a workflow task.
    const steps = await stepKinds(t.client, op.workflowId);
    assert.deepEqual(steps.activities, ['detachDevice', 'unbindDevice']);
    assert.ok(steps.localActivities >= 3, `${steps.localActivities} local activities`);
  });

  void it('refuses every unsafe request from the CLI with its code, changing nothing', async () => {
    const cases: Array<{ host: string; args: string[]; code: string; exit: number }> = [
      { host: 'sim-1', args: ['--device', '0000:01:00.0', '--guest', 'vm-hvm'], code: ErrorCode.DEVICE_IN_USE, exit: 1 },
      { host: 'sim-1', args: ['--device', '0000:03:00.0', '--guest', 'vm-hvm'], code: ErrorCode.DEVICE_IN_USE, exit: 1 },
      { host: 'sim-1', args: ['--device', '0000:0a:04.0', '--guest', 'vm-pv6', '--allow-insecure-pv'], code: ErrorCode.PV_UNSUPPORTED, exit: 1 },
      { host: 'sim-1', args: ['--device', '0000:0a:04.0', '--guest', 'vm-pv'], code: ErrorCode.PV_INSECURE, exit: 1 },
      { host: 'sim-1', args: ['--device', '0000:09:00.0', '--guest', 'vm-hvm', '--strategy', 'reload'], code: ErrorCode.RELOAD_UNSAFE, exit: 1 },
      { host: 'sim-1', args: ['--device', '0000:0b:00.0', '--guest', 'vm-pv', '--allow-insecure-pv'], code: ErrorCode.DEVICE_ASSIGNED, exit: 1 },
      { host: 'sim-5', args: ['--device', '0000:09:00.0', '--guest', 'vm-hvm'], code: ErrorCode.IOMMU_REQUIRED, exit: 1 },
      { host: 'sim-1', args: ['--device', '0000:0f:00.0', '--guest', 'vm-hvm'], code: ErrorCode.DEVICE_NOT_FOUND, exit: 1 },
      { host: 'sim-1', args: ['--device', '0000:0a:04.0', '--guest', 'vm-nope'], code: ErrorCode.GUEST_NOT_FOUND, exit: 1 },
      { host: 'sim-1', args: ['--device', '0000:0a:04.0', '--guest', 'vm-hvm', '--throttle-budget', '300'], code: ErrorCode.INVALID_INPUT, exit: 2 },
    ];
    for (const c of cases) {
      const before = await etcFiles(t, c.host);
      const res = await runCli(['attach', '--dir', t.dir, '--host', c.host, ...c.args, '--wait'], cliEnv);
      assert.equal(res.code, c.exit, `${c.args.join(' ')}: ${res.stderr}`);
      const lines = res.stderr.trim().split('\n');
      assert.equal(lines.length, 1, res.stderr);
      assert.match(lines[0] ?? '', new RegExp(`^ptctl: ${c.code}: \\S.+`), c.args.join(' '));
      assert.deepEqual(await etcFiles(t, c.host), before, `${c.args.join(' ')} changed host files`);
    }
  });

  void it('(b) survives 2,000 attach/detach requests at one device: the kernel never fails, the ledger never exceeds the budget', async () => {
    const device = '0000:0b:00.0';
    const ids: string[] = [];
    for (let i = 0; i < 2000; i += 50) {
      await Promise.all(
        Array.from({ length: 50 }, async (_, j) => {
          const kind = (i + j) % 2 === 0 ? 'attach' : 'detach';
          const op = parseOperationInput(kind, { host: 'sim-2', device, guest: 'vm-hvm', deadline: '1s', wait: true, json: false }, `storm-${i + j}`);
          ids.push(op.workflowId);
          await submitOperation(t.client, op);
        }),
      );
    }
    const entity = t.client.workflow.getHandle(hostEntityWorkflowId('sim-2'));
    const started = Date.now();
    for (;;) {
      const view = await entity.query(hostStateQuery);
      assert.ok((view.ledger[device]?.length ?? 0) <= 32, `ledger over budget: ${view.ledger[device]?.length}`);
      if (view.queue.length === 0 && view.current === null) break;
      assert.ok(Date.now() - started < 240_000, 'the storm drained within 4 minutes');
      await new Promise((r) => setTimeout(r, 500));
    }
    const state = JSON.parse(await readFile(join(t.hostRoot('sim-2'), 'sim-state.json'), 'utf8')) as { failure: string | null; hotplugs: Record<string, number[]> };
    assert.equal(state.failure, null, 'the simulated kernel did not fail');
    const hotplugs = (await auditEvents(t.nc, 'sim-2')).filter((e) => e.kind === 'hotplug');
    assert.ok(hotplugs.length > 0 && hotplugs.length <= 32, `${hotplugs.length} hotplugs happened (budget 32 per 10 min)`);
    // The last request was answered too: throttled, with its code, not lost.
    const last = await waitForOperation(t.client, 'sim-2', ids[ids.length - 1] ?? '').then(() => null, (e: unknown) => e);
    assert.ok(last instanceof PtcError || last instanceof Error);
    assert.equal(errorInfo(last).code, ErrorCode.THROTTLED);
  });

  void it('(h) terminating a host entity mid-operation cancels the operation, which gives the host back', async () => {
    const before = await etcFiles(t, 'sim-6');
    const op = parseOperationInput('attach', { host: 'sim-6', device: '0000:09:00.0', guest: 'vm-hvm', strategy: 'reboot', wait: true, json: false });
    await submitOperation(t.client, op);
    // Wait until the saga is waiting for the host to come back from its reboot.
    for (let i = 0; i < 200; i++) {
      const p = await t.client.workflow.getHandle(op.workflowId).query(passthroughProgressQuery).catch(() => null);
      if (p?.step === 'reboot') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await t.client.workflow.getHandle(hostEntityWorkflowId('sim-6')).terminate('operator reset the entity');
    const err = await t.client.workflow.getHandle(op.workflowId).result().then(() => null, (e: unknown) => e);
    assert.ok(err, 'the operation did not complete');
    assert.equal(errorInfo(err).code, ErrorCode.CANCELLED, errorInfo(err).message);
    assert.match(errorInfo(err).message, /undone: the host is as before/);
    assert.deepEqual(await etcFiles(t, 'sim-6'), before, 'hide= removed again');
    assert.equal(await driverOf(t, 'sim-6', '0000:09:00.0'), 'bnx2', 'the device that pciback took at boot is back on its driver');
  });
});
