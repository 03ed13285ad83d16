import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Client, WorkflowNotFoundError, type WorkflowHandle } from '@temporalio/client';
import type { OperationActivities, OperationOutcome } from '../../activities/operation-activities.js';
import type { rolloutWorkflow } from '../../workflows/rollout-workflow.js';
import type { RolloutReport } from '../../workflows/rollout-book.js';
import { MAX_PROBLEMS, failuresExceeded } from '../../workflows/rollout-book.js';
import { type OperationRecord, cancelRolloutSignal, operationEndedSignal, pauseRolloutSignal, resumeRolloutSignal, rolloutProgressQuery } from '../../workflows/definitions.js';
import { HostWork, type HostsRef, RolloutInput, type RolloutInputRaw, hostsPageKey } from '../../schemas/rollout.js';
import type { RolloutActivities } from '../../activities/rollout-activities.js';
import { useTimeSkippingEnv } from '../helpers/temporal-env.js';
import { stepKinds } from '../helpers/history-export.js';

/**
 * Hosts of the scale test and the history length at which its generations continue as new. The
 * default keeps `npm test` short and still spans three pages and several generations;
 * `npm run test:scale` is the full proof: 100,000 hosts at the production limit.
 */
const SCALE_HOSTS = Number(process.env.PTC_SCALE_HOSTS ?? 1200);
const SCALE_HISTORY_LIMIT = Number(process.env.PTC_SCALE_HISTORY_LIMIT ?? 500);
/** Every SLOW_EVERY-th host of the scale test takes SLOW_MS, the others FAST_MS: a fleet has a slow tail. */
const SLOW_EVERY = 50;
const SLOW_MS = 3000;
const FAST_MS = 100;

/** How a host's operation ends: after `delayMs`, or `atOnce`, inside the enqueue, as one refused up front does. */
type Step = { outcome?: OperationOutcome['outcome']; delayMs?: number; atOnce?: boolean };
type Script = Record<string, Step>;
type Signal = (notify: string, record: OperationRecord) => Promise<void>;
type AttachOp = Parameters<OperationActivities['enqueueOperations']>[0][number];

const endedRecord = (op: AttachOp, outcome: OperationOutcome['outcome']): OperationRecord => ({
  workflowId: op.workflowId,
  kind: 'attach',
  bdf: op.request.bdf,
  guest: op.request.guest,
  outcome,
  code: outcome === 'attached' ? null : outcome === 'cancelled' ? 'CANCELLED' : 'ATTACH_FAILED',
  message: outcome === 'attached' ? null : 'injected',
  finishedAt: Date.now(),
});

/**
 * Operation activities that answer like host entities: each queued operation plays its host's script
 * (how long it takes, how it ends) and the entity's operation-ended signal reaches the rollout then;
 * a cancel ends it at once, compensated. Like a real enqueue, the enqueue returns at once. The rollout
 * is awaited in real time (no time skipping), so nothing is skipped past an operation still running.
 */
function fakeOps(script: Script | ((hostId: string) => Step), log: string[], signal: Signal): OperationActivities {
  const stepOf = typeof script === 'function' ? script : (hostId: string): Step => script[hostId] ?? {};
  const running = new Map<string, { op: AttachOp; timer: NodeJS.Timeout }>();
  const end = (workflowId: string, outcome: OperationOutcome['outcome']): void => {
    const entry = running.get(workflowId);
    if (!entry) return;
    running.delete(workflowId);
    clearTimeout(entry.timer);
    // A rollout that closed meanwhile (a test that already ended) cannot hear it.
    signal(entry.op.notify ?? '', endedRecord(entry.op, outcome)).catch(() => undefined);
  };
  return {
    async enqueueOperations(ops) {
      for (const op of ops) {
        log.push(`enqueue ${op.request.hostId}`);
        if (!op.notify) throw new Error('a rollout names itself to be notified');
        const step = stepOf(op.request.hostId);
        if (running.has(op.workflowId)) continue;
        if (step.atOnce) {
          await signal(op.notify, endedRecord(op, step.outcome ?? 'attached'));
          continue;
        }
        running.set(op.workflowId, { op, timer: setTimeout(() => end(op.workflowId, step.outcome ?? 'attached'), step.delayMs ?? 20) });
      }
    },
    async cancelOperations(ops) {
      for (const { hostId, workflowId } of ops) {
        log.push(`cancel ${hostId}`);
        end(workflowId, 'cancelled');
      }
    },
    async endedOperations() {
      return [];
    },
    async enqueueOperation() {
      throw new Error('a rollout queues its operations in batches');
    },
    async awaitOperation() {
      throw new Error('the outcome comes by signal');
    },
    async cancelOperation() {
      throw new Error('a rollout cancels its operations in batches');
    },
  };
}

