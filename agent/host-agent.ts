import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import type { Logger } from 'pino';
import {
  type AgentCommand,
  type AgentReply,
  AgentRequest,
  type AuditEvent,
  CommandArgs,
  type EventKind,
  HOSTS_BUCKET,
  MAX_REQUEST_BYTES,
  SUBJECT_PREFIX,
  agentSubjectWildcard,
  eventSubject,
  isAgentCommand,
} from '../schemas/agent-protocol.js';
import { ErrorCode, type ErrorInfo, PtcError, describeZodError, isPermanent } from '../schemas/errors.js';
import type { HostBackend } from './backend.js';
import { DEFAULT_HOTPLUG_CAP, type HandlerContext, type HotplugCap, commandHandlers } from './command-handlers.js';
import { DeviceRecords } from './device-records.js';
import { readInventory } from './host-inventory.js';
import { OpJournal } from './op-journal.js';

export interface HostAgentOptions {
  hostId: string;
  backend: HostBackend;
  nc: NatsConnection;
  /** Where the journal and records live: survives agent restarts, separate from the host's /etc. */
  stateDir: string;
  heartbeatMs: number;
  hotplugCap?: HotplugCap;
  /**
   * Largest accepted difference between a request's `issuedAt` and this host's clock (default 5 min):
   * a request captured and replayed later, or one from a client with a wrong clock, is refused.
   */
  maxSkewMs?: number;
  /** Fault injection: the process dies (SIGKILL) the first time it reaches this checkpoint. */
  crashAt?: string | null;
  /** Fault injection: the host reboots the first time the agent reaches this checkpoint. */
  rebootAt?: string | null;
  log: Logger;
}

/** Safety refusals are audited as `refused`; other permanent errors and breakages as `failed`. */
const REFUSAL_CODES = new Set<string>([
  ErrorCode.DEVICE_IN_USE, ErrorCode.RELOAD_UNSAFE, ErrorCode.PV_UNSUPPORTED, ErrorCode.PV_INSECURE, ErrorCode.HVM_UNSUPPORTED,
  ErrorCode.IOMMU_REQUIRED, ErrorCode.IOMMU_GROUP_IN_USE, ErrorCode.DEVICE_ASSIGNED, ErrorCode.GUEST_PINNED, ErrorCode.HOTPLUG_BUDGET,
  ErrorCode.HOTPLUG_UNSUPPORTED, ErrorCode.STRATEGY_UNSUPPORTED, ErrorCode.INVALID_REQUEST, ErrorCode.UNKNOWN_COMMAND,
  ErrorCode.HOST_MISMATCH, ErrorCode.OP_ID_REUSED, ErrorCode.REQUEST_STALE,
]);

export const DEFAULT_MAX_SKEW_MS = 5 * 60_000;

/** Commands that only read: no inventory refresh is owed after them. */
const READ_ONLY = new Set<AgentCommand>(['inspect', 'verify', 'guest-status']);

/**
 * The per-host daemon: answers `ptc.v1.agent.<hostId>.<command>` one request at a time, validates
 * every envelope before anything else, replays recorded replies for known operation ids, audits every
 * command to PTC_EVENTS and keeps the host's inventory fresh in KV `ptc_hosts`. It knows nothing of
 * Temporal.
 */
export class HostAgent {
  private readonly js: JetStreamClient;
  private sub: Subscription | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private queue: Promise<void> = Promise.resolve();
  private stopped = false;

  private constructor(
    private readonly opts: HostAgentOptions,
    private readonly journal: OpJournal,
    private readonly records: DeviceRecords,
  ) {
    this.js = jetstream(opts.nc);
  }

  static async start(opts: HostAgentOptions): Promise<HostAgent> {
    const journal = await OpJournal.open(join(opts.stateDir, 'journal.jsonl'));
    const records = await DeviceRecords.open(opts.stateDir);
    const agent = new HostAgent(opts, journal, records);
    opts.backend.onBoot(() => agent.enqueue(() => agent.announce()));
    agent.sub = opts.nc.subscribe(agentSubjectWildcard(opts.hostId), {
      callback: (err, msg) => {
        if (err) {
          opts.log.error({ err }, 'subscription error');
          return;
        }
        agent.enqueue(() => agent.handle(msg));
      },
    });
    await opts.nc.flush();
    await agent.announce();
    agent.heartbeat = setInterval(() => agent.enqueue(() => agent.announce()), opts.heartbeatMs);
    agent.heartbeat.unref();
    opts.log.info({ hostId: opts.hostId, journal: journal.size }, 'agent ready');
    return agent;
  }

