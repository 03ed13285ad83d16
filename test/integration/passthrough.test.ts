import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import getPort from 'get-port';
import { serverBinary } from '../../cli/tools.js';
import { Worker } from '@temporalio/worker';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { passthroughWorkflow } from '../../workflows/passthrough-workflow.js';
import { TASK_QUEUE, hostEntityWorkflowId, hostStateQuery } from '../../workflows/definitions.js';
import { PtcBdf, PtcFailedHosts, PtcGuest, PtcHostId, PtcOutcome, PtcRollout } from '../../workflows/visibility.js';
import { parseOperationInput } from '../../cli/commands/attach.js';
import { waitForOperation } from '../../cli/operations.js';
import { errorInfo, failureDetails } from '../../cli/failures.js';
import { submitOperation } from '../../transport/host-operations.js';
import { HostInventory } from '../../schemas/inventory.js';
import { ErrorCode } from '../../schemas/errors.js';
import { type TestStack, auditEvents, runCli, snapshotFiles, startTestStack } from '../helpers/stack.js';
import { bundleWorkflows, quietTemporalRuntime } from '../helpers/temporal-env.js';
import { stepKinds } from '../helpers/history-export.js';

const DEVICE = '0000:09:00.0';

/** Workflow ids in `temporal workflow list --output json` (one JSON array, or one object per line). */
function workflowIdsOf(stdout: string): string[] {
  const text = stdout.trim();
  const items = (text.startsWith('[') ? JSON.parse(text) : text.split('\n').filter((l) => l.trim()).map((l): unknown => JSON.parse(l))) as Array<{ execution?: { workflowId?: string } }>;
  return items.map((i) => i.execution?.workflowId ?? '').filter((id) => id !== '');
}

