import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { PassthroughActivities } from '../../activities/passthrough-activities.js';
import type { passthroughWorkflow } from '../../workflows/passthrough-workflow.js';
import { ErrorCode } from '../../schemas/errors.js';
import { rhel5XenInventory } from '../helpers/inventory-fixture.js';
import { bundleWorkflows, timeSkippingEnv } from '../helpers/temporal-env.js';

type Calls = string[];

/** Activities that record what the saga asked for; `fail` makes one step throw a permanent failure. */
function fakeActivities(calls: Calls, fail: Partial<Record<keyof PassthroughActivities, ErrorCode>> = {}): PassthroughActivities {
  const step = <T>(name: keyof PassthroughActivities, label: string, value: T): T => {
    calls.push(label);
    const code = fail[name];
    if (code) throw ApplicationFailure.create({ type: code, message: `${label} failed (test)`, nonRetryable: true });
    return value;
  };
  return {
    inspectHost: async (hostId) => step('inspectHost', 'inspect', rhel5XenInventory(hostId)),
    hideDevice: async (_h, bdf) => step('hideDevice', `hide ${bdf}`, { bdf, changed: true, file: '/etc/modprobe.conf', driver: 'e1000' }),
    unhideDevice: async (_h, bdf) => step('unhideDevice', `unhide ${bdf}`, { bdf, changed: true, file: '/etc/modprobe.conf', driver: 'e1000' }),
    bindDevice: async (_h, bdf) => step('bindDevice', `bind ${bdf}`, { bdf, changed: true, driver: 'pciback', originalDriver: 'e1000' }),
    unbindDevice: async (_h, bdf, driver) => step('unbindDevice', `unbind ${bdf} -> ${driver ?? 'probe'}`, { bdf, changed: true, driver }),
    rebootHost: async () => step('rebootHost', 'reboot', { previousBootId: 'boot-1' }),
    verifyDevice: async (_h, bdf) => step('verifyDevice', `verify ${bdf}`, { bdf, driver: 'pciback', inPcibackSlots: true, assignable: true }),
    attachDevice: async (_h, bdf, guest) => step('attachDevice', `attach ${bdf} ${guest}`, { bdf, guest, hot: true, cold: true, changed: true, guestRebootNeeded: false }),
    detachDevice: async (_h, bdf, guest) => step('detachDevice', `detach ${bdf} ${guest}`, { bdf, guest, hot: false, cold: false, changed: true, guestRebootNeeded: false }),
    awaitNewBoot: async () => step('awaitNewBoot', 'await boot', 'boot-2'),
  };
}

void describe('passthrough saga (time-skipping test server)', () => {
  let env: TestWorkflowEnvironment;
  let bundle: WorkflowBundleWithSourceMap;
  let n = 0;
  before(async () => {
    env = await timeSkippingEnv();
    bundle = await bundleWorkflows();
  });
  after(async () => {
    await env?.teardown();
  });

  async function run(activities: PassthroughActivities, bdf: string, guest = 'vm-hvm'): Promise<unknown> {
    const taskQueue = `saga-${++n}`;
    const worker = await Worker.create({ connection: env.nativeConnection, taskQueue, workflowBundle: bundle, activities });
    return worker.runUntil(
      env.client.workflow
        .execute<typeof passthroughWorkflow>('passthroughWorkflow', { taskQueue, workflowId: `op/h1/${bdf}/${n}`, args: [{ hostId: 'h1', bdf, guest }] })
        .then((r) => r, (e: unknown) => e),
    );
  }

  void it('hides and binds the whole IOMMU group, then attaches only the requested device', async () => {
    const calls: Calls = [];
    const result = await run(fakeActivities(calls), '0000:0a:04.1');
    assert.ok(!(result instanceof Error), String(result));
    assert.deepEqual(calls, [
      'inspect',
      'hide 0000:0a:04.0', 'hide 0000:0a:04.1',
      'bind 0000:0a:04.0', 'bind 0000:0a:04.1',
      'verify 0000:0a:04.0', 'verify 0000:0a:04.1',
      'attach 0000:0a:04.1 vm-hvm',
    ]);
  });

  void it('undoes every effect newest-first when attach fails, and fails with the attach error code', async () => {
    const calls: Calls = [];
    const err = await run(fakeActivities(calls, { attachDevice: ErrorCode.ATTACH_FAILED }), '0000:0b:00.0');
    assert.ok(err instanceof WorkflowFailedError);
    assert.ok(err.cause instanceof ApplicationFailure);
    assert.equal(err.cause.type, ErrorCode.ATTACH_FAILED);
    assert.deepEqual(err.cause.details?.[0], {
      outcome: 'compensated',
      residue: [],
      steps: (err.cause.details?.[0] as { steps: unknown }).steps,
    });
    assert.deepEqual(calls, [
      'inspect', 'hide 0000:0b:00.0', 'bind 0000:0b:00.0', 'verify 0000:0b:00.0', 'attach 0000:0b:00.0 vm-hvm',
      // compensation, newest first, rebinding exactly the recorded original driver
      'detach 0000:0b:00.0 vm-hvm', 'unbind 0000:0b:00.0 -> e1000', 'unhide 0000:0b:00.0',
    ]);
  });

  void it('keeps compensating past a failed undo and reports the residue as needs-attention', async () => {
    const calls: Calls = [];
    const err = await run(fakeActivities(calls, { verifyDevice: ErrorCode.VERIFY_FAILED, unbindDevice: ErrorCode.COMMAND_FAILED }), '0000:0b:00.0');
    assert.ok(err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure);
    assert.equal(err.cause.type, ErrorCode.VERIFY_FAILED);
    const details = err.cause.details?.[0] as { outcome: string; residue: string[] };
    assert.equal(details.outcome, 'needs-attention');
    assert.equal(details.residue.length, 1);
    assert.match(details.residue[0] ?? '', /rebind 0000:0b:00.0 to e1000 \(COMMAND_FAILED/);
    assert.ok(calls.includes('unhide 0000:0b:00.0'), 'the unhide still ran after the failed unbind');
  });

  void it('refuses the uplink in preflight without any effect', async () => {
    const calls: Calls = [];
    const err = await run(fakeActivities(calls), '0000:01:00.0');
    assert.ok(err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure);
    assert.equal(err.cause.type, ErrorCode.DEVICE_IN_USE);
    assert.deepEqual(calls, ['inspect']);
  });

  void it('fails a malformed request as a workflow failure, not a stuck task', async () => {
    const calls: Calls = [];
    const err = await run(fakeActivities(calls), 'not-a-bdf');
    assert.ok(err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure);
    assert.equal(err.cause.type, ErrorCode.INVALID_INPUT);
    assert.deepEqual(calls, []);
  });
});