  /** One command at a time per host: effects on a host must never interleave. */
  private enqueue(work: () => Promise<void>): void {
    this.queue = this.queue.then(work).catch((err: unknown) => this.opts.log.error({ err }, 'agent task failed'));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.sub?.unsubscribe();
    await this.queue;
    await this.opts.backend.close();
  }

  /** Publishes the inventory, and a `boot` event when the boot id differs from the last one announced. */
  private async announce(): Promise<void> {
    if (this.stopped || !this.opts.backend.responsive()) return;
    const bootId = await this.opts.backend.bootId();
    if (this.records.lastBootId !== bootId) {
      await this.emit('boot', null, null, { previousBootId: this.records.lastBootId });
      await this.records.setLastBootId(bootId);
    }
    await this.publishInventory();
  }

  private async publishInventory(): Promise<void> {
    const inv = await readInventory(this.opts.hostId, this.opts.backend, this.records);
    try {
      await this.js.publish(`$KV.${HOSTS_BUCKET}.${this.opts.hostId}`, JSON.stringify(inv), { timeout: 5000 });
    } catch (err) {
      this.opts.log.warn({ err }, 'inventory publish failed; will retry at the next heartbeat');
    }
  }

  private async emit(kind: EventKind, opId: string | null, command: string | null, detail: Record<string, unknown>, requestedBy: string | null = null): Promise<void> {
    const event: AuditEvent = {
      hostId: this.opts.hostId,
      kind,
      bootId: await this.opts.backend.bootId(),
      at: new Date().toISOString(),
      opId,
      command,
      requestedBy,
      detail,
    };
    try {
      await this.js.publish(eventSubject(this.opts.hostId, kind), JSON.stringify(event), { timeout: 5000 });
    } catch (err) {
      this.opts.log.error({ err, event }, 'audit event publish failed');
    }
  }

  private async reply(msg: Msg, reply: AgentReply): Promise<void> {
    if (msg.reply) msg.respond(JSON.stringify(reply));
    return Promise.resolve();
  }

  private async handle(msg: Msg): Promise<void> {
    // A silent host (rebooting, failed kernel, dropped uplink) answers nothing, as a real one would.
    if (this.stopped || !this.opts.backend.responsive()) return;
    const bootId = await this.opts.backend.bootId();
    const fail = (error: ErrorInfo, opId: string | null, command: string | null): Promise<void> =>
      this.emit('refused', opId, command, { error }).then(() => this.reply(msg, { ok: false, bootId, error }));

    if (msg.data.length > MAX_REQUEST_BYTES) {
      return fail({ code: ErrorCode.INVALID_REQUEST, message: `request of ${msg.data.length} bytes exceeds the ${MAX_REQUEST_BYTES}-byte limit` }, null, null);
    }
    const command = msg.subject.slice(`${SUBJECT_PREFIX}.agent.${this.opts.hostId}.`.length);
    if (!isAgentCommand(command)) {
      return fail({ code: ErrorCode.UNKNOWN_COMMAND, message: `unknown command "${command.slice(0, 40)}"` }, null, null);
    }
    let raw: unknown;
    try {
      raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(msg.data));
    } catch {
      return fail({ code: ErrorCode.INVALID_REQUEST, message: 'request is not valid UTF-8 JSON' }, null, command);
    }
    const envelope = AgentRequest.safeParse(raw);
    if (!envelope.success) {
      return fail({ code: ErrorCode.INVALID_REQUEST, message: `malformed request: ${describeZodError(envelope.error, 'request')}` }, null, command);
    }
    const { opId, hostId } = envelope.data;
    const requestedBy = envelope.data.requestedBy ?? null;
    const audit = (kind: EventKind, detail: Record<string, unknown>): Promise<void> => this.emit(kind, opId, command, detail, requestedBy);
    if (hostId !== this.opts.hostId) {
      return fail({ code: ErrorCode.HOST_MISMATCH, message: `request for host ${hostId} reached the agent of ${this.opts.hostId}` }, opId, command);
    }
    const skewMs = Date.now() - Date.parse(envelope.data.issuedAt);
    const maxSkewMs = this.opts.maxSkewMs ?? DEFAULT_MAX_SKEW_MS;
    if (Math.abs(skewMs) > maxSkewMs) {
      return fail(
        { code: ErrorCode.REQUEST_STALE, message: `request issued at ${envelope.data.issuedAt} is ${Math.round(skewMs / 1000)} s off this host's clock (limit ${maxSkewMs / 1000} s); check both clocks (NTP)` },
        opId,
        command,
      );
    }
    const args = CommandArgs[command].safeParse(envelope.data.args);
    if (!args.success) {
      return fail({ code: ErrorCode.INVALID_REQUEST, message: `invalid ${command} arguments: ${describeZodError(args.error, 'args')}` }, opId, command);
    }
    const argsKey = JSON.stringify(args.data);

