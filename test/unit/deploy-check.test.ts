import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ALERTS_FILE, DASHBOARD_FILE, loadDeployChecks, metricReferences, missingMetrics } from '../../observability/deploy-check.js';
import { WorkerMetrics } from '../../observability/worker-metrics.js';
import { AgentTelemetry } from '../../observability/agent-telemetry.js';
import { PROJECT_ROOT } from '../../cli/tools.js';
import { rolloutEndState } from '../../workflows/metrics-interceptors.js';

/** Every metric the worker's and the agent's registries define, with its type. */
function knownMetrics(): Map<string, string> {
  const known = new Map<string, string>();
  for (const registry of [new WorkerMetrics().registry, new AgentTelemetry().registry]) {
    for (const m of registry.getMetricsAsArray()) known.set(m.name, (m as unknown as { type: string }).type);
  }
  return known;
}

void describe('dashboard and alert rules', () => {
  void it('reference only metrics that the worker and agent registries define', async () => {
    const exprs = await loadDeployChecks();
    assert.ok(exprs.length >= 20, `found ${exprs.length} expressions`);
    const refs = new Set(exprs.flatMap((e) => metricReferences(e.expr)));
    for (const name of ['ptc_operation_oldest_running_seconds', 'ptc_agent_last_scan_timestamp_seconds', 'ptc_agent_hotplugs_in_window', 'ptc_rollouts_ended_total']) {
      assert.ok(refs.has(name), `the four alerts' metrics are used: ${name}`);
    }
    assert.deepEqual(missingMetrics(exprs, knownMetrics()), []);
  });

  void it('a mutated copy that references a missing metric fails the check', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ptctl-deploy-'));
    try {
      await cp(join(PROJECT_ROOT, 'deploy'), join(dir, 'deploy'), { recursive: true });
      const dashboard = JSON.parse(await readFile(join(dir, DASHBOARD_FILE), 'utf8')) as { panels: Array<{ targets: Array<{ expr: string }> }> };
      const first = dashboard.panels[0]?.targets[0];
      assert.ok(first);
      first.expr = first.expr.replace('ptc_operations_started_total', 'ptc_operations_begun_total');
      await writeFile(join(dir, DASHBOARD_FILE), JSON.stringify(dashboard));
      const alerts = (await readFile(join(dir, ALERTS_FILE), 'utf8')).replace('ptc_agent_hotplug_cap', 'ptc_agent_hotplug_limit');
      await writeFile(join(dir, ALERTS_FILE), alerts);
      const missing = missingMetrics(await loadDeployChecks(dir), knownMetrics());
      assert.deepEqual(missing.map((m) => m.metric).sort(), ['ptc_agent_hotplug_limit', 'ptc_operations_begun_total']);
      assert.match(missing.find((m) => m.metric === 'ptc_agent_hotplug_limit')?.where ?? '', /alert PtcDeviceNearHotplugBudget/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  void it('reads metric names out of PromQL, not label values, and knows histogram series', () => {
    assert.deepEqual(metricReferences('sum by (le) (rate(ptc_step_duration_seconds_bucket{command="ptc_fake"}[5m])) / on (host) group_left temporal_x_total'), ['ptc_step_duration_seconds_bucket', 'temporal_x_total']);
    const known = new Map([['ptc_h_seconds', 'histogram'], ['ptc_c_total', 'counter']]);
    const at = (expr: string) => missingMetrics([{ where: 'w', expr }], known).map((m) => m.metric);
    assert.deepEqual(at('ptc_h_seconds_bucket + ptc_h_seconds_count'), []);
    assert.deepEqual(at('ptc_c_total_count'), ['ptc_c_total_count']);
  });

  void it('names a rollout\'s end state from its stop reason', () => {
    assert.equal(rolloutEndState(null), 'completed');
    assert.equal(rolloutEndState('cancelled'), 'cancelled');
    assert.equal(rolloutEndState('canary sim-1 failed'), 'stopped_by_failures');
    assert.equal(rolloutEndState('failures (3) exceed maxFailures {"count":2}'), 'stopped_by_failures');
    assert.equal(rolloutEndState('the window closes at 2026-01-01T00:00:00.000Z: no host starts'), 'window_closed');
  });
});
