// Paged listings of a large unindexed directory on a writable filesystem (issue 9): the sorted
// listing is made once and then kept on the directory's in-memory inode, changed with each
// insert and unlink, so a listing in small pages reads the directory about once instead of
// once per page, and cookies stay stable while entries come and go. A broken variant (a kept
// listing that does not follow the changes) must be caught by the same checks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ext4, MemoryDevice } from '../src/node.ts';
import type { Filesystem } from '../src/fs/filesystem.ts';
import { dirSourceOf } from '../src/fs/inode-env.ts';
import { readdirFrom, linearHashVersion, entryCookie, LiveListings, type ListingHolder, type CookieEntry } from '../src/fs/readdir.ts';
import { listDirectory } from '../src/dir/dir-read.ts';
import { isHashOrdered } from '../src/dir/htree-order.ts';

const COUNT = 10_000;
const PAGE = 16;
const dec = new TextDecoder();
const name = (i: number) => `entry-${String(i).padStart(5, '0')}`;

let image: Uint8Array | undefined;

/** A filesystem without dir_index holding /big with COUNT entries (made once, copied per test). */
async function bigLinearDir(): Promise<{ ext4: Ext4; fs: Filesystem }> {
  if (!image) {
    const bytes = new Uint8Array(64 << 20);
    const dev = new MemoryDevice(bytes);
    await Ext4.mkfs(dev, { sizeBytes: 64 << 20, blockSize: 4096, timeSec: 1_700_000_000, features: '^dir_index' });
    const made = await Ext4.open(dev);
    await made.mkdir('/big');
    for (let i = 0; i < COUNT; i++) await made.writeFile(`/big/${name(i)}`, '');
    await made.close();
    image = bytes;
  }
  const ext4 = await Ext4.open(new MemoryDevice(image.slice()));
  return { ext4, fs: (ext4 as unknown as { fs: Filesystem }).fs };
}

interface Outcome { seen: Map<string, number>; removedAhead: string[]; reads: number; pages: number; dirBlocks: number; kept: CookieEntry[] | undefined; fresh: CookieEntry[] }

/** Lists /big in pages of PAGE, removing and adding entries between pages; `holderOf` picks where the listing is kept. */
async function listWhileChanging(ext4: Ext4, fs: Filesystem, holderOf: (dir: ListingHolder) => ListingHolder): Promise<Outcome> {
  const ino = (await ext4.stat('/big')).ino;
  const dir = await fs.getInode(ino);
  dir.refs++;
  const base = dirSourceOf(fs, dir);
  assert.equal(isHashOrdered(base), false, 'an unindexed directory');
  const version = linearHashVersion(fs.vol.sb.defHashVersion, fs.vol.sb.flags);
  let reads = 0;
  const listings = new LiveListings();
  const holder = holderOf(dir);
  const seen = new Map<string, number>();
  let cookie = 0;
  let pages = 0;
  let removed = 0;
  const removedAhead: string[] = [];
  for (;;) {
    const src = { ...dirSourceOf(fs, dir), readBlock: (b: number) => { reads++; return base.readBlock(b); } };
    const page = await readdirFrom(src, cookie, PAGE, version, undefined, { listings, holder });
    pages++;
    for (const e of page.entries) { const k = dec.decode(e.name); seen.set(k, (seen.get(k) ?? 0) + 1); }
    if (page.done) break;
    assert.ok(page.entries.length > 0 && page.entries.every((e) => e.cookie > cookie), 'progress in cookie order');
    cookie = page.entries[page.entries.length - 1]!.cookie;
    // Between pages: entries 'entry-?????' with i % 50 === pages % 50 go; a new one comes.
    if (pages % 10 === 0) {
      const gone = name(removed * 50 + 7);
      if (removed * 50 + 7 < COUNT) {
        await ext4.unlink(`/big/${gone}`);
        removed++;
        // Removed before the listing reached it: it must not be listed.
        if (entryCookie(new TextEncoder().encode(gone), base.hashSeed, version) > cookie) removedAhead.push(gone);
      }
      await ext4.writeFile(`/big/new-${pages}`, '');
    }
  }
  const fresh: CookieEntry[] = [];
  for await (const e of listDirectory(dirSourceOf(fs, dir))) fresh.push({ ...e, cookie: 0 });
  const kept = holder.listing?.entries;
  dir.refs--;
  return { seen, removedAhead, reads, pages, dirBlocks: dir.inode.sizeBytes / 4096, kept, fresh };
}

function check(o: Outcome): void {
  // Every original entry that stayed is listed exactly once; removed ones at most once.
  for (let i = 0; i < COUNT; i++) {
    const n = o.seen.get(name(i)) ?? 0;
    const wasRemoved = (i - 7) % 50 === 0 && i >= 7 && !o.fresh.some((e) => dec.decode(e.name) === name(i));
    if (wasRemoved) assert.ok(n <= 1, `${name(i)} (removed) listed ${n} times`);
    else assert.equal(n, 1, `${name(i)} listed ${n} times`);
  }
  for (const [k, n] of o.seen) assert.equal(n, 1, `${k} listed ${n} times`);
  assert.ok(o.removedAhead.length > 5, 'some entries were removed ahead of the listing');
  for (const k of o.removedAhead) assert.equal(o.seen.get(k), undefined, `${k} listed after it was removed`);
  // Nothing listed that was never there or was removed before the listing reached it.
  const present = new Set(o.fresh.map((e) => dec.decode(e.name)));
  for (const k of o.seen.keys()) {
    if (!present.has(k)) assert.ok(/^entry-\d{5}$/.test(k), `${k} listed but never existed`);
  }
  // The kept listing is exactly the directory.
  if (o.kept) assert.deepEqual(o.kept.map((e) => `${dec.decode(e.name)}:${e.ino}`).sort(), o.fresh.map((e) => `${dec.decode(e.name)}:${e.ino}`).sort());
}

test('a 10,000-entry unindexed directory listed 16 entries at a time reads the directory about once', async () => {
  const { ext4, fs } = await bigLinearDir();
  const o = await listWhileChanging(ext4, fs, (dir) => dir);
  check(o);
  assert.ok(o.pages > COUNT / PAGE, `${o.pages} pages`);
  assert.ok(o.dirBlocks >= 40, `a ${o.dirBlocks}-block directory`);
  // Relisting per page would read pages × dirBlocks blocks (here about 630 × 50 = 31,000).
  console.log(`# ${o.pages} pages of a ${o.dirBlocks}-block directory: ${o.reads} block reads`);
  assert.ok(o.reads <= 2 * o.dirBlocks, `${o.reads} block reads for ${o.pages} pages of a ${o.dirBlocks}-block directory`);
  assert.ok(o.kept, 'the listing is kept on the directory inode');
  await ext4.close();
});

test('broken variant: a kept listing that misses the changes lists removed entries and misses new ones', async () => {
  const { ext4, fs } = await bigLinearDir();
  // The listing is kept on an object the directory's changes never reach.
  const o = await listWhileChanging(ext4, fs, () => ({ listing: undefined }));
  let caught = '';
  try { check(o); } catch (e) { caught = (e as Error).message; }
  console.log(`# broken variant caught: ${caught.split('\n')[0]}`);
  assert.match(caught, /listed after it was removed/);
  await ext4.close();
});
