// Resumable listings with stable cookies: readdirFrom reads an htree directory from the leaf
// holding the cookie's hash, so a page costs a few block reads, not the whole directory; and a
// 20,000-entry directory listed through a FUSE mount while other entries come and go returns
// every entry that stayed exactly once (READDIR and READDIRPLUS both resume from cookies).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ext4, MemoryDevice } from '../src/node.ts';
import { dirSource } from '../src/fs/dir-source.ts';
import { readdirFrom, linearHashVersion, LinearListings } from '../src/fs/readdir.ts';
import type { Volume } from '../src/fs/volume.ts';
import { e2fsck, haveCommand } from './support/oracles.ts';
import { cleanupTemp, tmpDirPath, tmpImagePath } from './support/images.ts';
import { fuseSkipReason, shOk, withFuse } from './fuse-support.ts';

after(() => cleanupTemp());

const skip = fuseSkipReason(['python3']);
if (skip) console.log(`# fuse-readdir: skipping the mount test: ${skip}`);

const name = (prefix: string, i: number) => `${prefix}${String(i).padStart(5, '0')}-a-longer-name-to-fill-leaves`;

test('readdirFrom on an htree directory: each page reads a few blocks; all pages list every entry once', async () => {
  const dev = new MemoryDevice(new Uint8Array(64 << 20));
  await Ext4.mkfs(dev, { sizeBytes: 64 << 20, blockSize: 1024, timeSec: 1_700_000_000 });
  const fs = await Ext4.open(dev);
  await fs.mkdir('/big');
  const COUNT = 6000;
  for (let i = 0; i < COUNT; i++) await fs.writeFile(`/big/${name('s', i)}`, '');
  await fs.close();
  const ro = await Ext4.open(dev, { readOnly: true });
  const { vol } = ro as unknown as { vol: Volume };
  const st = await ro.stat('/big');
  const inode = await vol.readInode(st.ino);
  let reads = 0;
  const base = dirSource(vol, st.ino, inode);
  const src = { ...base, readBlock: (b: number) => { reads++; return base.readBlock(b); } };
  const dirBlocks = st.size / 1024;
  assert.ok(dirBlocks > 200, `a large directory (${dirBlocks} blocks)`);
  const version = linearHashVersion(vol.sb.defHashVersion, vol.sb.flags);
  const seen = new Map<string, number>();
  let cookie = 0;
  let pages = 0;
  let worstPage = 0;
  for (;;) {
    const before = reads;
    const page = await readdirFrom(src, cookie, 50, version);
    worstPage = Math.max(worstPage, reads - before);
    pages++;
    for (const e of page.entries) { const k = new TextDecoder().decode(e.name); seen.set(k, (seen.get(k) ?? 0) + 1); }
    if (page.done) break;
    assert.ok(page.entries.length > 0 && page.entries.every((e) => e.cookie > cookie), 'progress in cookie order');
    cookie = page.entries[page.entries.length - 1]!.cookie;
  }
  assert.equal(seen.size, COUNT + 2);
  assert.ok([...seen.values()].every((n) => n === 1), 'no duplicates');
  // Each page: the root, an interior node, and the leaves it spans (50 entries: about four
  // half-full 1 KiB leaves); over the listing each leaf is read about once or twice. A listing
  // that relists the directory for each page reads pages × dirBlocks (here ≈ 45,000).
  assert.ok(worstPage <= 10, `one page read ${worstPage} blocks of ${dirBlocks}`);
  assert.ok(reads <= pages * 3 + dirBlocks * 2, `${reads} block reads for ${pages} pages of a ${dirBlocks}-block directory`);
  await ro.close();
});

