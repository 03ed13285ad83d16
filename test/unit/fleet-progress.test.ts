import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FleetProgress } from '../../cli/fleet-progress.js';

/** A stderr stand-in on a clock the test moves. */
function recorder(isTTY: boolean): { lines: string[]; clock: { now: number }; progress: FleetProgress } {
  const lines: string[] = [];
  const clock = { now: 0 };
  const progress = new FleetProgress({ isTTY, write: (text) => lines.push(text) > 0 }, () => clock.now);
  return { lines, clock, progress };
}

/** readHostInventories' calls for a fleet of `hosts`, one every 1,000 hosts, `msPer1000` apart. */
function read(r: ReturnType<typeof recorder>, hosts: number, msPer1000: number): void {
  for (let n = 1000; n <= hosts; n += 1000) {
    r.clock.now += msPer1000;
    r.progress.inventoriesRead(n);
  }
}

void describe('FleetProgress', () => {
  void it('says how many inventories it read at most once a second, then that it resolves the plan', () => {
    const r = recorder(false);
    read(r, 40_000, 100);
    r.progress.resolving(40_123);
    assert.deepEqual(r.lines, [
      'ptctl: read 2000 host inventories…',
      'ptctl: read 12000 host inventories…',
      'ptctl: read 22000 host inventories…',
      'ptctl: read 32000 host inventories…',
      'ptctl: read 40123 host inventories; resolving the plan…',
    ].map((l) => `${l}\n`));
  });

  void it('is silent for a fleet of at most 1,000 hosts unless stderr is a terminal', () => {
    const pipe = recorder(false);
    read(pipe, 1000, 100);
    pipe.progress.resolving(1000);
    assert.deepEqual(pipe.lines, []);
    const tty = recorder(true);
    read(tty, 1000, 100);
    tty.progress.resolving(1000);
    assert.deepEqual(tty.lines, ['ptctl: read 1000 host inventories…\n']);
  });
});
