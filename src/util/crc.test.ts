import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32c, crc32cUpdate, crc16Update } from './crc.ts';

const ascii = (s: string) => new TextEncoder().encode(s);

test('crc32c matches the published check value', () => {
  assert.equal(crc32c(ascii('123456789')), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
});

test('crc32c is incremental over any split', () => {
  const data = ascii('The quick brown fox jumps over the lazy dog, twice over.');
  const whole = crc32cUpdate(0xffffffff, data);
  for (let cut = 0; cut <= data.length; cut++) {
    assert.equal(crc32cUpdate(crc32cUpdate(0xffffffff, data, 0, cut), data, cut), whole);
  }
});

test('crc16 (ARC) matches the published check value', () => {
  assert.equal(crc16Update(0, ascii('123456789')), 0xbb3d);
});

test('crc32c word path equals a bitwise reference at every alignment, length and range', () => {
  const ref = (crc: number, b: Uint8Array, start: number, end: number) => {
    let c = crc >>> 0;
    for (let i = start; i < end; i++) {
      c ^= b[i]!;
      for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    }
    return c >>> 0;
  };
  const backing = new Uint8Array(700).map((_, i) => (i * 131 + 17) & 0xff);
  for (let off = 0; off < 5; off++) {
    const view = backing.subarray(off);
    for (const [s, e] of [[0, 63], [0, 64], [1, 65], [2, 200], [3, 131], [0, 512], [7, 600], [5, 5]] as const) {
      assert.equal(crc32cUpdate(0x12345678, view, s, e), ref(0x12345678, view, s, e), `offset ${off}, [${s}, ${e})`);
    }
  }
  assert.equal(crc32c(new Uint8Array(4096).fill(0xa5)), (~ref(0xffffffff, new Uint8Array(4096).fill(0xa5), 0, 4096)) >>> 0);
});
