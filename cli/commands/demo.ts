import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Table from 'cli-table3';
import { ErrorCode, PtcError } from '../../schemas/errors.js';
import type { HostInventory } from '../../schemas/inventory.js';
import type { FleetFileInput } from '../../agent/sim/fleet-file.js';
import { resolvePlan, toRolloutInput } from '../../policy/plan-resolution.js';
import { TASK_QUEUE, rolloutWorkflowId } from '../../workflows/definitions.js';
import { PtcRollout } from '../../workflows/visibility.js';
import type { rolloutWorkflow } from '../../workflows/rollout-workflow.js';
import { AgentClient } from '../../transport/agent-client.js';
import { simHostDir } from '../agent-runner.js';
import { openNats, openTemporal, readHostInventories } from '../clients.js';
import { storeRolloutInput } from '../../transport/rollout-hosts.js';
import { newRunId } from './apply.js';
import { DevStack } from '../dev-stack.js';
import { errorInfo } from '../failures.js';
import { newOpSuffix, parseOperationInput } from './attach.js';
import { waitForOperation } from '../operations.js';
import { submitOperation } from '../../transport/host-operations.js';
import { readPlanFile, renderPlan } from './plan.js';
import { followRollout } from './rollout.js';
import { describeRolloutReport } from './rollout-lines.js';

export interface DemoOptions {
  hosts: number;
  keep: boolean;
  /** Both servers with mutual TLS (`ptctl demo --tls`). */
  tls?: boolean;
}

const DEVICE = '0000:09:00.0';
const GUEST = 'vm-hvm';
const UPLINK = '0000:01:00.0';

/** What the demo expects of each host, so that its verdict is the state read back, not exit codes. */
type Expectation = 'attached' | 'refused' | 'compensated';

const say = (line: string): void => void process.stdout.write(`${line}\n`);

/** The showcase fleet: mostly healthy RHEL 5.4 hosts, plus one of each situation ptctl must handle. */
function demoFleet(count: number): { fleet: FleetFileInput; roles: Map<string, { profile: string; role: string; expect: Expectation }> } {
  const ids = Array.from({ length: count }, (_, i) => `sim-${String(i + 1).padStart(2, '0')}`);
  const roles = new Map<string, { profile: string; role: string; expect: Expectation }>();
  const hosts: NonNullable<FleetFileInput['hosts']> = {};
  ids.forEach((id, i) => {
    // Special hosts sit after the canary (sim-01), spread over the fleet.
    const special = count >= 4 ? { [Math.floor(count / 4)]: 'noiommu', [Math.floor(count / 2)]: 'rebootonly', [Math.floor((3 * count) / 4)]: 'faulty' }[i] : undefined;
    if (special === 'noiommu') {
      hosts[id] = { profile: 'rhel5-xen-noiommu' };
      roles.set(id, { profile: 'rhel5-xen-noiommu', role: 'no IOMMU: HVM passthrough refused', expect: 'refused' });
    } else if (special === 'rebootonly') {
      hosts[id] = { profile: 'rhel5-xen-rebootonly', faults: { rebootMs: 2000 } };
      roles.set(id, { profile: 'rhel5-xen-rebootonly', role: 'binds only at boot: reboots', expect: 'attached' });
    } else if (special === 'faulty') {
      hosts[id] = { faults: { attachFailureProbability: 1 } };
      roles.set(id, { profile: 'rhel5-xen', role: 'injected attach failure', expect: 'compensated' });
    } else {
      hosts[id] = {};
      roles.set(id, { profile: 'rhel5-xen', role: i === 0 ? 'canary' : '', expect: 'attached' });
    }
  });
  return { fleet: { hosts }, roles };
}

const PLAN = (count: number): string =>
  [
    'name: demo',
    'hosts:',
    '  idPattern: "sim-*"',
    'assignments:',
    `  - device: "${DEVICE}"`,
    `    guest: ${GUEST}`,
    'allowReboot: true',
    'rollout:',
    '  canary: 1',
    `  maxParallel: ${Math.min(4, Math.max(1, count - 1))}`,
    '  maxFailures: 1',
    '',
  ].join('\n');

