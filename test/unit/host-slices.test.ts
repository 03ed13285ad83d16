import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { splitHosts } from '../../cli/host-slices.js';
import { ErrorCode, isPtcError } from '../../schemas/errors.js';

const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => `sim-${i + 1}`);

void describe('splitHosts', () => {
  for (const [hosts, n, sizes] of [
    [2000, 4, [500, 500, 500, 500]],
    [2000, 3, [667, 667, 666]],
    [10, 1, [10]],
    [5, 2, [3, 2]],
    [3, 8, [1, 1, 1]],
    [0, 4, []],
  ] as const) {
    void it(`${hosts} hosts over ${n} processes: ${sizes.join(', ') || 'none'}`, () => {
      assert.deepEqual(splitHosts(ids(hosts), n).map((s) => s.length), sizes);
    });
  }

  void it('deals hosts in turn, so neighbours (launched together) run in different processes', () => {
    assert.deepEqual(splitHosts(ids(5), 2), [['sim-1', 'sim-3', 'sim-5'], ['sim-2', 'sim-4']]);
  });

  void it('refuses a count that is not a whole number ≥ 1', () => {
    for (const n of [0, -1, 1.5, NaN]) assert.throws(() => splitHosts(ids(3), n), (err: unknown) => isPtcError(err, ErrorCode.INVALID_INPUT));
  });

  void it('always: dealt back in turn it gives the hosts, no slice is empty, sizes differ by at most one', () => {
    fc.assert(
      fc.property(fc.array(fc.integer(), { maxLength: 300 }), fc.integer({ min: 1, max: 40 }), (hosts, n) => {
        const slices = splitHosts(hosts, n);
        const dealtBack = hosts.map((_, i) => slices[i % slices.length]?.[Math.floor(i / slices.length)]);
        assert.deepEqual(dealtBack, hosts);
        assert.equal(slices.length, Math.min(n, hosts.length));
        const sizes = slices.map((s) => s.length);
        assert.ok(sizes.every((s) => s > 0));
        if (sizes.length) assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1);
      }),
    );
  });
});
