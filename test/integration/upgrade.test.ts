import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client } from '@temporalio/client';
import proto from '@temporalio/proto';
import type { PassthroughResult } from '../../schemas/passthrough.js';
import type { RolloutReport } from '../../workflows/rollout-book.js';
import { runWorker, workflowBuild } from '../../cli/worker.js';
import type { DeploymentView } from '../../transport/worker-deployment.js';
import { type WorkflowVersionView, workflowVersion } from '../../transport/workflow-version.js';
import { type TestStack, auditEvents, runCli, startTestStack } from '../helpers/stack.js';
import { quietTemporalRuntime } from '../helpers/temporal-env.js';

const DEVICE = '0000:09:00.0';
const EventType = proto.temporal.api.enums.v1.EventType;
const BUILD_B_WORKFLOWS = fileURLToPath(new URL('../upgrade/workflows-b.js', import.meta.url));
const cliEnv = { PTC_NATS_URL: '', PTC_NATS_CREDS: '', PTC_TEMPORAL_ADDRESS: '' };

/** Build B's bundle (test/upgrade/workflows-b.ts), made before the work starts so that the worker starts in a second. */
const bundleBuildB = (): ReturnType<typeof workflowBuild> => workflowBuild(BUILD_B_WORKFLOWS);

/** A worker of build B, run by the same code as `ptctl worker`, in this process. */
async function startBuildB(t: TestStack, build: Awaited<ReturnType<typeof workflowBuild>>, unversioned = false): Promise<{ buildId: string | null; stop(): Promise<void> }> {
  const abort = new AbortController();
  let ready: (v: { buildId: string } | null) => void = () => undefined;
  const version = new Promise<{ buildId: string } | null>((resolve) => (ready = resolve));
  const running = runWorker(t.stack.connection, { build, unversioned, signal: abort.signal, onReady: ready });
  const buildId = (await Promise.race([version, running.then(() => null)]))?.buildId ?? null;
  return {
    buildId,
    async stop() {
      abort.abort();
      await running;
    },
  };
}

