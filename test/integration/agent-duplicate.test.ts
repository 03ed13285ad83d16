import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { HOSTS_BUCKET } from '../../schemas/agent-protocol.js';
import { HostInventory } from '../../schemas/inventory.js';
import { ErrorCode, isPtcError } from '../../schemas/errors.js';
import { agentStateDir } from '../../cli/agent-runner.js';
import { hostCredsFile } from '../../cli/nats-creds.js';
import { connectionEnv } from '../../cli/connection.js';
import { PTCTL_ENTRY } from '../../cli/tools.js';
import { connectNats, hostInboxPrefix } from '../../transport/nats-connection.js';
import { HostKeyOwnership } from '../../agent/host-ownership.js';
import { LOCK_FILE } from '../../agent/agent-lock.js';
import { type TestStack, startTestStack } from '../helpers/stack.js';

const HOST = 'sim-1';

/** Runs `ptctl agent` for HOST; one that does not exit within `limitMs` is killed and reported as still running (code null). */
function runAgent(t: TestStack, dir: string, limitMs = 10_000): Promise<{ code: number | null; stderr: string }> {
  const args = [PTCTL_ENTRY, 'agent', '--backend', 'sim', '--dir', dir, '--creds-dir', join(t.dir, 'creds'), '--heartbeat', '1000', '--host-id', HOST];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { env: { ...process.env, ...connectionEnv(t.stack.connection) }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let killed = false;
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, limitMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: killed ? null : code, stderr });
    });
  });
}

async function lockPid(t: TestStack): Promise<number> {
  return (JSON.parse(await readFile(join(agentStateDir(t.hostRoot(HOST)), LOCK_FILE), 'utf8')) as { pid: number }).pid;
}