/**
 * `ptctl demo`: the product on an embedded simulated fleet. Brings up the whole stack in a temporary
 * dir, shows the plan, rolls it out (canary first, then in parallel, with live progress) through
 * Temporal and the host agents, retries the failed host under a tight throttle, shows the uplink
 * refused, then reads every host back (agent inventory and the host's own files). Exits 0 only if each
 * host is in the state the plan and its situation call for.
 */
export async function demoCommand(opts: DemoOptions): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'ptctl-demo-'));
  const { fleet, roles } = demoFleet(opts.hosts);
  const ids = [...roles.keys()];
  say(`ptctl demo: ${ids.length} simulated Xen hosts, state in ${dir}`);
  const started = Date.now();
  const stack = await DevStack.start({ dir, simHosts: ids, fleet, heartbeatMs: 2000, agentTimeoutMs: 3000, tls: opts.tls === true, onProgress: (l) => say(`  ✓ ${l}`) });
  let failed = false;
  try {
    const { client, close } = await openTemporal(stack.connection);
    const nc = await openNats(stack.connection, 'ptctl-demo');
    try {
      const planFile = join(dir, 'plan.yaml');
      await writeFile(planFile, PLAN(ids.length));
      const plan = await readPlanFile(planFile);
      const before = await snapshot(dir, ids);
      const resolution = resolvePlan(plan, await readHostInventories(nc));
      say(`\n$ ptctl plan plan.yaml   (${DEVICE}, bnx2 eth2 → ${GUEST} on every host)`);
      say([...renderPlan(resolution)].join(''));

      const input = await storeRolloutInput(nc, toRolloutInput(plan, resolution), `demo.${newRunId()}`);
      say(`\n$ ptctl apply plan.yaml --wait   (canary ${input.options.canary}, max parallel ${input.options.maxParallel}, max failures ${JSON.stringify(input.options.maxFailures)})`);
      await client.workflow.start<typeof rolloutWorkflow>('rolloutWorkflow', { taskQueue: TASK_QUEUE, workflowId: rolloutWorkflowId('demo'), args: [input], typedSearchAttributes: [{ key: PtcRollout, value: 'demo' }] });
      const report = await followRollout(client, rolloutWorkflowId('demo'), false);
      say(describeRolloutReport(report));

      const faulty = ids.find((id) => roles.get(id)?.expect === 'compensated');
      let throttledOk = true;
      if (faulty) {
        say(`\n$ ptctl attach --host ${faulty} --device ${DEVICE} --guest ${GUEST} --throttle-budget 1 --deadline 5s --wait   (retry the failed host, carefully)`);
        const retry = parseOperationInput('attach', { host: faulty, device: DEVICE, guest: GUEST, throttleBudget: '1', deadline: '5s', wait: true, json: false });
        const outcome = await submitOperation(client, retry).then(() => waitForOperation(client, faulty, retry.workflowId)).then(() => null, (err: unknown) => errorInfo(err));
        throttledOk = outcome?.code === ErrorCode.THROTTLED;
        say(outcome && throttledOk ? `  ✓ ${outcome.code}: ${outcome.message}` : `  ✗ expected THROTTLED, got ${outcome ? outcome.code : 'success'}`);
      }

      const first = ids[0] ?? 'sim-01';
      say(`\n$ ptctl attach --host ${first} --device ${UPLINK} --guest ${GUEST} --wait   (eth0, the management uplink)`);
      const uplinkOp = parseOperationInput('attach', { host: first, device: UPLINK, guest: GUEST, wait: true, json: false });
      const refused = await submitOperation(client, uplinkOp).then(() => waitForOperation(client, first, uplinkOp.workflowId)).then(() => null, (err: unknown) => errorInfo(err));
      const refusalOk = refused?.code === ErrorCode.DEVICE_IN_USE;
      say(refusalOk ? `  ✓ ${refused.code}: ${refused.message}` : `  ✗ expected DEVICE_IN_USE, got ${refused ? refused.code : 'success'}`);

      say('\nreading every host back from its agent and its files …');
      const agents = new AgentClient(nc);
      const table = new Table({ head: ['HOST', 'SITUATION', 'EXPECTED', 'DRIVER', 'hide=', `${GUEST} live`, 'config', 'BOOTS', 'CHECK'], style: { head: [], border: [] } });
      const after = await snapshot(dir, ids);
      let allOk = true;
      for (const hostId of ids) {
        const role = roles.get(hostId);
        const inv: HostInventory = (await agents.call(hostId, 'inspect', {}, { opId: `demo-readback/${hostId}/${newOpSuffix()}`, timeoutMs: 10_000 })).result;
        const dev = inv.devices.find((d) => d.bdf === DEVICE);
        const guest = inv.guests.find((g) => g.name === GUEST);
        const files = after.get(hostId) ?? { modprobe: '', guest: '', boots: 0 };
        const hide = files.modprobe.split('\n').includes(`options pciback hide=(${DEVICE})`);
        const live = guest?.liveDevices.includes(DEVICE) ?? false;
        const config = files.guest.split('\n').includes(`pci = [ '${DEVICE}' ]`);
        const untouched = files.modprobe === before.get(hostId)?.modprobe && files.guest === before.get(hostId)?.guest;
        const ok =
          role?.expect === 'attached'
            ? dev?.driver === 'pciback' && hide && live && config
            : dev?.driver === 'bnx2' && !live && untouched;
        allOk &&= ok;
        table.push([hostId, role?.role || role?.profile || '', role?.expect ?? '', dev?.driver ?? '-', hide ? 'yes' : 'no', live ? 'yes' : 'no', config ? 'yes' : 'no', String(files.boots), ok ? 'ok' : 'WRONG']);
      }
      say(table.toString());
      const expectedFailures = [...roles.values()].filter((r) => r.expect === 'compensated').length;
      failed = !allOk || !refusalOk || !throttledOk || report.counts.failed !== expectedFailures || report.stopReason !== null;
    } finally {
      await nc.close();
      await close();
    }
  } finally {
    await stack.stop();
    if (!opts.keep) await rm(dir, { recursive: true, force: true });
  }
  if (failed) throw new PtcError(ErrorCode.OPERATION_FAILED, 'the demo read back a state the plan does not call for (see the table above)');
  const all = [...roles.values()];
  const attached = all.filter((r) => r.expect === 'attached').length;
  const also = [
    all.some((r) => r.profile === 'rhel5-xen-rebootonly') ? 'one host bound by rebooting' : null,
    all.some((r) => r.expect === 'refused') ? 'the host without IOMMU refused' : null,
    all.some((r) => r.expect === 'compensated') ? 'the injected failure undone and its retry throttled' : null,
    'the uplink refused',
  ].filter((s): s is string => s !== null);
  say(`\ndemo passed in ${((Date.now() - started) / 1000).toFixed(1)} s: ${DEVICE} is on pciback and attached to ${GUEST} on ${attached} hosts; ${also.join(', ')}.${opts.keep ? ` State kept in ${dir}` : ''}`);
}

/** The files that matter per host, plus the simulated kernel's boot count. */
async function snapshot(dir: string, ids: readonly string[]): Promise<Map<string, { modprobe: string; guest: string; boots: number }>> {
  const out = new Map<string, { modprobe: string; guest: string; boots: number }>();
  for (const id of ids) {
    const root = simHostDir(dir, id);
    const state = JSON.parse(await readFile(join(root, 'sim-state.json'), 'utf8')) as { bootCount: number };
    out.set(id, { modprobe: await readFile(join(root, 'etc', 'modprobe.conf'), 'utf8'), guest: await readFile(join(root, 'etc', 'xen', GUEST), 'utf8'), boots: state.bootCount });
  }
  return out;
}
