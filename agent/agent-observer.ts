import type { MsgHdrs } from '@nats-io/transport-node';
import type { AgentReply } from '../schemas/agent-protocol.js';
import type { HostInventory } from '../schemas/inventory.js';
import type { HotplugCap } from './command-handlers.js';

/** What an observer may read from a running agent, at any time (e.g. when metrics are scraped). */
export interface AgentView {
  hostId: string;
  hotplugCap: HotplugCap;
  /** Hotplugs of a device inside the cap's sliding window ending at `now` (0 for an unknown device). */
  hotplugsInWindow(bdf: string, now: number): number;
  /** Operations in the idempotency journal. */
  journalEntries(): number;
}

/** One request as it reached the agent. */
export interface AgentRequestMeta {
  hostId: string;
  subject: string;
  headers: MsgHdrs | undefined;
  data: Uint8Array;
}

/**
 * Hooks for metrics, traces and logs. The agent calls them and never depends on what they do: an
 * observer must not throw, and the agent behaves the same without one.
 */
export interface AgentObserver {
  /** The agent is answering requests; `view` stays valid until it stops. */
  started(view: AgentView): void;
  /** Wraps the handling of one request (validation, journal, effect, audit, reply). */
  handling(request: AgentRequestMeta, work: () => Promise<void>): Promise<void>;
  /** A reply was sent (every path: refusals before validation, replays from the journal, results). */
  answered(hostId: string, subject: string, reply: AgentReply): void;
  /** An inventory scan was published to KV. */
  inventoryPublished(inv: HostInventory): void;
}
