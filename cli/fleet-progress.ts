/** A fleet above this many hosts gets progress lines even when stderr is not a terminal (a CI log). */
export const LARGE_FLEET = 1000;

/** The least time between two counter lines. */
export const PROGRESS_INTERVAL_MS = 1000;

/** Where the lines go: process.stderr, or a test's recorder. */
export interface ProgressSink {
  readonly isTTY?: boolean | undefined;
  write(text: string): boolean;
}

/**
 * Progress of a command that reads the whole fleet before it prints anything (`ptctl plan`, `ptctl
 * apply`), as `ptctl: …` lines on stderr, never on stdout, so `--json` output stays one document. A
 * small fleet is read in a blink and says nothing.
 */
export class FleetProgress {
  private lastAt = -Infinity;

  constructor(
    private readonly sink: ProgressSink = process.stderr,
    private readonly now: () => number = Date.now,
  ) {}

  /** For readHostInventories' onProgress (it calls every 1,000 hosts): at most one line a second. */
  readonly inventoriesRead = (hosts: number): void => {
    if (!(this.sink.isTTY === true || hosts > LARGE_FLEET)) return;
    const at = this.now();
    if (at - this.lastAt < PROGRESS_INTERVAL_MS) return;
    this.lastAt = at;
    this.sink.write(`ptctl: read ${hosts} host inventories…\n`);
  };

  /**
   * Reading is over and the plan is being resolved (about a second per 100,000 hosts, with nothing
   * else to show meanwhile). Said once, whatever the last counter line's time: it is the line that
   * tells the user the counting stopped on purpose.
   */
  resolving(hosts: number): void {
    if (hosts <= LARGE_FLEET) return;
    this.lastAt = this.now();
    this.sink.write(`ptctl: read ${hosts} host inventories; resolving the plan…\n`);
  }
}
