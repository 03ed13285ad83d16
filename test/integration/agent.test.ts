import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { connect } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { HostInventory } from '../../schemas/inventory.js';
import { HOSTS_BUCKET, AGENT_COMMANDS, type AgentCommand, AgentReply, type CommandArgsInput, MAX_REQUEST_BYTES } from '../../schemas/agent-protocol.js';
import { ErrorCode, isPtcError } from '../../schemas/errors.js';
import { connectNats, hostInboxPrefix } from '../../transport/nats-connection.js';
import { hostCredsFile } from '../../cli/nats-creds.js';
import { parseModprobeConf, RHEL5_DIALECT } from '../../agent/modprobe-conf.js';
import { type TestStack, auditEvents, snapshotFiles, startTestStack } from '../helpers/stack.js';

const HOST = 'sim-1';
function call<C extends AgentCommand>(t: TestStack, command: C, args: CommandArgsInput<C>, opId: string, timeoutMs = 5000) {
  return t.agents.call(HOST, command, args, { opId, timeoutMs });
}

void describe('host agent over real NATS (simulated host)', () => {
  let t: TestStack;
  before(async () => {
    t = await startTestStack({ simHosts: 2, temporal: false });
  });
  after(async () => {
    await t[Symbol.asyncDispose]();
  });

  void it('answers a repeated opId from its journal, also after a SIGKILL and restart: one hotplug in the audit stream', async () => {
    await call(t, 'hide', { bdf: '0000:0b:00.0' }, 'idem/hide');
    await call(t, 'bind', { bdf: '0000:0b:00.0', strategy: 'dynamic' }, 'idem/bind');
    const first = await call(t, 'attach', { bdf: '0000:0b:00.0', guest: 'vm-hvm', mode: 'both' }, 'idem/attach');
    const second = await call(t, 'attach', { bdf: '0000:0b:00.0', guest: 'vm-hvm', mode: 'both' }, 'idem/attach');
    assert.deepEqual(second, first);
    await t.stack.stopAgents('SIGKILL');
    await t.stack.startAgents();
    const third = await call(t, 'attach', { bdf: '0000:0b:00.0', guest: 'vm-hvm', mode: 'both' }, 'idem/attach');
    assert.deepEqual(third, first);
    const events = (await auditEvents(t.nc, HOST)).filter((e) => e.opId === 'idem/attach');
    assert.equal(events.filter((e) => e.kind === 'hotplug').length, 1);
    assert.equal(events.filter((e) => e.kind === 'replayed').length, 2);
    // The same id for different arguments is a client bug, refused rather than answered wrongly.
    await assert.rejects(call(t, 'attach', { bdf: '0000:0b:00.0', guest: 'vm-pv', mode: 'both' }, 'idem/attach'), (e) => isPtcError(e, ErrorCode.OP_ID_REUSED));
  });

  void it('recovers from a crash between the hotplug and the journal write without a second hotplug', async () => {
    await call(t, 'hide', { bdf: '0000:0a:04.0' }, 'crash/hide');
    await call(t, 'bind', { bdf: '0000:0a:04.0', strategy: 'dynamic' }, 'crash/bind');
    await t.stack.stopAgents('SIGTERM');
    await t.stack.startAgents({ crashAtStep: 'attach:after-hotplug' });
    await assert.rejects(call(t, 'attach', { bdf: '0000:0a:04.0', guest: 'vm-hvm', mode: 'hot' }, 'crash/attach', 3000), (e) => isPtcError(e, ErrorCode.AGENT_TIMEOUT) || isPtcError(e, ErrorCode.AGENT_UNREACHABLE));
    await t.stack.waitForAgentsExit();
    assert.equal(t.stack.agentsExit?.signal, 'SIGKILL', 'the injected crash killed the agent');
    await t.stack.stopAgents();
    await t.stack.startAgents({});
    const retried = await call(t, 'attach', { bdf: '0000:0a:04.0', guest: 'vm-hvm', mode: 'hot' }, 'crash/attach');
    assert.equal(retried.result.hot, true);
    assert.equal(retried.result.changed, false, 'the retry found the device already live');
    const hotplugs = (await auditEvents(t.nc, HOST)).filter((e) => e.kind === 'hotplug' && e.opId === 'crash/attach');
    assert.equal(hotplugs.length, 1);
  });

  void it('never leaves a half-written modprobe file when killed mid-command', async () => {
    const file = join(t.hostRoot('sim-2'), 'etc', 'modprobe.conf');
    const original = await readFile(file, 'utf8');
    for (let i = 0; i < 6; i++) {
      const command = i % 2 === 0 ? 'hide' : 'unhide';
      const pending = t.agents.call('sim-2', command, { bdf: '0000:09:00.0' }, { opId: `kill/${i}`, timeoutMs: 2000 }).catch(() => null);
      await new Promise((r) => setTimeout(r, 5 + ((i * 7) % 25)));
      await t.stack.stopAgents('SIGKILL');
      await pending;
      const text = await readFile(file, 'utf8');
      const conf = parseModprobeConf(text, RHEL5_DIALECT); // throws on a torn block
      assert.ok(text === original || conf.managed.hidden.join() === '0000:09:00.0', `unexpected modprobe.conf:\n${text}`);
      await t.stack.startAgents({});
    }
  });

  void it('answers 10,000 malformed, oversized or mismatched envelopes with error codes, never crashing or changing the host', async () => {
    const before = await snapshotFiles(t.hostRoot('sim-2'));
    const encoder = new TextEncoder();
    const validEnvelope = { opId: 'fuzz', hostId: 'sim-2', issuedAt: new Date().toISOString(), args: { bdf: '0000:09:00.0' } };
    const token = fc.stringMatching(/^[a-z0-9_-]{1,12}$/);
    const payload = fc.oneof(
      fc.uint8Array({ minLength: 0, maxLength: 64 }).map((b) => ({ command: 'hide', data: b })),
      fc.jsonValue().map((v) => ({ command: 'hide', data: encoder.encode(JSON.stringify(v)) })),
      fc.record({ opId: fc.anything(), hostId: fc.anything(), issuedAt: fc.anything(), args: fc.anything() }, { requiredKeys: [] }).map((v) => ({ command: 'attach', data: encoder.encode(JSON.stringify(v) ?? 'null') })),
      fc.anything().map((args) => ({ command: 'attach', data: encoder.encode(JSON.stringify({ ...validEnvelope, args }) ?? 'null') })),
      fc.constantFrom('sim-1', 'sim-3', 'x').map((hostId) => ({ command: 'hide', data: encoder.encode(JSON.stringify({ ...validEnvelope, hostId })) })),
      token.filter((c) => !(AGENT_COMMANDS as string[]).includes(c)).map((command) => ({ command, data: encoder.encode(JSON.stringify(validEnvelope)) })),
      fc.constant({ command: 'hide', data: encoder.encode(JSON.stringify({ ...validEnvelope, pad: 'x'.repeat(MAX_REQUEST_BYTES) })) }),
      fc.constant({ command: 'hide', data: encoder.encode(JSON.stringify({ ...validEnvelope, extra: 1 })) }),
      fc.string().map((bdf) => ({ command: 'hide', data: encoder.encode(JSON.stringify({ ...validEnvelope, args: { bdf: `0000:09:00.0${bdf.length ? ';' : ' '}${bdf}` } })) })),
    );
    const samples = fc.sample(payload, { numRuns: 10_000, seed: 42 });
    const codes = new Map<string, number>();
    const allowed = new Set<string>([ErrorCode.INVALID_REQUEST, ErrorCode.UNKNOWN_COMMAND, ErrorCode.HOST_MISMATCH]);
    for (let i = 0; i < samples.length; i += 200) {
      await Promise.all(
        samples.slice(i, i + 200).map(async ({ command, data }) => {
          const msg = await t.nc.request(`ptc.v1.agent.sim-2.${command}`, data, { timeout: 20_000 });
          const reply = AgentReply.parse(msg.json());
          assert.equal(reply.ok, false, `accepted ${new TextDecoder().decode(data).slice(0, 200)}`);
          if (!reply.ok) {
            assert.ok(allowed.has(reply.error.code), `${reply.error.code}: ${reply.error.message}`);
            codes.set(reply.error.code, (codes.get(reply.error.code) ?? 0) + 1);
          }
        }),
      );
    }
    assert.equal([...codes.values()].reduce((a, b) => a + b, 0), 10_000);
    assert.equal(codes.size, 3, `every error class was exercised: ${JSON.stringify([...codes])}`);
    const after = await snapshotFiles(t.hostRoot('sim-2'));
    for (const [path, bytes] of before) if (!path.startsWith('var/lib/ptctl/')) assert.equal(after.get(path), bytes, `${path} changed`);
    assert.equal(t.stack.agentsExit, null, 'the agent is still running');
    const inv = await t.agents.call('sim-2', 'inspect', {}, { opId: 'fuzz/after', timeoutMs: 5000 });
    assert.equal(inv.result.hostId, 'sim-2');
  });

  void it('publishes the inventory a mutating command leaves before it answers the next command: hide, then unhide', async () => {
    const host = 'sim-2';
    const bdf = '0000:09:00.0';
    const kv = await new Kvm(t.nc).open(HOSTS_BUCKET);
    for (const [command, hidden] of [['hide', true], ['unhide', false]] as const) {
      const asked = new Date().toISOString();
      await t.agents.call(host, command, { bdf }, { opId: `fresh/${command}`, timeoutMs: 5000 });
      // The host's queue runs one task at a time: when the inspect behind the command answers, the
      // publish the command queued after its reply has run (a heartbeat may have too, no earlier).
      await t.agents.call(host, 'inspect', {}, { opId: `fresh/${command}/inspect`, timeoutMs: 5000 });
      const entry = await kv.get(host);
      const inv = HostInventory.parse(entry?.json());
      assert.ok(inv.seenAt > asked, `the inventory in KV (seen ${inv.seenAt}) is from after the ${command} (asked ${asked})`);
      assert.equal(inv.devices.find((d) => d.bdf === bdf)?.hidden, hidden, `after ${command} the inventory in KV shows ${bdf} ${hidden ? '' : 'not '}hidden`);
    }
  });

  void it('keeps answering after nats-server restarts: agents reconnect and republish their inventory', async () => {
    await t.stack.restartNats();
    // The test's own connection reconnects too; the agent must answer a fresh request.
    const deadline = Date.now() + 30_000;
    let answered = false;
    while (!answered && Date.now() < deadline) {
      answered = await t.agents
        .call(HOST, 'inspect', {}, { opId: `reconnect/${Date.now()}`, timeoutMs: 2000 })
        .then((r) => r.result.hostId === HOST, () => false);
      if (!answered) await new Promise((r) => setTimeout(r, 500));
    }
    assert.ok(answered, 'the agent answered after the restart');
    assert.equal(t.stack.agentsExit, null, 'the agents process did not die');
    const events = await auditEvents(t.nc, HOST);
    assert.ok(events.some((e) => e.kind === 'applied' && e.opId?.startsWith('reconnect/')), 'its audit events reach the stream again');
  });

  void it('enforces per-host NATS permissions and refuses anonymous clients', async () => {
    await assert.rejects(connect({ servers: t.stack.connection.natsUrl, reconnect: false, timeout: 3000 }), /Authorization|authorization/);
    const host = await connectNats({ servers: t.stack.connection.natsUrl, seedFile: hostCredsFile(join(t.dir, 'creds'), 'sim-1'), name: 'probe', inboxPrefix: hostInboxPrefix('sim-1') });
    try {
      const denied = new Promise<string>((resolve) => {
        void (async () => {
          for await (const s of host.status()) if (s.type === 'error') resolve((s as { error?: Error }).error?.message ?? s.type);
        })();
      });
      host.subscribe('ptc.v1.agent.sim-2.*');
      host.publish('ptc.v1.events.sim-2.applied', 'forged');
      const why = await Promise.race([denied, new Promise<string>((r) => setTimeout(() => r('no error'), 3000))]);
      assert.match(why, /[Pp]ermission/);
    } finally {
      await host.close();
    }
    // auditEvents parses every record strictly, so a forged event that got into the stream would throw here.
    const events = await auditEvents(t.nc, 'sim-2');
    assert.ok(events.every((e) => e.hostId === 'sim-2'));
  });
});