    let recorded: AgentReply | null;
    try {
      recorded = this.journal.lookup(opId, command, argsKey);
    } catch (err) {
      return fail((err as PtcError).toInfo(), opId, command);
    }
    if (recorded) {
      await audit('replayed', { ok: recorded.ok });
      return this.reply(msg, recorded);
    }

    await audit('received', { args: args.data });
    const reply = await this.run(command, args.data, opId, requestedBy);
    const permanent = reply.ok || isPermanent(reply.error.code);
    // Transient failures are not journaled, so the caller's retry with the same opId runs again.
    if (permanent) await this.journal.record(opId, command, argsKey, reply);
    if (reply.ok) await audit('applied', { result: READ_ONLY.has(command) ? null : reply.result });
    else await audit(REFUSAL_CODES.has(reply.error.code) ? 'refused' : 'failed', { error: reply.error });
    await this.reply(msg, reply);
    if (!READ_ONLY.has(command) && this.opts.backend.responsive()) await this.publishInventory();
  }

  /** Dies like a crashed process at the configured step, once: the marker lets the restarted agent recover. */
  private checkpoint(step: string): void {
    if (this.opts.crashAt === step && this.firstTime('crashed-at', step)) {
      this.opts.log.warn({ step }, 'injected crash');
      process.kill(process.pid, 'SIGKILL');
    }
    if (this.opts.rebootAt === step && this.firstTime('rebooted-at', step)) {
      this.opts.log.warn({ step }, 'injected reboot');
      void this.opts.backend.reboot();
    }
  }

  /** Marks a fault as fired (on disk, so a restarted agent does not fire it again). */
  private firstTime(kind: string, step: string): boolean {
    const marker = join(this.opts.stateDir, `${kind}-${step.replace(/[^a-z0-9-]/gi, '_')}`);
    if (existsSync(marker)) return false;
    mkdirSync(this.opts.stateDir, { recursive: true });
    writeFileSync(marker, new Date().toISOString());
    return true;
  }

  private async run(command: AgentCommand, args: unknown, opId: string, requestedBy: string | null): Promise<AgentReply> {
    const ctx: HandlerContext = {
      hostId: this.opts.hostId,
      backend: this.opts.backend,
      records: this.records,
      hotplugCap: this.opts.hotplugCap ?? DEFAULT_HOTPLUG_CAP,
      now: Date.now,
      emit: (kind, detail) => this.emit(kind, opId, command, detail, requestedBy),
      checkpoint: (step) => this.checkpoint(step),
    };
    const bootIdBefore = await this.opts.backend.bootId();
    try {
      // The args were parsed by this command's own schema just above.
      const handler = commandHandlers[command] as (c: HandlerContext, a: unknown) => Promise<unknown>;
      const result = await handler(ctx, args);
      return { ok: true, bootId: bootIdBefore, result };
    } catch (err) {
      if (err instanceof PtcError) return { ok: false, bootId: bootIdBefore, error: err.toInfo() };
      this.opts.log.error({ err, command, opId }, 'command failed unexpectedly');
      return { ok: false, bootId: bootIdBefore, error: { code: ErrorCode.COMMAND_FAILED, message: `${command} failed on ${this.opts.hostId}: ${(err as Error).message}` } };
    }
  }
}
