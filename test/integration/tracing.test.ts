import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type TestStack, runCli, startTestStack } from '../helpers/stack.js';
import { Worker } from '@temporalio/worker';
import { bundleWorkflows, observedReplayer, productionSinks, quietTemporalRuntime } from '../helpers/temporal-env.js';
import { type ReceivedSpan, startOtlpReceiver } from '../helpers/otlp-receiver.js';

const DEVICE = '0000:09:00.0';

/** The chain of parents from the newest span named `leaf` in `root`'s trace up to the root (empty if none). */
function chainTo(spans: readonly ReceivedSpan[], root: ReceivedSpan, leaf: (s: ReceivedSpan) => boolean): ReceivedSpan[] {
  const inTrace = spans.filter((s) => s.traceId === root.traceId);
  const byId = new Map(inTrace.map((s) => [s.spanId, s]));
  const chain: ReceivedSpan[] = [];
  for (let s = inTrace.findLast(leaf); s; s = s.parentSpanId ? byId.get(s.parentSpanId) : undefined) chain.unshift(s);
  return chain;
}

void describe('one trace per attach, from the CLI through the workflow and activity into the agent', () => {
  let t: TestStack;
  let receiver: Awaited<ReturnType<typeof startOtlpReceiver>>;
  const otelEnv = (): NodeJS.ProcessEnv => ({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint });
  before(async () => {
    quietTemporalRuntime();
    receiver = await startOtlpReceiver();
    // The stack's worker and agents inherit the environment: the same variables an operator would set.
    Object.assign(process.env, otelEnv());
    t = await startTestStack({ simHosts: 1 });
  });
  after(async () => {
    await t[Symbol.asyncDispose]();
    await receiver.close();
  });

  void it('ptctl attach --wait makes one trace whose spans chain from the CLI to the agent\'s handling', async () => {
    const res = await runCli(['attach', '--dir', t.dir, '--host', 'sim-1', '--device', DEVICE, '--guest', 'vm-hvm', '--wait'], { PTC_NATS_URL: '', PTC_NATS_CREDS: '', PTC_TEMPORAL_ADDRESS: '', ...otelEnv() });
    assert.equal(res.code, 0, res.stderr);
    const root = receiver.spans.find((s) => s.name === 'ptctl attach');
    assert.ok(root, 'the CLI exported its root span before it exited');
    assert.equal(root.service, 'ptctl');
    assert.equal(root.parentSpanId, null);

    // The worker and agents export in batches (1 s apart) from their own processes: wait, bounded,
    // until the chain from the agent's span of the attach up to the CLI's root is whole.
    const leaf = (s: ReceivedSpan): boolean => s.name === 'handle attach';
    const until = Date.now() + 15_000;
    while (chainTo(receiver.spans, root, leaf)[0]?.spanId !== root.spanId && Date.now() < until) await sleep(250);
    const spans = receiver.spans.filter((s) => s.traceId === root.traceId);
    const chain = chainTo(receiver.spans, root, leaf);
    const handle = chain.at(-1);
    assert.ok(handle?.name === 'handle attach', `the agent's span is in the CLI's trace; spans there: ${spans.map((s) => s.name).join(', ')}`);
    assert.equal(handle.service, 'ptc-agent');
    assert.match(String(handle.attributes['ptc.op_id']), /^op\/sim-1\/0000:09:00\.0\/.+#attach@/);
    assert.equal(handle.attributes['ptc.result'], 'ok');

    // Every hop from the agent's span to the CLI's root is a real parent in the same trace.
    assert.equal(chain[0]?.spanId, root.spanId, `the chain reaches the root: ${chain.map((s) => s.name).join(' → ')}`);
    const names = chain.map((s) => `${s.service}:${s.name}`);
    for (const expected of [
      'ptctl:ptctl attach',
      'ptctl:SignalWithStartWorkflow:hostEntityWorkflow',
      // Not the entity's own run span (it lasts for hours): the operation joins its enqueue signal's trace.
      'ptc-worker:StartChildWorkflow:passthroughWorkflow',
      'ptc-worker:RunWorkflow:passthroughWorkflow',
      'ptc-worker:StartActivity:attachDevice',
      'ptc-worker:RunActivity:attachDevice',
      'ptc-worker:agent attach',
      'ptc-agent:handle attach',
    ]) {
      assert.ok(names.includes(expected), `${expected} in ${names.join(' → ')}`);
    }
    // The other steps of the same operation are in the same trace too.
    for (const step of ['inspect', 'hide', 'bind', 'verify']) assert.ok(spans.some((s) => s.name === `handle ${step}` && s.service === 'ptc-agent'), `handle ${step}`);
  });

  void it('ptctl apply makes one trace through the rollout, its host child, the enqueue activity and the operation into the agent', async () => {
    const plan = join(t.dir, 'trace.yaml');
    await writeFile(plan, ['name: trace', 'hosts:', '  names: [sim-1]', 'assignments:', '  - device: "0000:0b:00.0"', '    guest: vm-hvm', ''].join('\n'));
    const res = await runCli(['apply', plan, '--dir', t.dir, '--wait'], { PTC_NATS_URL: '', PTC_NATS_CREDS: '', PTC_TEMPORAL_ADDRESS: '', ...otelEnv() });
    assert.equal(res.code, 0, res.stdout + res.stderr);
    const root = receiver.spans.find((s) => s.name === 'ptctl apply');
    assert.ok(root, 'the CLI exported its root span');
    const leaf = (s: ReceivedSpan): boolean => s.name === 'handle attach' && String(s.attributes['ptc.op_id']).includes('0000:0b:00.0');
    const until = Date.now() + 15_000;
    while (chainTo(receiver.spans, root, leaf)[0]?.spanId !== root.spanId && Date.now() < until) await sleep(250);
    const chain = chainTo(receiver.spans, root, leaf);
    const names = chain.map((s) => `${s.service}:${s.name}`);
    assert.equal(chain[0]?.spanId, root.spanId, `the chain reaches the root: ${names.join(' → ')}`);
    for (const expected of [
      'ptctl:StartWorkflow:rolloutWorkflow',
      'ptc-worker:RunWorkflow:rolloutWorkflow',
      'ptc-worker:RunActivity:enqueueOperations',
      'ptc-worker:SignalWithStartWorkflow:hostEntityWorkflow',
      'ptc-worker:RunWorkflow:passthroughWorkflow',
      'ptc-worker:agent attach',
      'ptc-agent:handle attach',
    ]) {
      assert.ok(names.includes(expected), `${expected} in ${names.join(' → ')}`);
    }
  });

  void it('histories made with tracing on replay with the plain bundle and with the tracing bundle', async () => {
    const ids: string[] = [];
    for await (const w of t.client.workflow.list({ query: "WorkflowType = 'passthroughWorkflow' OR WorkflowType = 'hostEntityWorkflow' OR WorkflowType = 'rolloutWorkflow'" })) ids.push(w.workflowId);
    assert.ok(ids.length >= 4, `histories to replay: ${ids.join(', ')}`);
    for (const replayer of [{ workflowBundle: await bundleWorkflows(), sinks: productionSinks() }, await observedReplayer(true)]) {
      for (const workflowId of new Set(ids)) await Worker.runReplayHistory(replayer, await t.client.workflow.getHandle(workflowId).fetchHistory(), workflowId);
    }
  });
});
