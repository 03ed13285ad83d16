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
  MAX_REQUEST_BYTES,
  SUBJECT_PREFIX,
  agentSubjectWildcard,
  eventSubject,
  isAgentCommand,
} from '../schemas/agent-protocol.js';
import { ErrorCode, type ErrorInfo, PtcError, describeZodError, isPermanent, isPtcError } from '../schemas/errors.js';
import { StateDirLock, writeInstanceRecord } from './agent-lock.js';
import type { HostBackend, HostScan } from './backend.js';
import { DEFAULT_HOTPLUG_CAP, type HandlerContext, type HotplugCap, commandHandlers, repairInterrupted } from './command-handlers.js';
import { DeviceRecords } from './device-records.js';
import { type AgentIdentity, readInventory } from './host-inventory.js';
import { HostKeyOwnership, machineIdOf } from './host-ownership.js';
import { type JournalLimits, OpJournal } from './op-journal.js';
import { AuditOutbox } from './audit-outbox.js';
import type { AgentObserver } from './agent-observer.js';

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
  journalLimits?: JournalLimits;
  /** The state dir's lock, when the runner took it before opening the host (so a second agent touches nothing). */
  lock?: StateDirLock;
  /** Metrics, traces and logs of the agent's work (optional: the agent behaves the same without one). */
  observer?: AgentObserver;
  log: Logger;
}

