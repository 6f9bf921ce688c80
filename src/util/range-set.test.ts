import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { RangeSet } from './range-set.ts';

test('RangeSet agrees with a boolean array model', () => {
  fc.assert(fc.property(fc.array(fc.tuple(fc.nat(200), fc.nat(30))), fc.nat(200), fc.integer({ min: 1, max: 20 }), fc.constantFrom(1, 4, 16),
    (adds, from, len, align) => {
      const s = new RangeSet();
      const model = new Array<boolean>(260).fill(false);
      for (const [a, l] of adds) { s.add(a, a + l); for (let i = a; i < a + l; i++) model[i] = true; }
      for (let i = 0; i < 260; i++) assert.equal(s.has(i), model[i]);
      const flat = s.ranges;
      for (let k = 1; k < flat.length; k++) assert.ok(flat[k - 1]![1] < flat[k]![0], 'merged and sorted');
      assert.equal(s.countIn(10, 150), model.slice(10, 150).filter(Boolean).length);
      const got = s.findFree(from, len, 260, align);
      let want: number | undefined;
      for (let p = Math.ceil(from / align) * align; p + len <= 260; p += align) {
        if (model.slice(p, p + len).every((x) => !x)) { want = p; break; }
      }
      assert.equal(got, want);
    }));
});
