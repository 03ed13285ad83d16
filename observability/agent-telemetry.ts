import { AsyncLocalStorage } from 'node:async_hooks';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { SpanKind, SpanStatusCode, context, isSpanContextValid, trace } from '@opentelemetry/api';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { SUBJECT_PREFIX, type AgentReply, isAgentCommand } from '../schemas/agent-protocol.js';
import type { HostInventory } from '../schemas/inventory.js';
import type { AgentObserver, AgentRequestMeta, AgentView } from '../agent/agent-observer.js';
import { AGENT_VERSION } from '../agent/host-inventory.js';
import { contextFromHeaders } from '../transport/nats-trace.js';

const STEP_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const tracer = trace.getTracer('ptctl-agent');

/** The command of a request subject, or `unknown` (the label set stays bounded whatever arrives). */
function commandOf(hostId: string, subject: string): string {
  const command = subject.slice(`${SUBJECT_PREFIX}.agent.${hostId}.`.length);
  return isAgentCommand(command) ? command : 'unknown';
}

/** The op id of a request, for spans and logs only (never a metric label); null when it has none. */
function opIdOf(data: Uint8Array): string | null {
  try {
    const opId = (JSON.parse(new TextDecoder().decode(data)) as { opId?: unknown }).opId;
    return typeof opId === 'string' && opId.length <= 200 ? opId : null;
  } catch {
    return null;
  }
}

/**
 * The agent's metrics (prom-client, `ptc_agent_*`, one `host` label so the simulated agents' process
 * serves many hosts), a span per handled request joined to the caller's trace through the NATS
 * headers, and one JSON log line per command with host, op and trace ids.
 */
export class AgentTelemetry implements AgentObserver {
  readonly registry = new Registry();
  private readonly r = [this.registry];
  private readonly views = new Map<string, AgentView>();
  private readonly devices = new Map<string, string[]>();
  private readonly drivers = new Map<string, Set<string>>();
  /** The result of the request being handled, set by `answered` inside `handling`. */
  private readonly request = new AsyncLocalStorage<{ result: string | null }>();

  readonly buildInfo = new Gauge({ name: 'ptc_agent_build_info', help: 'ptctl agent build (value 1)', labelNames: ['version', 'node'], registers: this.r });
  readonly natsConnected = new Gauge({ name: 'ptc_agent_nats_connected', help: '1 while the host\'s NATS connection is up', labelNames: ['host'], registers: this.r });
  readonly natsReconnects = new Counter({ name: 'ptc_agent_nats_reconnects_total', help: 'NATS reconnects of the host\'s connection', labelNames: ['host'], registers: this.r });
  readonly commands = new Counter({ name: 'ptc_agent_commands_total', help: 'requests answered, by command and result (ok or error code)', labelNames: ['host', 'command', 'result'], registers: this.r });
  readonly commandDuration = new Histogram({ name: 'ptc_agent_command_duration_seconds', help: 'time to handle one request (validate, journal, effect, audit, reply), by command', labelNames: ['host', 'command'], buckets: STEP_BUCKETS, registers: this.r });
  readonly devicesByDriver = new Gauge({ name: 'ptc_agent_devices', help: 'PCI devices of the host by driver (none: no driver) at the last scan', labelNames: ['host', 'driver'], registers: this.r });
  readonly lastScan = new Gauge({ name: 'ptc_agent_last_scan_timestamp_seconds', help: 'when the host\'s inventory was last scanned and published (Unix time)', labelNames: ['host'], registers: this.r });
  readonly hotplugCap: Gauge;
  readonly hotplugsInWindow: Gauge;
  readonly journalEntries: Gauge;