async function until<T>(what: string, ms: number, probe: () => Promise<T | null | undefined | false>): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`);
    await sleep(250);
  }
}

const deploymentStatus = async (t: TestStack): Promise<DeploymentView> => {
  const res = await runCli(['deployment', 'status', '--dir', t.dir, '--json'], cliEnv);
  assert.equal(res.code, 0, res.stderr);
  return JSON.parse(res.stdout) as DeploymentView;
};

const versionOf = async (client: Client, workflowId: string): Promise<WorkflowVersionView> => workflowVersion((await client.workflow.getHandle(workflowId).describe()).raw);

/** Every failed workflow task in every workflow of the namespace, with its cause and message. */
async function workflowTaskFailures(client: Client): Promise<string[]> {
  const out: string[] = [];
  for await (const wf of client.workflow.list()) {
    const history = await client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
    for (const e of history.events ?? []) {
      if (e.eventType !== EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED) continue;
      const attrs = e.workflowTaskFailedEventAttributes;
      out.push(`${wf.workflowId}: ${proto.temporal.api.enums.v1.WorkflowTaskFailedCause[attrs?.cause ?? 0]}: ${attrs?.failure?.message ?? ''}`);
    }
  }
  return out;
}

/** The first command a workflow's code issued: build A's saga starts with an activity, build B's with its marker timer. */
async function firstCommand(client: Client, workflowId: string): Promise<string> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const first = (history.events ?? []).find((e) => e.eventType === EventType.EVENT_TYPE_TIMER_STARTED || e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED);
  return first?.eventType === EventType.EVENT_TYPE_TIMER_STARTED ? 'timer' : 'activity';
}

const hotplugs = async (t: TestStack, host: string): Promise<number> => (await auditEvents(t.nc, host)).filter((e) => e.kind === 'hotplug').length;

async function startWorkOnA(t: TestStack, rebootMsLabel: string): Promise<{ opId: string }> {
  const plan = join(t.dir, 'upgrade.yaml');
  await writeFile(plan, ['name: upgrade', 'hosts:', '  names: [sim-1]', 'assignments:', `  - device: "${DEVICE}"`, '    guest: vm-hvm', 'allowReboot: true', 'rollout:', '  canary: 0', ''].join('\n'));
  const apply = await runCli(['apply', plan, '--dir', t.dir], cliEnv);
  assert.equal(apply.code, 0, apply.stdout + apply.stderr);
  const attach = await runCli(['attach', '--dir', t.dir, '--host', 'sim-2', '--device', DEVICE, '--guest', 'vm-hvm', '--json'], cliEnv);
  assert.equal(attach.code, 0, attach.stderr);
  const { workflowId: opId } = JSON.parse(attach.stdout) as { workflowId: string };
  // Both hosts are rebooting (each saga is waiting for its host to come back) before build B exists.
  for (const host of ['sim-1', 'sim-2']) {
    await until(`${host} to reboot (${rebootMsLabel})`, 30_000, async () => (await auditEvents(t.nc, host)).some((e) => e.command === 'reboot' && e.kind === 'applied'));
  }
  return { opId };
}

const opResult = async (client: Client, opId: string): Promise<PassthroughResult> => (await client.workflow.getHandle(opId).result()) as PassthroughResult;

void describe('upgrading the worker while work runs (Worker Deployment Versioning, real stack)', () => {
  let t: TestStack;
  before(async () => {
    quietTemporalRuntime();
    t = await startTestStack({
      simHosts: ['sim-1', 'sim-2', 'sim-3'],
      agentTimeoutMs: 3000,
      fleet: {
        hosts: {
          // Bind only by rebooting, slowly: still in flight on build A when build B is made current
          // (20 s: under the full suite on a loaded machine, 12 s was once not enough for the switch).
          'sim-1': { profile: 'rhel5-xen-rebootonly', faults: { rebootMs: 20_000 } },
          'sim-2': { profile: 'rhel5-xen-rebootonly', faults: { rebootMs: 20_000 } },
          'sim-3': {},
        },
      },
    });
  });
  after(async () => {
    await t[Symbol.asyncDispose]();
  });

  void it('in-flight work finishes on build A, new work runs on build B, no non-determinism, one hotplug per device', async () => {
    const buildA = (await deploymentStatus(t)).current;
    assert.ok(buildA, 'the dev stack made its worker\'s build current');
    // Step 1 of the procedure, start build B's worker, may come any time before step 2: here it comes
    // first, so that only the switch itself has to fit inside the reboots (the machine may be loaded).
    // B polls but gets no work while A is current: the work started next runs on A.
    const b = await startBuildB(t, await bundleBuildB());
    try {
      assert.ok(b.buildId && b.buildId !== buildA, `build B has its own build id (A ${buildA}, B ${b.buildId})`);
      await until('build B to register with the deployment', 30_000, async () => (await deploymentStatus(t)).versions.some((v) => v.buildId === b.buildId));
      const { opId } = await startWorkOnA(t, '20 s');
      const setCurrent = await runCli(['deployment', 'set-current', b.buildId, '--dir', t.dir], cliEnv);
      assert.equal(setCurrent.code, 0, setCurrent.stderr);
      assert.match(setCurrent.stdout, new RegExp(`current ${b.buildId}; ${buildA} drains`));
      const switchedAt = new Date().toISOString();
      for (const id of ['rollout/upgrade', opId]) assert.equal((await t.client.workflow.getHandle(id).describe()).status.name, 'RUNNING', `${id} was still in flight at the switch`);
      const switched = await deploymentStatus(t);
      assert.equal(switched.current, b.buildId);
      assert.equal(switched.versions.find((v) => v.buildId === buildA)?.status, 'draining', JSON.stringify(switched));

      // New work after the switch runs B's code, pinned to B.
      const fresh = await runCli(['attach', '--dir', t.dir, '--host', 'sim-3', '--device', DEVICE, '--guest', 'vm-hvm', '--wait', '--json'], cliEnv);
      assert.equal(fresh.code, 0, fresh.stdout + fresh.stderr);
      const freshId = (JSON.parse(fresh.stdout) as { workflowId: string }).workflowId;
      assert.deepEqual(await versionOf(t.client, freshId), { behavior: 'pinned', deploymentName: 'ptctl', buildId: b.buildId });
      assert.equal(await firstCommand(t.client, freshId), 'timer', 'the new saga ran build B\'s code');

      // The in-flight rollout and operation finish on A, where they started.
      const report = (await t.client.workflow.getHandle('rollout/upgrade').result()) as RolloutReport;
      assert.equal(report.counts.succeeded, 1, JSON.stringify(report));
      assert.equal((await opResult(t.client, opId)).outcome, 'attached');
      const sim1Op = (await auditEvents(t.nc, 'sim-1')).find((e) => e.command === 'reboot')?.opId?.split('#')[0];
      assert.ok(sim1Op, 'the rollout\'s saga on sim-1 is in the audit stream');
      for (const id of [opId, sim1Op]) {
        assert.deepEqual(await versionOf(t.client, id), { behavior: 'pinned', deploymentName: 'ptctl', buildId: buildA }, `${id} stayed on build A`);
        assert.equal(await firstCommand(t.client, id), 'activity', `${id} ran build A's code`);
      }
      // The long-lived ones moved to B at their next task (an entity's next task, for the operation's
      // end, may still be on its way when the operation's result is in).
      for (const id of ['rollout/upgrade', 'host/sim-1', 'host/sim-2']) {
        const expected: WorkflowVersionView = { behavior: 'auto-upgrade', deploymentName: 'ptctl', buildId: b.buildId };
        let seen = await versionOf(t.client, id);
        for (let i = 0; i < 40 && seen.buildId !== b.buildId; i++) seen = await sleep(250).then(() => versionOf(t.client, id));
        assert.deepEqual(seen, expected, `${id} auto-upgraded (switched at ${switchedAt})`);
      }
      assert.deepEqual(await workflowTaskFailures(t.client), [], 'no workflow task failed anywhere');
      for (const host of ['sim-1', 'sim-2', 'sim-3']) assert.equal(await hotplugs(t, host), 1, `exactly one hotplug of ${DEVICE} on ${host}`);

      // A drains once its pinned workflows have closed; then its worker is stopped.
      const drained = await until('build A to drain', 60_000, async () => {
        const view = await deploymentStatus(t);
        return view.versions.find((v) => v.buildId === buildA)?.status === 'drained' ? view : null;
      });
      assert.equal(drained.current, b.buildId);
      await t.stack.stopWorker();
      const status = await runCli(['status', opId, '--dir', t.dir], cliEnv);
      assert.match(status.stdout, new RegExp(`build: ptctl/${buildA} \\(pinned\\)`));
    } finally {
      await b.stop();
    }
  });
});

