import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { jsonChunks } from '../../cli/json-chunks.js';

const streamed = (value: unknown): string => [...jsonChunks(value)].join('');

void describe('jsonChunks', () => {
  void it('is JSON.stringify(value, null, 2), character for character, for any JSON value', () => {
    fc.assert(fc.property(fc.jsonValue(), (value) => streamed(value) === JSON.stringify(value, null, 2)), { numRuns: 500 });
  });

  for (const [what, value] of [
    ['empty object and array, nested', { a: {}, b: [], c: [[], {}], d: { e: { f: [] } } }],
    ['fields without a JSON form are left out, elements become null', { a: undefined, b: () => 1, c: [undefined, () => 1, Symbol('s')], d: 1 }],
    ['only fields without a JSON form', { a: undefined }],
    ['a Date, a Map and a toJSON, as JSON.stringify has them', { at: new Date(0), m: new Map([[1, 2]]), t: { toJSON: () => ({ x: 1 }) }, list: [new Date(1)] }],
    ['strings with newlines and quotes keep their escapes', { 'k\ney': 'a\nb "c"', list: ['x\ny', { z: '\n' }] }],
    ['a null-prototype object', Object.assign(Object.create(null) as object, { a: [1, { b: 2 }] })],
    ['top-level primitives', 'text'],
  ] as const) {
    void it(what, () => assert.equal(streamed(value), JSON.stringify(value, null, 2)));
  }

  void it('writes nothing for a top-level value without a JSON form, as JSON.stringify returns none', () => {
    assert.equal(streamed(undefined), '');
  });

  void it('yields an array element by element: one piece per element, not one string for the whole', () => {
    const hosts = Array.from({ length: 1000 }, (_, i) => ({ hostId: `h-${i}`, assignments: [{ status: 'change' }] }));
    const pieces = [...jsonChunks({ name: 'p', hosts, summary: { n: 1000 } })];
    assert.ok(pieces.length > 1000, `${pieces.length} pieces`);
    assert.ok(Math.max(...pieces.map((p) => p.length)) < 200, 'no piece holds more than one host');
  });
});
