// Per-file preallocation windows through the public API: files written at the same time in
// small interleaved chunks, with writeback passes cutting in, end up one physically contiguous
// run each (1 KiB and 4 KiB blocks, bigalloc); a window ends when its file is closed (after the
// file's last writeback), truncated or the filesystem syncs short of space; and on a nearly full
// filesystem a window never costs a reserved write its space: writeback takes it instead.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Ext4 } from '../src/node.ts';
import type { Ext4WritableHandle } from '../src/api/ext4.ts';
import type { Filesystem } from '../src/fs/filesystem.ts';
import { e2fsck, haveE2fsprogs } from './support/oracles.ts';
import { tmpImagePath, cleanupTemp } from './support/images.ts';
import { fillPattern, assertBytes, isErrno } from './support/byte-model.ts';

const HAVE_E2FS = haveE2fsprogs();
after(cleanupTemp);

interface Geometry { blockSize: 1024 | 4096; clusterBytes?: number; sizeMiB: number }
const label = (g: Geometry) => `${g.sizeMiB} MiB, ${g.blockSize}-byte blocks${g.clusterBytes ? `, bigalloc ${g.clusterBytes}-byte clusters` : ''}`;

async function makeFs(g: Geometry, name: string): Promise<string> {
  const image = tmpImagePath(name);
  await Ext4.mkfs(image, {
    sizeBytes: g.sizeMiB << 20, blockSize: g.blockSize, timeSec: 1_700_000_000,
    ...(g.clusterBytes ? { clusterBytes: g.clusterBytes, features: 'bigalloc' } : {}),
  });
  return image;
}

const internals = (fs: Ext4): Filesystem => (fs as unknown as { fs: Filesystem }).fs;
const windowOf = async (fs: Ext4, path: string) => internals(fs).clusters.windowOf((await fs.stat(path)).ino);

/** Physically contiguous runs of a file, through ext4kit's own mappings. */
async function runsOf(fs: Ext4, path: string): Promise<number> {
  let runs = 0;
  let nextFile = -1;
  let nextPhys = -1;
  for await (const m of fs.mappings(path)) {
    if (Number(m.fileBlock) !== nextFile || Number(m.fsBlock) !== nextPhys) runs++;
    nextFile = Number(m.fileBlock) + m.countBlocks;
    nextPhys = Number(m.fsBlock) + m.countBlocks;
  }
  return runs;
}

async function fsckClean(image: string): Promise<void> {
  if (!HAVE_E2FS) return;
  const r = await e2fsck(image);
  assert.equal(r.exitCode, 0, r.output);
}

const INTERLEAVED: Array<{ g: Geometry; files: number; fileKiB: number }> = [
  { g: { blockSize: 4096, sizeMiB: 64 }, files: 4, fileKiB: 8192 },
  { g: { blockSize: 1024, sizeMiB: 32 }, files: 4, fileKiB: 3072 },
  { g: { blockSize: 1024, clusterBytes: 4096, sizeMiB: 48 }, files: 3, fileKiB: 6144 },
  { g: { blockSize: 4096, clusterBytes: 65536, sizeMiB: 96 }, files: 2, fileKiB: 16384 },
];

for (const { g, files, fileKiB } of INTERLEAVED) {
  test(`prealloc windows: ${files} interleaved writers get one extent each (${label(g)})`, async () => {
    const image = await makeFs(g, 'prealloc-interleaved');
    const CHUNK = 16 * 1024;
    const chunks = (fileKiB * 1024) / CHUNK;
    const paths = Array.from({ length: files }, (_, f) => `/f${f}`);
    const data = paths.map((_, f) => fillPattern(fileKiB * 1024, 1000 + f));
    const fs = await Ext4.open(image);
    try {
      const handles: Ext4WritableHandle[] = [];
      for (const p of paths) handles.push(await fs.open(p, 'w', 0o644) as Ext4WritableHandle);
      for (let i = 0; i < chunks; i++) {
        for (let f = 0; f < files; f++) await handles[f]!.write(data[f]!, i * CHUNK, CHUNK, i * CHUNK);
        // Writeback cuts in every 1 MiB of each file, and one file is fsynced now and then.
        if (i % 64 === 63) await fs.writebackPass();
        if (i % 97 === 50) await handles[i % files]!.sync();
      }
      await fs.checkInvariants();
      for (const h of handles) await h.close();
      await fs.sync();
      for (const p of paths) assert.equal(await windowOf(fs, p), undefined, `${p}: window left after close and sync`);
      await fs.checkInvariants();
    } finally {
      await fs.close();
    }
    await fsckClean(image);
    const ro = await Ext4.open(image, { readOnly: true });
    try {
      for (const [f, p] of paths.entries()) {
        assert.equal(await runsOf(ro, p), 1, `${p}: not one extent`);
        assertBytes(await ro.readFile(p), data[f]!, p);
      }
    } finally {
      await ro.close();
    }
  });
}

