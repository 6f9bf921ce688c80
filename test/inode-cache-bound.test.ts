// The inode cache stays bounded however many inodes a FUSE kernel remembers (issue 9: memory
// bounded whatever is written). Files are created, written, closed and looked up through the
// FUSE backend (lookup counts as the kernel's nlookup), with no mount: the number of inodes in
// memory stays within the cache bound, an inode that is only looked up gets no locks, page map
// or delayed-allocation state, and evicted inodes read back from the inode table unchanged.
// A broken variant (eviction off) must fail the bound; a dirty inode is never evicted (it was:
// the next lookup read the stale on-disk copy and failed with EUCLEAN).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ext4, MemoryDevice } from '../src/node.ts';
import type { Filesystem } from '../src/fs/filesystem.ts';
import { Ext4Backend } from '../src/fuse/ext4-backend.ts';

const caller = { uid: 0, gid: 0, pid: 1 };
const enc = (s: string) => new TextEncoder().encode(s);
const BOUND = 200;
const FILES = 1500;

async function setup(): Promise<{ ext4: Ext4; fs: Filesystem; backend: Ext4Backend }> {
  const dev = new MemoryDevice(new Uint8Array(64 << 20));
  await Ext4.mkfs(dev, { sizeBytes: 64 << 20, blockSize: 1024, timeSec: 1_700_000_000 });
  const ext4 = await Ext4.open(dev);
  const fs = (ext4 as unknown as { fs: Filesystem }).fs;
  fs.icache.setMaxCached(BOUND);
  return { ext4, fs, backend: new Ext4Backend(ext4) };
}

/** Creates FILES files in /d (written, closed, remembered by "the kernel"), then looks each up again. */
async function workload(fs: Filesystem, backend: Ext4Backend, onStep: () => void): Promise<number> {
  const d = await backend.mkdir(2, enc('d'), 0o755, caller);
  const dir = d.attr.ino;
  for (let i = 0; i < FILES; i++) {
    const c = await backend.create(dir, enc(`f${i}`), 0o644, 0o1, caller);
    await backend.write(c.fh, 0, enc(`file ${i}\n`), caller);
    await backend.release(c.fh);
    if (i % 500 === 499) await fs.sync();
    onStep();
  }
  await fs.sync();
  let lookedUp = 0;
  for (let i = 0; i < FILES; i++) {
    const e = await backend.lookup(dir, enc(`f${i}`));
    assert.ok(e, `f${i} found`);
    assert.equal(e.attr.sizeBytes, `file ${i}\n`.length);
    lookedUp++;
    onStep();
  }
  return lookedUp;
}

test('inodes the kernel remembers stay bounded in memory; looked-up inodes stay small', async () => {
  const { ext4, fs, backend } = await setup();
  let worst = 0;
  let worstMaterialized = 0;
  let lookups = false;
  let worstDirty = 0;
  const n = await workload(fs, backend, () => {
    // Dirty inodes wait for the next commit (here every 500 files; the mount commits every 5 s).
    worst = Math.max(worst, fs.icache.open.size - fs.icache.dirty.size);
    worstDirty = Math.max(worstDirty, fs.icache.dirty.size);
    if (lookups) worstMaterialized = Math.max(worstMaterialized, fs.icache.materializedCount());
  });
  assert.equal(n, FILES);
  // Every file is remembered by the kernel (lookup count > 0) and was written through the page cache.
  assert.ok(worst <= BOUND + BOUND / 8 + 20, `at most ${worst} clean inodes in memory (bound ${BOUND}, ${FILES * 2} lookups)`);
  assert.ok(worstDirty <= 510, `${worstDirty} dirty inodes between commits`);
  // Lookups alone: read the inodes again, make no per-file machinery.
  lookups = true;
  for (let i = 0; i < FILES; i++) await backend.getattr((await backend.lookup(2, enc('d')))!.attr.ino);
  const dirIno = (await backend.lookup(2, enc('d')))!.attr.ino;
  for (let i = 0; i < FILES; i += 7) {
    await backend.lookup(dirIno, enc(`f${i}`));
    worstMaterialized = Math.max(worstMaterialized, fs.icache.materializedCount());
  }
  assert.ok(worstMaterialized <= 8, `${worstMaterialized} inodes with locks/pages/delalloc state after lookups only`);
  // Contents survive eviction.
  assert.equal(new TextDecoder().decode(await ext4.readFile('/d/f123')), 'file 123\n');
  await ext4.close();
});

test('broken variant: without eviction the bound check fails', async () => {
  const { ext4, fs, backend } = await setup();
  fs.icache.unboundedForTest = true;
  let worst = 0;
  await workload(fs, backend, () => { worst = Math.max(worst, fs.icache.open.size - fs.icache.dirty.size); });
  // sync()'s shrink still empties the cache now and then; between syncs nothing bounds the lookups.
  assert.ok(worst > BOUND + BOUND / 8 + 20, `the checker sees ${worst} inodes in memory`);
  await ext4.close();
});

test('a dirty inode is never evicted (the next lookup would read its stale on-disk copy)', async () => {
  const { ext4, fs, backend } = await setup();
  const c = await backend.create(2, enc('new'), 0o644, 0o1, caller);
  await backend.release(c.fh);
  const oi = await fs.getInode(c.attr.ino);
  assert.ok(fs.icache.dirty.has(oi), 'a new inode is dirty until the next commit');
  fs.icache.shrink(() => false);
  assert.equal(await fs.getInode(c.attr.ino), oi, 'the same in-memory inode');
  fs.icache.setMaxCached(1);
  for (let i = 0; i < 50; i++) await fs.getInode(11 + (i % 5));
  assert.equal(await fs.getInode(c.attr.ino), oi, 'not evicted by the LRU bound either');
  assert.ok(await backend.lookup(2, enc('new')));
  await ext4.close();
});
