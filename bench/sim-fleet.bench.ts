/**
 * How many simulated hosts one agents process holds (DESIGN §5: 1,000 hosts must fit on this machine).
 * Starts a real nats-server and the agents process twice, with a small baseline fleet and a large one,
 * and prints start time and resident memory per host for both and their ratio. Run: npm run bench.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DevStack } from '../cli/dev-stack.js';

async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 'NaN');
  return kb / 1024;
}

async function measure(hosts: number): Promise<{ hosts: number; startS: number; rssMiB: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'ptctl-bench-'));
  const started = Date.now();
  const stack = await DevStack.start({ dir, simHosts: hosts, temporal: false, heartbeatMs: 30_000 });
  const startS = (Date.now() - started) / 1000;
  try {
    const pid = stack.agentsPid;
    if (pid === undefined) throw new Error('agents process not running');
    return { hosts, startS, rssMiB: await rssMiB(pid) };
  } finally {
    await stack.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

const large = Number(process.argv[2] ?? 1000);
const baseline = await measure(20);
const big = await measure(large);
const perHost = (m: { hosts: number; rssMiB: number }): number => m.rssMiB / m.hosts;
for (const m of [baseline, big]) {
  process.stdout.write(`${String(m.hosts).padStart(5)} hosts: ready in ${m.startS.toFixed(1)} s, agents process RSS ${m.rssMiB.toFixed(0)} MiB (${(perHost(m) * 1024).toFixed(0)} KiB/host)\n`);
}
process.stdout.write(`ratio ${large}/20: memory per host ×${(perHost(big) / perHost(baseline)).toFixed(2)}, start time per host ×${(big.startS / big.hosts / (baseline.startS / baseline.hosts)).toFixed(2)}\n`);
