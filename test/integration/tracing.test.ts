import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { type TestStack, runCli, startTestStack } from '../helpers/stack.js';
import { quietTemporalRuntime } from '../helpers/temporal-env.js';
import { type ReceivedSpan, startOtlpReceiver } from '../helpers/otlp-receiver.js';

const DEVICE = '0000:09:00.0';

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

    // Walks from the agent's span of the attach up its parents, within the CLI's trace.
    const inTrace = (): ReceivedSpan[] => receiver.spans.filter((s) => s.traceId === root.traceId);
    const chainOf = (spans: ReceivedSpan[]): ReceivedSpan[] => {
      const byId = new Map(spans.map((s) => [s.spanId, s]));
      const chain: ReceivedSpan[] = [];
      for (let s = spans.find((x) => x.name === 'handle attach'); s; s = s.parentSpanId ? byId.get(s.parentSpanId) : undefined) chain.unshift(s);
      return chain;
    };
    // The worker and agents export in batches (1 s apart) from their own processes: wait, bounded,
    // until the chain is whole.
    const until = Date.now() + 15_000;
    while (chainOf(inTrace())[0]?.spanId !== root.spanId && Date.now() < until) await sleep(250);
    const spans = inTrace();
    const chain = chainOf(spans);
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
});