/** Safety refusals are audited as `refused`; other permanent errors and breakages as `failed`. */
const REFUSAL_CODES = new Set<string>([
  ErrorCode.DEVICE_IN_USE, ErrorCode.RELOAD_UNSAFE, ErrorCode.PV_UNSUPPORTED, ErrorCode.PV_INSECURE, ErrorCode.HVM_UNSUPPORTED,
  ErrorCode.IOMMU_REQUIRED, ErrorCode.IOMMU_GROUP_IN_USE, ErrorCode.DEVICE_ASSIGNED, ErrorCode.GUEST_PINNED, ErrorCode.HOTPLUG_BUDGET,
  ErrorCode.HOTPLUG_UNSUPPORTED, ErrorCode.STRATEGY_UNSUPPORTED, ErrorCode.INVALID_REQUEST, ErrorCode.UNKNOWN_COMMAND,
  ErrorCode.HOST_MISMATCH, ErrorCode.OP_ID_REUSED, ErrorCode.GUEST_CONFIG_INVALID, ErrorCode.REQUEST_STALE,
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
  private sub: Subscription | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private queue: Promise<void> = Promise.resolve();
  private stopped = false;
  /** A rescan is queued and has not started: another request for one joins it (never a scan queued behind a scan). */
  private announcePending = false;
  private lastPublishAt = 0;
  /** The kernel as the command being run last saw it, after its last effect on it (see HandlerContext.kernelAsScanned). */
  private kernelAsScanned: HostScan | null = null;
  private fencedBy: PtcError | null = null;
  private resolveFenced: (err: PtcError) => void = () => undefined;
  /** Settles when another agent turned out to answer for this host and this one stopped serving (rule 16). */
  readonly fenced: Promise<PtcError> = new Promise((resolve) => (this.resolveFenced = resolve));

  private constructor(
    private readonly opts: HostAgentOptions,
    private readonly js: JetStreamClient,
    private readonly journal: OpJournal,
    private readonly records: DeviceRecords,
    private readonly lock: StateDirLock,
    private readonly ownership: HostKeyOwnership,
    private readonly identity: AgentIdentity,
    private readonly outbox: AuditOutbox,
  ) {}

  /**
   * Takes the state dir's lock, checks that no other agent answers for this host (both throw
   * AGENT_DUPLICATE), repairs what a crash mid-step left behind, then serves.
   */
  static async start(opts: HostAgentOptions): Promise<HostAgent> {
    const lock = opts.lock ?? (await StateDirLock.forNewAgent(opts.stateDir, opts.hostId));
    const instance = lock.instance;
    let agent: HostAgent | null = null;
    try {
      const machineId = machineIdOf(await opts.backend.files.read('/etc/machine-id').catch(() => null));
      const js = jetstream(opts.nc);
      const ownership = new HostKeyOwnership({
        nc: opts.nc,
        js,
        hostId: opts.hostId,
        instance,
        machineId,
        previousInstance: lock.previousInstance,
        // Three missed heartbeats: an agent that stopped that long ago is gone.
        freshMs: Math.max(3 * opts.heartbeatMs, 10_000),
      });
      try {
        await ownership.claim();
      } catch (err) {
        if (isPtcError(err, ErrorCode.AGENT_DUPLICATE)) throw err;
        // Unreadable now (NATS slow to answer): the first write still expects the key to be ours and finds a rival then.
        opts.log.warn({ err }, 'could not read this host\'s KV entry at start; ownership is checked at the first heartbeat');
      }
      await writeInstanceRecord(opts.stateDir, instance);
      const journal = await OpJournal.open(join(opts.stateDir, 'journal.jsonl'), opts.journalLimits);
      const { tornBytes, migratedFrom, setAside } = journal.report;
      if (tornBytes > 0 || (migratedFrom !== null && migratedFrom > 0) || setAside) opts.log.warn({ tornBytes, migratedFrom, setAside }, 'journal repaired on open');
      const records = await DeviceRecords.open(opts.stateDir);
      // Audit events leave through the outbox: published at once, acknowledged off the reply's critical path.
      const outbox = AuditOutbox.open({ js, file: join(opts.stateDir, 'audit-outbox.jsonl'), log: opts.log });
      agent = new HostAgent(opts, js, journal, records, lock, ownership, { machineId, agentInstance: instance }, outbox);
      if (opts.backend.responsive()) {
        const repairs = await repairInterrupted(agent.context('repair', 'agent-start'));
        for (const r of repairs) opts.log.warn({ repair: r }, 'repaired a step interrupted by a crash');
      }
      const started = agent;
      opts.backend.onBoot(() => started.requestAnnounce(true));
      started.sub = opts.nc.subscribe(agentSubjectWildcard(opts.hostId), {
        callback: (err, msg) => {
          if (err) {
            opts.log.error({ err }, 'subscription error');
            return;
          }
          const observer = opts.observer;
          started.enqueue(() => (observer ? observer.handling({ hostId: opts.hostId, subject: msg.subject, headers: msg.headers, data: msg.data }, () => started.handle(msg)) : started.handle(msg)));
        },
      });
      await opts.nc.flush();
      await started.announce();
      if (started.fencedBy) throw started.fencedBy;
      started.heartbeat = setInterval(() => started.requestAnnounce(false), opts.heartbeatMs);
      started.heartbeat.unref();
      opts.observer?.started({
        hostId: opts.hostId,
        hotplugCap: opts.hotplugCap ?? DEFAULT_HOTPLUG_CAP,
        hotplugsInWindow: (bdf, now) => records.recentHotplugs(bdf, now, (opts.hotplugCap ?? DEFAULT_HOTPLUG_CAP).windowMs).length,
        journalEntries: () => journal.size,
      });
      opts.log.info({ hostId: opts.hostId, journal: journal.size, instance, machineId }, 'agent ready');
      return started;
    } catch (err) {
      if (agent) await agent.stop();
      else await lock.release();
      throw err;
    }
  }

  /** One command at a time per host: effects on a host must never interleave. */
  private enqueue(work: () => Promise<void>): void {
    this.queue = this.queue.then(work).catch((err: unknown) => this.opts.log.error({ err }, 'agent task failed'));
  }

  /**
   * Queues a rescan unless one is already waiting. A heartbeat that finds a fresh inventory (a command
   * just published one) skips its scan; a boot always rescans.
   */
  private requestAnnounce(force: boolean): void {
    if (this.announcePending) return;
    this.announcePending = true;
    this.enqueue(async () => {
      this.announcePending = false;
      if (!force && Date.now() - this.lastPublishAt < this.opts.heartbeatMs / 2) return;
      await this.announce();
    });
  }

  /** Finishes the command in progress (SIGTERM lands here), answers nothing more, then releases the host. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.sub?.unsubscribe();
    await this.queue;
    await this.outbox.close();
    await this.opts.backend.close();
    await this.lock.release();
  }

  /** Another agent answers for this host: stop serving at once and say so (rule 16). */
  private fence(err: PtcError): void {
    if (this.fencedBy) return;
    this.fencedBy = err;
    this.stopped = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.sub?.unsubscribe();
    this.opts.log.error({ err: err.message }, 'another agent answers for this host; this one stopped serving');
    void this.emit('failed', null, null, { error: err.toInfo(), agentInstance: this.identity.agentInstance, machineId: this.identity.machineId });
    this.resolveFenced(err);
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

  private async publishInventory(scan?: HostScan): Promise<void> {
    const inv = await readInventory(this.opts.hostId, this.opts.backend, this.records, { identity: this.identity, scan });
    try {
      await this.ownership.publish(JSON.stringify(inv));
      this.lastPublishAt = Date.now();
      this.opts.observer?.inventoryPublished(inv);
    } catch (err) {
      if (isPtcError(err, ErrorCode.AGENT_DUPLICATE)) this.fence(err);
      else this.opts.log.warn({ err }, 'inventory publish failed; will retry at the next heartbeat');
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
    this.outbox.enqueue(eventSubject(this.opts.hostId, kind), event);
  }

  private async reply(msg: Msg, reply: AgentReply): Promise<void> {
    if (msg.reply) msg.respond(JSON.stringify(reply));
    this.opts.observer?.answered(this.opts.hostId, msg.subject, reply);
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
    this.kernelAsScanned = null;
    const reply = await this.run(command, args.data, opId, requestedBy);
    const permanent = reply.ok || isPermanent(reply.error.code);
    // Transient failures are not journaled, so the caller's retry with the same opId runs again; nor are
    // read-only commands, whose repeat changes nothing (and would only grow the journal).
    if (permanent && !READ_ONLY.has(command)) await this.journal.record(opId, command, argsKey, reply);
    if (reply.ok) await audit('applied', { result: READ_ONLY.has(command) ? null : reply.result });
    else await audit(REFUSAL_CODES.has(reply.error.code) ? 'refused' : 'failed', { error: reply.error });
    await this.reply(msg, reply);
    if (!READ_ONLY.has(command) && this.opts.backend.responsive()) {
      // A boot since the command began (an injected reboot at a checkpoint) makes its scan history.
      const booted = (await this.opts.backend.bootId()) !== bootId;
      await this.publishInventory(booted ? undefined : (this.kernelAsScanned ?? undefined));
    }
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

  private context(opId: string, command: string, requestedBy: string | null = null): HandlerContext {
    return {
      hostId: this.opts.hostId,
      backend: this.opts.backend,
      records: this.records,
      hotplugCap: this.opts.hotplugCap ?? DEFAULT_HOTPLUG_CAP,
      now: Date.now,
      emit: (kind, detail) => this.emit(kind, opId, command, detail, requestedBy),
      checkpoint: (step) => this.checkpoint(step),
      opId,
      kernelAsScanned: (scan) => {
        this.kernelAsScanned = scan;
      },
    };
  }

  private async run(command: AgentCommand, args: unknown, opId: string, requestedBy: string | null): Promise<AgentReply> {
    const ctx = this.context(opId, command, requestedBy);
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