void describe('passthrough on the real stack (nats-server, Temporal dev server, worker, simulated agents)', () => {
  let t: TestStack;
  let cliEnv: NodeJS.ProcessEnv;
  before(async () => {
    quietTemporalRuntime();
    t = await startTestStack({ simHosts: 2 });
    cliEnv = { PTC_NATS_URL: '', PTC_NATS_CREDS: '', PTC_TEMPORAL_ADDRESS: '' };
  });
  after(async () => {
    await t[Symbol.asyncDispose]();
  });

  void it('attaches 0000:09:00.0 to vm-hvm and the read-back state is right; history replays', async () => {
    // Through the host entity, as the CLI does it.
    const op = parseOperationInput('attach', { host: 'sim-1', device: DEVICE, guest: 'vm-hvm', wait: true, json: false }, 'it-1');
    await submitOperation(t.client, op);
    const result = await waitForOperation(t.client, 'sim-1', op.workflowId);
    const handle = t.client.workflow.getHandle(op.workflowId);
    assert.equal(result.outcome, 'attached');
    assert.deepEqual(result.steps.map((s) => s.step), ['preflight', 'hide', 'bind', 'verify', 'attach']);
    assert.equal(result.hotplugs.length, 1);
    const entity = await t.client.workflow.getHandle(hostEntityWorkflowId('sim-1')).query(hostStateQuery);
    assert.equal(entity.ledger[DEVICE]?.length, 1, 'the entity ledger holds the hotplug');
    assert.deepEqual(entity.pinned, { 'vm-hvm': [DEVICE] });

    const modprobe = await readFile(join(t.hostRoot('sim-1'), 'etc', 'modprobe.conf'), 'utf8');
    assert.ok(modprobe.split('\n').includes('options pciback hide=(0000:09:00.0)'), modprobe);
    assert.ok(modprobe.split('\n').includes('install bnx2 /sbin/modprobe pciback; /sbin/modprobe --first-time --ignore-install bnx2'), modprobe);
    assert.ok(modprobe.startsWith('alias eth0 bnx2\n'), 'the host\'s own lines stay first and untouched');
    const guestConf = await readFile(join(t.hostRoot('sim-1'), 'etc', 'xen', 'vm-hvm'), 'utf8');
    assert.ok(guestConf.split('\n').includes(`pci = [ '${DEVICE}' ]`), guestConf);

    const inv = (await t.agents.call('sim-1', 'inspect', {}, { opId: 'it-readback-1', timeoutMs: 5000 })).result;
    const dev = inv.devices.find((d) => d.bdf === DEVICE);
    assert.equal(dev?.driver, 'pciback');
    assert.equal(dev?.hostDriver, 'bnx2', 'the original driver is remembered for the way back');
    assert.equal(dev?.assignedTo, 'vm-hvm');
    assert.deepEqual(inv.guests.find((g) => g.name === 'vm-hvm')?.liveDevices, [DEVICE]);

    const events = await auditEvents(t.nc, 'sim-1');
    const applied = events.filter((e) => e.kind === 'applied' && e.opId?.startsWith(`op/sim-1/${DEVICE}/it-1#`)).map((e) => e.command);
    // inspect, then again after bind to catch an unexpected reboot before verify
    assert.deepEqual(applied, ['inspect', 'hide', 'bind', 'inspect', 'verify', 'attach']);
    // Only bind and attach, which take a host's real time, are activities; the short steps are local.
    const steps = await stepKinds(t.client, op.workflowId);
    assert.deepEqual(steps.activities, ['attachDevice', 'bindDevice']);
    assert.equal(steps.localActivities, 4);
    assert.equal(events.filter((e) => e.kind === 'hotplug').length, 1, 'exactly one hotplug');
    assert.ok(events.some((e) => e.kind === 'boot'), 'the agent announced its boot');

    // The history must replay against the same workflow bundle (guards against non-determinism and
    // against the duplicate-protobufjs replay breakage noted in DESIGN §8).
    const history = await handle.fetchHistory();
    const workflowBundle = await bundleWorkflows();
    await Worker.runReplayHistory({ workflowBundle }, history, handle.workflowId);
    const entityHistory = await t.client.workflow.getHandle(hostEntityWorkflowId('sim-1')).fetchHistory();
    await Worker.runReplayHistory({ workflowBundle }, entityHistory, hostEntityWorkflowId('sim-1'));
  });

  void it('finds the operation by search attributes (the official temporal CLI, ptctl list) and ptctl status tells how it ended', async () => {
    const query = `PtcHostId="sim-1" AND PtcOutcome="attached"`;
    // Visibility is eventually consistent: the upsert at the end of the saga shows within a moment.
    let ids: string[] = [];
    for (let i = 0; i < 50 && !ids.some((id) => id.endsWith('/it-1')); i++) {
      const res = spawnSync(serverBinary('temporal'), ['workflow', 'list', '--address', t.stack.connection.temporalAddress, '--query', query, '--output', 'json'], { encoding: 'utf8' });
      assert.equal(res.status, 0, res.stderr);
      ids = res.stdout.trim() ? workflowIdsOf(res.stdout) : [];
      if (!ids.some((id) => id.endsWith('/it-1'))) await new Promise((r) => setTimeout(r, 200));
    }
    assert.deepEqual(ids, [`op/sim-1/${DEVICE}/it-1`]);

    const listed = await runCli(['list', '--dir', t.dir, '--host', 'sim-1', '--device', DEVICE, '--json'], cliEnv);
    assert.equal(listed.code, 0, listed.stderr);
    const out = JSON.parse(listed.stdout) as { query: string; workflows: Array<{ id: string; outcome: string | null; guest: string | null }> };
    assert.equal(out.query, `WorkflowType IN ('passthroughWorkflow', 'releaseWorkflow') AND PtcHostId = 'sim-1' AND PtcBdf = '${DEVICE}'`);
    assert.deepEqual(out.workflows.map((w) => [w.id, w.outcome, w.guest]), [[`op/sim-1/${DEVICE}/it-1`, 'attached', 'vm-hvm']]);
    // ptctl list reads with its own gRPC reader: row for row what the SDK client lists.
    const sdkRows = [];
    for await (const wf of t.client.workflow.list({ query: out.query })) {
      const sa = wf.typedSearchAttributes;
      sdkRows.push({ id: wf.workflowId, type: wf.type, status: wf.status.name, host: sa.get(PtcHostId) ?? null, device: sa.get(PtcBdf) ?? null, guest: sa.get(PtcGuest) ?? null, rollout: sa.get(PtcRollout) ?? null, outcome: sa.get(PtcOutcome) ?? null, failedHosts: sa.get(PtcFailedHosts) ?? null, startedAt: wf.startTime.toISOString(), closedAt: wf.closeTime?.toISOString() ?? null });
    }
    assert.deepEqual(out.workflows, sdkRows);
    const bad = await runCli(['list', '--dir', t.dir, '--host', "x' OR '1'='1"], cliEnv);
    assert.equal(bad.code, 2, 'a filter that is not a host id never reaches the query');

    // ptctl status reads with its own gRPC reader: it must say what the SDK client says.
    const op = { workflowId: `op/sim-1/${DEVICE}/it-1` };
    const handle = t.client.workflow.getHandle(op.workflowId);
    const status = await runCli(['status', op.workflowId, '--dir', t.dir, '--json'], cliEnv);
    assert.equal(status.code, 0, status.stderr);
    const shown = JSON.parse(status.stdout) as { status: string; step: string; outcome: string; result: unknown; version: unknown };
    assert.equal(shown.status, (await handle.describe()).status.name);
    assert.deepEqual(shown.result, await handle.result());
    assert.deepEqual([shown.status, shown.step, shown.outcome], ['COMPLETED', 'done', 'attached']);
    const text = await runCli(['status', op.workflowId, '--dir', t.dir], cliEnv);
    assert.equal(text.stdout.split('\n')[0], `${op.workflowId}: completed, outcome attached`);
    assert.match(text.stdout, /^ {2}attach {5}0000:09:00\.0 attached to vm-hvm/m);
  });

  void it('ptctl status of an unknown id and of a terminated run: one line, and the reason the run ended', async () => {
    const unknown = await runCli(['status', 'op/sim-2/0000:0b:00.0/it-none', '--dir', t.dir], cliEnv);
    assert.equal(unknown.code, 2);
    assert.equal(unknown.stderr.trim().split('\n').length, 1, unknown.stderr);
    assert.match(unknown.stderr, /^ptctl: INVALID_INPUT: no operation op\/sim-2\/0000:0b:00\.0\/it-none /);
    // A port nothing listens on in Temporal's place: refused at once, said in one line.
    const down = await runCli(['status', 'rollout/x', '--dir', t.dir], { ...cliEnv, PTC_TEMPORAL_ADDRESS: `127.0.0.1:${await getPort()}` });
    assert.equal(down.code, 1);
    assert.match(down.stderr, /^ptctl: NOT_CONNECTED: cannot reach Temporal at 127\.0\.0\.1:\d+: .*ECONNREFUSED.*; is `ptctl dev` running\?\n$/);
    // A run no worker picks up (its task queue has none), ended by an operator.
    const stray = await t.client.workflow.start('passthroughWorkflow', { taskQueue: 'it-nobody-polls', workflowId: 'op/sim-2/0000:0b:00.0/it-term', args: [] });
    await stray.terminate('stopped by the operator');
    const res = await runCli(['status', stray.workflowId, '--dir', t.dir, '--json'], cliEnv);
    assert.equal(res.code, 0, res.stderr);
    const shown = JSON.parse(res.stdout) as { status: string; outcome: string; error: unknown };
    assert.deepEqual([shown.status, shown.outcome, shown.error], ['TERMINATED', 'failed', { code: ErrorCode.OPERATION_FAILED, message: 'stopped by the operator' }]);
  });

  void it('refuses the management uplink with DEVICE_IN_USE on one line and leaves the host byte-identical', async () => {
    const before = await snapshotFiles(t.hostRoot('sim-2'));
    const res = await runCli(['attach', '--dir', t.dir, '--host', 'sim-2', '--device', '0000:01:00.0', '--guest', 'vm-hvm', '--wait'], cliEnv);
    assert.equal(res.code, 1);
    const lines = res.stderr.trim().split('\n');
    assert.equal(lines.length, 1, res.stderr);
    assert.match(lines[0] ?? '', /^ptctl: DEVICE_IN_USE: 0000:01:00.0 is in use by host sim-2: eth0 carries the host's default route/);
    const after = await snapshotFiles(t.hostRoot('sim-2'));
    // The host's whole tree: /etc and the simulated /sys, whose driver links say no binding changed.
    assert.ok(before.has('sys/devices/pci0000:01/0000:01:00.0/driver'), 'the snapshot holds the driver links');
    for (const [path, bytes] of before) {
      if (path.startsWith('var/lib/ptctl/')) continue;
      assert.equal(after.get(path), bytes, `${path} changed`);
    }
  });

  void it('reports the refusal as JSON with --json', async () => {
    const res = await runCli(['attach', '--dir', t.dir, '--host', 'sim-2', '--device', '0000:03:00.0', '--guest', 'vm-hvm', '--wait', '--json'], cliEnv);
    assert.equal(res.code, 1);
    const out = JSON.parse(res.stdout) as { ok: boolean; error: { code: string; message: string } };
    assert.equal(out.ok, false);
    assert.equal(out.error.code, ErrorCode.DEVICE_IN_USE);
    assert.match(out.error.message, /it controls sda, mounted on \/ and \/boot/);
  });

  void it('rejects malformed input before anything is sent', async () => {
    const eventsBefore = (await auditEvents(t.nc, 'sim-2')).length;
    const cases: Array<[string[], RegExp]> = [
      [['--device', '0000:09:00.0;reboot'], /--device: a PCI address is 12 characters/],
      [['--device', '0000:09:00.8'], /--device: expected a PCI address/],
      [['--device', '09:00.0'], /--device: expected a PCI address/],
      [['--device', '0000:09:00.0', '--host', 'sim-2.*'], /--host: a host id/],
      [['--device', '0000:09:00.0', '--guest', '../../etc/passwd'], /--guest: a guest name/],
    ];
    for (const [flags, expected] of cases) {
      const args = ['attach', '--dir', t.dir, '--host', 'sim-2', '--guest', 'vm-hvm', '--wait', ...flags];
      const res = await runCli(args, cliEnv);
      assert.equal(res.code, 2, `${flags.join(' ')}: ${res.stderr}`);
      assert.match(res.stderr, /^ptctl: INVALID_INPUT: /);
      assert.match(res.stderr, expected);
      assert.equal(res.stderr.trim().split('\n').length, 1);
    }
    assert.equal((await auditEvents(t.nc, 'sim-2')).length, eventsBefore, 'no request reached the agent');
  });

  void it('lists hosts with the DESIGN §2 inventory fields via ptctl hosts --json', async () => {
    const res = await runCli(['hosts', '--dir', t.dir, '--json'], cliEnv);
    assert.equal(res.code, 0, res.stderr);
    const hosts = (JSON.parse(res.stdout) as unknown[]).map((h) => HostInventory.parse(h));
    assert.deepEqual(hosts.map((h) => h.hostId), ['sim-1', 'sim-2']);
    // machineId and agentInstance: rule 16 (one agent per host).
    assert.deepEqual(Object.keys(hosts[0] ?? {}).sort(), ['agentInstance', 'agentVersion', 'bootId', 'capabilities', 'devices', 'guests', 'hostId', 'hypervisor', 'iommu', 'machineId', 'os', 'seenAt'].sort());
    const human = await runCli(['hosts', '--dir', t.dir], cliEnv);
    assert.equal(human.code, 0);
    assert.match(human.stdout, /sim-1 .*0000:01:00\.0 .*bnx2 .*eth0 .*in use/);
  });

  void it('fails the workflow with the agent\'s code when the guest does not exist', async () => {
    const err = await t.client.workflow
      .execute<typeof passthroughWorkflow>('passthroughWorkflow', { taskQueue: TASK_QUEUE, workflowId: 'op/sim-2/0000:0b:00.0/it-noguest', args: [{ hostId: 'sim-2', bdf: '0000:0b:00.0', guest: 'vm-nope' }] })
      .then(() => null, (e: unknown) => e);
    assert.ok(err instanceof WorkflowFailedError);
    assert.ok(err.cause instanceof ApplicationFailure);
    assert.equal(err.cause.type, ErrorCode.GUEST_NOT_FOUND);
    const status = await runCli(['status', 'op/sim-2/0000:0b:00.0/it-noguest', '--dir', t.dir, '--json'], cliEnv);
    assert.equal(status.code, 0, status.stderr);
    const shown = JSON.parse(status.stdout) as { status: string; outcome: string; error: unknown; details: unknown };
    assert.equal(shown.status, 'FAILED');
    assert.deepEqual(shown.error, errorInfo(err), 'the code and sentence the SDK client\'s error gives');
    assert.deepEqual(shown.details, failureDetails(err));
    assert.equal(shown.error && (shown.error as { code: string }).code, ErrorCode.GUEST_NOT_FOUND);
  });
});
