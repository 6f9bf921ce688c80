import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CoalescingDevice } from './coalescing-device.ts';
import { MemoryDevice } from './memory-device.ts';
import { Ext4Error } from '../errors/ext4-error.ts';

/** A MemoryDevice that records every write that reaches it. */
class CountingDevice extends MemoryDevice {
  writes: Array<[number, number]> = [];
  flushes = 0;
  override async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    this.writes.push([offsetBytes, data.length]);
    await super.write(offsetBytes, data);
  }
  override async flush(): Promise<void> { this.flushes++; }
}

const bytes = (n: number, v: number) => new Uint8Array(n).fill(v);

test('appending writes reach the device as one write, at flush', async () => {
  const inner = new CountingDevice(1 << 20);
  const dev = new CoalescingDevice(inner, 64 * 1024);
  for (let i = 0; i < 8; i++) await dev.write(4096 + i * 1024, bytes(1024, i + 1));
  assert.deepEqual(inner.writes, []);
  await dev.flush();
  assert.deepEqual(inner.writes, [[4096, 8192]]);
  assert.equal(inner.flushes, 1);
  for (let i = 0; i < 8; i++) assert.equal(inner.bytes[4096 + i * 1024 + 1023], i + 1);
});

test('reads see buffered writes; a read elsewhere does not write them out', async () => {
  const inner = new CountingDevice(1 << 20);
  const dev = new CoalescingDevice(inner, 64 * 1024);
  await dev.write(8192, bytes(4096, 7));
  await dev.read(0, 4096);
  assert.deepEqual(inner.writes, []);
  const got = await dev.read(10_000, 100);
  assert.deepEqual(inner.writes, [[8192, 4096]]);
  assert.ok(got.every((b) => b === 7));
});

test('a write that does not append writes the buffer out first, keeping order on overlap', async () => {
  const inner = new CountingDevice(1 << 20);
  const dev = new CoalescingDevice(inner, 64 * 1024);
  await dev.write(0, bytes(4096, 1));
  await dev.write(1024, bytes(1024, 2)); // overlaps: must land after the first
  await dev.write(2048, bytes(1024, 3)); // appends to the second
  await dev.close();
  assert.deepEqual(inner.writes, [[0, 4096], [1024, 2048]]);
  assert.deepEqual([inner.bytes[0], inner.bytes[1024], inner.bytes[2048], inner.bytes[3072]], [1, 2, 3, 1]);
});

test('full buffer and large writes go through; errors surface at the call that caused them', async () => {
  const inner = new CountingDevice(1 << 20);
  const dev = new CoalescingDevice(inner, 8192);
  await dev.write(0, bytes(4096, 1));
  await dev.write(4096, bytes(4096, 2));
  await dev.write(8192, bytes(4096, 3)); // would overflow: the first 8 KiB go out
  assert.deepEqual(inner.writes, [[0, 8192]]);
  await dev.write(65536, bytes(8192, 4)); // large: straight through, after the buffered 4 KiB
  assert.deepEqual(inner.writes, [[0, 8192], [8192, 4096], [65536, 8192]]);
  await assert.rejects(dev.write((1 << 20) - 10, bytes(20, 0)), (e: unknown) => e instanceof Ext4Error && e.code === 'EIO');
  const ro = new CoalescingDevice(new MemoryDevice(4096, { readOnly: true }));
  await assert.rejects(ro.write(0, bytes(1, 1)), (e: unknown) => e instanceof Ext4Error && e.code === 'EROFS');
});

test('concurrent writes while a write-out is in flight lose nothing (found by the schedule explorer)', async () => {
  /** Holds every write until release() is called. */
  class GatedDevice extends MemoryDevice {
    private gates: Array<() => void> = [];
    override async write(offsetBytes: number, data: Uint8Array): Promise<void> {
      await new Promise<void>((r) => this.gates.push(r));
      await super.write(offsetBytes, data);
    }
    release(): void { for (const g of this.gates.splice(0)) g(); }
  }
  const inner = new GatedDevice(1 << 20);
  const dev = new CoalescingDevice(inner, 64 * 1024);
  await dev.write(0, bytes(4096, 1));
  const first = dev.write(65536, bytes(4096, 2)); // writes [0, 4096) out, then waits for the device
  const second = dev.write(4096, bytes(4096, 3)); // buffered while that write-out is in flight
  const reader = dev.read(0, 8192); // must wait for both
  for (let i = 0; i < 10; i++) { inner.release(); await new Promise((r) => setImmediate(r)); }
  await Promise.all([first, second]);
  const flushed = dev.flush();
  for (let i = 0; i < 10; i++) { inner.release(); await new Promise((r) => setImmediate(r)); }
  await flushed;
  const got = await reader;
  assert.deepEqual([got[0], got[4096]], [1, 3]);
  assert.deepEqual([inner.bytes[0], inner.bytes[4096], inner.bytes[65536]], [1, 3, 2]);
});

test('requests complete in issue order: a write behind a waiting one never lands first', async () => {
  class GatedDevice extends MemoryDevice {
    private gates: Array<() => void> = [];
    override async write(offsetBytes: number, data: Uint8Array): Promise<void> {
      const copy = data.slice();
      await new Promise<void>((r) => this.gates.push(r));
      await super.write(offsetBytes, copy);
    }
    release(): void { for (const g of this.gates.splice(0)) g(); }
  }
  const inner = new GatedDevice(1 << 20);
  const dev = new CoalescingDevice(inner, 64 * 1024);
  await dev.write(0, bytes(4096, 1));
  const a = dev.write(8192, bytes(4096, 2)); // waits for [0, 4096) to go out
  const b = dev.write(8192, bytes(4096, 3)); // same block, issued later: must win
  const writes = Promise.all([a, b]);
  for (let i = 0; i < 10; i++) { inner.release(); await new Promise((r) => setImmediate(r)); }
  await writes;
  const flushed = dev.flush();
  for (let i = 0; i < 10; i++) { inner.release(); await new Promise((r) => setImmediate(r)); }
  await flushed;
  assert.equal(inner.bytes[8192], 3);
});

test('gather writes: small ones are coalesced, large ones reach the device as one gather write', async () => {
  class GatherCounting extends CountingDevice {
    gathers: Array<[number, number]> = [];
    override async writev(offsetBytes: number, chunks: readonly Uint8Array[]): Promise<void> {
      this.gathers.push([offsetBytes, chunks.length]);
      let at = offsetBytes;
      for (const c of chunks) { this.bytes.set(c, at); at += c.length; }
    }
  }
  const inner = new GatherCounting(1 << 20);
  const dev = new CoalescingDevice(inner, 64 * 1024);
  await dev.writev(0, [bytes(1024, 1), bytes(1024, 2)]);
  await dev.writev(2048, [bytes(1024, 3)]);
  await dev.writev(65536, [bytes(32768, 4), bytes(32768, 5)]);
  await dev.flush();
  assert.deepEqual(inner.writes, [[0, 3072]]);
  assert.deepEqual(inner.gathers, [[65536, 2]]);
  assert.deepEqual([inner.bytes[0], inner.bytes[1024], inner.bytes[2048], inner.bytes[65536], inner.bytes[65536 + 32768]], [1, 2, 3, 4, 5]);
});
