import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Table from 'cli-table3';
import type { PassthroughResult } from '../../schemas/passthrough.js';
import { AgentClient } from '../../transport/agent-client.js';
import { ErrorCode, PtcError } from '../../schemas/errors.js';
import { simHostDir } from '../agent-runner.js';
import { openNats, openTemporal } from '../clients.js';
import { DevStack } from '../dev-stack.js';
import { errorInfo } from '../output.js';
import { newOpSuffix, parseOperationInput } from './attach.js';
import { submitOperation, waitForOperation } from '../operations.js';

export interface DemoOptions {
  hosts: number;
  keep: boolean;
}

const DEVICE = '0000:09:00.0';
const GUEST = 'vm-hvm';
const UPLINK = '0000:01:00.0';

interface HostCheck {
  hostId: string;
  driver: string;
  hideLine: boolean;
  live: boolean;
  config: boolean;
  ok: boolean;
}

const say = (line: string): void => void process.stdout.write(`${line}\n`);

/**
 * `ptctl demo`: brings up the whole stack in a temporary dir, attaches 0000:09:00.0 to vm-hvm on every
 * simulated host through Temporal and the agents, shows that the host's uplink is refused, then reads
 * the state back from the agents and the hosts' files. Exits 0 only if that state is right.
 */
export async function demoCommand(opts: DemoOptions): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'ptctl-demo-'));
  say(`ptctl demo: ${opts.hosts} simulated RHEL 5.4 / Xen hosts, state in ${dir}`);
  const started = Date.now();
  const stack = await DevStack.start({ dir, simHosts: opts.hosts, heartbeatMs: 2000, onProgress: (l) => say(`  ✓ ${l}`) });
  let failed = false;
  try {
    const { client, close } = await openTemporal(stack.connection);
    const nc = await openNats(stack.connection, 'ptctl-demo');
    try {
      say(`\nattaching ${DEVICE} (bnx2, eth2) to ${GUEST} on ${stack.hosts.join(', ')} …`);
      const runs = await Promise.all(
        stack.hosts.map(async (hostId) => {
          const op = parseOperationInput('attach', { host: hostId, device: DEVICE, guest: GUEST, wait: true, json: false });
          try {
            await submitOperation(client, op);
            const result: PassthroughResult = await waitForOperation(client, hostId, op.workflowId);
            say(`  ✓ ${hostId}: ${result.steps.map((s) => s.step).join(' → ')} (strategy ${result.strategy ?? '-'}, attach ${result.mode ?? '-'})`);
            return { hostId, result, error: null };
          } catch (err) {
            const info = errorInfo(err);
            say(`  ✗ ${hostId}: ${info.code}: ${info.message}`);
            return { hostId, result: null, error: info };
          }
        }),
      );

      const first = stack.hosts[0] ?? 'sim-1';
      say(`\nasking for ${UPLINK} (eth0, the management uplink) on ${first}: ptctl must refuse …`);
      const uplinkFile = join(simHostDir(dir, first), 'etc', 'modprobe.conf');
      const before = await readFile(uplinkFile, 'utf8');
      const uplinkOp = parseOperationInput('attach', { host: first, device: UPLINK, guest: GUEST, wait: true, json: false });
      const refused = await submitOperation(client, uplinkOp)
        .then(() => waitForOperation(client, first, uplinkOp.workflowId))
        .then(() => null, (err: unknown) => errorInfo(err));
      const unchanged = (await readFile(uplinkFile, 'utf8')) === before;
      const refusalOk = refused?.code === ErrorCode.DEVICE_IN_USE && unchanged;
      say(refusalOk ? `  ✓ refused: ${refused.code}: ${refused.message}; host files unchanged` : `  ✗ expected DEVICE_IN_USE and no change, got ${refused ? refused.code : 'success'} (files unchanged: ${unchanged})`);

      say('\nreading the state back from each agent and each host\'s files …');
      const agents = new AgentClient(nc);
      const checks: HostCheck[] = [];
      for (const { hostId, error } of runs) {
        const inv = (await agents.call(hostId, 'inspect', {}, { opId: `demo-readback/${hostId}/${newOpSuffix()}`, timeoutMs: 10_000 })).result;
        const dev = inv.devices.find((d) => d.bdf === DEVICE);
        const guest = inv.guests.find((g) => g.name === GUEST);
        const root = simHostDir(dir, hostId);
        const modprobe = await readFile(join(root, 'etc', 'modprobe.conf'), 'utf8');
        const guestConf = await readFile(join(root, 'etc', 'xen', GUEST), 'utf8');
        const check = {
          hostId,
          driver: dev?.driver ?? 'none',
          hideLine: modprobe.split('\n').includes(`options pciback hide=(${DEVICE})`) && modprobe.includes(`install bnx2 /sbin/modprobe pciback; /sbin/modprobe --first-time --ignore-install bnx2`),
          live: guest?.liveDevices.includes(DEVICE) ?? false,
          config: guestConf.split('\n').includes(`pci = [ '${DEVICE}' ]`) && (guest?.configDevices.includes(DEVICE) ?? false),
          ok: false,
        };
        check.ok = error === null && check.driver === 'pciback' && check.hideLine && check.live && check.config;
        checks.push(check);
      }
      const table = new Table({ head: ['HOST', 'DEVICE', 'DRIVER', 'modprobe.conf hide=', `${GUEST} live`, `${GUEST} config`, 'RESULT'], style: { head: [], border: [] } });
      const mark = (b: boolean): string => (b ? 'yes' : 'NO');
      for (const c of checks) table.push([c.hostId, DEVICE, c.driver, mark(c.hideLine), mark(c.live), mark(c.config), c.ok ? 'ok' : 'WRONG']);
      say(table.toString());
      failed = !refusalOk || checks.some((c) => !c.ok);
    } finally {
      await nc.close();
      await close();
    }
  } finally {
    await stack.stop();
    if (!opts.keep) await rm(dir, { recursive: true, force: true });
  }
  if (failed) throw new PtcError(ErrorCode.OPERATION_FAILED, 'the demo read back a wrong state (see the table above)');
  say(`\ndemo passed in ${((Date.now() - started) / 1000).toFixed(1)} s: ${DEVICE} is on pciback and attached to ${GUEST} on all ${opts.hosts} hosts; the uplink was refused.${opts.keep ? ` State kept in ${dir}` : ''}`);
}
