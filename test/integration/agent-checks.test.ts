import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AgentReply } from '../../schemas/agent-protocol.js';
import { ErrorCode } from '../../schemas/errors.js';
import { type TestStack, auditEvents, startTestStack } from '../helpers/stack.js';

const HOST = 'sim-1';

void describe('agent request checks over real NATS', () => {
  let t: TestStack;
  before(async () => {
    t = await startTestStack({ simHosts: [HOST], temporal: false });
  });
  after(async () => {
    await t[Symbol.asyncDispose]();
  });

  async function send(envelope: Record<string, unknown>, command = 'inspect'): Promise<AgentReply> {
    const msg = await t.nc.request(`ptc.v1.agent.${HOST}.${command}`, JSON.stringify(envelope), { timeout: 10_000 });
    return AgentReply.parse(msg.json());
  }
  const at = (offsetMs: number): string => new Date(Date.now() + offsetMs).toISOString();

  void it('refuses a request issued outside the clock skew (either side), and accepts one inside it', async () => {
    const late = await send({ opId: 'skew/late', hostId: HOST, issuedAt: at(-6 * 60_000), args: {} });
    assert.equal(late.ok, false);
    if (!late.ok) assert.equal(late.error.code, ErrorCode.REQUEST_STALE);
    const early = await send({ opId: 'skew/early', hostId: HOST, issuedAt: at(6 * 60_000), args: {} });
    assert.equal(early.ok ? 'ok' : early.error.code, ErrorCode.REQUEST_STALE);
    const fresh = await send({ opId: 'skew/fresh', hostId: HOST, issuedAt: at(-60_000), args: {} });
    assert.equal(fresh.ok, true, JSON.stringify(fresh));
    // A replay of a recorded op id is refused too once it is stale: the journal is not a way around the clock.
    const replayed = await send({ opId: 'skew/fresh', hostId: HOST, issuedAt: at(-10 * 60_000), args: {} });
    assert.equal(replayed.ok ? 'ok' : replayed.error.code, ErrorCode.REQUEST_STALE);
  });

  void it('refuses a request addressed to another host', async () => {
    const reply = await send({ opId: 'addr/other', hostId: 'sim-2', issuedAt: at(0), args: {} });
    assert.equal(reply.ok ? 'ok' : reply.error.code, ErrorCode.HOST_MISMATCH);
  });

  void it('copies requestedBy into every audit event of the command; a request without it still works', async () => {
    const withWho = await send({ opId: 'who/1', hostId: HOST, issuedAt: at(0), args: { bdf: '0000:09:00.0' }, requestedBy: 'operator-alice@alice' }, 'hide');
    assert.equal(withWho.ok, true, JSON.stringify(withWho));
    const without = await send({ opId: 'who/2', hostId: HOST, issuedAt: at(0), args: { bdf: '0000:09:00.0' } }, 'unhide');
    assert.equal(without.ok, true, JSON.stringify(without));
    const events = await auditEvents(t.nc, HOST);
    const first = events.filter((e) => e.opId === 'who/1');
    assert.deepEqual([...new Set(first.map((e) => e.kind))].sort(), ['applied', 'received']);
    assert.ok(first.every((e) => e.requestedBy === 'operator-alice@alice'), JSON.stringify(first));
    assert.ok(events.filter((e) => e.opId === 'who/2').every((e) => e.requestedBy === null));
    const bad = await send({ opId: 'who/3', hostId: HOST, issuedAt: at(0), args: {}, requestedBy: 'no spaces allowed' });
    assert.equal(bad.ok ? 'ok' : bad.error.code, ErrorCode.INVALID_REQUEST);
  });
});
