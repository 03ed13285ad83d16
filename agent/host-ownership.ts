import type { NatsConnection } from '@nats-io/transport-node';
import type { JetStreamClient } from '@nats-io/jetstream';
import { HOSTS_BUCKET } from '../schemas/agent-protocol.js';
import { ErrorCode, PtcError } from '../schemas/errors.js';
// The subject a host's agent may read its own KV entry on (DESIGN §2: it may touch its own key only).
import { ownKeyDirectGetSubject } from '../transport/nats-permissions.js';

const keySubject = (hostId: string): string => `$KV.${HOSTS_BUCKET}.${hostId}`;

/** JetStream's "wrong last sequence": someone else wrote the key since this agent's last write. */
const WRONG_LAST_SEQUENCE = 10071;

interface Entry {
  seq: number;
  /** Null for a delete or purge marker, or a value that is not an inventory. */
  inventory: { seenAt?: unknown; machineId?: unknown; agentInstance?: unknown } | null;
}

export interface OwnershipOptions {
  nc: NatsConnection;
  js: JetStreamClient;
  hostId: string;
  instance: string;
  machineId: string | null;
  /** The instance that ran on this agent's state dir before: its heartbeat is this agent's own past. */
  previousInstance: string | null;
  /** A heartbeat younger than this is from an agent that is still running. */
  freshMs: number;
  now?: () => number;
}

/**
 * Rule 16 across machines: the host's key in KV `ptc_hosts` is written by one agent. At start, a
 * fresh heartbeat from another machine or another agent instance means another agent answers for
 * this host, and this one refuses to serve (AGENT_DUPLICATE). While running, every write expects the
 * key's last sequence to be this agent's own, so two agents that started at once find each other at
 * the next heartbeat: the one whose write is refused stops.
 */
export class HostKeyOwnership {
  private lastSeq = 0;

  constructor(private readonly opts: OwnershipOptions) {}

  private async latest(): Promise<Entry | null> {
    const msg = await this.opts.nc.request(ownKeyDirectGetSubject(this.opts.hostId), new Uint8Array(0), { timeout: 5000 });
    const status = msg.headers?.code ?? 0;
    if (status === 404) return null;
    if (status >= 400) throw new PtcError(ErrorCode.STACK_FAILED, `reading KV ${HOSTS_BUCKET}.${this.opts.hostId} failed: ${status} ${msg.headers?.description ?? ''}`);
    const seq = Number(msg.headers?.get('Nats-Sequence') ?? '0');
    const op = msg.headers?.get('KV-Operation') ?? '';
    if (op === 'DEL' || op === 'PURGE') return { seq, inventory: null };
    try {
      const value: unknown = msg.json();
      return { seq, inventory: typeof value === 'object' && value !== null ? value : null };
    } catch {
      return { seq, inventory: null };
    }
  }

  /** Why the entry shows another live agent for this host; null when it is this agent's own or stale. */
  private rival(entry: Entry | null, atStart: boolean): string | null {
    const inv = entry?.inventory;
    if (!inv) return null;
    const instance = typeof inv.agentInstance === 'string' ? inv.agentInstance : null;
    const machine = typeof inv.machineId === 'string' ? inv.machineId : null;
    if (instance === this.opts.instance) return null;
    const seenAt = typeof inv.seenAt === 'string' ? Date.parse(inv.seenAt) : NaN;
    const age = (this.opts.now ?? Date.now)() - seenAt;
    // At start only a fresh heartbeat counts; while running, any write by someone else does.
    if (atStart && !(age < this.opts.freshMs)) return null;
    if (machine !== null && this.opts.machineId !== null && machine !== this.opts.machineId) {
      return `machine ${machine} (this is ${this.opts.machineId})`;
    }
    // An entry without an instance id comes from an older agent: it cannot be told apart from this one's past.
    if (instance === null || instance === this.opts.previousInstance) return null;
    return `agent instance ${instance}${machine ? ` on machine ${machine}` : ''}`;
  }

  private duplicate(who: string, ageNote: string): PtcError {
    return new PtcError(
      ErrorCode.AGENT_DUPLICATE,
      `another agent already answers for host ${this.opts.hostId}: ${who} ${ageNote}; this agent refuses to serve. Stop one of them (two agents would run every command twice), or give this machine its own --host-id`,
    );
  }

  /** Refuses (AGENT_DUPLICATE) when another live agent holds the host's key; otherwise remembers where the key is. */
  async claim(): Promise<void> {
    const entry = await this.latest();
    const who = this.rival(entry, true);
    if (who) throw this.duplicate(who, `published its inventory ${Math.round(((this.opts.now ?? Date.now)() - Date.parse(String(entry?.inventory?.seenAt))) / 1000)} s ago`);
    this.lastSeq = entry?.seq ?? 0;
  }

  /**
   * Writes the inventory if the key is still this agent's. Throws AGENT_DUPLICATE when another agent
   * wrote it since; other failures (timeouts) are the caller's to retry.
   */
  async publish(payload: string): Promise<void> {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const ack = await this.opts.js.publish(keySubject(this.opts.hostId), payload, { timeout: 5000, expect: { lastSubjectSequence: this.lastSeq } });
        this.lastSeq = ack.seq;
        return;
      } catch (err) {
        if ((err as { code?: unknown }).code !== WRONG_LAST_SEQUENCE) throw err;
      }
      // Our own write whose ack was lost, or a delete by an operator, is not a rival: follow it and write again.
      const entry = await this.latest();
      const who = this.rival(entry, false);
      if (who) throw this.duplicate(who, 'wrote the key after this agent did');
      this.lastSeq = entry?.seq ?? 0;
    }
  }
}

/** `/etc/machine-id` as the host files show it; null when absent or empty. */
export function machineIdOf(text: string | null): string | null {
  const id = text?.trim() ?? '';
  return /^[0-9a-f]{32}$/i.test(id) ? id.toLowerCase() : id === '' ? null : id.slice(0, 64);
}
