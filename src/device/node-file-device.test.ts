import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NodeFileDevice } from './node-file-device.ts';
import { CoalescingDevice } from './coalescing-device.ts';
import { Ext4Error } from '../errors/ext4-error.ts';

test('read and readInto return the same bytes; a host file shrunk under the device reads zeros past its end', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'nfd-'));
  try {
    const path = join(dir, 'img');
    const content = new Uint8Array(8192).map((_, i) => (i * 7 + 3) & 0xff);
    writeFileSync(path, content);
    const dev = await NodeFileDevice.open(path, { readOnly: true });
    assert.deepEqual(await dev.read(1000, 5000), content.subarray(1000, 6000));
    const into = new Uint8Array(5000).fill(0xee);
    dev.readInto(1000, into);
    assert.deepEqual(into, content.subarray(1000, 6000));
    // The device keeps its size; the file behind it is now 4096 bytes: the rest reads as zeros,
    // not as whatever the (unzeroed) buffer held before.
    truncateSync(path, 4096);
    const tail = new Uint8Array(4096).fill(0xee);
    dev.readInto(2048, tail);
    assert.deepEqual(tail.subarray(0, 2048), content.subarray(2048, 4096));
    assert.ok(tail.subarray(2048).every((b) => b === 0));
    const fresh = await dev.read(4096, 4096);
    assert.ok(fresh.every((b) => b === 0));
    assert.throws(() => dev.readInto(8000, new Uint8Array(500)), (e: unknown) => e instanceof Ext4Error && e.code === 'EIO');
    await dev.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// Large gather writes run on a libuv thread (writeback data); requests issued after one must
// still see it / land after it where they overlap, and flush/close wait for it.
async function orderingRun(ignoreOverlaps: boolean): Promise<{ readLast: number; readInto: boolean; smallWins: boolean; durable: boolean }> {
  const dir = mkdtempSync(join(tmpdir(), 'nfd-'));
  try {
    const path = join(dir, 'img');
    const bigBytes = 64 << 20;
    const dev = await NodeFileDevice.create(path, bigBytes + (1 << 20));
    dev.ignoreOverlapsForTest = ignoreOverlaps;
    // 64 MiB in 1 MiB chunks of 0xaa, then at once (no await) a read of its last block and a
    // small write of 0xbb into it: both must act after the big write.
    const chunks = Array.from({ length: 64 }, () => new Uint8Array(1 << 20).fill(0xaa));
    const big = dev.writev(0, chunks);
    const lastBlock = bigBytes - 4096;
    const read = dev.read(lastBlock, 4096);
    let readInto = false;
    try { dev.readInto(lastBlock, new Uint8Array(4096)); } catch (e) { readInto = e instanceof Ext4Error && e.code === 'EIO'; }
    const small = dev.write(lastBlock, new Uint8Array(512).fill(0xbb));
    const flushed = dev.flush();
    await Promise.all([big, small, flushed]);
    const got = await read;
    const after = await dev.read(lastBlock, 4096);
    await dev.close();
    const onDisk = new Uint8Array(readFileSync(path).subarray(lastBlock, lastBlock + 4096));
    return { readLast: got[4095]!, readInto, smallWins: after[0] === 0xbb && after[600] === 0xaa, durable: onDisk[0] === 0xbb && onDisk[4095] === 0xaa };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('a large gather write runs on another thread; reads and writes issued after it that overlap wait for it', async () => {
  const r = await orderingRun(false);
  assert.deepEqual(r, { readLast: 0xaa, readInto: true, smallWins: true, durable: true });
});

test('broken variant: without the overlap check a read overtakes the write in flight (the test above catches it)', async () => {
  const r = await orderingRun(true);
  // The read sees the old zeros, or the big write lands over the small one.
  assert.ok(r.readLast === 0 || !r.smallWins, `the ordering bug went unnoticed: ${JSON.stringify(r)}`);
});

// Through the coalescing device (as a mount uses it): it no longer holds its queue for a large
// write, so the ordering rests on the device below.
async function coalescedRun(ignoreOverlaps: boolean): Promise<{ readLast: number; last: number; bigDoneFirst: boolean }> {
  const dir = mkdtempSync(join(tmpdir(), 'nfd-'));
  try {
    const bigBytes = 64 << 20;
    const file = await NodeFileDevice.create(join(dir, 'img'), bigBytes + (1 << 20));
    file.ignoreOverlapsForTest = ignoreOverlaps;
    const dev = new CoalescingDevice(file, 1 << 20);
    assert.equal(dev.ordersOverlaps, true);
    let bigDone = false;
    const big = dev.writev(0, Array.from({ length: 64 }, () => new Uint8Array(1 << 20).fill(0xaa))).then(() => { bigDone = true; });
    // A small write elsewhere is not held behind the large one (the queue moved on once it was issued).
    const elsewhere = dev.write(bigBytes, new Uint8Array(4096).fill(0xcc));
    const read = dev.read(bigBytes - 4096, 4096);
    const small = dev.write(bigBytes - 4096, new Uint8Array(4096).fill(0xbb));
    await elsewhere;
    const bigDoneFirst = bigDone;
    await dev.flush();
    await Promise.all([big, small]);
    const got = await read;
    const after = await dev.read(bigBytes - 4096, 4096);
    await dev.close();
    return { readLast: got[4095]!, last: after[0]!, bigDoneFirst };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('through the coalescing device: requests after a large write keep their order, unrelated ones do not wait', async () => {
  assert.deepEqual(await coalescedRun(false), { readLast: 0xaa, last: 0xbb, bigDoneFirst: false });
});

test('broken variant through the coalescing device: without the overlap check the order is lost', async () => {
  const r = await coalescedRun(true);
  assert.ok(r.readLast === 0 || r.last !== 0xbb, `the ordering bug went unnoticed: ${JSON.stringify(r)}`);
});
