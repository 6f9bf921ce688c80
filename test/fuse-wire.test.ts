// The FUSE codecs' 64-bit fields are read and written as two 32-bit halves (no BigInt per field):
// compared here, value by value, with DataView's own BigInt accessors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Reader, Writer, ProtocolError } from '../src/fuse/wire.ts';
import { decodeRequestHeader, encodeReply, encodeReplyHeader, replyInto } from '../src/fuse/header.ts';

/** Integers around every power of two up to 2^53, both signs, plus a seeded random sample. */
function samples(): number[] {
  const out = [0, 1, -1, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER];
  for (let b = 0; b <= 53; b++) {
    const p = 2 ** b;
    for (const x of [p - 1, p, p + 1]) if (x <= Number.MAX_SAFE_INTEGER) out.push(x, -x);
  }
  let s = 12345;
  for (let i = 0; i < 2000; i++) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const hi = s % 2 ** 21;
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const x = hi * 2 ** 32 + ((s * 3) % 2 ** 32);
    out.push(x, -x);
  }
  return out.map((x) => x + 0); // no -0
}

test('Writer.u64/i64 store what setBigUint64/setBigInt64 store', () => {
  for (const x of samples()) {
    const w = new Writer(16).u64(x).i64(x);
    const ref = new DataView(new ArrayBuffer(16));
    ref.setBigUint64(0, BigInt.asUintN(64, BigInt(x)), true);
    ref.setBigInt64(8, BigInt(x), true);
    assert.deepEqual(w.bytes, new Uint8Array(ref.buffer), `value ${x}`);
  }
  // A bigint still goes through exactly.
  const big = 0xfedc_ba98_7654_3210n;
  const w = new Writer(8).u64(big);
  assert.equal(new DataView(w.bytes.buffer).getBigUint64(0, true), big);
});

test('Reader.u64/i64 read what getBigUint64/getBigInt64 read; u64 beyond 2^53 is a ProtocolError', () => {
  for (const x of samples()) {
    const b = new DataView(new ArrayBuffer(16));
    b.setBigInt64(0, BigInt(x), true);
    b.setBigInt64(8, BigInt(x), true);
    const r = new Reader(new Uint8Array(b.buffer));
    if (x >= 0) assert.equal(r.u64(), x, `u64 ${x}`);
    else assert.throws(() => r.u64(), ProtocolError, `u64 of negative ${x}`);
    r.pos = 8;
    assert.equal(r.i64(), x, `i64 ${x}`);
  }
  const b = new DataView(new ArrayBuffer(8));
  b.setBigUint64(0, 2n ** 53n, true);
  assert.throws(() => new Reader(new Uint8Array(b.buffer)).u64(), ProtocolError);
  b.setBigUint64(0, 2n ** 53n - 1n, true);
  assert.equal(new Reader(new Uint8Array(b.buffer)).u64(), Number.MAX_SAFE_INTEGER);
});

test('request header decode and reply encode carry the 64-bit unique and node id exactly', () => {
  const raw = new Uint8Array(48);
  const v = new DataView(raw.buffer);
  v.setUint32(0, 48, true);
  v.setUint32(4, 1, true);
  v.setBigUint64(8, 0x1234_5678_9abcn, true);
  v.setBigUint64(16, 0x1_0000_0002n, true);
  v.setUint32(24, 1000, true);
  v.setUint32(28, 1001, true);
  v.setUint32(32, 4242, true);
  const h = decodeRequestHeader(raw);
  assert.deepEqual(h, { lenBytes: 48, opcode: 1, unique: 0x1234_5678_9abc, nodeId: 0x1_0000_0002, uid: 1000, gid: 1001, pid: 4242 });
  const reply = encodeReply(h.unique, 2);
  const rv = new DataView(reply.buffer);
  assert.equal(rv.getUint32(0, true), 16);
  assert.equal(rv.getInt32(4, true), -2);
  assert.equal(rv.getBigUint64(8, true), 0x1234_5678_9abcn);
  const withPayload = encodeReply(h.unique, 0, new Uint8Array([7, 8, 9]));
  assert.deepEqual([...withPayload.subarray(16)], [7, 8, 9]);
  assert.equal(new DataView(withPayload.buffer).getUint32(0, true), 19);
  const head = new DataView(encodeReplyHeader(h.unique, 100).buffer);
  assert.equal(head.getUint32(0, true), 116);
  assert.equal(head.getBigUint64(8, true), 0x1234_5678_9abcn);
  // A unique beyond 2^53 cannot be echoed exactly: the request is refused as malformed.
  v.setBigUint64(8, 2n ** 60n, true);
  assert.throws(() => decodeRequestHeader(raw), ProtocolError);
});

test('replyInto builds in a reused buffer the very bytes encodeReply builds', () => {
  const scratch = new DataView(new ArrayBuffer(4096));
  new Uint8Array(scratch.buffer).fill(0xaa);
  const cases: Array<[number, number, Uint8Array | undefined]> = [
    [2 ** 40 + 6, 0, new Uint8Array(104).map((_, i) => i)], [8, 2, undefined], [10, 0, undefined], [12, 61, new Uint8Array([1, 2, 3])],
    [14, 0, new Uint8Array([5])],
  ];
  for (const [unique, errno, payload] of cases) {
    const got = replyInto(scratch, unique, errno, payload);
    assert.equal(got.buffer, scratch.buffer, 'no new buffer');
    assert.deepEqual(got, encodeReply(unique, errno, payload), `unique ${unique} errno ${errno}`);
  }
});