void describe('one agent per host (rule 16), over real NATS', () => {
  let t: TestStack;
  before(async () => {
    t = await startTestStack({ simHosts: [HOST], temporal: false });
  });
  after(async () => {
    await t[Symbol.asyncDispose]();
  });

  void it('a second agent on the same state dir exits non-zero with one line naming the pid that holds it; the first keeps answering', async () => {
    const first = t.stack.agentsPid;
    assert.equal(await lockPid(t), first);
    const second = await runAgent(t, t.dir);
    assert.notEqual(second.code, null, 'the second agent must exit; it was still running after 10 s');
    assert.notEqual(second.code, 0);
    const lines = second.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line: ${second.stderr}`);
    assert.match(lines[0] ?? '', new RegExp(`^ptctl: AGENT_DUPLICATE: another ptctl agent \\(pid ${first}, host ${HOST}\\) already runs on .*; stop it first`));
    assert.equal(t.stack.agentsExit, null);
    const inv = await t.agents.call(HOST, 'inspect', {}, { opId: 'dup/after-same-dir', timeoutMs: 5000 });
    assert.equal(inv.result.hostId, HOST);
    assert.equal(await lockPid(t), first, 'the lock is still the first agent’s');
  });

  void it('a second agent on another machine (its own state dir) finds the fresh heartbeat and refuses to serve', async () => {
    // Every machine has a machine id (systemd gives it one; the simulated host's tree has its own).
    const ours = (await readFile(join(t.hostRoot(HOST), 'etc', 'machine-id'), 'utf8')).trim();
    assert.match(ours, /^[0-9a-f]{32}$/);
    const inv = await t.agents.call(HOST, 'inspect', {}, { opId: 'dup/machine', timeoutMs: 5000 });
    assert.equal(inv.result.hostId, HOST);
    // The inventory in KV carries the machine id and the agent instance (rule 16).
    const published = HostInventory.parse((await (await new Kvm(t.nc).open(HOSTS_BUCKET)).get(HOST))?.json());
    assert.equal(published.machineId, ours);
    assert.match(published.agentInstance ?? '', /^[0-9a-f-]{36}$/);
    const elsewhere = join(t.dir, 'other-machine');
    await mkdir(join(elsewhere, 'hosts', HOST, 'etc'), { recursive: true });
    await writeFile(join(elsewhere, 'hosts', HOST, 'etc', 'machine-id'), 'fedcba9876543210fedcba9876543210\n');
    const second = await runAgent(t, elsewhere);
    assert.notEqual(second.code, null, 'the second agent must refuse and exit; it was still serving after 10 s');
    assert.notEqual(second.code, 0);
    assert.match(second.stderr, new RegExp(`ptctl: AGENT_DUPLICATE: another agent already answers for host sim-1: machine ${ours} \\(this is fedcba9876543210fedcba9876543210\\)`));
    // A clone with the same machine id is told apart by the agent instance.
    await cp(join(t.hostRoot(HOST), 'etc', 'machine-id'), join(elsewhere, 'hosts', HOST, 'etc', 'machine-id'));
    const clone = await runAgent(t, elsewhere);
    assert.notEqual(clone.code, null, 'the clone must refuse and exit; it was still serving after 10 s');
    assert.match(clone.stderr, new RegExp(`ptctl: AGENT_DUPLICATE: another agent already answers for host sim-1: agent instance [0-9a-f-]{36} on machine ${ours}`));
    assert.equal(t.stack.agentsExit, null, 'the first agent still runs');
    const again = await t.agents.call(HOST, 'inspect', {}, { opId: 'dup/after-machine', timeoutMs: 5000 });
    assert.equal(again.result.hostId, HOST);
  });

  void it('a stale lock left by a killed agent is taken over', async () => {
    const before = t.stack.agentsPid;
    await t.stack.stopAgents('SIGKILL');
    assert.equal(await lockPid(t), before, 'the killed agent left its lock behind');
    await t.stack.startAgents();
    assert.notEqual(t.stack.agentsPid, before);
    assert.equal(await lockPid(t), t.stack.agentsPid);
    const inv = await t.agents.call(HOST, 'inspect', {}, { opId: 'dup/after-takeover', timeoutMs: 5000 });
    assert.equal(inv.result.hostId, HOST);
  });

  void it('two agents that start at once: the one whose heartbeat write finds the other’s stops (KV sequence check)', async () => {
    // Two racers with sim-1's own identity and permissions (its agent is stopped for this last test).
    await t.stack.stopAgents('SIGTERM');
    const host = await connectNats({ servers: t.stack.connection.natsUrl, seedFile: hostCredsFile(join(t.dir, 'creds'), HOST), name: 'race', inboxPrefix: hostInboxPrefix(HOST) });
    try {
      const js = jetstream(host);
      const common = { nc: host, js, hostId: HOST, machineId: null, freshMs: 60_000 };
      const a = new HostKeyOwnership({ ...common, instance: 'agent-a', previousInstance: null });
      const b = new HostKeyOwnership({ ...common, instance: 'agent-b', previousInstance: null });
      // Before either wrote, the stopped agent's fresh heartbeat refuses both: neither ran on its state dir.
      await assert.rejects(a.claim(), (e) => isPtcError(e, ErrorCode.AGENT_DUPLICATE));
      // The stopped agent's last heartbeat is recent; both racers claim as if they were its successors.
      const previous = JSON.parse(new TextDecoder().decode((await host.request(`$JS.API.DIRECT.GET.KV_ptc_hosts.$KV.ptc_hosts.${HOST}`, new Uint8Array(0), { timeout: 5000 })).data)) as { agentInstance: string };
      const a2 = new HostKeyOwnership({ ...common, instance: 'agent-a', previousInstance: previous.agentInstance });
      const b2 = new HostKeyOwnership({ ...common, instance: 'agent-b', previousInstance: previous.agentInstance });
      await a2.claim();
      await b2.claim();
      await a2.publish(JSON.stringify({ hostId: HOST, seenAt: new Date().toISOString(), agentInstance: 'agent-a' }));
      await assert.rejects(b2.publish(JSON.stringify({ hostId: HOST, seenAt: new Date().toISOString(), agentInstance: 'agent-b' })), (e) => isPtcError(e, ErrorCode.AGENT_DUPLICATE) && /agent instance agent-a/.test(e.message));
      // The winner keeps writing; a fresh claim by anyone else is refused.
      await a2.publish(JSON.stringify({ hostId: HOST, seenAt: new Date().toISOString(), agentInstance: 'agent-a' }));
      await assert.rejects(b.claim(), (e) => isPtcError(e, ErrorCode.AGENT_DUPLICATE));
      await a.claim();
    } finally {
      await host.close();
    }
  });
});
