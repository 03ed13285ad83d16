import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { PassthroughActivities } from '../../activities/passthrough-activities.js';
import type { passthroughWorkflow } from '../../workflows/passthrough-workflow.js';
import type { PassthroughRequestInput, PassthroughResult } from '../../schemas/passthrough.js';
import { ErrorCode } from '../../schemas/errors.js';
import { rhel5XenInventory } from '../helpers/inventory-fixture.js';
import { useTimeSkippingEnv } from '../helpers/temporal-env.js';

type Calls = string[];
type Fail = Partial<Record<keyof PassthroughActivities, ErrorCode>>;

/** Activities that record what the saga asked for; `fail` makes one step throw a permanent failure. */
function fakeActivities(calls: Calls, fail: Fail = {}, overrides: Partial<PassthroughActivities> = {}): PassthroughActivities {
  const bootId = 'boot-1';
  const step = <T extends object>(name: keyof PassthroughActivities, label: string, value: T): T & { bootId: string } => {
    calls.push(label);
    const code = fail[name];
    if (code) throw ApplicationFailure.create({ type: code, message: `${label} failed (test)`, nonRetryable: true });
    return { ...value, bootId };
  };
  return {
    inspectHost: async (hostId) => step('inspectHost', 'inspect', rhel5XenInventory(hostId)),
    hideDevice: async (_h, bdf) => step('hideDevice', `hide ${bdf}`, { bdf, changed: true, file: '/etc/modprobe.conf', driver: 'e1000' }),
    unhideDevice: async (_h, bdf) => step('unhideDevice', `unhide ${bdf}`, { bdf, changed: true, file: '/etc/modprobe.conf', driver: 'e1000' }),
    bindDevice: async (_h, bdf) => step('bindDevice', `bind ${bdf}`, { bdf, changed: true, driver: 'pciback', originalDriver: 'e1000' }),
    unbindDevice: async (_h, bdf, driver) => step('unbindDevice', `unbind ${bdf} -> ${driver ?? 'probe'}`, { bdf, changed: true, driver }),
    rebootHost: async () => step('rebootHost', 'reboot', { previousBootId: 'boot-1' }),
    verifyDevice: async (_h, bdf) => step('verifyDevice', `verify ${bdf}`, { bdf, driver: 'pciback', inPcibackSlots: true, assignable: true }),
    attachDevice: async (_h, bdf, guest) => step('attachDevice', `attach ${bdf} ${guest}`, { bdf, guest, hot: true, cold: true, changed: true, hotplugged: true, guestRebootNeeded: false }),
    detachDevice: async (_h, bdf, guest) => step('detachDevice', `detach ${bdf} ${guest}`, { bdf, guest, hot: false, cold: false, changed: true, hotplugged: true, guestRebootNeeded: false }),
    awaitNewBoot: async () => {
      calls.push('await boot');
      return 'boot-2';
    },
    ...overrides,
  };
}

const withoutInspects = (calls: Calls): Calls => calls.filter((c) => c !== 'inspect');

