import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ApplicationFailure } from '@temporalio/common';
import type { PassthroughActivities } from '../../activities/passthrough-activities.js';
import { createOperationActivities } from '../../activities/operation-activities.js';
import { ErrorCode } from '../../schemas/errors.js';
import type { HostOperationInput } from '../../schemas/passthrough.js';
import type { RolloutInputRaw } from '../../schemas/rollout.js';
import { submitOperation } from '../../transport/host-operations.js';
import { waitForOperation } from '../../cli/operations.js';
import { hostEntityWorkflowId, hostStateQuery } from '../../workflows/definitions.js';
import type { HostEntityInput, hostEntityWorkflow } from '../../workflows/host-entity.js';
import type { rolloutWorkflow } from '../../workflows/rollout-workflow.js';
import type { RolloutReport } from '../../workflows/rollout-book.js';
import { rhel5XenInventory } from '../helpers/inventory-fixture.js';
import { useTimeSkippingEnv } from '../helpers/temporal-env.js';

/** Agent activities that record what was asked; `attachFailures` attach calls fail first (a broken host). */
function fakeAgent(calls: string[], opts: { attachFailures?: number; attachDelayMs?: number } = {}): PassthroughActivities {
  let attachFailures = opts.attachFailures ?? 0;
  const ok = <T extends object>(label: string, value: T): T & { bootId: string } => {
    calls.push(label);
    return { ...value, bootId: 'boot-1' };
  };
  return {
    inspectHost: async (hostId) => rhel5XenInventory(hostId),
    hideDevice: async (_h, bdf) => ok(`hide ${bdf}`, { bdf, changed: true, file: '/etc/modprobe.conf', driver: 'bnx2' }),
    unhideDevice: async (_h, bdf) => ok(`unhide ${bdf}`, { bdf, changed: true, file: '/etc/modprobe.conf', driver: 'bnx2' }),
    bindDevice: async (_h, bdf) => ok(`bind ${bdf}`, { bdf, changed: true, driver: 'pciback', originalDriver: 'bnx2' }),
    unbindDevice: async (_h, bdf, driver) => ok(`unbind ${bdf}`, { bdf, changed: true, driver }),
    rebootHost: async () => ok('reboot', { previousBootId: 'boot-1' }),
    verifyDevice: async (_h, bdf) => ok(`verify ${bdf}`, { bdf, driver: 'pciback', inPcibackSlots: true, assignable: true }),
    attachDevice: async (_h, bdf, guest) => {
      calls.push(`attach ${bdf}`);
      if (opts.attachDelayMs) await new Promise((r) => setTimeout(r, opts.attachDelayMs));
      if (attachFailures-- > 0) throw ApplicationFailure.create({ type: ErrorCode.ATTACH_FAILED, message: 'injected', nonRetryable: true });
      return { bdf, guest, hot: true, cold: true, changed: true, hotplugged: true, guestRebootNeeded: false, bootId: 'boot-1' };
    },
    detachDevice: async (_h, bdf, guest) => ok(`detach ${bdf}`, { bdf, guest, hot: false, cold: false, changed: true, hotplugged: true, guestRebootNeeded: false }),
    awaitNewBoot: async () => 'boot-2',
  };
}

const BDF = '0000:09:00.0';
const oneHost = (name: string, run: string | undefined, extra: Partial<RolloutInputRaw> = {}): RolloutInputRaw => ({
  name,
  hosts: [{ hostId: 'h1', requests: [{ hostId: 'h1', bdf: BDF, guest: 'vm-hvm' }] }],
  options: { canary: 0, maxParallel: 1, maxFailures: { count: 0 } },
  ...(run ? { run } : {}),
  ...extra,
});

/**
 * One time-skipping server per test: an entity left idle by one test would hold the server's clock for
 * the next (the server skips time only while no task is pending).
 */
function entitySuite(title: string, prefix: string, body: (h: ReturnType<typeof harness>) => void): void {
  void describe(`host entity: ${title} (time-skipping test server)`, () => {
    body(harness(useTimeSkippingEnv(prefix)));
  });
}

function harness(suite: ReturnType<typeof useTimeSkippingEnv>) {
  /** The real operation activities (enqueue through the entity) with a fake agent behind the sagas. */
  const activities = (calls: string[], agentOpts: Parameters<typeof fakeAgent>[1] = {}): object => ({ ...fakeAgent(calls, agentOpts), ...createOperationActivities({ client: suite.env.client }) });

  /**
   * Entities run on the test's task queue; enqueueing (signal-with-start) then finds them running. Each
   * is terminated when its test ends: an idle entity whose worker is gone would hold the test server's
   * clock (it skips time only while no task is pending).
   */
  const entities: string[] = [];
  async function startEntity(taskQueue: string, input: HostEntityInput): Promise<void> {
    await suite.env.client.workflow.start<typeof hostEntityWorkflow>('hostEntityWorkflow', { taskQueue, workflowId: hostEntityWorkflowId(input.hostId), args: [input] });
    entities.push(hostEntityWorkflowId(input.hostId));
  }
  after(async () => {
    for (const id of entities.splice(0)) await suite.env.client.workflow.getHandle(id).terminate('test over').catch(() => undefined);
  });

  async function rollout(taskQueue: string, input: RolloutInputRaw): Promise<RolloutReport> {
    return suite.env.client.workflow.execute<typeof rolloutWorkflow>('rolloutWorkflow', { taskQueue, workflowId: `rollout/${input.name}`, args: [input] });
  }

  return { suite, activities, startEntity, rollout };
}