  constructor(private readonly log?: Logger) {
    collectDefaultMetrics({ register: this.registry, prefix: 'ptc_agent_' });
    this.buildInfo.set({ version: AGENT_VERSION, node: process.version }, 1);
    const views = this.views;
    const devices = this.devices;
    this.hotplugCap = new Gauge({
      name: 'ptc_agent_hotplug_cap',
      help: 'the agent\'s own cap of hotplugs per device within its window',
      labelNames: ['host'],
      registers: this.r,
      collect() {
        for (const v of views.values()) this.set({ host: v.hostId }, v.hotplugCap.max);
      },
    });
    this.hotplugsInWindow = new Gauge({
      name: 'ptc_agent_hotplugs_in_window',
      help: 'hotplugs of each device within the cap\'s sliding window, now (compare with ptc_agent_hotplug_cap)',
      labelNames: ['host', 'device'],
      registers: this.r,
      collect() {
        const now = Date.now();
        this.reset();
        for (const v of views.values()) for (const bdf of devices.get(v.hostId) ?? []) this.set({ host: v.hostId, device: bdf }, v.hotplugsInWindow(bdf, now));
      },
    });
    this.journalEntries = new Gauge({
      name: 'ptc_agent_journal_entries',
      help: 'operations recorded in the host\'s idempotency journal',
      labelNames: ['host'],
      registers: this.r,
      collect() {
        for (const v of views.values()) this.set({ host: v.hostId }, v.journalEntries());
      },
    });
  }

  started(view: AgentView): void {
    this.views.set(view.hostId, view);
  }

  /** Follows a host's NATS connection: connected or not, and each reconnect. */
  watchNats(hostId: string, nc: NatsConnection): void {
    this.natsConnected.set({ host: hostId }, 1);
    this.natsReconnects.inc({ host: hostId }, 0);
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') this.natsConnected.set({ host: hostId }, 0);
        else if (s.type === 'reconnect') {
          this.natsConnected.set({ host: hostId }, 1);
          this.natsReconnects.inc({ host: hostId });
        }
      }
    })();
    void nc.closed().then(() => this.natsConnected.set({ host: hostId }, 0));
  }

  async handling(req: AgentRequestMeta, work: () => Promise<void>): Promise<void> {
    const command = commandOf(req.hostId, req.subject);
    const opId = opIdOf(req.data);
    const started = performance.now();
    const parent = contextFromHeaders(req.headers);
    const span = tracer.startSpan(`handle ${command}`, { kind: SpanKind.SERVER, attributes: { 'ptc.host_id': req.hostId, ...(opId ? { 'ptc.op_id': opId } : {}), 'messaging.system': 'nats', 'messaging.destination.name': req.subject } }, parent);
    const state: { result: string | null } = { result: null };
    try {
      await this.request.run(state, () => context.with(trace.setSpan(parent, span), work));
    } finally {
      const seconds = (performance.now() - started) / 1000;
      this.commandDuration.observe({ host: req.hostId, command }, seconds);
      if (state.result) span.setAttribute('ptc.result', state.result);
      span.end();
      const traceId = isSpanContextValid(span.spanContext()) ? span.spanContext().traceId : undefined;
      // A silent host (rebooting) answers nothing: no result, as for the caller.
      this.log?.info({ hostId: req.hostId, opId, command, result: state.result, ms: Math.round(seconds * 1000), ...(traceId ? { traceId } : {}) }, 'command handled');
    }
  }

  answered(hostId: string, subject: string, reply: AgentReply): void {
    const result = reply.ok ? 'ok' : reply.error.code;
    this.commands.inc({ host: hostId, command: commandOf(hostId, subject), result });
    const state = this.request.getStore();
    if (state) state.result = result;
    if (!reply.ok) trace.getActiveSpan()?.setStatus({ code: SpanStatusCode.ERROR, message: reply.error.message });
  }

  inventoryPublished(inv: HostInventory): void {
    this.devices.set(inv.hostId, inv.devices.map((d) => d.bdf));
    const byDriver = new Map<string, number>();
    for (const d of inv.devices) byDriver.set(d.driver ?? 'none', (byDriver.get(d.driver ?? 'none') ?? 0) + 1);
    // A driver that no device has any more reads 0, not its last count.
    const seen = this.drivers.get(inv.hostId) ?? new Set<string>();
    for (const driver of seen) if (!byDriver.has(driver)) this.devicesByDriver.set({ host: inv.hostId, driver }, 0);
    for (const [driver, n] of byDriver) {
      this.devicesByDriver.set({ host: inv.hostId, driver }, n);
      seen.add(driver);
    }
    this.drivers.set(inv.hostId, seen);
    this.lastScan.set({ host: inv.hostId }, Date.parse(inv.seenAt) / 1000);
  }
}
