import { Command, Option } from 'commander';
import { z } from 'zod';
import { ErrorCode, PtcError, describeZodError } from '../schemas/errors.js';
import { HostId } from '../schemas/ids.js';
import { DEFAULT_STATE_DIR } from './connection.js';

// Each command imports what it runs when it runs (`await import(...)` in its action): loading every
// command's modules up front (the Temporal worker, the simulator, the plan engine) made a one-line
// `ptctl hosts` cost over a second before it did anything.
import { tracingRequested } from '../observability/tracing-state.js';
import { EventKind } from '../schemas/agent-protocol.js';
import { type ConnectionFlags, DEFAULT_CREDS_DIR, natsTlsFromEnv } from './connection.js';
import { durationFlag } from './flags.js';

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
    .option('--init-only', 'only write the NATS credentials and server settings into --dir, then exit (for servers run elsewhere: docker-compose.yml)', false)
    .action(async (o: { dir: string; simHosts: string; profile: string; heartbeat: string; fleet?: string; tls: boolean; initOnly: boolean }) => {
      const [{ readFleetFile }, { devCommand, devInitCommand }] = await Promise.all([import('../agent/sim/fleet-file.js'), import('./commands/dev.js')]);
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
      const { demoCommand } = await import('./commands/demo.js');
      await demoCommand({ hosts: parseInput(count(50).min(1), o.hosts, '--hosts'), keep: o.keep, tls: o.tls });
    });

  connectionOptions(program.command('hosts').description('list hosts and their PCI devices from the agents\' inventory'))
    .option('--host <id>', 'only this host')
    .action(async (o: Record<string, unknown>) => {
      const { hostsCommand } = await import('./commands/hosts.js');
      await hostsCommand({ ...connectionFlags(o), host: o.host as string | undefined, json: o.json === true });
    });

  connectionOptions(program.command('events').description('the audit stream: every command an agent received, applied, refused or failed, boots and hotplugs'))
    .option('--host <id>', 'only this host')
    .addOption(new Option('--kind <kind>', 'only this kind').choices(EventKind.options))
    .option('--since <time|dur>', 'from this ISO time, or this long ago (e.g. 10m)')
    .option('--follow', 'keep printing new events until Ctrl-C', false)
    .action(async (o: Record<string, unknown>) => {
      const str = (k: string): string | undefined => (typeof o[k] === 'string' ? o[k] : undefined);
      const { eventsCommand } = await import('./commands/events.js');
      await eventsCommand({ ...connectionFlags(o), host: str('host'), kind: str('kind'), since: str('since'), follow: o.follow === true, json: o.json === true });
    });

  // `ptctl plan FILE`: planCommand returns the exit code (0, or 2 when the plan has refusals or unknown hosts).
  connectionOptions(program.command('plan').description('show what a plan file would change, host by host, from live inventory; changes nothing').argument('<file>', 'plan file (YAML or JSON)')).action(
    async (file: string, o: Record<string, unknown>) => {
      const { planCommand } = await import('./commands/plan.js');
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
      const { applyCommand } = await import('./commands/apply.js');
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
    const { operationCommand } = await import('./commands/attach.js');
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
      const { statusCommand } = await import('./commands/status.js');
      await statusCommand({ ...connectionFlags(o), id, json: o.json === true });
    },
  );

  connectionOptions(program.command('list').description('find operations (by host, device, rollout, outcome) or rollouts (by outcome) through Temporal visibility'))
    .addOption(new Option('--kind <k>', 'what to list').choices(['operations', 'rollouts']).default('operations'))
    .option('--host <id>', 'operations on this host')
    .option('--device <bdf>', 'operations on this device')
    .option('--rollout <name>', 'operations of this rollout')
    .option('--outcome <o>', 'how they ended: attached, released, compensated, needs-attention, ...; rollouts: succeeded, failed, cancelled, stopped')
    .option('--running', 'only those still running', false)
    .option('--limit <n>', 'at most this many', '100')
    .action(async (o: Record<string, unknown>) => {
      const { listCommand } = await import('./commands/list.js');
      const filters: Record<string, unknown> = {};
      for (const k of ['kind', 'host', 'device', 'rollout', 'outcome', 'running', 'limit']) if (o[k] !== undefined) filters[k] = o[k];
      await listCommand({ ...connectionFlags(o), filters, json: o.json === true });
    });

  for (const action of ['pause', 'resume', 'cancel'] as const) {
    connectionOptions(program.command(action).description(`${action} a rollout${action === 'cancel' ? ' (in-flight hosts compensate) or an operation' : ''}`).argument('<id>', 'rollout/<name> or op/<host>/<bdf>/<n>')).action(
      async (id: string, o: Record<string, unknown>) => {
        const { controlCommand } = await import('./commands/rollout.js');
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
      const { windowCreateCommand } = await import('./commands/window.js');
      await windowCreateCommand({ ...connectionFlags(o), name, cron: str('cron') ?? '', timezone: str('timezone') ?? 'UTC', duration: str('duration') ?? '', cutoff: str('cutoff'), expectedHost: str('expectedHost'), plan: str('plan') ?? '', json: o.json === true });
    });
  connectionOptions(window.command('list').description('list windows and their next opening')).action(async (o: Record<string, unknown>) => {
    const { windowListCommand } = await import('./commands/window.js');
    await windowListCommand({ ...connectionFlags(o), json: o.json === true });
  });
  connectionOptions(window.command('delete').description('delete a window').argument('<name>', 'window name')).action(async (name: string, o: Record<string, unknown>) => {
    const { windowDeleteCommand } = await import('./commands/window.js');
    await windowDeleteCommand({ ...connectionFlags(o), name, json: o.json === true });
  });

  const creds = program.command('creds').description('NATS identities (operator/account/user JWTs): create, enroll hosts, revoke, list');
  const credsOpts = (cmd: Command): Command => cmd.option('--creds-dir <dir>', 'where the operator, accounts and identities live', DEFAULT_CREDS_DIR).option('--json', 'machine-readable output', false);
  const co = (o: Record<string, unknown>): { credsDir: string; json: boolean } => ({ credsDir: typeof o.credsDir === 'string' ? o.credsDir : DEFAULT_CREDS_DIR, json: o.json === true });
  const optStr = (o: Record<string, unknown>, k: string): string | undefined => (typeof o[k] === 'string' ? o[k] : undefined);
  credsOpts(creds.command('init').description('create the operator, the system and PTC accounts, the worker identity and the nats-server auth config'))
    .option('--resolver-dir <dir>', 'where nats-server keeps account JWTs (in the emitted config)')
    .option('--server-config <file>', 'where to write the nats-server auth config (default <creds-dir>/nats-auth.conf)')
    .action(async (o: Record<string, unknown>) => (await import('./commands/creds.js')).credsInitCommand({ ...co(o), resolverDir: optStr(o, 'resolverDir'), serverConfig: optStr(o, 'serverConfig') }));
  credsOpts(creds.command('server-config').description('write the nats-server auth config (operator, system account, full resolver with preload)'))
    .option('--resolver-dir <dir>', 'where nats-server keeps account JWTs')
    .option('--out <file>', 'output file (default <creds-dir>/nats-auth.conf)')
    .action(async (o: Record<string, unknown>) => (await import('./commands/creds.js')).credsServerConfigCommand({ ...co(o), resolverDir: optStr(o, 'resolverDir'), out: optStr(o, 'out') }));
  credsOpts(creds.command('add-host').description('enroll a host: its own identity; running servers accept it at once').argument('<hostId>', 'host id'))
    .action(async (hostId: string, o: Record<string, unknown>) => (await import('./commands/creds.js')).credsAddCommand({ ...co(o), role: 'host', name: parseInput(HostId, hostId, 'host id') }));
  credsOpts(creds.command('add-user').description('an operator (acts through Temporal) or a viewer (read-only) identity').argument('<name>', 'person or team name'))
    .addOption(new Option('--role <role>', 'identity role').choices(['operator', 'viewer']).makeOptionMandatory())
    .action(async (name: string, o: Record<string, unknown>) => (await import('./commands/creds.js')).credsAddCommand({ ...co(o), role: o.role === 'operator' ? 'operator' : 'viewer', name }));
  credsOpts(creds.command('revoke-host').description('revoke a host\'s identity; with --nats-url its connections are closed now').argument('<hostId>', 'host id'))
    .option('--nats-url <url>', 'running NATS server(s) to tell (uses the system account\'s sys.creds)')
    .option('--resolver-dir <dir>', 'resolver dir written into the refreshed server config')
    .action(async (hostId: string, o: Record<string, unknown>) => (await import('./commands/creds.js')).credsRevokeCommand({ ...co(o), identity: (await import('./commands/creds.js')).hostIdentity(parseInput(HostId, hostId, 'host id')), natsUrl: optStr(o, 'natsUrl'), resolverDir: optStr(o, 'resolverDir') }));
  credsOpts(creds.command('revoke').description('revoke any identity by name (see `ptctl creds list`)').argument('<identity>', 'e.g. operator-alice'))
    .option('--nats-url <url>', 'running NATS server(s) to tell (uses the system account\'s sys.creds)')
    .option('--resolver-dir <dir>', 'resolver dir written into the refreshed server config')
    .action(async (identity: string, o: Record<string, unknown>) => (await import('./commands/creds.js')).credsRevokeCommand({ ...co(o), identity, natsUrl: optStr(o, 'natsUrl'), resolverDir: optStr(o, 'resolverDir') }));
  credsOpts(creds.command('push').description('send the account JWT (with its revocations) to running servers'))
    .requiredOption('--nats-url <url>', 'NATS server(s)')
    .action(async (o: Record<string, unknown>) => (await import('./commands/creds.js')).credsPushCommand({ ...co(o), natsUrl: optStr(o, 'natsUrl') ?? '' }));
  credsOpts(creds.command('list').description('identities, their public keys and whether they are revoked')).action(async (o: Record<string, unknown>) => (await import('./commands/creds.js')).credsListCommand(co(o)));

  connectionOptions(program.command('worker').description('run the Temporal worker (workflows + activities) as one build of a Worker Deployment'))
    .option('--deployment <name>', 'Worker Deployment name (env PTC_DEPLOYMENT_NAME, default ptctl)')
    .option('--build-id <id>', 'build id (env PTC_BUILD_ID; default derived from the workflow code)')
    .option('--unversioned', 'poll without a deployment version (servers without Worker Deployment Versioning; unsafe across upgrades)', false)
    .option('--metrics <addr>', 'serve Prometheus metrics (ptctl\'s and the Temporal SDK\'s) at http://ADDR/metrics, e.g. 127.0.0.1:9464')
    .action(async (o: Record<string, unknown>) => {
      const [{ runWorker }, { resolveConnection }] = await Promise.all([import('./worker.js'), import('./connection.js')]);
      const str = (k: string): string | undefined => (typeof o[k] === 'string' ? o[k] : undefined);
      await runWorker(await resolveConnection(connectionFlags(o)), {
        deploymentName: str('deployment'),
        buildId: str('buildId'),
        unversioned: o.unversioned === true,
        metrics: str('metrics'),
        onReady: (v) => process.stderr.write(v ? `ptctl worker: deployment ${v.deploymentName}, build ${v.buildId}\n` : 'ptctl worker: unversioned\n'),
      });
    });

  const deployment = program.command('deployment').description('builds of the worker: which is current, which still drain (README "Upgrading ptctl while work runs")');
  const deploymentOption = (cmd: Command): Command => connectionOptions(cmd).option('--deployment <name>', 'Worker Deployment name (env PTC_DEPLOYMENT_NAME, default ptctl)');
  deploymentOption(deployment.command('status').description('the deployment\'s builds, the current one, and whether old ones have drained')).action(async (o: Record<string, unknown>) => {
    const { deploymentStatusCommand } = await import('./commands/deployment.js');
    await deploymentStatusCommand({ ...connectionFlags(o), deploymentName: typeof o.deployment === 'string' ? o.deployment : undefined, json: o.json === true });
  });
  deploymentOption(deployment.command('set-current').description('send new work and auto-upgrading workflows to a build; pinned ones finish where they started').argument('<build-id>', 'build id, as `ptctl worker` printed it')).action(
    async (buildId: string, o: Record<string, unknown>) => {
      const { deploymentSetCurrentCommand } = await import('./commands/deployment.js');
      await deploymentSetCurrentCommand({ ...connectionFlags(o), deploymentName: typeof o.deployment === 'string' ? o.deployment : undefined, buildId: parseInput(z.string().min(1).max(255), buildId, 'build id'), json: o.json === true });
    },
  );

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
    .option('--metrics <addr>', 'serve Prometheus metrics at http://ADDR/metrics (off by default; a bare port means 127.0.0.1)')
    .action(async (o: { backend: string; hostId: string[]; dir: string; credsDir?: string; natsUrl?: string; natsCreds?: string; root: string; stateDir: string; toolstack: string; profile?: string; simFaults?: string; fleet?: string; heartbeat: string; maxSkew?: string; natsCa?: string; natsCert?: string; natsKey?: string; metrics?: string }) => {
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
        const { runLinuxAgent } = await import('./linux-agent.js');
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
          metrics: o.metrics,
          maxSkewMs,
          natsTls,
        });
        return;
      }
      const [{ SimFaults }, { readFleetFile }, { runSimAgents }] = await Promise.all([import('../agent/sim/sim-host.js'), import('../agent/sim/fleet-file.js'), import('./agent-runner.js')]);
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
        metrics: o.metrics,
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