/** The rollout's own activities over an in-memory plans bucket: pages as `storeRolloutHosts` cuts them. */
function fakePlans(pages: Map<string, HostWork[]>, log: string[]): Omit<RolloutActivities, 'closedHostRollouts'> {
  return {
    async loadRolloutHosts(ref, page) {
      const hosts = pages.get(hostsPageKey(ref, page));
      if (!hosts) throw new Error(`page ${page} of ${ref.key} is missing`);
      log.push(`page ${page}`);
      return hosts;
    },
    async dropRolloutHosts(ref) {
      log.push(`drop ${ref.key}`);
    },
  };
}

const hostsNamed = (n: number): NonNullable<RolloutInputRaw['hosts']> =>
  Array.from({ length: n }, (_, i) => ({ hostId: `h${i + 1}`, requests: [{ hostId: `h${i + 1}`, bdf: '0000:09:00.0', guest: 'vm-hvm' }] }));

/** The plans bucket's pages of a rollout of `ref.count` hosts, parsed as the real loader parses a page (requests get their defaults). */
function pagesOf(ref: HostsRef): Map<string, HostWork[]> {
  const all = hostsNamed(ref.count).map((h) => HostWork.parse(h));
  const pages = new Map<string, HostWork[]>();
  for (let p = 0; p * ref.pageSize < all.length; p++) pages.set(hostsPageKey(ref, p), all.slice(p * ref.pageSize, (p + 1) * ref.pageSize));
  return pages;
}

void describe('rollout input', () => {
  void it('refuses a host listed twice', () => {
    const twice = RolloutInput.safeParse({ name: 'x', hosts: [...hostsNamed(2), ...hostsNamed(1)] });
    assert.equal(twice.success, false);
    assert.match(twice.error?.issues[0]?.message ?? '', /only once/);
    assert.equal(RolloutInput.safeParse({ name: 'x', hosts: hostsNamed(2) }).success, true);
  });
});

void describe('maxFailures arithmetic', () => {
  void it('stops strictly above the budget, by count or by percent', () => {
    assert.equal(failuresExceeded(0, 5, { count: 0 }), false);
    assert.equal(failuresExceeded(1, 5, { count: 0 }), true);
    assert.equal(failuresExceeded(2, 5, { count: 2 }), false);
    assert.equal(failuresExceeded(3, 5, { count: 2 }), true);
    assert.equal(failuresExceeded(1, 10, { percent: 10 }), false, '1 of 10 is exactly 10%: not over');
    assert.equal(failuresExceeded(2, 10, { percent: 10 }), true);
    assert.equal(failuresExceeded(1, 3, { percent: 50 }), false);
    assert.equal(failuresExceeded(2, 3, { percent: 50 }), true);
    assert.equal(failuresExceeded(0, 0, { percent: 0 }), false);
  });
});