test('prealloc windows: a window lasts while its file is open, until its last writeback after close, and ends at truncate', async () => {
  const image = await makeFs({ blockSize: 1024, sizeMiB: 16 }, 'prealloc-lifetime');
  const fs = await Ext4.open(image);
  try {
    const a = await fs.open('/a', 'w') as Ext4WritableHandle;
    await a.write(fillPattern(40_000, 1), 0, 40_000, 0);
    assert.equal(await windowOf(fs, '/a'), undefined, 'no window before writeback');
    await a.sync();
    const w = (await windowOf(fs, '/a'))!;
    assert.ok(w && w.count > 0, 'writeback of an open file leaves a window');
    await a.write(fillPattern(10_000, 2), 0, 10_000, 40_000);
    await a.sync();
    const w2 = (await windowOf(fs, '/a'))!;
    // Blocks 40..48 are new (block 39 was already mapped): they came from the window's head.
    assert.equal(w2.cluster, w.cluster + Math.ceil(50_000 / 1024) - Math.ceil(40_000 / 1024), 'the append continued at the window');
    // Closed with nothing to write back: the window ends at once.
    await a.close();
    assert.equal(await windowOf(fs, '/a'), undefined);

    // Closed with data still in the page cache: the window lasts until that data is placed.
    const b = await fs.open('/b', 'w') as Ext4WritableHandle;
    await b.write(fillPattern(30_000, 3), 0, 30_000, 0);
    await b.sync();
    const wb = (await windowOf(fs, '/b'))!;
    await b.write(fillPattern(30_000, 4), 0, 30_000, 30_000);
    await b.close();
    assert.deepEqual(await windowOf(fs, '/b'), wb, 'window kept for the data still to write back');
    await fs.sync();
    assert.equal(await windowOf(fs, '/b'), undefined);
    assert.equal(await runsOf(fs, '/b'), 1, 'the data written after close continued the run');

    // A small file is packed like any small allocation, without a window, even while open.
    const s = await fs.open('/s', 'w') as Ext4WritableHandle;
    await s.write(fillPattern(4_000, 6), 0, 4_000, 0);
    await s.sync();
    assert.equal(await windowOf(fs, '/s'), undefined, 'a 4-block file got a window');
    await s.close();

    // Truncate ends it.
    const c = await fs.open('/c', 'w') as Ext4WritableHandle;
    await c.write(fillPattern(20_000, 5), 0, 20_000, 0);
    await c.sync();
    assert.ok(await windowOf(fs, '/c'));
    await c.truncate(5_000);
    assert.equal(await windowOf(fs, '/c'), undefined);
    await c.close();
    await fs.checkInvariants();
  } finally {
    await fs.close();
  }
  await fsckClean(image);
});

const FULL: Geometry[] = [
  { blockSize: 1024, sizeMiB: 8 },
  { blockSize: 4096, sizeMiB: 16 },
  { blockSize: 1024, clusterBytes: 16384, sizeMiB: 16 },
];

for (const g of FULL) {
  test(`prealloc windows: on a nearly full filesystem reserved writes still reach disk through other files' windows (${label(g)})`, async () => {
    const image = await makeFs(g, 'prealloc-full');
    const fs = await Ext4.open(image);
    const expect = new Map<string, Uint8Array>();
    try {
      // A holds a window over much of the free space.
      const a = await fs.open('/a', 'w') as Ext4WritableHandle;
      const aData = fillPattern(64 * 1024, 7);
      await a.write(aData, 0, aData.length, 0);
      await a.sync();
      const wa = (await windowOf(fs, '/a'))!;
      const before = await fs.statfs();
      assert.ok(wa.count * (g.clusterBytes ?? g.blockSize) > (before.bfree * before.bsize) / 4, 'the window is a large share of the free space');
      expect.set('/a', aData);
      // B fills the filesystem; ENOSPC only at write().
      const b = await fs.open('/b', 'w') as Ext4WritableHandle;
      const CH = 8 * 1024;
      let pos = 0;
      for (let k = 0; ; k++) {
        const chunk = fillPattern(CH, 100 + k);
        try { await b.write(chunk, 0, CH, pos); } catch (e) {
          if (!isErrno(e, 'ENOSPC')) throw e;
          break;
        }
        pos += CH;
      }
      assert.ok(pos > 0);
      // Writeback of B needs A's window: it must succeed (fsync keeps windows; writeback takes them).
      await b.sync();
      const wa2 = await windowOf(fs, '/a');
      assert.ok(!wa2 || wa2.count < wa.count, 'the window gave way');
      await fs.checkInvariants();
      const bData = new Uint8Array(pos);
      for (let k = 0; k * CH < pos; k++) bData.set(fillPattern(CH, 100 + k), k * CH);
      expect.set('/b', bData);
      await b.close();
      // A is still open and can still write into space it reserves now.
      await fs.sync();
      await a.close();
      const st = await fs.statfs();
      assert.ok(st.bfree * st.bsize < (before.bfree * before.bsize) / 8, 'the filesystem is nearly full');
    } finally {
      await fs.close();
    }
    await fsckClean(image);
    const ro = await Ext4.open(image, { readOnly: true });
    try {
      for (const [p, d] of expect) assertBytes(await ro.readFile(p), d, p);
    } finally {
      await ro.close();
    }
  });
}

test('prealloc windows: sync releases every window when they hold more than the space not promised to delayed writes', async () => {
  const image = await makeFs({ blockSize: 1024, sizeMiB: 8 }, 'prealloc-sync-short');
  const fs = await Ext4.open(image);
  try {
    const a = await fs.open('/a', 'w') as Ext4WritableHandle;
    await a.write(fillPattern(32 * 1024, 1), 0, 32 * 1024, 0);
    await a.sync();
    const w = (await windowOf(fs, '/a'))!;
    assert.ok(w.count > 0);
    // Plenty of room left: sync keeps the window.
    await fs.sync();
    assert.deepEqual(await windowOf(fs, '/a'), w);
    // Delayed writes promised more than what lies outside the window: sync drops it.
    const b = await fs.open('/b', 'w') as Ext4WritableHandle;
    const st = await fs.statfs();
    const room = st.bfree * st.bsize;
    const len = Math.floor(((room - w.count * 1024) + room) / 2 / 1024) * 1024;
    await b.write(fillPattern(len, 2), 0, len, 0);
    await fs.sync();
    assert.equal(await windowOf(fs, '/a'), undefined);
    await a.close();
    await b.close();
    await fs.checkInvariants();
  } finally {
    await fs.close();
  }
  await fsckClean(image);
});
