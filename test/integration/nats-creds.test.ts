import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { EVENTS_STREAM } from '../../schemas/agent-protocol.js';
import { connectNats } from '../../transport/nats-connection.js';
import { hostCredsFile } from '../../cli/nats-creds.js';
import { type TestStack, runCli, startTestStack } from '../helpers/stack.js';

/** A seed (`S` + key type + base32) or a creds block must never reach a terminal. */
const SECRET = /\bS[UOAN][A-Z2-7]{50,}\b|BEGIN NATS USER JWT|BEGIN USER NKEY SEED/;

async function publishOwnEvent(nc: NatsConnection, hostId: string): Promise<number> {
  const event = { hostId, kind: 'boot', bootId: 'late', at: new Date().toISOString(), opId: null, command: null, detail: {} };
  return (await jetstream(nc).publish(`ptc.v1.events.${hostId}.boot`, JSON.stringify(event), { timeout: 3000 })).seq;
}

void describe('decentralized auth: enroll and revoke hosts on a running nats-server', () => {
  let t: TestStack;
  let credsDir: string;
  before(async () => {
    t = await startTestStack({ simHosts: ['sim-1'], temporal: false });
    credsDir = join(t.dir, 'creds');
  });
  after(async () => {
    await t[Symbol.asyncDispose]();
  });

  void it('a host enrolled after the server started connects; revoking it closes its connection at once and refuses it afterwards', async () => {
    const added = await runCli(['creds', 'add-host', 'late-1', '--creds-dir', credsDir]);
    assert.equal(added.code, 0, added.stderr);
    assert.doesNotMatch(added.stdout + added.stderr, SECRET, 'nothing secret is printed');
    const file = hostCredsFile(credsDir, 'late-1');
    assert.equal((await stat(file)).mode & 0o777, 0o600);

    const nc = await connectNats({ servers: t.stack.connection.natsUrl, seedFile: file, name: 'late-1' });
    assert.ok((await publishOwnEvent(nc, 'late-1')) > 0, 'the new host published its own audit event');
    const closed = nc.closed();
    const before = Date.now();
    const revoked = await runCli(['creds', 'revoke-host', 'late-1', '--creds-dir', credsDir, '--nats-url', t.stack.connection.natsUrl]);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.doesNotMatch(revoked.stdout + revoked.stderr, SECRET);
    // The CLI returns once the server accepted the update; the server closes the connection right away
    // and the client gives up reconnecting on the repeated authorization error.
    const cutOff = await Promise.race([closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000))]);
    assert.ok(cutOff, 'the revoked host was disconnected and could not reconnect');
    // Measured from the revoke command's start, which includes the CLI's own start (a few seconds under load).
    assert.ok(Date.now() - before < 15_000);
    await assert.rejects(connectNats({ servers: t.stack.connection.natsUrl, seedFile: `${file}.revoked`, name: 'late-1-again' }), /[Aa]uthoriz|revoked/);

    // Another host is untouched, and the revocation is in the audit-able store.
    const other = await connectNats({ servers: t.stack.connection.natsUrl, seedFile: hostCredsFile(credsDir, 'sim-1'), name: 'sim-1-probe' });
    assert.ok((await publishOwnEvent(other, 'sim-1')) > 0);
    await other.close();
    const list = await runCli(['creds', 'list', '--creds-dir', credsDir, '--json']);
    const rows = JSON.parse(list.stdout) as Array<{ identity: string; revokedAt: string | null }>;
    assert.ok(rows.find((r) => r.identity === 'host-late-1')?.revokedAt, 'listed as revoked');
    assert.equal(rows.find((r) => r.identity === 'host-sim-1')?.revokedAt, null);
    const events = await (await jetstreamManager(t.nc)).streams.info(EVENTS_STREAM);
    assert.ok(events.state.messages > 0);
  });

  void it('keeps every secret 0600 in a 0700 dir and prints none', async () => {
    assert.equal((await stat(credsDir)).mode & 0o777, 0o700);
    for (const name of await readdir(credsDir)) {
      const path = join(credsDir, name);
      const text = await readFile(path, 'utf8').catch(() => '');
      if (SECRET.test(text)) assert.equal((await stat(path)).mode & 0o777, 0o600, `${name} holds a secret`);
    }
    const init = await runCli(['creds', 'init', '--creds-dir', credsDir]);
    assert.equal(init.code, 0, init.stderr);
    assert.doesNotMatch(init.stdout + init.stderr, SECRET);
    const conf = await readFile(join(credsDir, 'nats-auth.conf'), 'utf8');
    assert.doesNotMatch(conf, SECRET, 'the server config holds public data only');
  });
});
