// Races between the caches and the operations that use them, each found as a flaky failure of
// the ENOSPC test (writers, fsync loops, writeback and the invariant checker together) and
// pinned down here deterministically or by many short rounds:
// - an inode evicted by a sync's cache shrink between an open's lookup and its reference took
//   the writes made through that handle with it (the next lookup read a second copy from disk);
// - writeback dropped the pages of an unwritten extent before converting it, so a partial
//   write in between loaded the block as zeros and wrote them back;
// - the invariant checker iterated the live cache across awaits and counted an inode twice
//   when a lookup moved it to the most-recently-used end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ext4, MemoryDevice } from '../src/node.ts';
import type { Ext4WritableHandle } from '../src/api/ext4.ts';
import type { Filesystem } from '../src/fs/filesystem.ts';
import { write } from '../src/fs/file.ts';
import { FileModel, fillPattern, assertBytes } from './support/byte-model.ts';

const root = { uid: 0, gid: 0 };

async function fresh(opts: { clusterBytes?: number } = {}): Promise<{ ext4: Ext4; fs: Filesystem }> {
  const dev = new MemoryDevice(new Uint8Array(32 << 20));
  await Ext4.mkfs(dev, { sizeBytes: 32 << 20, blockSize: 4096, timeSec: 1_700_000_000, ...(opts.clusterBytes ? { clusterBytes: opts.clusterBytes, features: 'bigalloc' } : {}) });
  const ext4 = await Ext4.open(dev);
  return { ext4, fs: (ext4 as unknown as { fs: Filesystem }).fs };
}

async function evictedThenWritten(forgetEvicted: boolean): Promise<{ sameObject: boolean; bytes: Uint8Array }> {
  const { ext4, fs } = await fresh();
  try {
    await ext4.writeFile('/f', fillPattern(10000, 1));
    await ext4.sync();
    const ino = (await ext4.stat('/f')).ino;
    fs.icache.forgetEvictedForTest = forgetEvicted;
    // The lookup an open does...
    const oi = await fs.icache.get(ino);
    // ...then a sync elsewhere shrinks the cache before the handle takes its reference.
    await fs.sync();
    assert.ok(!fs.icache.open.has(ino), 'the clean, unreferenced inode was evicted');
    fs.icache.hold(oi);
    await write(fs, oi, 100, fillPattern(5000, 2), root);
    await fs.release(oi);
    const sameObject = (await fs.icache.get(ino)) === oi;
    await ext4.sync();
    return { sameObject, bytes: await ext4.readFile('/f') };
  } finally { await ext4.close(); }
}

test('an inode evicted between its lookup and its reference keeps the writes made through it', async () => {
  const want = new FileModel();
  want.write(0, fillPattern(10000, 1));
  want.write(100, fillPattern(5000, 2));
  const ok = await evictedThenWritten(false);
  assert.ok(ok.sameObject, 'the next lookup finds the object the handle holds');
  assertBytes(ok.bytes, want.bytes(), '/f');
  // Broken variant: eviction forgets the object (as before the fix): the write is lost.
  const broken = await evictedThenWritten(true);
  assert.ok(!broken.sameObject);
  assert.throws(() => assertBytes(broken.bytes, want.bytes(), '/f'), /first difference at byte 100/);
});

test('writes into unwritten extents racing writeback keep their neighbours in the block', async () => {
  const { ext4 } = await fresh({ clusterBytes: 65536 });
  try {
    let bad = 0;
    for (let round = 0; round < 60; round++) {
      const path = `/u${round}`;
      const fh = await ext4.open(path, 'w+') as Ext4WritableHandle;
      const m = new FileModel();
      try {
        const start = fillPattern(5000, round);
        await fh.write(start, 0, start.length, 0);
        m.write(0, start);
        // Preallocated past EOF, then written in odd pieces: dirty pages over unwritten blocks.
        await fh.fallocate(1, 8192, 200000);
        for (let off = 5000, k = 0; off < 180000; k++) {
          const len = 1000 + ((round * 7919 + k * 104729) % 30000);
          const data = fillPattern(len, round * 1000 + k);
          await fh.write(data, 0, len, off);
          m.write(off, data);
          off += len;
        }
        // Writeback runs while partial writes land inside blocks it is writing.
        const wb = ext4.writebackPass();
        for (let k = 0; k < 12; k++) {
          for (let y = (round + k) % 5; y > 0; y--) await Promise.resolve();
          const off = 8192 + ((k * 15485863 + round * 7) % 160000);
          const data = fillPattern(333, round * 77 + k);
          await fh.write(data, 0, data.length, off);
          m.write(off, data);
        }
        await wb;
        try { assertBytes(await ext4.readFile(path), m.bytes(), path); } catch { bad++; }
      } finally { await fh.close(); }
    }
    assert.equal(bad, 0, `${bad} of 60 files lost bytes next to a write`);
  } finally { await ext4.close(); }
});

test('the invariant checker counts each inode once while lookups reorder the cache', async () => {
  const { ext4, fs } = await fresh({ clusterBytes: 16384 });
  try {
    for (const name of ['a', 'b', 'c']) await ext4.writeFile(`/${name}`, fillPattern(100000, name.charCodeAt(0)));
    const a = (await ext4.stat('/a')).ino;
    let checking = true;
    const check = ext4.checkInvariants().finally(() => { checking = false; });
    // Lookups while the checker awaits: each one moves /a to the most-recently-used end.
    for (let n = 0; checking; n++) {
      await fs.icache.get(a);
      if (n % 1000 === 999) await new Promise<void>((r) => setImmediate(r));
    }
    await check;
    assert.ok(fs.icache.open.get(a)!.reservedClusters > 0, 'the data is still delayed: /a holds reservations');
  } finally { await ext4.close(); }
});
