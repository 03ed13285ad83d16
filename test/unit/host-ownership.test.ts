import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { HostKeyOwnership, machineIdOf, type OwnershipOptions } from '../../agent/host-ownership.js';
import { ErrorCode, isPtcError } from '../../schemas/errors.js';

const NOW = Date.parse('2026-12-01T12:00:00Z');
const M1 = '0123456789abcdef0123456789abcdef';
const M2 = 'fedcba9876543210fedcba9876543210';

/** A KV entry as JetStream's direct get answers it (404 when null); NATS itself is tested in test/integration/agent-duplicate. */
function fakeNats(entry: () => Record<string, unknown> | null, seq: () => number, publish: JetStreamClient['publish'] = async () => ({ seq: seq() + 1 }) as never): { nc: NatsConnection; js: JetStreamClient } {
  const nc = {
    request: async () => {
      const value = entry();
      return {
        headers: { code: value === null ? 404 : 0, description: '', get: (k: string) => (k === 'Nats-Sequence' ? String(seq()) : '') },
        json: () => value,
      };
    },
  } as unknown as NatsConnection;
  return { nc, js: { publish } as unknown as JetStreamClient };
}

function ownership(entry: Record<string, unknown> | null, over: Partial<OwnershipOptions> = {}): HostKeyOwnership {
  const { nc, js } = fakeNats(() => entry, () => 7);
  return new HostKeyOwnership({ nc, js, hostId: 'h1', instance: 'me', machineId: M1, previousInstance: 'before-me', freshMs: 30_000, now: () => NOW, ...over });
}
const seen = (agoMs: number): string => new Date(NOW - agoMs).toISOString();
const duplicate = (pattern: RegExp) => (e: unknown) => isPtcError(e, ErrorCode.AGENT_DUPLICATE) && pattern.test(e.message);

void describe('host key ownership (rule 16 across machines)', () => {
  void it('refuses a fresh heartbeat from another machine, naming it', async () => {
    await assert.rejects(ownership({ seenAt: seen(1000), machineId: M2, agentInstance: 'x', bootId: 'b' }).claim(), duplicate(new RegExp(`machine ${M2} \\(this is ${M1}\\)`)));
  });

  void it('refuses a fresh heartbeat from another instance on this machine, unless it is this state dir’s previous agent', async () => {
    await assert.rejects(ownership({ seenAt: seen(1000), machineId: M1, agentInstance: 'x', bootId: 'boot-2' }).claim(), duplicate(/agent instance x/));
    await ownership({ seenAt: seen(1000), machineId: M1, agentInstance: 'before-me', bootId: 'boot-2' }).claim();
  });

  void it('takes over a stale heartbeat, an empty key and an older agent’s entry; a state dir that lost its instance record is a stranger', async () => {
    await ownership({ seenAt: seen(60_000), machineId: M2, agentInstance: 'x' }).claim();
    await ownership(null).claim();
    await ownership({ seenAt: seen(1000) }).claim();
    await assert.rejects(ownership({ seenAt: seen(1000), machineId: M1, agentInstance: 'x', bootId: 'boot-2' }, { previousInstance: null }).claim(), duplicate(/agent instance x/));
  });

  void it('a write that finds the key moved: follows its own lost write, stops for a rival', async () => {
    let latest: Record<string, unknown> = { seenAt: seen(0), agentInstance: 'me' };
    let calls = 0;
    const wrongSeq = Object.assign(new Error('wrong last sequence'), { code: 10071 });
    const { nc, js } = fakeNats(
      () => latest,
      () => 9,
      (async () => {
        calls++;
        if (calls === 1) throw wrongSeq;
        return { seq: 10 };
      }) as unknown as JetStreamClient['publish'],
    );
    const own = new HostKeyOwnership({ nc, js, hostId: 'h1', instance: 'me', machineId: M1, previousInstance: null, freshMs: 30_000, now: () => NOW });
    await own.publish('{}');
    assert.equal(calls, 2, 'rewritten after following its own entry');
    latest = { seenAt: seen(0), agentInstance: 'rival', machineId: M1 };
    calls = 0;
    await assert.rejects(own.publish('{}'), duplicate(/agent instance rival/));
  });

  void it('reads /etc/machine-id', () => {
    assert.equal(machineIdOf(`${M1.toUpperCase()}\n`), M1);
    assert.equal(machineIdOf(''), null);
    assert.equal(machineIdOf(null), null);
  });
});
