import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import type { NatsConnection } from '@nats-io/transport-node';
import type { HostBackend } from '../../agent/backend.js';
import { HostAgent } from '../../agent/host-agent.js';
import { SimHost } from '../../agent/sim/sim-host.js';
import { hostCredsFile } from '../../cli/nats-creds.js';
import { ErrorCode, isPtcError } from '../../schemas/errors.js';
import { connectNats, hostInboxPrefix } from '../../transport/nats-connection.js';
import { type TestStack, startTestStack } from '../helpers/stack.js';

const HOST = 'sim-1';
const SAVE_MS = 1500;
const HEARTBEAT_MS = 100;

/** The simulated host, with scans counted and `xl save` taking SAVE_MS, as a big guest's save does. */
function instrumented(backend: HostBackend): { backend: HostBackend; scans: () => number } {
  let scans = 0;
  const proxy = new Proxy(backend, {
    get(target, prop, receiver) {
      if (prop === 'scan') {
        return async () => {
          scans++;
          return target.scan();
        };
      }
      if (prop === 'saveGuest') {
        return async (guest: string) => {
          await sleep(SAVE_MS);
          return target.saveGuest(guest);
        };
      }
      const value: unknown = Reflect.get(target, prop, receiver);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  return { backend: proxy, scans: () => scans };
}

void describe('agent lifecycle over real NATS: coalesced rescans, read-only commands unjournaled, a stop that finishes the step', () => {
  let t: TestStack;
  let root: string;
  let nc: NatsConnection;
  let agent: HostAgent;
  let scans: () => number;
  before(async () => {
    t = await startTestStack({ simHosts: [HOST], temporal: false, agents: false });
    root = await mkdtemp(join(tmpdir(), 'ptctl-lifecycle-'));
    nc = await connectNats({ servers: t.stack.connection.natsUrl, seedFile: hostCredsFile(join(t.dir, 'creds'), HOST), name: 'lifecycle', inboxPrefix: hostInboxPrefix(HOST) });
    const sim = instrumented(await SimHost.open({ hostDir: root, hostId: HOST }));
    scans = sim.scans;
    agent = await HostAgent.start({ hostId: HOST, backend: sim.backend, nc, stateDir: join(root, 'state'), heartbeatMs: HEARTBEAT_MS, log: pino({ level: 'silent' }) });
  });
  after(async () => {
    await agent.stop();
    await nc.close();
    await t[Symbol.asyncDispose]();
    await rm(root, { recursive: true, force: true });
  });

  void it('does not journal read-only commands', async () => {
    await t.agents.call(HOST, 'inspect', {}, { opId: 'life/inspect', timeoutMs: 5000 });
    await t.agents.call(HOST, 'guest-status', { guest: 'vm-pv' }, { opId: 'life/status', timeoutMs: 5000 });
    await t.agents.call(HOST, 'hide', { bdf: '0000:09:00.0' }, { opId: 'life/hide', timeoutMs: 5000 });
    const journal = await readFile(join(root, 'state', 'journal.jsonl'), 'utf8');
    assert.ok(journal.includes('"life/hide"'));
    assert.ok(!journal.includes('life/inspect') && !journal.includes('life/status'), journal);
  });

  void it('never queues a rescan behind a rescan: a minutes-long step does not pile up heartbeats', async () => {
    const before = scans();
    const reply = await t.agents.call(HOST, 'save', { guest: 'vm-pv' }, { opId: 'life/save', timeoutMs: SAVE_MS + 5000 });
    assert.equal(reply.result.state, 'stopped');
    await sleep(30);
    const during = scans() - before;
    // 15 heartbeats fell due during the save. Coalesced: the save's own two scans, the rescan after the
    // command, at most one heartbeat that was running when it arrived and one after. Queued: 15 more.
    assert.ok(during <= 6, `${during} scans for one save`);
    // The heartbeat still runs afterwards.
    const later = scans();
    await sleep(HEARTBEAT_MS * 5);
    assert.ok(scans() > later, 'heartbeats resume');
  });

  void it('a stop (what SIGTERM does) answers the command in progress, then answers nothing more', async () => {
    await t.agents.call(HOST, 'restore', { guest: 'vm-pv' }, { opId: 'life/restore', timeoutMs: 5000 });
    let repliedAt = 0;
    const pending = t.agents.call(HOST, 'save', { guest: 'vm-pv' }, { opId: 'life/save-2', timeoutMs: SAVE_MS + 5000 }).then((r) => {
      repliedAt = Date.now();
      return r;
    });
    await sleep(300);
    await agent.stop();
    const stoppedAt = Date.now();
    const reply = await pending;
    assert.equal(reply.result.state, 'stopped', 'the save in progress finished and was answered');
    assert.ok(repliedAt > 0 && repliedAt <= stoppedAt + 50, 'the reply went out before stop returned');
    await assert.rejects(t.agents.call(HOST, 'inspect', {}, { opId: 'life/after-stop', timeoutMs: 1000 }), (e) => isPtcError(e, ErrorCode.AGENT_TIMEOUT) || isPtcError(e, ErrorCode.AGENT_UNREACHABLE));
  });
});
