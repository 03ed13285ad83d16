import { open, readFile, mkdir } from 'node:fs/promises';
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

/**
 * The agent's idempotency journal: one JSON line per finished operation, fsynced before the reply is
 * sent. A request whose opId is here gets the recorded reply and causes no second effect, across agent
 * restarts. An operation that crashed before its line was written is run again; the handlers are
 * idempotent by state (they read the host first), so that repeat changes nothing that was done.
 */
export class OpJournal {
  private readonly entries = new Map<string, JournalEntry>();

  private constructor(private readonly path: string) {}

  static async open(path: string): Promise<OpJournal> {
    const journal = new OpJournal(path);
    let text = '';
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      // A torn last line (crash mid-append) is the only line that can fail to parse: drop it.
      let raw: unknown;
      try {
        raw = JSON.parse(line);
      } catch {
        continue;
      }
      const entry = JournalEntry.safeParse(raw);
      if (entry.success) journal.entries.set(entry.data.opId, entry.data);
    }
    return journal;
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
    const entry: JournalEntry = { opId, command, argsKey, reply, at: new Date().toISOString() };
    await mkdir(dirname(this.path), { recursive: true });
    const handle = await open(this.path, 'a', 0o600);
    try {
      await handle.write(JSON.stringify(entry) + '\n');
      await handle.sync();
    } finally {
      await handle.close();
    }
    this.entries.set(opId, entry);
  }

  get size(): number {
    return this.entries.size;
  }
}
