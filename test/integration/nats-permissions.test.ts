import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setImmediate as tick } from 'node:timers/promises';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { errors, type NatsConnection } from '@nats-io/transport-node';
import { type AuditEvent, EVENTS_STREAM, HOSTS_BUCKET } from '../../schemas/agent-protocol.js';
import { AgentClient } from '../../transport/agent-client.js';
import { connectNats } from '../../transport/nats-connection.js';
import { readHostInventories } from '../../transport/host-inventories.js';
import { EVENTS_STREAM_CONFIG } from '../../transport/nats-resources.js';
import { type NatsRole, identityName } from '../../transport/nats-permissions.js';
import { DEV_PERSON } from '../../cli/dev-stack.js';
import { type TestStack, startTestStack } from '../helpers/stack.js';

/** The host whose identity is probed, and another host it must not be able to touch. */
const SELF = 'sim-1';
const OTHER = 'sim-2';

type Outcome = 'ok' | 'denied' | `error: ${string}`;

interface Action {
  name: string;
  /** Resolves only when the action really took effect (a reply, a record, a stored message). */
  run(nc: NatsConnection, t: TestStack): Promise<void>;
}

const jsm = (nc: NatsConnection) => jetstreamManager(nc, { checkAPI: false });
const event = (hostId: string): AuditEvent => ({ hostId, kind: 'applied', bootId: 'forged', at: new Date().toISOString(), opId: 'forged', command: 'inspect', requestedBy: null, detail: {} });

/** Subscribes and waits a round trip: nats-server refuses a SUB before it answers the PING. */
async function subscribeProbe(nc: NatsConnection, subject: string): Promise<void> {
  nc.subscribe(subject, { max: 1 });
  await nc.flush();
}

async function currentInventory(t: TestStack, hostId: string): Promise<Uint8Array> {
  const entry = await (await new Kvm(t.nc).open(HOSTS_BUCKET)).get(hostId);
  if (!entry) throw new Error(`no inventory for ${hostId}`);
  return entry.value;
}

const ACTIONS: Action[] = [
  {
    name: `command the agent of ${OTHER}`,
    run: async (nc) => void (await new AgentClient(nc).call(OTHER, 'inspect', {}, { opId: `matrix/${Date.now()}`, timeoutMs: 3000 })),
  },
  {
    name: 'read the host inventory',
    run: async (nc) => {
      const hosts = await readHostInventories(nc);
      if (hosts.length < 2) throw new Error(`read ${hosts.length} hosts`);
    },
  },
  {
    name: 'read the audit stream',
    run: async (nc) => {
      const consumer = await jetstream(nc).consumers.get(EVENTS_STREAM);
      const msg = await consumer.next({ expires: 2000 });
      if (!msg) throw new Error('no event read');
    },
  },
  { name: `write the inventory of ${SELF}`, run: async (nc, t) => void (await jetstream(nc).publish(`$KV.${HOSTS_BUCKET}.${SELF}`, await currentInventory(t, SELF), { timeout: 3000 })) },
  { name: `write the inventory of ${OTHER}`, run: async (nc, t) => void (await jetstream(nc).publish(`$KV.${HOSTS_BUCKET}.${OTHER}`, await currentInventory(t, OTHER), { timeout: 3000 })) },
  { name: `publish an audit event of ${SELF}`, run: async (nc) => void (await jetstream(nc).publish(`ptc.v1.events.${SELF}.applied`, JSON.stringify(event(SELF)), { timeout: 3000 })) },
  { name: `publish an audit event of ${OTHER}`, run: async (nc) => void (await jetstream(nc).publish(`ptc.v1.events.${OTHER}.applied`, JSON.stringify(event(OTHER)), { timeout: 3000 })) },
  { name: `receive the commands of ${SELF}`, run: (nc) => subscribeProbe(nc, `ptc.v1.agent.${SELF}.*`) },
  { name: `receive the commands of ${OTHER}`, run: (nc) => subscribeProbe(nc, `ptc.v1.agent.${OTHER}.*`) },
  { name: 'listen on the default inbox space _INBOX.>', run: (nc) => subscribeProbe(nc, '_INBOX.>') },
  { name: "listen on the worker's inboxes", run: (nc) => subscribeProbe(nc, '_INBOX_id_worker.>') },
  { name: `listen on ${OTHER}'s inboxes`, run: (nc) => subscribeProbe(nc, `_INBOX_${OTHER}.>`) },
  { name: 'listen to raw audit subjects', run: (nc) => subscribeProbe(nc, 'ptc.v1.events.>') },
  // nats-server answers a create with the same config as success: the call itself is what is permitted or not.
  { name: 'create the audit stream', run: async (nc) => void (await (await jsm(nc)).streams.add(EVENTS_STREAM_CONFIG)) },
  { name: 'purge the audit stream', run: async (nc) => void (await (await jsm(nc)).streams.purge(EVENTS_STREAM)) },
  { name: 'delete the audit stream', run: async (nc) => void (await (await jsm(nc)).streams.delete(EVENTS_STREAM)) },
  { name: 'change the audit stream config', run: async (nc) => void (await (await jsm(nc)).streams.update(EVENTS_STREAM, { ...EVENTS_STREAM_CONFIG, max_bytes: 1024 })) },
  { name: 'delete an audit record', run: async (nc) => void (await (await jsm(nc)).streams.deleteMessage(EVENTS_STREAM, 1)) },
  { name: 'create another stream', run: async (nc) => void (await (await jsm(nc)).streams.add({ name: 'EVIL', subjects: ['evil.>'] })) },
  { name: 'purge the inventory bucket', run: async (nc) => void (await (await jsm(nc)).streams.purge(`KV_${HOSTS_BUCKET}`)) },
  { name: 'delete the inventory bucket', run: async (nc) => void (await (await jsm(nc)).streams.delete(`KV_${HOSTS_BUCKET}`)) },
];