void describe('passthrough saga (time-skipping test server)', () => {
  const suite = useTimeSkippingEnv('saga');

  async function run(
    activities: PassthroughActivities,
    bdf: string,
    extra: Partial<PassthroughRequestInput> = {},
    ledger: number[] = [],
    whileRunning?: (handle: WorkflowHandle<typeof passthroughWorkflow>) => Promise<void>,
  ): Promise<unknown> {
    return suite.withWorker(activities, async (taskQueue) => {
      const handle = await suite.env.client.workflow.start<typeof passthroughWorkflow>('passthroughWorkflow', {
        taskQueue,
        workflowId: `op/h1/${bdf}/${taskQueue}`,
        args: [{ hostId: 'h1', bdf, guest: 'vm-hvm', ...extra }, ledger],
      });
      if (whileRunning) await whileRunning(handle);
      return handle.result().then((r) => r, (e: unknown) => e);
    });
  }

  void it('hides and binds the whole IOMMU group, then attaches only the requested device', async () => {
    const calls: Calls = [];
    const result = await run(fakeActivities(calls), '0000:0a:04.1');
    assert.ok(!(result instanceof Error), String(result));
    assert.deepEqual(withoutInspects(calls), [
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
    const details = err.cause.details?.[0] as { outcome: string; residue: string[]; hotplugs: number[] };
    assert.equal(details.outcome, 'compensated');
    assert.deepEqual(details.residue, []);
    assert.equal(details.hotplugs.length, 2, 'the failed attach attempt and the compensating hot unplug both count against the throttle');
    assert.deepEqual(withoutInspects(calls), [
      'hide 0000:0b:00.0', 'bind 0000:0b:00.0', 'verify 0000:0b:00.0', 'attach 0000:0b:00.0 vm-hvm',
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

  void it('waits on a durable timer for a hotplug slot when the device is over budget, then attaches', async () => {
    const calls: Calls = [];
    // The test server's clock runs ahead of the machine's once time has been skipped.
    const start = await suite.env.currentTimeMs();
    // 32 hotplugs in the last minute: the budget (32 per 10 min) frees its first slot 9 minutes from now.
    const ledger = Array.from({ length: 32 }, (_, i) => start - 60_000 + i);
    const result = (await run(fakeActivities(calls), '0000:0b:00.0', {}, ledger)) as PassthroughResult;
    assert.equal(result.outcome, 'attached', JSON.stringify(result));
    assert.ok(result.steps.some((s) => s.step === 'throttle'), 'the wait shows as a step');
    assert.equal(result.hotplugs.length, 1);
    assert.ok((result.hotplugs[0] ?? 0) >= start + 9 * 60_000 - 1000, 'the hotplug happened after the slot opened');
  });

  void it('ends throttled before any effect when the next slot is past the deadline', async () => {
    const calls: Calls = [];
    const now = await suite.env.currentTimeMs();
    const ledger = Array.from({ length: 32 }, () => now);
    const err = await run(fakeActivities(calls), '0000:0b:00.0', { deadlineMs: 60_000 }, ledger);
    assert.ok(err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure);
    assert.equal(err.cause.type, ErrorCode.THROTTLED);
    assert.equal((err.cause.details?.[0] as { outcome: string }).outcome, 'throttled');
    assert.deepEqual(calls, ['inspect']);
  });

  void it('honours a custom budget: 2 per window lets the third attach wait', async () => {
    const calls: Calls = [];
    const now = await suite.env.currentTimeMs();
    const result = (await run(fakeActivities(calls), '0000:0b:00.0', { throttle: { budget: 2, windowMs: 60_000 } }, [now - 10_000, now - 5_000])) as PassthroughResult;
    assert.equal(result.outcome, 'attached');
    assert.ok((result.hotplugs[0] ?? 0) >= now + 50_000 - 1000);
  });

  void it('ends with DEADLINE_EXCEEDED and undoes the hide when a reboot does not come back in time', async () => {
    const calls: Calls = [];
    const slowBoot = fakeActivities(calls, {}, {
      awaitNewBoot: async () => {
        calls.push('await boot');
        await new Promise((r) => setTimeout(r, 5000));
        return 'boot-2';
      },
    });
    const err = await run(slowBoot, '0000:0b:00.0', { strategy: 'reboot', deadlineMs: 1500 });
    assert.ok(err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure);
    assert.equal(err.cause.type, ErrorCode.DEADLINE_EXCEEDED);
    // The host may come back with pciback holding the device (it booted with hide=): the rebind was
    // registered before the reboot, so it runs too (a no-op by state when the device is not on pciback),
    // after the unhide it needs; the hide's own undo repeats that unhide with the same op id, which an
    // agent answers from its journal.
    assert.deepEqual(withoutInspects(calls), ['hide 0000:0b:00.0', 'reboot', 'await boot', 'unhide 0000:0b:00.0', 'unbind 0000:0b:00.0 -> probe', 'unhide 0000:0b:00.0']);
  });

  void it('compensates when cancelled during attach', async () => {
    const calls: Calls = [];
    let attachStarted!: () => void;
    const started = new Promise<void>((r) => (attachStarted = r));
    const slowAttach = fakeActivities(calls, {}, {
      attachDevice: async (_h, bdf, guest) => {
        calls.push(`attach ${bdf} ${guest}`);
        attachStarted();
        await new Promise((r) => setTimeout(r, 3000));
        return { bdf, guest, hot: true, cold: true, changed: true, hotplugged: true, guestRebootNeeded: false, bootId: 'boot-1' };
      },
    });
    const err = await run(slowAttach, '0000:0b:00.0', {}, [], async (handle) => {
      await started;
      await handle.cancel();
    });
    assert.ok(err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure, String(err));
    assert.equal(err.cause.type, ErrorCode.CANCELLED);
    assert.equal((err.cause.details?.[0] as { outcome: string }).outcome, 'cancelled');
    assert.deepEqual(withoutInspects(calls).slice(-3), ['detach 0000:0b:00.0 vm-hvm', 'unbind 0000:0b:00.0 -> e1000', 'unhide 0000:0b:00.0']);
  });

  void it('fails a malformed request as a workflow failure, not a stuck task', async () => {
    const calls: Calls = [];
    const err = await run(fakeActivities(calls), 'not-a-bdf');
    assert.ok(err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure);
    assert.equal(err.cause.type, ErrorCode.INVALID_INPUT);
    assert.deepEqual(calls, []);
  });
});
