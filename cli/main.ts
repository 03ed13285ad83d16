import { Command, Option } from 'commander';
import { z } from 'zod';
import { SimFaults } from '../agent/sim/sim-host.js';
import { readFleetFile } from '../agent/sim/fleet-file.js';
import { ErrorCode, PtcError, describeZodError } from '../schemas/errors.js';
import { HostId } from '../schemas/ids.js';
import { runSimAgents } from './agent-runner.js';
import { runLinuxAgent } from './linux-agent.js';
import { operationCommand } from './commands/attach.js';
import { statusCommand } from './commands/status.js';
import { controlCommand } from './commands/rollout.js';
import { demoCommand } from './commands/demo.js';
import { devCommand, devInitCommand } from './commands/dev.js';
import { hostsCommand } from './commands/hosts.js';
import { planCommand } from './commands/plan.js';
import { applyCommand } from './commands/apply.js';
import { windowCreateCommand, windowDeleteCommand, windowListCommand } from './commands/window.js';
import { DEFAULT_STATE_DIR, resolveConnection } from './connection.js';
import { reportError } from './output.js';
import { runWorker } from './worker.js';

/** Parses CLI input with a schema; every problem is reported at once, before anything is contacted. */
function parseInput<T extends z.ZodType>(schema: T, value: unknown, what: string): z.infer<T> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new PtcError(ErrorCode.INVALID_INPUT, `${what}: ${describeZodError(parsed.error, what)}`);
  return parsed.data;
}

const count = (max: number) => z.coerce.number().int().min(0).max(max);

function connectionOptions(cmd: Command): Command {
  return cmd
    .option('--dir <dir>', `state dir of a running \`ptctl dev\` (default ${DEFAULT_STATE_DIR})`)
    .option('--nats-url <url>', 'NATS server URL (env PTC_NATS_URL)')
    .option('--nats-creds <file>', 'nkey seed file of the orchestrator identity (env PTC_NATS_CREDS)')
    .option('--temporal-address <host:port>', 'Temporal frontend (env PTC_TEMPORAL_ADDRESS)')
    .option('--namespace <ns>', 'Temporal namespace (env PTC_TEMPORAL_NAMESPACE)')
    .option('--json', 'machine-readable output', false);
}

/** Commands that finish without an error but with a verdict (plan with refusals, a failed rollout) set this. */
export interface CommandOutcome {
  exitCode: number;
}