/**
 * What each identity may do; everything else must be refused by nats-server's permissions (not by
 * chance, a timeout or the stream's own deny flags: a widened permission shows as another outcome).
 */
const ALLOWED: Record<NatsRole, readonly string[]> = {
  worker: [`command the agent of ${OTHER}`, 'read the host inventory', 'read the audit stream', "listen on the worker's inboxes", 'create the audit stream'],
  operator: ['read the host inventory', 'read the audit stream'],
  viewer: ['read the host inventory', 'read the audit stream'],
  host: [`write the inventory of ${SELF}`, `publish an audit event of ${SELF}`, `receive the commands of ${SELF}`],
};

async function attempt(nc: NatsConnection, t: TestStack, action: Action): Promise<Outcome> {
  let denied: string | null = null;
  void (async () => {
    for await (const s of nc.status()) if (s.type === 'error' && s.error instanceof errors.PermissionViolationError) denied ??= s.error.message;
  })();
  const run = action.run(nc, t).then(
    () => 'done' as const,
    (err: unknown) => err,
  );
  const result = await Promise.race([run, new Promise((r) => setTimeout(() => r('timeout'), 5000))]);
  await nc.flush().catch(() => undefined);
  await tick();
  if (denied) return 'denied';
  if (result === 'done') return 'ok';
  if (result instanceof errors.PermissionViolationError) return 'denied';
  return `error: ${result instanceof Error ? result.message : String(result)}`;
}

void describe('NATS permission matrix on a real nats-server', () => {
  let t: TestStack;
  const creds = (role: NatsRole): string => {
    const name = role === 'host' ? SELF : role === 'worker' ? 'worker' : DEV_PERSON;
    return join(t.dir, 'creds', `${identityName(role, name)}.creds`);
  };
  before(async () => {
    t = await startTestStack({ simHosts: [SELF, OTHER], temporal: false });
  });
  after(async () => {
    await t[Symbol.asyncDispose]();
  });

  void it('creates the audit stream with deletes and purges denied by the server itself', async () => {
    const info = await (await jetstreamManager(t.nc)).streams.info(EVENTS_STREAM);
    assert.equal(info.config.deny_delete, true);
    assert.equal(info.config.deny_purge, true);
  });

  for (const role of ['worker', 'operator', 'viewer', 'host'] as const) {
    void it(`${role}: every allowed action works and every other one is refused`, async () => {
      const got: string[] = [];
      for (const action of ACTIONS) {
        const nc = await connectNats({ servers: t.stack.connection.natsUrl, seedFile: creds(role), name: `matrix-${role}` });
        try {
          const outcome = await attempt(nc, t, action);
          const expected = ALLOWED[role].includes(action.name) ? 'ok' : 'denied';
          if (outcome !== expected) got.push(`${action.name}: expected ${expected}, got ${outcome}`);
        } finally {
          await nc.close();
        }
      }
      assert.deepEqual(got, [], `${role}:\n${got.join('\n')}`);
    });
  }

  void it('the audit stream is intact after every probe', async () => {
    const info = await (await jetstreamManager(t.nc)).streams.info(EVENTS_STREAM);
    assert.equal(info.state.first_seq, 1, 'no record was purged or deleted');
    assert.equal(info.config.deny_delete && info.config.deny_purge, true);
  });
});
