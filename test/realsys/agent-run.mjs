// The parts of an agent end-to-end run on a real system (test/xen/agent-e2e.mjs, test/kvm/agent-e2e.mjs)
// that do not depend on the hypervisor: tsc + the single-file agent bundle, nats-server on loopback
// with nkey users for the orchestrator and the one host, the overlay with the host's seed and
// settings, waiting for the agent's first inventory, and the end of the run (the guest told to stop
// the agent and power off; the clean-poweroff check).
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { agentCaller, phase, secs } from './harness.mjs';

/** tsc (its errors reported, not fatal) unless noTsc, then scripts/xen/bundle-agent.mjs into agentDir. */
export async function buildAgentBundle(report, { repo, agentDir, noTsc }) {
  if (!noTsc) {
    // tsc emits even when some file has type errors; only a missing agent build stops the run (the
    // type check itself belongs to `npm test`). --no-tsc bundles dist/ as it is.
    const start = Date.now();
    const r = spawnSync(process.execPath, [path.join(repo, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: repo, encoding: 'utf8', timeout: 300_000, killSignal: 'SIGKILL' });
    report.timings.tsc = Date.now() - start;
    if (r.status !== 0) report.note(`tsc reported errors (continuing with what it emitted; \`npm run typecheck\` shows them):\n${(r.stdout + r.stderr).split('\n').slice(0, 5).join('\n')}`);
  }
  if (!existsSync(path.join(repo, 'dist', 'cli', 'linux-agent.js'))) {
    report.check('build', false, 'dist/cli/linux-agent.js missing: run `npm run build`');
    await report.finish(1);
  }
  if (!phase(report, 'bundle', [process.execPath, path.join(repo, 'scripts', 'xen', 'bundle-agent.mjs'), agentDir], { limitSec: 120, cwd: repo })) await report.finish(1);
}

/**
 * nats-server on 127.0.0.1 (DevStack with JetStream, no Temporal, no simulated agent) with nkey users
 * for the orchestrator and hostId; a fresh store in stackDir. Returns the orchestrator's connection,
 * the hosts KV bucket, `call` (AgentClient as the orchestrator) and the port to relay to.
 */
export async function startHostNats(report, { repo, stackDir, hostId, name }) {
  const dist = (p) => import(pathToFileURL(path.join(repo, 'dist', p)).href);
  const { DevStack } = await dist('cli/dev-stack.js');
  const { connectNats } = await dist('transport/nats-connection.js');
  const { AgentClient } = await dist('transport/agent-client.js');
  const { HOSTS_BUCKET } = await dist('schemas/agent-protocol.js');
  const { Kvm } = await import('@nats-io/kv');
  rmSync(stackDir, { recursive: true, force: true });
  let stack;
  try {
    const start = Date.now();
    stack = await DevStack.start({ dir: stackDir, simHosts: [hostId], temporal: false, agents: false, onProgress: report.note });
    report.timings.nats = Date.now() - start;
  } catch (err) {
    report.check('nats', false, `could not start nats-server: ${err.message}`);
    await report.finish(1);
  }
  report.cleanups.push(() => stack.stop());
  const natsPort = Number(new URL(stack.connection.natsUrl.replace(/^nats:/, 'http:')).port);
  const nc = await connectNats({ servers: stack.connection.natsUrl, seedFile: stack.connection.natsCreds, name });
  report.cleanups.push(() => nc.close());
  const kv = await new Kvm(nc).open(HOSTS_BUCKET);
  const call = agentCaller(new AgentClient(nc), hostId, `${name}-${randomBytes(3).toString('hex')}`);
  return { natsPort, kv, call, HOSTS_BUCKET };
}

/**
 * A fresh overlay directory: /etc/ptctl/host.creds (the host's seed, 0600), /etc/ptctl/agent.env
 * (HOST_ID NATS_URL STEP_ADDR HEARTBEAT_MS) and the scenario as /opt/ptctl-test/scenario.sh.
 */
export async function agentOverlay({ repo, overlay, stackDir, hostId, natsFwd, stepFwd, scenario }) {
  const { hostCredsFile } = await import(pathToFileURL(path.join(repo, 'dist', 'cli', 'nats-creds.js')).href);
  rmSync(overlay, { recursive: true, force: true });
  for (const d of ['etc/ptctl', 'opt/ptctl-test']) mkdirSync(path.join(overlay, d), { recursive: true });
  copyFileSync(hostCredsFile(path.join(stackDir, 'creds'), hostId), path.join(overlay, 'etc/ptctl/host.creds'));
  chmodSync(path.join(overlay, 'etc/ptctl/host.creds'), 0o600);
  writeFileSync(path.join(overlay, 'etc/ptctl/agent.env'), `HOST_ID=${hostId}\nNATS_URL=nats://${natsFwd}\nSTEP_ADDR=${stepFwd}\nHEARTBEAT_MS=5000\n`);
  copyFileSync(scenario, path.join(overlay, 'opt/ptctl-test/scenario.sh'));
  chmodSync(path.join(overlay, 'opt/ptctl-test/scenario.sh'), 0o755);
}

/** The agent's first inventory in the hosts bucket (the run's store is fresh); null after ms or QEMU's exit. */
export async function firstInventory(kv, hostId, con, ms = 400_000) {
  const until = Date.now() + ms;
  while (Date.now() < until && !con.gone()) {
    const e = await kv.get(hostId).catch(() => null);
    if (e?.operation === 'PUT') return e.json();
    await new Promise((r) => setTimeout(r, 1000));
  }
  return null;
}

/**
 * Runs scenario() until it ends or QEMU exits, then tells the guest `done` (stop the agent, power off)
 * and judges clean-poweroff; finishes the report.
 */
export async function runScenario(report, { con, steps, scenario, timeoutSec, qemuBin, who }) {
  for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => { report.note(`${sig}: stopping QEMU and nats-server`); void report.finish(1); });
  let scenarioError = null;
  await Promise.race([scenario().catch((err) => { scenarioError = err; }), con.exit]);
  if (scenarioError) report.check('driver', false, `host driver threw: ${scenarioError.stack ?? scenarioError}`);
  if (!con.gone()) {
    steps.send('done');
    const bye = setTimeout(() => con.kill(), 90_000);
    await con.exit;
    clearTimeout(bye);
  }
  report.timings.boot = Date.now() - con.started;
  const exit = await con.exit;
  if (exit.error) report.check('qemu', false, `${qemuBin} did not start: ${exit.error.message}`);
  const stopped = con.lines.some((l) => /^@@PTC agent-stopped/.test(l));
  const done = con.lines.some((l) => /^@@PTC init-done/.test(l));
  report.check('clean-poweroff', !con.timedOut() && done && stopped && exit.code === 0, con.timedOut() ? `QEMU killed after ${timeoutSec}s` : `agent ${stopped ? 'stopped' : 'not stopped'}, ${who} ${done ? 'reached poweroff -f' : 'never finished /init'}, QEMU exit ${exit.code ?? exit.signal}`);
  await report.finish(undefined, Object.entries(con.seenAt).map(([k, v]) => `${k} +${secs(v)}s`));
}