test('readdirFrom on a large linear directory of a read-only mount (ext2 without dir_index): read once, then pages from the sorted listing', { skip: haveCommand('mke2fs') ? false : 'mke2fs missing (Debian package e2fsprogs)' }, async () => {
  const tree = tmpDirPath('linear-tree');
  mkdirSync(join(tree, 'big'));
  const COUNT = 3000;
  for (let i = 0; i < COUNT; i++) writeFileSync(join(tree, 'big', name('s', i)), '');
  const img = tmpImagePath('linear');
  await shOk(`mke2fs -q -F -t ext2 -O ^dir_index -b 1024 -d ${tree} ${img} 16M`);
  const ro = await Ext4.open(img, { readOnly: true });
  const { vol } = ro as unknown as { vol: Volume };
  const st = await ro.stat('/big');
  const base = dirSource(vol, st.ino, await vol.readInode(st.ino));
  let reads = 0;
  const src = { ...base, readBlock: (b: number) => { reads++; return base.readBlock(b); } };
  const dirBlocks = st.size / 1024;
  assert.ok(dirBlocks > 100, `a large linear directory (${dirBlocks} blocks)`);
  const listings = new LinearListings();
  const version = linearHashVersion(vol.sb.defHashVersion, vol.sb.flags);
  const seen = new Set<string>();
  let cookie = 0;
  let pages = 0;
  for (;;) {
    const page = await readdirFrom(src, cookie, 40, version, listings);
    pages++;
    for (const e of page.entries) {
      const k = new TextDecoder().decode(e.name);
      assert.ok(!seen.has(k), `${k} listed twice`);
      seen.add(k);
    }
    if (page.done) break;
    cookie = page.entries[page.entries.length - 1]!.cookie;
  }
  assert.equal(seen.size, COUNT + 2);
  assert.ok(pages > 50);
  assert.equal(reads, dirBlocks, 'each directory block read once for the whole listing');
  // Through the API (the same cache behind Ext4.readdirFrom on a read-only open).
  const names = new Set<string>();
  for (let c = 0; ;) {
    const p = await ro.readdirFrom('/big', c, 100);
    for (const e of p.entries) names.add(e.name);
    if (p.done) break;
    c = p.entries[p.entries.length - 1]!.cookie;
  }
  assert.equal(names.size, COUNT + 2);
  await ro.close();
});

const LISTER = `
import os, sys
d = sys.argv[1]
for round in range(int(sys.argv[2])):
    names = os.listdir(d)
    print(len(names), len(set(names)), sum(1 for n in names if n.startswith('s')), flush=True)
    if len(names) != len(set(names)): print('DUP', sorted(n for n in set(names) if names.count(n) > 1)[:5]); sys.exit(1)
    stable = set(n for n in names if n.startswith('s'))
    if len(stable) != int(sys.argv[3]): print('MISSING', len(stable)); sys.exit(1)
`;
const CHURN = `
import os, sys, time
d, stop = sys.argv[1], sys.argv[2]
i = 0
while not os.path.exists(stop) and i < 200000:
    open(os.path.join(d, 't%06d-churn' % i), 'w').close()
    if i >= 50: os.unlink(os.path.join(d, 't%06d-churn' % (i - 50)))
    if i < 2000: os.unlink(os.path.join(d, 'd%05d-a-longer-name-to-fill-leaves' % i))
    i += 1
print('churned', i, flush=True)
`;

test('a 20,000-entry directory listed through the mount while entries are added and removed: no stable entry missed or duplicated', { skip, timeout: 10 * 60_000 }, async () => {
  const img = tmpImagePath('readdir-big');
  await Ext4.mkfs(img, { sizeBytes: 256 << 20, timeSec: 1_700_000_000 });
  const fs = await Ext4.open(img);
  await fs.mkdir('/big');
  const STABLE = Number(process.env['FUSE_READDIR_ENTRIES'] ?? 20_000);
  for (let i = 0; i < STABLE; i++) await fs.writeFile(`/big/${name('s', i)}`, '');
  for (let i = 0; i < 2000; i++) await fs.writeFile(`/big/${name('d', i)}`, '');
  await fs.close();
  await withFuse(img, async (mnt) => {
    const dir = join(mnt, 'big');
    const stop = `${img}.stop`;
    const out = await shOk(`
      python3 -c '${CHURN.replace(/'/g, "'\\''")}' ${dir} ${stop} > ${img}.churn & churn=$!
      sleep 0.5
      set +e
      python3 -c '${LISTER.replace(/'/g, "'\\''")}' ${dir} 4 ${STABLE}; status=$?
      touch ${stop}; wait $churn; cat ${img}.churn; exit $status
    `, { timeoutMs: 8 * 60_000 });
    const rounds = out.trim().split('\n').filter((l) => /^\d+ \d+ \d+$/.test(l));
    assert.equal(rounds.length, 4, out);
    for (const r of rounds) assert.equal(r.split(' ')[2], String(STABLE), out);
    const churned = Number(/churned (\d+)/.exec(out)?.[1]);
    // At least 50 creates, so churn entries were unlinked too (a loaded host manages fewer than
    // 100 in the listings' time: 95 at load 20).
    assert.ok(churned > 50, `entries were added and removed during the listings (${churned})`);
  });
  const r = await e2fsck(img);
  assert.equal(r.exitCode, 0, r.output);
});
