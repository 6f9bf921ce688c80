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
