import { Command, Option } from 'commander';
import { z } from 'zod';
import { SimFaults } from '../agent/sim/sim-host.js';
import { readFleetFile } from '../agent/sim/fleet-file.js';
import { ErrorCode, PtcError, describeZodError } from '../schemas/errors.js';
import { HostId } from '../schemas/ids.js';
import { EventKind } from '../schemas/agent-protocol.js';
import { runSimAgents } from './agent-runner.js';
import { runLinuxAgent } from './linux-agent.js';
import { operationCommand } from './commands/attach.js';
import { statusCommand } from './commands/status.js';
import { controlCommand } from './commands/rollout.js';
import { demoCommand } from './commands/demo.js';
import { devCommand } from './commands/dev.js';
import { hostsCommand } from './commands/hosts.js';
import { eventsCommand } from './commands/events.js';
import { planCommand } from './commands/plan.js';
import { applyCommand } from './commands/apply.js';
import { windowCreateCommand, windowDeleteCommand, windowListCommand } from './commands/window.js';
import { type ConnectionFlags, DEFAULT_STATE_DIR, natsTlsFromEnv, resolveConnection } from './connection.js';
import { reportError } from './output.js';
import { durationFlag } from './flags.js';
import { runWorker } from './worker.js';
import { DEFAULT_CREDS_DIR, credsAddCommand, credsInitCommand, credsListCommand, credsPushCommand, credsRevokeCommand, credsServerConfigCommand, hostIdentity } from './commands/creds.js';

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
    .option('--config <file>', 'connection settings file, YAML or JSON (env PTC_CONFIG; reference: docs/security.md)')
    .option('--nats-url <url>', 'NATS server URL (env PTC_NATS_URL)')
    .option('--nats-creds <file>', 'credentials file (.creds) of your NATS identity (env PTC_NATS_CREDS; default: the dev stack\'s operator or viewer)')
    .option('--temporal-address <host:port>', 'Temporal frontend (env PTC_TEMPORAL_ADDRESS)')
    .option('--namespace <ns>', 'Temporal namespace (env PTC_TEMPORAL_NAMESPACE)')
    .option('--nats-ca <file>', 'CA of the NATS servers, for a tls:// URL (env PTC_NATS_CA)')
    .option('--nats-cert <file>', 'client certificate for NATS mutual TLS (env PTC_NATS_CERT)')
    .option('--nats-key <file>', 'client key for NATS mutual TLS (env PTC_NATS_KEY)')
    .option('--temporal-tls', 'TLS to Temporal with the system roots (env PTC_TEMPORAL_TLS=1; implied by the options below)')
    .option('--temporal-ca <file>', 'CA of the Temporal frontend (env PTC_TEMPORAL_CA)')
    .option('--temporal-cert <file>', 'client certificate for Temporal mTLS (env PTC_TEMPORAL_CERT)')
    .option('--temporal-key <file>', 'client key for Temporal mTLS (env PTC_TEMPORAL_KEY)')
    .option('--temporal-server-name <name>', 'TLS server name of the Temporal frontend (env PTC_TEMPORAL_SERVER_NAME)')
    .option('--temporal-api-key-file <file>', 'file holding a Temporal Cloud API key (or env PTC_TEMPORAL_API_KEY)')
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
    .option('--tls', 'mutual TLS on NATS and Temporal, with a throw-away CA in <dir>/tls', false)
    .action(async (o: { dir: string; simHosts: string; profile: string; heartbeat: string; fleet?: string; tls: boolean }) => {
      const fleet = o.fleet ? await readFleetFile(o.fleet) : undefined;
      const fleetHosts = fleet ? Object.keys(fleet.hosts) : [];
      await devCommand({
        dir: o.dir,
        fleet,
        simHosts: fleetHosts.length > 0 ? fleetHosts : parseInput(count(2000), o.simHosts, '--sim-hosts'),
        profile: o.profile,
        heartbeatMs: parseInput(z.coerce.number().int().min(200).max(600_000), o.heartbeat, '--heartbeat'),
        tls: o.tls,
      });
    });

  program
    .command('demo')
    .description('bring up the stack in a temp dir, attach a NIC to a guest on simulated hosts, check the result')
    .option('--hosts <n>', 'number of simulated hosts (at least 4 for every situation)', '12')
    .option('--keep', 'keep the temp dir for inspection', false)
    .option('--tls', 'run both servers with mutual TLS', false)
    .action(async (o: { hosts: string; keep: boolean; tls: boolean }) => {
      await demoCommand({ hosts: parseInput(count(50).min(1), o.hosts, '--hosts'), keep: o.keep, tls: o.tls });
    });

  connectionOptions(program.command('hosts').description('list hosts and their PCI devices from the agents\' inventory'))
    .option('--host <id>', 'only this host')
    .action(async (o: Record<string, unknown>) => {
      await hostsCommand({ ...connectionFlags(o), host: o.host as string | undefined, json: o.json === true });
    });

  connectionOptions(program.command('events').description('the audit stream: every command an agent received, applied, refused or failed, boots and hotplugs'))
    .option('--host <id>', 'only this host')
    .addOption(new Option('--kind <kind>', 'only this kind').choices(EventKind.options))
    .option('--since <time|dur>', 'from this ISO time, or this long ago (e.g. 10m)')
    .option('--follow', 'keep printing new events until Ctrl-C', false)
    .action(async (o: Record<string, unknown>) => {
      const str = (k: string): string | undefined => (typeof o[k] === 'string' ? o[k] : undefined);
      await eventsCommand({ ...connectionFlags(o), host: str('host'), kind: str('kind'), since: str('since'), follow: o.follow === true, json: o.json === true });
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

  const creds = program.command('creds').description('NATS identities (operator/account/user JWTs): create, enroll hosts, revoke, list');
  const credsOpts = (cmd: Command): Command => cmd.option('--creds-dir <dir>', 'where the operator, accounts and identities live', DEFAULT_CREDS_DIR).option('--json', 'machine-readable output', false);
  const co = (o: Record<string, unknown>) => ({ credsDir: typeof o.credsDir === 'string' ? o.credsDir : DEFAULT_CREDS_DIR, json: o.json === true });
  const optStr = (o: Record<string, unknown>, k: string): string | undefined => (typeof o[k] === 'string' ? o[k] : undefined);
  credsOpts(creds.command('init').description('create the operator, the system and PTC accounts, the worker identity and the nats-server auth config'))
    .option('--resolver-dir <dir>', 'where nats-server keeps account JWTs (in the emitted config)')
    .option('--server-config <file>', 'where to write the nats-server auth config (default <creds-dir>/nats-auth.conf)')
    .action(async (o: Record<string, unknown>) => credsInitCommand({ ...co(o), resolverDir: optStr(o, 'resolverDir'), serverConfig: optStr(o, 'serverConfig') }));
  credsOpts(creds.command('server-config').description('write the nats-server auth config (operator, system account, full resolver with preload)'))
    .option('--resolver-dir <dir>', 'where nats-server keeps account JWTs')
    .option('--out <file>', 'output file (default <creds-dir>/nats-auth.conf)')
    .action(async (o: Record<string, unknown>) => credsServerConfigCommand({ ...co(o), resolverDir: optStr(o, 'resolverDir'), out: optStr(o, 'out') }));
  credsOpts(creds.command('add-host').description('enroll a host: its own identity; running servers accept it at once').argument('<hostId>', 'host id'))
    .action(async (hostId: string, o: Record<string, unknown>) => credsAddCommand({ ...co(o), role: 'host', name: parseInput(HostId, hostId, 'host id') }));
  credsOpts(creds.command('add-user').description('an operator (acts through Temporal) or a viewer (read-only) identity').argument('<name>', 'person or team name'))
    .addOption(new Option('--role <role>', 'identity role').choices(['operator', 'viewer']).makeOptionMandatory())
    .action(async (name: string, o: Record<string, unknown>) => credsAddCommand({ ...co(o), role: o.role === 'operator' ? 'operator' : 'viewer', name }));
  credsOpts(creds.command('revoke-host').description('revoke a host\'s identity; with --nats-url its connections are closed now').argument('<hostId>', 'host id'))
    .option('--nats-url <url>', 'running NATS server(s) to tell (uses the system account\'s sys.creds)')
    .option('--resolver-dir <dir>', 'resolver dir written into the refreshed server config')
    .action(async (hostId: string, o: Record<string, unknown>) => credsRevokeCommand({ ...co(o), identity: hostIdentity(parseInput(HostId, hostId, 'host id')), natsUrl: optStr(o, 'natsUrl'), resolverDir: optStr(o, 'resolverDir') }));
  credsOpts(creds.command('revoke').description('revoke any identity by name (see `ptctl creds list`)').argument('<identity>', 'e.g. operator-alice'))
    .option('--nats-url <url>', 'running NATS server(s) to tell (uses the system account\'s sys.creds)')
    .option('--resolver-dir <dir>', 'resolver dir written into the refreshed server config')
    .action(async (identity: string, o: Record<string, unknown>) => credsRevokeCommand({ ...co(o), identity, natsUrl: optStr(o, 'natsUrl'), resolverDir: optStr(o, 'resolverDir') }));
  credsOpts(creds.command('push').description('send the account JWT (with its revocations) to running servers'))
    .requiredOption('--nats-url <url>', 'NATS server(s)')
    .action(async (o: Record<string, unknown>) => credsPushCommand({ ...co(o), natsUrl: optStr(o, 'natsUrl') ?? '' }));
  credsOpts(creds.command('list').description('identities, their public keys and whether they are revoked')).action(async (o: Record<string, unknown>) => credsListCommand(co(o)));

  connectionOptions(program.command('worker').description('run the Temporal worker (workflows + activities)')).action(async (o: Record<string, unknown>) => {
    await runWorker(await resolveConnection(connectionFlags(o)));
  });

  program
    .command('agent')
    .description('run the host agent')
    .addOption(new Option('--backend <b>', 'host backend').choices(['linux', 'sim']).makeOptionMandatory())
    .option('--host-id <id>', 'host id (repeat for several simulated hosts in one process)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--dir <dir>', 'sim: folder holding hosts/<hostId>/', DEFAULT_STATE_DIR)
    .option('--creds-dir <dir>', 'sim: folder with one host-<id>.creds per host (ptctl creds add-host)')
    .option('--nats-url <url>', 'NATS server URL (env PTC_NATS_URL)')
    .option('--profile <name>', 'sim: host profile for hosts created now')
    .option('--sim-faults <json>', 'sim: fault injection, e.g. {"attachFailureProbability":0.5}')
    .option('--fleet <file>', 'sim: per-host profiles and faults (YAML or JSON)')
    .option('--heartbeat <ms>', 'inventory heartbeat', '10000')
    .option('--max-skew <dur>', 'refuse requests whose issuedAt is further than this from the host clock (env PTC_AGENT_MAX_SKEW; default 5m)')
    .option('--nats-creds <file>', 'linux: this host\'s .creds file (env PTC_NATS_CREDS)')
    .option('--nats-ca <file>', 'CA of the NATS servers, for a tls:// URL (env PTC_NATS_CA)')
    .option('--nats-cert <file>', 'this host\'s client certificate for NATS mutual TLS (env PTC_NATS_CERT)')
    .option('--nats-key <file>', 'this host\'s client key for NATS mutual TLS (env PTC_NATS_KEY)')
    .option('--root <dir>', 'linux: root of /sys, /proc and /etc (a fixture tree in tests)', '/')
    .option('--state-dir <dir>', 'linux: where the journal and records live', '/var/lib/ptctl')
    .option('--toolstack <t>', 'linux: auto | xl | xm', 'auto')
    .action(async (o: { backend: string; hostId: string[]; dir: string; credsDir?: string; natsUrl?: string; natsCreds?: string; root: string; stateDir: string; toolstack: string; profile?: string; simFaults?: string; fleet?: string; heartbeat: string; maxSkew?: string; natsCa?: string; natsCert?: string; natsKey?: string }) => {
      const fromEnv = natsTlsFromEnv();
      const tlsCa = o.natsCa ?? fromEnv?.caFile;
      const tlsCert = o.natsCert ?? fromEnv?.certFile;
      const tlsKey = o.natsKey ?? fromEnv?.keyFile;
      const natsTls = tlsCa || tlsCert || tlsKey ? { caFile: tlsCa, certFile: tlsCert, keyFile: tlsKey } : undefined;
      const skewText = o.maxSkew ?? process.env.PTC_AGENT_MAX_SKEW;
      const maxSkewMs = skewText ? durationFlag(skewText, '--max-skew') : undefined;
      const hostIds = o.hostId.map((h) => parseInput(HostId, h, '--host-id'));
      const natsUrl = o.natsUrl ?? process.env.PTC_NATS_URL;
      if (!natsUrl) throw new PtcError(ErrorCode.INVALID_INPUT, '--nats-url (or PTC_NATS_URL) is required');
      if (o.backend === 'linux') {
        const [hostId, ...more] = hostIds;
        if (!hostId || more.length > 0) throw new PtcError(ErrorCode.INVALID_INPUT, 'the linux backend runs exactly one --host-id (this host)');
        const natsCreds = o.natsCreds ?? process.env.PTC_NATS_CREDS;
        if (!natsCreds) throw new PtcError(ErrorCode.INVALID_INPUT, '--nats-creds (or PTC_NATS_CREDS): this host\'s .creds file is required (ptctl creds add-host)');
        await runLinuxAgent({
          hostId,
          natsUrl,
          natsCreds,
          root: o.root,
          stateDir: o.stateDir,
          toolstack: parseInput(z.enum(['auto', 'xl', 'xm']), o.toolstack, '--toolstack'),
          heartbeatMs: parseInput(z.coerce.number().int().min(200), o.heartbeat, '--heartbeat'),
          maxSkewMs,
          natsTls,
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
        maxSkewMs,
        natsTls,
        profile: o.profile,
        faults: parseInput(SimFaults.partial(), faults, '--sim-faults'),
        fleet: o.fleet ? await readFleetFile(o.fleet) : undefined,
      });
    });

  return program;
}

function connectionFlags(o: Record<string, unknown>): ConnectionFlags {
  const pick = (k: string): string | undefined => (typeof o[k] === 'string' ? o[k] : undefined);
  return {
    dir: pick('dir'),
    config: pick('config'),
    natsUrl: pick('natsUrl'),
    natsCreds: pick('natsCreds'),
    temporalAddress: pick('temporalAddress'),
    namespace: pick('namespace'),
    natsCa: pick('natsCa'),
    natsCert: pick('natsCert'),
    natsKey: pick('natsKey'),
    temporalTls: o.temporalTls === true ? true : undefined,
    temporalCa: pick('temporalCa'),
    temporalCert: pick('temporalCert'),
    temporalKey: pick('temporalKey'),
    temporalServerName: pick('temporalServerName'),
    temporalApiKeyFile: pick('temporalApiKeyFile'),
  };
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