void describe('the same upgrade without versioning', () => {
  let t: TestStack;
  before(async () => {
    quietTemporalRuntime();
    t = await startTestStack({
      simHosts: ['sim-1', 'sim-2'],
      agentTimeoutMs: 3000,
      workerArgs: ['--unversioned'],
      fleet: { hosts: { 'sim-1': { profile: 'rhel5-xen-rebootonly', faults: { rebootMs: 8000 } }, 'sim-2': { profile: 'rhel5-xen-rebootonly', faults: { rebootMs: 8000 } } } },
    });
  });
  after(async () => {
    await t[Symbol.asyncDispose]();
  });

  void it('fails: build B replays histories that build A started and hits a non-determinism error', async () => {
    const buildB = await bundleBuildB();
    const { opId } = await startWorkOnA(t, '8 s');
    const b = await startBuildB(t, buildB, true);
    try {
      assert.equal(b.buildId, null, 'build B polls unversioned');
      // An unversioned upgrade: start the new worker, stop the old one.
      await t.stack.stopWorker();
      const failures = await until('a workflow task failure', 60_000, async () => {
        const found = await workflowTaskFailures(t.client);
        return found.length > 0 ? found : null;
      });
      assert.ok(failures.some((f) => f.includes('NON_DETERMINISTIC') || /nondetermin/i.test(f)), failures.join('\n'));
      // The manual attach's saga, or the rollout's saga on sim-1: both are build A's pinned sagas.
      assert.ok(failures.some((f) => f.startsWith(`${opId}:`) || f.startsWith('op/sim-1/')), failures.join('\n'));
    } finally {
      await b.stop();
    }
  });
});
