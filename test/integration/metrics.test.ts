import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Worker } from '@temporalio/worker';
import { parseOperationInput } from '../../cli/commands/attach.js';
import { waitForOperation } from '../../cli/operations.js';
import { submitOperation } from '../../transport/host-operations.js';
import { readConnectionFile } from '../../cli/connection.js';
import { WorkerMetrics } from '../../observability/worker-metrics.js';
import { hostEntityWorkflowId } from '../../workflows/definitions.js';
import { loadDeployChecks, metricReferences } from '../../observability/deploy-check.js';
import { type TestStack, runCli, startTestStack } from '../helpers/stack.js';
import { observedReplayer, quietTemporalRuntime } from '../helpers/temporal-env.js';
import { has, scrape, valueOf } from '../helpers/prometheus.js';

const DEVICE = '0000:09:00.0';

void describe('metrics of the worker and the agents on the real stack', () => {
  let t: TestStack;
  before(async () => {
    quietTemporalRuntime();
    // sim-2's attaches fail: the rollout test below stops at it as a failing canary.
    t = await startTestStack({ simHosts: 2, fleet: { hosts: { 'sim-1': {}, 'sim-2': { faults: { attachFailureProbability: 1 } } } } });
  });
  after(async () => {
    await t[Symbol.asyncDispose]();
  });

  let attachWorkflowId = '';

  void it('counters move with the right labels during an attach', async () => {
    const workerUrl = t.stack.metrics.worker;
    const agentsUrl = t.stack.metrics.agents;
    assert.ok(workerUrl && agentsUrl, 'the dev stack serves both endpoints');
    assert.deepEqual((await readConnectionFile(t.dir))?.metrics, { worker: workerUrl, agents: agentsUrl }, 'connection.json says where they are');

    const w0 = await scrape(workerUrl);
    const a0 = await scrape(agentsUrl);
    assert.equal(valueOf(a0, 'ptc_agent_nats_connected', { host: 'sim-1' }), 1);
    assert.equal(valueOf(a0, 'ptc_agent_hotplug_cap', { host: 'sim-2' }), 256);
    assert.ok(valueOf(a0, 'ptc_agent_devices', { host: 'sim-1', driver: 'bnx2' }) >= 2, 'both bnx2 NICs are on bnx2 before');
    assert.ok(Date.now() / 1000 - valueOf(a0, 'ptc_agent_last_scan_timestamp_seconds', { host: 'sim-1' }) < 30, 'the last scan is recent');

    const op = parseOperationInput('attach', { host: 'sim-1', device: DEVICE, guest: 'vm-hvm', wait: true, json: false }, 'metrics-1');
    await submitOperation(t.client, op);
    const result = await waitForOperation(t.client, 'sim-1', op.workflowId);
    assert.equal(result.outcome, 'attached');

    const w1 = await scrape(workerUrl);
    const a1 = await scrape(agentsUrl);
    const delta = (before: typeof w0, after: typeof w0, name: string, labels: Record<string, string>): number => valueOf(after, name, labels) - valueOf(before, name, labels);

    // Worker: ptctl's own
    assert.equal(delta(w0, w1, 'ptc_operations_started_total', { kind: 'attach' }), 1);
    assert.equal(delta(w0, w1, 'ptc_operations_ended_total', { kind: 'attach', outcome: 'attached' }), 1);
    assert.equal(delta(w0, w1, 'ptc_operation_duration_seconds_count', { kind: 'attach', outcome: 'attached' }), 1);
    for (const command of ['inspect', 'hide', 'bind', 'verify', 'attach']) {
      assert.ok(delta(w0, w1, 'ptc_step_duration_seconds_count', { command, compensation: 'false', result: 'ok' }) >= 1, `step ${command}`);
      assert.ok(delta(w0, w1, 'ptc_agent_request_duration_seconds_count', { command, result: 'ok' }) >= 1, `round trip ${command}`);
    }
    assert.equal(delta(w0, w1, 'ptc_compensations_total', {}), 0, 'nothing was undone');
    assert.ok(has(w1, 'ptc_operations_running', { kind: 'attach' }), 'running operations are read from visibility');
    assert.equal(valueOf(w1, 'ptc_operations_running', { kind: 'attach' }), 0);
    // Worker: the Temporal SDK's, merged into the same endpoint, durations in seconds
    assert.ok(w1.some((s) => s.name.startsWith('temporal_') && s.name.endsWith('_seconds_bucket')), 'Temporal SDK histograms in seconds');
    assert.ok(valueOf(w1, 'temporal_workflow_completed_total', { workflow_type: 'passthroughWorkflow' }) >= 1, 'SDK workflow counters');

    // Agents: one host moved, the other did not
    assert.equal(delta(a0, a1, 'ptc_agent_commands_total', { host: 'sim-1', command: 'attach', result: 'ok' }), 1);
    assert.equal(delta(a0, a1, 'ptc_agent_commands_total', { host: 'sim-1', command: 'hide', result: 'ok' }), 1);
    assert.equal(delta(a0, a1, 'ptc_agent_commands_total', { host: 'sim-2' }), 0);
    assert.ok(delta(a0, a1, 'ptc_agent_command_duration_seconds_count', { host: 'sim-1', command: 'bind' }) >= 1);
    assert.equal(valueOf(a1, 'ptc_agent_hotplugs_in_window', { host: 'sim-1', device: DEVICE }), 1);
    assert.equal(valueOf(a1, 'ptc_agent_hotplugs_in_window', { host: 'sim-2', device: DEVICE }), 0);
    assert.ok(valueOf(a1, 'ptc_agent_devices', { host: 'sim-1', driver: 'pciback' }) >= 1, 'the device is counted under pciback');
    // hide, bind and attach are journaled; the read-only inspect and verify are not.
    assert.equal(valueOf(a1, 'ptc_agent_journal_entries', { host: 'sim-1' }), 3);
    // Bounded label sets: no operation id ever becomes a label value.
    for (const s of [...w1, ...a1]) for (const v of Object.values(s.labels)) assert.ok(!v.includes('op/') && !v.includes('#'), `${s.name} has an id in a label: ${v}`);

    // Every Temporal SDK metric the dashboard and alerts use is one this worker really exports.
    const checks = await loadDeployChecks();
    const temporalRefs = [...new Set(checks.flatMap((c) => metricReferences(c.expr)).filter((n) => n.startsWith('temporal_')))];
    assert.ok(temporalRefs.length > 0, 'the dashboard shows some Temporal SDK metrics');
    const exported = new Set(w1.map((s) => s.name));
    for (const name of temporalRefs) assert.ok(exported.has(name), `${name} is referenced but the worker does not export it`);

    attachWorkflowId = op.workflowId;
  });

  void it('a rollout stopped by its failing canary moves the rollout, host, operation, compensation and agent counters', async () => {
    const workerUrl = t.stack.metrics.worker ?? '';
    const agentsUrl = t.stack.metrics.agents ?? '';
    const w0 = await scrape(workerUrl);
    const a0 = await scrape(agentsUrl);
    const plan = join(t.dir, 'canary.yaml');
    await writeFile(plan, ['name: canary', 'hosts:', '  names: [sim-2]', 'assignments:', '  - device: "0000:09:00.0"', '    guest: vm-hvm', ''].join('\n'));
    const res = await runCli(['apply', plan, '--dir', t.dir, '--canary', '1', '--wait'], { PTC_NATS_URL: '', PTC_NATS_CREDS: '', PTC_TEMPORAL_ADDRESS: '' });
    assert.equal(res.code, 1, res.stdout + res.stderr);
    assert.match(res.stderr, /canary sim-2 failed/);
    const w1 = await scrape(workerUrl);
    const a1 = await scrape(agentsUrl);
    const delta = (before: typeof w0, after: typeof w0, name: string, labels: Record<string, string>): number => valueOf(after, name, labels) - valueOf(before, name, labels);

    assert.equal(delta(w0, w1, 'ptc_rollouts_started_total', {}), 1);
    assert.equal(delta(w0, w1, 'ptc_rollouts_ended_total', { state: 'stopped_by_failures' }), 1, 'the state the PtcRolloutStoppedByFailures alert reads');
    assert.equal(delta(w0, w1, 'ptc_rollout_hosts_total', { state: 'failed' }), 1);
    assert.equal(delta(w0, w1, 'ptc_operations_ended_total', { kind: 'attach', outcome: 'compensated' }), 1);
    assert.equal(delta(w0, w1, 'ptc_compensation_residue_total', { kind: 'attach' }), 0, 'everything was undone');
    assert.ok(delta(w0, w1, 'ptc_step_duration_seconds_count', { command: 'attach', compensation: 'false', result: 'ATTACH_FAILED' }) >= 1);
    for (const command of ['unbind', 'unhide']) assert.ok(delta(w0, w1, 'ptc_compensations_total', { command, result: 'ok' }) >= 1, `undo ${command} counted`);
    assert.equal(delta(w0, w1, 'ptc_compensations_total', { command: 'unbind', result: 'ok' }), delta(w0, w1, 'ptc_step_duration_seconds_count', { command: 'unbind', compensation: 'true', result: 'ok' }));
    assert.ok(delta(a0, a1, 'ptc_agent_commands_total', { host: 'sim-2', command: 'attach', result: 'ATTACH_FAILED' }) >= 1);
    assert.ok(valueOf(a1, 'ptc_agent_hotplugs_in_window', { host: 'sim-2', device: '0000:09:00.0' }) >= 1, 'the failed hotplug attempt counts against the cap');
  });

  void it('histories of the instrumented worker replay with its bundle, also with tracing turned on, and a replay counts nothing', async () => {
    assert.ok(attachWorkflowId, 'the attach test ran first');
    const replayMetrics = new WorkerMetrics();
    for (const tracing of [false, true]) {
      const replayer = await observedReplayer(tracing, replayMetrics);
      for (const workflowId of [attachWorkflowId, hostEntityWorkflowId('sim-1')]) {
        await Worker.runReplayHistory(replayer, await t.client.workflow.getHandle(workflowId).fetchHistory(), workflowId);
      }
    }
    assert.equal((await replayMetrics.operationsStarted.get()).values.reduce((n, v) => n + v.value, 0), 0, 'a replay counts nothing');
  });
});
