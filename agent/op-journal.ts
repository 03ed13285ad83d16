import { open, readFile, mkdir, rename, truncate } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';
import { AgentReply } from '../schemas/agent-protocol.js';
import { ErrorCode, PtcError } from '../schemas/errors.js';

const JournalEntry = z.object({
  opId: z.string(),
  command: z.string(),
  argsKey: z.string(),
  reply: AgentReply,
  at: z.string(),
});
type JournalEntry = z.infer<typeof JournalEntry>;

/** Version 1 had no header (entry lines only); version 2 starts with this header line. */
export const JOURNAL_VERSION = 2;
const Header = z.object({ journal: z.literal('ptctl-op-journal'), version: z.number().int().positive() });

export interface JournalLimits {
  /** Compact when the file holds more lines than this. */
  maxEntries: number;
  /** Entries younger than this survive compaction: a caller may still retry their op ids. */
  retainMs: number;
  /** Entries kept by a compaction even when older (the newest ones). */
  keepNewest: number;
}

/** Temporal retries an activity for at most its schedule-to-close (hours); a week covers every retry of a live workflow. */
export const DEFAULT_JOURNAL_LIMITS: JournalLimits = { maxEntries: 20_000, retainMs: 7 * 24 * 3600_000, keepNewest: 5_000 };

export interface JournalOpenReport {
  /** Bytes of a torn last line cut off (a crash mid-append). */
  tornBytes: number;
  /** The version the file had; 0 for a new file. */
  migratedFrom: number | null;
  /** Where an unreadable journal of a newer version was moved, so this agent starts instead of crash-looping. */
  setAside: string | null;
}

/**
 * The agent's idempotency journal: a header line, then one JSON line per finished operation, fsynced
 * before the reply is sent. A request whose opId is here gets the recorded reply and causes no second
 * effect, across agent restarts. An operation that crashed before its line was written is run again;
 * the handlers are idempotent by state (they read the host first), so that repeat changes nothing
 * that was done. Read-only commands are not journaled (the caller's side decides that).
 */
export class OpJournal {
  private readonly entries = new Map<string, JournalEntry>();
  private lines = 0;
  report: JournalOpenReport = { tornBytes: 0, migratedFrom: null, setAside: null };

  private constructor(
    private readonly path: string,
    private readonly limits: JournalLimits,
    private readonly now: () => number,
  ) {}

  static async open(path: string, limits: JournalLimits = DEFAULT_JOURNAL_LIMITS, now: () => number = Date.now): Promise<OpJournal> {
    const journal = new OpJournal(path, limits, now);
    await journal.load();
    return journal;
  }

  private async load(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      this.report = { tornBytes: 0, migratedFrom: 0, setAside: null };
      await this.rewrite([]);
      return;
    }
    // A crash mid-append leaves a last line without its newline: cut it off, or the next append would be glued to it and lost.
    const lastNewline = text.lastIndexOf('\n');
    const intact = text.slice(0, lastNewline + 1);
    const tornBytes = Buffer.byteLength(text) - Buffer.byteLength(intact);
    if (tornBytes > 0) await truncate(this.path, Buffer.byteLength(intact));
    const lines = intact.split('\n').filter((l) => l.trim() !== '');
    let version = 1;
    const first = lines[0];
    if (first !== undefined) {
      const header = Header.safeParse(safeJson(first));
      if (header.success) {
        version = header.data.version;
        lines.shift();
      }
    }
    if (version > JOURNAL_VERSION) {
      // A newer agent's journal that this one cannot read: keep it for the newer agent, start an empty one.
      const aside = `${this.path}.v${version}.${this.now()}`;
      await rename(this.path, aside);
      this.report = { tornBytes, migratedFrom: null, setAside: aside };
      await this.rewrite([]);
      return;
    }
    for (const line of lines) {
      const entry = JournalEntry.safeParse(safeJson(line));
      if (entry.success) this.entries.set(entry.data.opId, entry.data);
    }
    this.lines = lines.length;
    this.report = { tornBytes, migratedFrom: version < JOURNAL_VERSION ? version : null, setAside: null };
    if (version < JOURNAL_VERSION || this.lines > this.limits.maxEntries) await this.compact();
  }

  /**
   * Returns the recorded reply for this opId, or null when the operation has not finished before.
   * Throws OP_ID_REUSED when the opId was used for a different command or arguments.
   */
  lookup(opId: string, command: string, argsKey: string): AgentReply | null {
    const entry = this.entries.get(opId);
    if (!entry) return null;
    if (entry.command !== command || entry.argsKey !== argsKey) {
      throw new PtcError(ErrorCode.OP_ID_REUSED, `operation id ${opId} was already used for a different request (${entry.command}); use a new id`);
    }
    return entry.reply;
  }

  async record(opId: string, command: string, argsKey: string, reply: AgentReply): Promise<void> {
    const entry: JournalEntry = { opId, command, argsKey, reply, at: new Date(this.now()).toISOString() };
    await mkdir(dirname(this.path), { recursive: true });
    const handle = await open(this.path, 'a', 0o600);
    try {
      await handle.write(JSON.stringify(entry) + '\n');
      await handle.sync();
    } finally {
      await handle.close();
    }
    this.entries.set(opId, entry);
    this.lines++;
    if (this.lines > this.limits.maxEntries) await this.compact();
  }

  /** Keeps every entry a caller may still retry (young ones) and at least the newest `keepNewest`; one line per op id. */
  private async compact(): Promise<void> {
    const cutoff = this.now() - this.limits.retainMs;
    const byAge = [...this.entries.values()].sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
    const keep = byAge.filter((e, i) => i >= byAge.length - this.limits.keepNewest || Date.parse(e.at) >= cutoff);
    this.entries.clear();
    for (const e of keep) this.entries.set(e.opId, e);
    await this.rewrite(keep);
  }

  /** Replaces the file atomically (temp, fsync, rename): a crash leaves the old journal or the new one. */
  private async rewrite(entries: readonly JournalEntry[]): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true });
    const tmp = `${this.path}.tmp`;
    const handle = await open(tmp, 'w', 0o600);
    try {
      const header = JSON.stringify({ journal: 'ptctl-op-journal', version: JOURNAL_VERSION });
      await handle.writeFile([header, ...entries.map((e) => JSON.stringify(e))].join('\n') + '\n');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, this.path);
    this.lines = entries.length;
  }

  get size(): number {
    return this.entries.size;
  }
}

function safeJson(line: string): unknown {
  try {
    return JSON.parse(line) as unknown;
  } catch {
    return undefined;
  }
}