export function buildProgram(outcome: CommandOutcome = { exitCode: 0 }): Command {
  const program = new Command('ptctl')
    .description('Durable PCI passthrough for virtualization fleets')
    .showHelpAfterError('(run `ptctl --help` for usage)')
    .exitOverride();

  program
    .command('dev')
    .description('run nats-server, the Temporal dev server, a worker and simulated agents until Ctrl-C')
    .option('--dir <dir>', 'state dir (credentials, SQLite, JetStream, simulated hosts)', DEFAULT_STATE_DIR)
    .option('--sim-hosts <n>', 'number of simulated hosts', '3')
    .option('--profile <name>', 'simulated host profile', 'rhel5-xen')
    .option('--heartbeat <ms>', 'agent inventory heartbeat', '5000')
    .option('--fleet <file>', 'per-host profiles and faults (YAML or JSON); its hosts are the simulated hosts')
    .option('--init-only', 'only write the NATS credentials and authorization config into --dir, then exit (for servers run elsewhere: docker-compose.yml)', false)
    .action(async (o: { dir: string; simHosts: string; profile: string; heartbeat: string; fleet?: string; initOnly: boolean }) => {
      const fleet = o.fleet ? await readFleetFile(o.fleet) : undefined;
      const fleetHosts = fleet ? Object.keys(fleet.hosts) : [];
      const simHosts = fleetHosts.length > 0 ? fleetHosts : parseInput(count(2000), o.simHosts, '--sim-hosts');
      if (o.initOnly) {
        await devInitCommand({ dir: o.dir, simHosts });
        return;
      }
      await devCommand({
        dir: o.dir,
        fleet,
        simHosts,
        profile: o.profile,
        heartbeatMs: parseInput(z.coerce.number().int().min(200).max(600_000), o.heartbeat, '--heartbeat'),
      });
    });

  program
    .command('demo')
    .description('bring up the stack in a temp dir, attach a NIC to a guest on simulated hosts, check the result')
    .option('--hosts <n>', 'number of simulated hosts (at least 4 for every situation)', '12')
    .option('--keep', 'keep the temp dir for inspection', false)
    .action(async (o: { hosts: string; keep: boolean }) => {
      await demoCommand({ hosts: parseInput(count(50).min(1), o.hosts, '--hosts'), keep: o.keep });
    });

  connectionOptions(program.command('hosts').description('list hosts and their PCI devices from the agents\' inventory'))
    .option('--host <id>', 'only this host')
    .action(async (o: Record<string, unknown>) => {
      await hostsCommand({ ...connectionFlags(o), host: o.host as string | undefined, json: o.json === true });
    });

  // `ptctl plan FILE`: planCommand returns the exit code (0, or 2 when the plan has refusals or unknown hosts).
  connectionOptions(program.command('plan').description('show what a plan file would change, host by host, from live inventory; changes nothing').argument('<file>', 'plan file (YAML or JSON)')).action(
    async (file: string, o: Record<string, unknown>) => {
      outcome.exitCode = await planCommand({ ...connectionFlags(o), file, json: o.json === true });
    },
  );

  connectionOptions(program.command('apply').description('roll a plan out across the fleet: canaries first, then in parallel, stopping on failures').argument('<file>', 'plan file (YAML or JSON)'))
    .option('--name <name>', 'rollout name (default: the plan\'s name)')
    .option('--canary <n>', 'hosts done first, one at a time; a failure among them stops the rollout')
    .option('--max-parallel <n>', 'hosts at once after the canaries')
    .option('--max-failures <n|p%>', 'stop launching once more hosts than this failed (e.g. 2 or 10%)')
    .option('--wait', 'follow the rollout to its end, with live progress', false)
    .action(async (file: string, o: Record<string, unknown>) => {
      const str = (k: string): string | undefined => (typeof o[k] === 'string' ? o[k] : undefined);
      outcome.exitCode = await applyCommand({
        ...connectionFlags(o),
        file,
        name: str('name'),
        canary: str('canary'),
        maxParallel: str('maxParallel'),
        maxFailures: str('maxFailures'),
        wait: o.wait === true,
        json: o.json === true,
      });
    });

  const operationFlags = (cmd: Command): Command =>
    connectionOptions(cmd)
      .requiredOption('--host <id>', 'host id')
      .requiredOption('--device <bdf>', 'PCI address, e.g. 0000:09:00.0')
      .requiredOption('--guest <name>', 'guest (domain) name')
      .option('--deadline <dur>', 'how long it may wait for a throttle slot or a reboot (e.g. 30m)')
      .option('--throttle-budget <n>', 'hotplugs allowed per device per window (default 32, at most 256)')
      .option('--throttle-window <dur>', 'the throttle\'s sliding window (default 10m)')
      .option('--wait', 'wait for the outcome, showing progress', false);
  const operationAction = (kind: 'attach' | 'detach') => async (o: Record<string, unknown>) => {
    const str = (k: string): string | undefined => (typeof o[k] === 'string' ? o[k] : undefined);
    await operationCommand(kind, {
      ...connectionFlags(o),
      host: str('host'),
      device: str('device'),
      guest: str('guest'),
      strategy: str('strategy'),
      allowInsecurePv: o.allowInsecurePv === true,
      deadline: str('deadline'),
      throttleBudget: str('throttleBudget'),
      throttleWindow: str('throttleWindow'),
      wait: o.wait === true,
      json: o.json === true,
    });
  };

  operationFlags(program.command('attach').description('pass a host PCI device through to a guest'))
    .addOption(new Option('--strategy <s>', 'how to bind the device to pciback').choices(['auto', 'dynamic', 'reload', 'reboot']).default('auto'))
    .option('--allow-insecure-pv', 'allow a PV guest (it can reach dom0 memory through DMA)', false)
    .action(operationAction('attach'));

  operationFlags(program.command('detach').description('give a passed-through device back to its host')).action(operationAction('detach'));

  connectionOptions(program.command('status').description('show where an operation is, or how it ended').argument('<id>', 'operation id, e.g. op/sim-1/0000:09:00.0/…')).action(
    async (id: string, o: Record<string, unknown>) => {
      await statusCommand({ ...connectionFlags(o), id, json: o.json === true });
    },
  );

  for (const action of ['pause', 'resume', 'cancel'] as const) {
    connectionOptions(program.command(action).description(`${action} a rollout${action === 'cancel' ? ' (in-flight hosts compensate) or an operation' : ''}`).argument('<id>', 'rollout/<name> or op/<host>/<bdf>/<n>')).action(
      async (id: string, o: Record<string, unknown>) => {
        await controlCommand(action, { ...connectionFlags(o), id, json: o.json === true });
      },
    );
  }

  const window = program.command('window').description('maintenance windows: Temporal Schedules that run a plan\'s remaining work');
  connectionOptions(window.command('create').description('create a window').argument('<name>', 'window name'))
    .requiredOption('--cron <expr>', '5-field cron expression, e.g. "0 2 * * 6"')
    .option('--timezone <tz>', 'IANA time zone of the cron expression', 'UTC')
    .requiredOption('--duration <dur>', 'how long the window stays open, e.g. 4h')
    .option('--cutoff <dur>', 'no host starts this close to the end (default 10m)')
    .option('--expected-host <dur>', 'how long one host is expected to take (default 10m)')
    .requiredOption('--plan <file>', 'plan file (YAML or JSON)')
    .action(async (name: string, o: Record<string, unknown>) => {
      const str = (k: string): string | undefined => (typeof o[k] === 'string' ? o[k] : undefined);
      await windowCreateCommand({ ...connectionFlags(o), name, cron: str('cron') ?? '', timezone: str('timezone') ?? 'UTC', duration: str('duration') ?? '', cutoff: str('cutoff'), expectedHost: str('expectedHost'), plan: str('plan') ?? '', json: o.json === true });
    });
  connectionOptions(window.command('list').description('list windows and their next opening')).action(async (o: Record<string, unknown>) => {
    await windowListCommand({ ...connectionFlags(o), json: o.json === true });
  });
  connectionOptions(window.command('delete').description('delete a window').argument('<name>', 'window name')).action(async (name: string, o: Record<string, unknown>) => {
    await windowDeleteCommand({ ...connectionFlags(o), name, json: o.json === true });
  });

  connectionOptions(program.command('worker').description('run the Temporal worker (workflows + activities)')).action(async (o: Record<string, unknown>) => {
    await runWorker(await resolveConnection(connectionFlags(o)));
  });

  program
    .command('agent')
    .description('run the host agent')
    .addOption(new Option('--backend <b>', 'host backend').choices(['linux', 'sim']).makeOptionMandatory())
    .option('--host-id <id>', 'host id (repeat for several simulated hosts in one process)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--dir <dir>', 'sim: folder holding hosts/<hostId>/', DEFAULT_STATE_DIR)
    .option('--creds-dir <dir>', 'sim: folder with one host-<id>.nk nkey seed per host')
    .option('--nats-url <url>', 'NATS server URL (env PTC_NATS_URL)')
    .option('--profile <name>', 'sim: host profile for hosts created now')
    .option('--sim-faults <json>', 'sim: fault injection, e.g. {"attachFailureProbability":0.5}')
    .option('--fleet <file>', 'sim: per-host profiles and faults (YAML or JSON)')
    .option('--heartbeat <ms>', 'inventory heartbeat', '10000')
    .option('--nats-creds <file>', 'linux: this host\'s nkey seed file (env PTC_NATS_CREDS)')
    .option('--root <dir>', 'linux: root of /sys, /proc and /etc (a fixture tree in tests)', '/')
    .option('--state-dir <dir>', 'linux: where the journal and records live', '/var/lib/ptctl')
    .option('--toolstack <t>', 'linux: auto | xl | xm', 'auto')
    .action(async (o: { backend: string; hostId: string[]; dir: string; credsDir?: string; natsUrl?: string; natsCreds?: string; root: string; stateDir: string; toolstack: string; profile?: string; simFaults?: string; fleet?: string; heartbeat: string }) => {
      const hostIds = o.hostId.map((h) => parseInput(HostId, h, '--host-id'));
      const natsUrl = o.natsUrl ?? process.env.PTC_NATS_URL;
      if (!natsUrl) throw new PtcError(ErrorCode.INVALID_INPUT, '--nats-url (or PTC_NATS_URL) is required');
      if (o.backend === 'linux') {
        const [hostId, ...more] = hostIds;
        if (!hostId || more.length > 0) throw new PtcError(ErrorCode.INVALID_INPUT, 'the linux backend runs exactly one --host-id (this host)');
        const natsCreds = o.natsCreds ?? process.env.PTC_NATS_CREDS;
        if (!natsCreds) throw new PtcError(ErrorCode.INVALID_INPUT, '--nats-creds (or PTC_NATS_CREDS): this host\'s nkey seed file is required');
        await runLinuxAgent({
          hostId,
          natsUrl,
          natsCreds,
          root: o.root,
          stateDir: o.stateDir,
          toolstack: parseInput(z.enum(['auto', 'xl', 'xm']), o.toolstack, '--toolstack'),
          heartbeatMs: parseInput(z.coerce.number().int().min(200), o.heartbeat, '--heartbeat'),
        });
        return;
      }
      let faults: unknown = {};
      if (o.simFaults) {
        try {
          faults = JSON.parse(o.simFaults);
        } catch {
          throw new PtcError(ErrorCode.INVALID_INPUT, '--sim-faults must be JSON');
        }
      }
      await runSimAgents({
        dir: o.dir,
        hostIds,
        natsUrl,
        credsDir: o.credsDir ?? `${o.dir}/creds`,
        heartbeatMs: parseInput(z.coerce.number().int().min(200), o.heartbeat, '--heartbeat'),
        profile: o.profile,
        faults: parseInput(SimFaults.partial(), faults, '--sim-faults'),
        fleet: o.fleet ? await readFleetFile(o.fleet) : undefined,
      });
    });

  return program;
}

function connectionFlags(o: Record<string, unknown>): { dir?: string; natsUrl?: string; natsCreds?: string; temporalAddress?: string; namespace?: string } {
  const pick = (k: string): string | undefined => (typeof o[k] === 'string' ? o[k] : undefined);
  return { dir: pick('dir'), natsUrl: pick('natsUrl'), natsCreds: pick('natsCreds'), temporalAddress: pick('temporalAddress'), namespace: pick('namespace') };
}

/** The one place that turns errors into exit codes; nothing below calls process.exit. */
export async function main(argv: readonly string[]): Promise<number> {
  const outcome: CommandOutcome = { exitCode: 0 };
  const program = buildProgram(outcome);
  const json = argv.includes('--json');
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return outcome.exitCode;
  } catch (err) {
    if (err instanceof Error && 'exitCode' in err && 'code' in err && String(err.code).startsWith('commander.')) {
      const code = String(err.code);
      if (code === 'commander.helpDisplayed' || code === 'commander.version' || code === 'commander.help') return 0;
      // commander already printed its message; input errors exit 2.
      return 2;
    }
    return reportError(err, json);
  }
}