void describe('fleet rollout (time-skipping test server)', () => {
  const suite = useTimeSkippingEnv('rollout');
  /**
   * The entity's signal. The time-skipping server's continue-as-new is not atomic: a signal sent while
   * the rollout continues as new can be refused NOT_FOUND (temporalio/sdk-java#1538); a real server
   * hands it to the new run. Tried again briefly, as that server would deliver it.
   */
  const signal: Signal = async (notify, record) => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await suite.env.client.workflow.getHandle(notify).signal(operationEndedSignal, record);
      } catch (err) {
        if (!(err instanceof WorkflowNotFoundError) || attempt >= 50) throw err;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  };
  /** A rollout's result, awaited without unlocking time skipping: hosts take the real time their script says. */
  const inRealTime = (workflowId: string): Promise<RolloutReport> => new Client({ connection: suite.env.connection, namespace: suite.env.namespace ?? 'default' }).workflow.getHandle<typeof rolloutWorkflow>(workflowId).result();
  /** Operations that all succeed, each host's taking `operationMs(hostId)`. */
  const signallingOps = (log: string[], operationMs: (hostId: string) => number): OperationActivities =>
    fakeOps((hostId) => ({ delayMs: operationMs(hostId) }), log, signal);

  /**
   * A rollout over `ops` and the plans bucket's `pages` to its report, continuing as new past
   * `historyLimit` events; given `withinMs`, one that has not ended by then fails (and its worker stops).
   */
  function runOverPlans(ops: OperationActivities, pages: Map<string, HostWork[]>, log: string[], input: RolloutInputRaw, historyLimit: number, withinMs?: number): Promise<RolloutReport> {
    return suite.withWorker({ ...ops, ...fakePlans(pages, log), async closedHostRollouts() { return []; } }, async (taskQueue) => {
      const handle = await suite.env.client.workflow.start<typeof rolloutWorkflow>('rolloutWorkflow', { taskQueue, workflowId: `rollout/${input.name}`, args: [input, undefined, historyLimit] });
      if (withinMs === undefined) return inRealTime(handle.workflowId);
      const deadline = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${handle.workflowId} did not end within ${withinMs / 1000} s`)), withinMs).unref());
      return Promise.race([inRealTime(handle.workflowId), deadline]);
    });
  }

  async function run(input: RolloutInputRaw, script: Script, log: string[], during?: (h: WorkflowHandle<typeof rolloutWorkflow>) => Promise<void>, historyLimit?: number): Promise<{ report: RolloutReport; handle: WorkflowHandle<typeof rolloutWorkflow> }> {
    return suite.withWorker(fakeOps(script, log, signal), async (taskQueue) => {
      const handle = await suite.env.client.workflow.start<typeof rolloutWorkflow>('rolloutWorkflow', {
        taskQueue,
        workflowId: `rollout/${input.name}`,
        args: historyLimit ? [input, undefined, historyLimit] : [input],
      });
      if (during) await during(handle);
      return { report: await inRealTime(handle.workflowId), handle };
    });
  }

  void it('stops at a canary failure before any other host is touched', async () => {
    const log: string[] = [];
    const { report } = await run({ name: 'canary-fails', hosts: hostsNamed(5), options: { canary: 2, maxParallel: 3, maxFailures: { count: 5 } } }, { h1: { outcome: 'failed' } }, log);
    assert.deepEqual(log, ['enqueue h1']);
    assert.equal(report.stopReason, 'canary h1 failed');
    assert.deepEqual(report.counts, { pending: 0, running: 0, succeeded: 0, failed: 1, skipped: 4, cancelled: 0 });
  });

  void it('queues its hosts on their entities from local activities: no activity, no extra workflow task per enqueue', async () => {
    const log: string[] = [];
    const { report, handle } = await run({ name: 'local-enqueue', hosts: hostsNamed(6), options: { canary: 1, maxParallel: 2 } }, {}, log);
    assert.equal(report.counts.succeeded, 6);
    const steps = await stepKinds(suite.env.client, handle.workflowId);
    assert.ok(!steps.activities.includes('enqueueOperations'), `scheduled as activities: ${steps.activities.join(', ')}`);
    assert.ok(steps.localActivities >= 2, `${steps.localActivities} local activities for 6 hosts`);
  });

  void it('keeps at most MAX_PROBLEMS problems in state and report, counting the rest', async () => {
    const log: string[] = [];
    const { report } = await run({ name: 'many-skipped', hosts: hostsNamed(MAX_PROBLEMS + 100), options: { canary: 1 } }, { h1: { outcome: 'failed' } }, log);
    assert.equal(report.counts.skipped, MAX_PROBLEMS + 99);
    assert.equal(report.problems.length, MAX_PROBLEMS);
    assert.equal(report.problemsOmitted, 100);
    assert.deepEqual(report.problems[0] && [report.problems[0].hostId, report.problems[0].state], ['h1', 'failed']);
  });

  void it('stops launching when failures exceed maxFailures (count)', async () => {
    const log: string[] = [];
    const { report } = await run({ name: 'max-count', hosts: hostsNamed(6), options: { canary: 0, maxParallel: 1, maxFailures: { count: 1 } } }, { h2: { outcome: 'failed' }, h3: { outcome: 'failed' } }, log);
    assert.deepEqual(log, ['enqueue h1', 'enqueue h2', 'enqueue h3']);
    assert.deepEqual(report.counts, { pending: 0, running: 0, succeeded: 1, failed: 2, skipped: 3, cancelled: 0 });
    assert.match(report.stopReason ?? '', /failures \(2\) exceed/);
  });

  void it('stops launching when failures exceed maxFailures (percent), keeping maxParallel', async () => {
    const log: string[] = [];
    // The others take longer than h3 does, so hosts are still waiting to start when it fails.
    const script: Script = { h1: { outcome: 'failed', delayMs: 50 }, h2: { delayMs: 50 }, h3: { outcome: 'failed', delayMs: 200 }, ...Object.fromEntries(Array.from({ length: 7 }, (_, i) => [`h${i + 4}`, { delayMs: 100 }])) };
    const { report } = await run({ name: 'max-percent', hosts: hostsNamed(10), options: { canary: 0, maxParallel: 2, maxFailures: { percent: 10 } } }, script, log);
    assert.equal(report.counts.failed, 2, '1 of 10 is allowed, the second failure stops it');
    assert.match(report.stopReason ?? '', /failures \(2\) exceed maxFailures \{"percent":10\}/);
    // Hosts already in flight when h3 failed finish; none starts after it.
    assert.equal(log.length, report.counts.succeeded + report.counts.failed);
    assert.ok(report.counts.skipped >= 1, JSON.stringify(report.counts));
  });

  void it('pauses (no new host starts) and resumes', async () => {
    const log: string[] = [];
    const script: Script = Object.fromEntries(Array.from({ length: 4 }, (_, i) => [`h${i + 1}`, { delayMs: 300 }]));
    const { report } = await run({ name: 'pause', hosts: hostsNamed(4), options: { canary: 0, maxParallel: 1 } }, script, log, async (h) => {
      while (log.length === 0) await new Promise((r) => setTimeout(r, 20));
      await h.signal(pauseRolloutSignal);
      await new Promise((r) => setTimeout(r, 1200));
      const whilePaused = log.length;
      assert.ok(whilePaused <= 2, `at most the host in flight when paused finished: ${log.join(',')}`);
      const progress = await h.query(rolloutProgressQuery);
      assert.equal(progress.paused, true);
      await new Promise((r) => setTimeout(r, 600));
      assert.equal(log.length, whilePaused, 'no host started while paused');
      await h.signal(resumeRolloutSignal);
    });
    assert.equal(report.counts.succeeded, 4);
  });

  void it('cancel stops launching and cancels the hosts in flight, and the report says so', async () => {
    const log: string[] = [];
    const script: Script = Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`h${i + 1}`, { delayMs: 5000 }]));
    const { report } = await run({ name: 'cancel', hosts: hostsNamed(6), options: { canary: 0, maxParallel: 2 } }, script, log, async (h) => {
      while (log.filter((l) => l.startsWith('enqueue')).length < 2) await new Promise((r) => setTimeout(r, 20));
      await h.signal(cancelRolloutSignal);
    });
    assert.deepEqual(log.filter((l) => l.startsWith('cancel')).sort(), ['cancel h1', 'cancel h2']);
    assert.equal(report.counts.cancelled, 2);
    assert.equal(report.counts.skipped, 4);
    assert.equal(report.stopReason, 'cancelled');
    assert.ok(report.problems.filter((p) => p.state === 'cancelled').every((p) => /cancelled, operation ended cancelled/.test(p.details.join())));
  });

  void it('a cancel from the Temporal UI (workflow cancellation) is handled like ptctl cancel: hosts compensate, the rollout reports', async () => {
    const log: string[] = [];
    const script: Script = Object.fromEntries(Array.from({ length: 4 }, (_, i) => [`h${i + 1}`, { delayMs: 5000 }]));
    const { report, handle } = await run({ name: 'ui-cancel', hosts: hostsNamed(4), options: { canary: 0, maxParallel: 2 } }, script, log, async (h) => {
      while (log.filter((l) => l.startsWith('enqueue')).length < 2) await new Promise((r) => setTimeout(r, 20));
      await h.cancel();
    });
    assert.deepEqual(log.filter((l) => l.startsWith('cancel')).sort(), ['cancel h1', 'cancel h2']);
    assert.equal(report.counts.cancelled, 2);
    assert.equal(report.counts.skipped, 2);
    assert.match(report.stopReason ?? '', /cancelled from Temporal/);
    assert.equal((await handle.describe()).status.name, 'COMPLETED', 'the rollout ends with its report, not as a bare cancellation');
  });

  /**
   * Every generation of a rollout, first to last: its history's length, largest payload, workflow tasks
   * (completed and refused), signals, what it handed over and `next`, the position it handed on.
   */
  async function generations(workflowId: string): Promise<Array<{ events: number; largestPayload: number; handedOver: number; tasks: number; refusedTasks: number; signals: number; next?: number }>> {
    const described = await suite.env.client.workflow.getHandle(workflowId).describe();
    let runId: string | undefined = described.raw.workflowExecutionInfo?.firstRunId ?? undefined;
    const out: Array<{ events: number; largestPayload: number; handedOver: number; tasks: number; refusedTasks: number; signals: number; next?: number }> = [];
    while (runId) {
      const events = (await suite.env.client.workflow.getHandle(workflowId, runId).fetchHistory()).events ?? [];
      let largestPayload = 0;
      for (const e of events) largestPayload = Math.max(largestPayload, JSON.stringify(e).length);
      const last = events[events.length - 1]?.workflowExecutionContinuedAsNewEventAttributes;
      const carry = last?.input?.payloads?.[1];
      const carried = carry?.data ? (JSON.parse(Buffer.from(carry.data).toString()) as { ops?: unknown[]; running?: unknown[]; next?: number }) : {};
      const handedOver = (carried.ops?.length ?? 0) + (carried.running?.length ?? 0);
      const tasks = events.filter((e) => e.workflowTaskCompletedEventAttributes).length;
      const refusedTasks = events.filter((e) => e.workflowTaskFailedEventAttributes).length;
      const signals = events.filter((e) => e.workflowExecutionSignaledEventAttributes).length;
      out.push({ events: events.length, largestPayload, handedOver, tasks, refusedTasks, signals, ...(carried.next !== undefined ? { next: carried.next } : {}) });
      runId = last?.newExecutionRunId ?? undefined;
    }
    return out;
  }

  void it('continues as new without draining: the hosts in flight are handed to the next generation', async () => {
    const log: string[] = [];
    const limit = 150;
    const ops = signallingOps(log, (hostId) => (Number(hostId.slice(1)) % 5 === 0 ? 2000 : 300));
    const report = await runOverPlans(ops, new Map(), log, { name: 'many', hosts: hostsNamed(40), options: { canary: 1, maxParallel: 4 } }, limit);
    assert.equal(report.counts.succeeded, 40);
    assert.ok(report.generations > 1, `generations: ${report.generations}`);
    const runs = await generations('rollout/many');
    assert.equal(runs.length, report.generations);
    assert.ok(runs.every((r) => r.events < limit + 30), `history lengths ${runs.map((r) => r.events).join(', ')}`);
    // No drain: generations hand over the hosts they have in flight (a slow one at least: every fifth).
    assert.ok(runs.slice(0, -1).some((r) => r.handedOver > 0), `handed over ${runs.map((r) => r.handedOver).join(', ')}`);
  });

  void it('continues as new when operations end inside their enqueue: each host is queued once, no workflow task is refused', async () => {
    const log: string[] = [];
    const limit = 60;
    const hosts = 30;
    // Small pages: a host read from a new page is launched in the workflow task after the read, which
    // may be the one that finds the history full and continues as new.
    const ref = { key: 'at-once.run1', count: hosts, pageSize: 3 };
    // Without the commit before continuing as new this never ends: bounded at 60 s.
    const report = await runOverPlans(fakeOps(() => ({ atOnce: true }), log, signal), pagesOf(ref), log, { name: 'at-once', hostsRef: ref, options: { canary: 0, maxParallel: 3 } }, limit, 60_000);
    assert.equal(report.counts.succeeded, hosts);
    assert.ok(report.generations > 1, `generations: ${report.generations}`);
    const enqueues = log.filter((l) => l.startsWith('enqueue'));
    assert.equal(enqueues.length, hosts, `each host queued once: ${enqueues.length} enqueues for ${hosts} hosts`);
    const runs = await generations('rollout/at-once');
    assert.deepEqual(runs.map((r) => r.refusedTasks), runs.map(() => 0), 'no workflow task refused');
  });

  void it(`runs ${SCALE_HOSTS.toLocaleString('en')} hosts from a plan by reference within every history and payload bound, without a drain`, async (t) => {
    const log: string[] = [];
    const ref = { key: 'scale.run1', count: SCALE_HOSTS, pageSize: 500 };
    const pages = pagesOf(ref);
    const started = Date.now();
    const operationMs = (hostId: string): number => (Number(hostId.slice(1)) % SLOW_EVERY === 0 ? SLOW_MS : FAST_MS);
    const report = await runOverPlans(signallingOps(log, operationMs), pages, log, { name: 'scale', hostsRef: ref, options: { canary: 1, maxParallel: 200 } }, SCALE_HISTORY_LIMIT);
    t.diagnostic(`${SCALE_HOSTS} hosts in ${((Date.now() - started) / 1000).toFixed(1)} s, ${report.generations} generations`);
    assert.equal(report.counts.succeeded, SCALE_HOSTS);
    const runs = await generations('rollout/scale');
    assert.ok(runs.length > 1, 'the rollout continued as new');
    assert.ok(runs.every((r) => r.events <= 10_000), `history lengths ${runs.map((r) => r.events).join(', ')}`);
    assert.ok(runs.every((r) => r.largestPayload <= 256 * 1024), `largest payloads ${runs.map((r) => r.largestPayload).join(', ')}`);
    t.diagnostic(`history lengths ${runs.map((r) => r.events).join(', ')}; workflow tasks ${runs.map((r) => r.tasks).join(', ')}; signals ${runs.map((r) => r.signals).join(', ')}; hosts handed over ${runs.map((r) => r.handedOver).join(', ')}`);
    // No drain: a generation continues with its slow hosts still in flight. (The fast ones mostly end
    // first: Temporal refuses a continue-as-new while new events, hosts ending, keep arriving.)
    assert.ok(runs.slice(0, -1).some((r) => r.handedOver > 0), `handed over ${runs.map((r) => r.handedOver).join(', ')}`);
    // A generation that starts inside a page the one before it read reads that page again; one that
    // starts on a page boundary, or with every host launched, reads nothing twice.
    const resumedInside = runs.slice(0, -1).filter((r) => r.next !== undefined && r.next < SCALE_HOSTS && r.next % ref.pageSize !== 0).length;
    assert.equal(log.filter((l) => l.startsWith('page')).length, Math.ceil(SCALE_HOSTS / ref.pageSize) + resumedInside, `each page read once, plus once per generation that resumes inside a page (handed on at ${runs.map((r) => r.next).join(', ')})`);
    assert.ok(log.includes('drop scale.run1'), 'the finished rollout drops its pages');
  });
});