entitySuite('re-apply', 'reapply', ({ suite, activities, startEntity, rollout }) => {
  void it('applying a plan again after a fix acts again; a retry of the same run does not', async () => {
    const calls: string[] = [];
    await suite.withWorker(activities(calls, { attachFailures: 1 }), async (taskQueue) => {
      await startEntity(taskQueue, { hostId: 'h1' });
      const first = await rollout(taskQueue, oneHost('again', 'run1'));
      assert.equal(first.counts.failed, 1, JSON.stringify(first));
      assert.equal(calls.filter((c) => c.startsWith('attach')).length, 1);

      // The same run again (a retry): the entity knows its operation and answers with how it ended.
      const retry = await rollout(taskQueue, oneHost('again', 'run1'));
      assert.equal(retry.counts.failed, 1);
      assert.equal(calls.filter((c) => c.startsWith('attach')).length, 1, 'a retry of a run does not touch the host again');

      // The host was fixed; a new apply is a new run and redoes it.
      const second = await rollout(taskQueue, oneHost('again', 'run2'));
      assert.equal(second.counts.succeeded, 1, JSON.stringify(second));
      assert.equal(calls.filter((c) => c.startsWith('attach')).length, 2);
      const recent = (await suite.env.client.workflow.getHandle(hostEntityWorkflowId('h1')).query(hostStateQuery)).recent.map((r) => r.workflowId);
      assert.ok(recent.some((id) => id.endsWith('-run1-0')) && recent.some((id) => id.endsWith('-run2-0')), recent.join(' '));
    });
  });
});

entitySuite('a long operation in a rollout', 'long', ({ suite, activities, startEntity, rollout }) => {
  void it('a 40-minute host operation inside a rollout ends with its real outcome (no waiter timing out)', async () => {
    const calls: string[] = [];
    await suite.withWorker(activities(calls), async (taskQueue) => {
      const now = await suite.env.currentTimeMs();
      // The device's one hotplug per 40 minutes was used a moment ago: the attach waits 40 min for a slot.
      const throttle = { budget: 1, windowMs: 40 * 60_000 };
      const entity: HostEntityInput = { hostId: 'h2', state: { ledger: { [BDF]: [now] }, pinned: {}, queue: [], recent: [] } };
      await startEntity(taskQueue, entity);
      const report = await rollout(taskQueue, {
        name: 'slow',
        run: 'r1',
        hosts: [{ hostId: 'h2', requests: [{ hostId: 'h2', bdf: BDF, guest: 'vm-hvm', throttle, deadlineMs: 2 * 60 * 60_000 }] }],
        options: { canary: 0, maxParallel: 1, maxFailures: { count: 0 } },
      });
      assert.equal(report.counts.succeeded, 1, JSON.stringify(report));
      assert.ok((await suite.env.currentTimeMs()) - now >= 40 * 60_000, 'the attach waited for its slot');
      assert.equal(calls.filter((c) => c.startsWith('attach')).length, 1);
    });
  });
});

entitySuite('repeated enqueue', 'dedup', ({ suite, activities, startEntity }) => {
  void it('a repeated enqueue of one operation runs it once', async () => {
    const calls: string[] = [];
    await suite.withWorker(activities(calls), async (taskQueue) => {
      const op: HostOperationInput = { kind: 'attach', workflowId: `op/h3/${BDF}/dup`, request: { hostId: 'h3', bdf: BDF, guest: 'vm-hvm' } };
      await startEntity(taskQueue, { hostId: 'h3' });
      await Promise.all([submitOperation(suite.env.client, op), submitOperation(suite.env.client, op), submitOperation(suite.env.client, op)]);
      const result = await waitForOperation(suite.env.client, 'h3', op.workflowId);
      assert.equal(result.outcome, 'attached');
      await submitOperation(suite.env.client, op);
      const view = await suite.env.client.workflow.getHandle(hostEntityWorkflowId('h3')).query(hostStateQuery);
      assert.deepEqual(view.queue, []);
      assert.equal(calls.filter((c) => c.startsWith('attach')).length, 1);
    });
  });
});