const SERVICE_NAMES: Record<string, string> = { worker: 'ptc-worker', agent: 'ptc-agent' };

async function traced<T>(name: string, body: () => Promise<T>): Promise<T> {
  const { SpanKind, SpanStatusCode, trace } = await import('@opentelemetry/api');
  return trace.getTracer('ptctl').startActiveSpan(name, { kind: SpanKind.CLIENT }, async (span) => {
    try {
      return await body();
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      throw err;
    } finally {
      span.end();
    }
  });
}

/** The one place that turns errors into exit codes; nothing below calls process.exit. */
export async function main(argv: readonly string[]): Promise<number> {
  const outcome: CommandOutcome = { exitCode: 0 };
  const program = buildProgram(outcome);
  const json = argv.includes('--json');
  const command = argv.find((a) => !a.startsWith('-')) ?? '';
  try {
    const tracing = tracingRequested() ? (await import('../observability/tracing.js')).startTracing(SERVICE_NAMES[command] ?? 'ptctl') : null;
    try {
      // Daemons trace their own work; a one-shot command is one root span that its calls hang under.
      if (!tracing || command === 'worker' || command === 'agent' || command === 'dev') await program.parseAsync([...argv], { from: 'user' });
      else await traced(`ptctl ${command}`, () => program.parseAsync([...argv], { from: 'user' }));
    } finally {
      await tracing?.shutdown();
    }
    return outcome.exitCode;
  } catch (err) {
    if (err instanceof Error && 'exitCode' in err && 'code' in err && String(err.code).startsWith('commander.')) {
      const code = String(err.code);
      if (code === 'commander.helpDisplayed' || code === 'commander.version' || code === 'commander.help') return 0;
      // commander already printed its message; input errors exit 2.
      return 2;
    }
    const { reportError } = await import('./output.js');
    return reportError(err, json);
  }
}
