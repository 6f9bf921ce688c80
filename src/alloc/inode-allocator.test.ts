// InodeAllocator against a model over mke2fs and ext4kit-mkfs images, with e2fsck -fn as the
// oracle once everything is freed again (INODE_UNINIT groups initialised, itable_unused lowered).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import fc from 'fast-check';
import { MemoryDevice } from '../device/memory-device.ts';
import { mkfs, type MkfsOptions } from '../mkfs/mkfs.ts';
import { Volume } from '../fs/volume.ts';
import { WriteBackJournal, type Handle } from '../journal/transaction.ts';
import { encodeSuperblock, SUPERBLOCK_OFFSET } from '../format/superblock.ts';
import { BG_FLAGS, type GroupDesc } from '../format/group-desc.ts';
import { Ext4Error } from '../errors/ext4-error.ts';
import { GroupTable } from './group-table.ts';
import { InodeAllocator } from './inode-allocator.ts';
import { makeImage, tmpImagePath, type MakeImageOptions } from '../../test/support/images.ts';
import { debugfsRaw, e2fsck, haveE2fsprogs } from '../../test/support/oracles.ts';

const HAVE_E2FS = haveE2fsprogs();
const FC_RUNS = Number(process.env.ALLOC_FC_RUNS ?? 10);

interface FixtureSpec {
  name: string;
  mke2fs?: Omit<MakeImageOptions, 'out'>;
  mkfs?: { sizeBytes: number; opts: MkfsOptions };
}

const FIXTURES: FixtureSpec[] = [
  { name: 'mke2fs 1k', mke2fs: { blockSize: 1024, sizeBytes: 32 << 20 } },
  { name: 'mke2fs 4k, 4096 blocks/group', mke2fs: { blockSize: 4096, sizeBytes: 72 << 20, extra: ['-g', '4096'] } },
  { name: 'mke2fs bigalloc R=16', mke2fs: { blockSize: 1024, clusterBytes: 16384, sizeBytes: 56 << 20, extra: ['-g', '1024'] } },
  { name: 'mke2fs 1k uninit_bg, no flex_bg, 32-byte descriptors', mke2fs: { blockSize: 1024, sizeBytes: 24 << 20, features: '^metadata_csum,^flex_bg,^64bit,uninit_bg' } },
  { name: 'mkfs 1k', mkfs: { sizeBytes: 32 << 20, opts: { blockSize: 1024 } } },
];

const imageCache = new Map<string, Promise<Uint8Array>>();
function fixtureBytes(spec: FixtureSpec): Promise<Uint8Array> {
  let p = imageCache.get(spec.name);
  if (!p) {
    p = (async () => {
      if (spec.mke2fs) {
        const path = await makeImage(spec.mke2fs);
        const bytes = new Uint8Array(readFileSync(path));
        rmSync(path, { force: true });
        return bytes;
      }
      const dev = new MemoryDevice(spec.mkfs!.sizeBytes);
      await mkfs(dev, { timeSec: 1_700_000_000, deviceZeroed: true, ...spec.mkfs!.opts });
      return dev.bytes;
    })();
    imageCache.set(spec.name, p);
  }
  return p;
}

interface Ctx {
  dev: MemoryDevice;
  vol: Volume;
  journal: WriteBackJournal;
  table: GroupTable;
  inodes: InodeAllocator;
  txn: Handle;
}

async function openCtx(bytes: Uint8Array): Promise<Ctx> {
  const dev = new MemoryDevice(bytes.slice());
  const vol = await Volume.open(dev);
  const journal = new WriteBackJournal(vol.cache);
  const table = new GroupTable(vol.geo, vol.groups as GroupDesc[]);
  const inodes = new InodeAllocator(vol.geo, table, { firstIno: vol.sb.firstIno, reader: journal.start(0) });
  return { dev, vol, journal, table, inodes, txn: journal.start(1e9) };
}

/** Flushes descriptors, commits, writes the superblock's free counts, returns the image path. */
async function commitToFile(ctx: Ctx): Promise<string> {
  const h = ctx.journal.start(ctx.vol.geo.gdtBlocks);
  await ctx.table.flush(h);
  h.stop();
  // A commit waits for running handles (as jbd2's does): end the test's long-lived one, then reopen it.
  ctx.txn.stop();
  await ctx.journal.commit();
  (ctx as { txn: typeof ctx.txn }).txn = ctx.journal.start(1e9);
  const sb = ctx.vol.sb;
  sb.freeBlocksCount = ctx.table.freeClusters() * ctx.vol.geo.clusterRatio;
  sb.freeInodesCount = ctx.table.freeInodes();
  await ctx.dev.write(SUPERBLOCK_OFFSET, encodeSuperblock(sb));
  const path = tmpImagePath('inode-alloc');
  writeFileSync(path, ctx.dev.bytes);
  return path;
}

async function fsckClean(path: string): Promise<void> {
  try {
    const r = await e2fsck(path);
    assert.equal(r.exitCode, 0, r.output);
    assert.doesNotMatch(r.output, /Fix\?|differences|wrong|unused/i, r.output);
  } finally {
    rmSync(path, { force: true });
  }
}

/** Counts and the lazy-init invariants e2fsck checks: no used inode in the unused tail, unused <= free. */
async function checkInvariants(ctx: Ctx, expectFree: number, expectDirs: number, model: Map<number, boolean>): Promise<void> {
  const { table, inodes, vol } = ctx;
  const ipg = vol.geo.inodesPerGroup;
  assert.equal(table.freeInodes(), expectFree, 'descriptor free inodes vs model');
  assert.equal(await inodes.countFreeInBitmaps(), expectFree, 'bitmaps vs model');
  assert.equal(table.usedDirs(), expectDirs, 'used dirs vs model');
  for (let g = 0; g < table.groupCount; g++) {
    const gd = table.desc(g);
    assert.ok(gd.itableUnused <= gd.freeInodesCount, `group ${g}: itable_unused ${gd.itableUnused} > free ${gd.freeInodesCount}`);
    if (gd.flags & BG_FLAGS.inodeUninit) assert.equal(gd.freeInodesCount, ipg);
  }
  for (const ino of model.keys()) {
    const gd = table.desc(Math.floor((ino - 1) / ipg));
    assert.ok((ino - 1) % ipg < ipg - gd.itableUnused, `inode ${ino} lies in the unused tail`);
  }
}

type Cmd = { kind: 'alloc'; parent: number; dir: boolean } | { kind: 'free'; pick: number } | { kind: 'double'; pick: number };
const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('alloc' as const), parent: fc.nat(), dir: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('free' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('double' as const), pick: fc.nat() }) },
);

for (const spec of FIXTURES) {
  const skip = spec.mke2fs && !HAVE_E2FS ? 'e2fsprogs not installed' : false;

  test(`inode allocator: random alloc/free against a model (${spec.name})`, { skip }, async () => {
    const bytes = await fixtureBytes(spec);
    await fc.assert(fc.asyncProperty(fc.array(cmdArb, { minLength: 1, maxLength: 60 }), async (cmds) => {
      const ctx = await openCtx(bytes);
      const { inodes, txn, vol, table } = ctx;
      const initialFree = table.freeInodes();
      const initialDirs = table.usedDirs();
      const model = new Map<number, boolean>();
      const dirsIn = () => [...model.values()].filter(Boolean).length;
      for (const cmd of cmds) {
        if (cmd.kind === 'alloc') {
          // Parents: the root, or an inode of some group (allocation must not care whether it is in use).
          const parent = cmd.parent % 3 === 0 ? 2 : 1 + (cmd.parent % vol.geo.inodesCount);
          const pg = Math.floor((parent - 1) / vol.geo.inodesPerGroup);
          const parentGroupFree = table.desc(pg).freeInodesCount;
          const ino = await inodes.alloc(txn, parent, cmd.dir);
          assert.ok(ino >= vol.sb.firstIno && ino <= vol.geo.inodesCount, `inode ${ino} out of range`);
          assert.ok(!model.has(ino), `inode ${ino} handed out twice`);
          // A file goes to its parent's group whenever that group has a free inode.
          if (!cmd.dir && parentGroupFree > 0) assert.equal(Math.floor((ino - 1) / vol.geo.inodesPerGroup), pg, 'file not in its parent group');
          assert.equal(await inodes.isAllocated(ino), true);
          model.set(ino, cmd.dir);
        } else if (cmd.kind === 'free') {
          if (model.size === 0) continue;
          const ino = [...model.keys()][cmd.pick % model.size]!;
          await inodes.free(txn, ino, model.get(ino)!);
          model.delete(ino);
          assert.equal(await inodes.isAllocated(ino), false);
        } else {
          let ino = vol.sb.firstIno + (cmd.pick % (vol.geo.inodesCount - vol.sb.firstIno + 1));
          while (await inodes.isAllocated(ino)) ino = ino === vol.geo.inodesCount ? vol.sb.firstIno : ino + 1;
          await assert.rejects(inodes.free(txn, ino, false), (e: unknown) => e instanceof Ext4Error && e.code === 'EUCLEAN' && e.detail === 'inode-double-free');
        }
        await checkInvariants(ctx, initialFree - model.size, initialDirs + dirsIn(), model);
      }
      for (const [ino, dir] of model) await inodes.free(txn, ino, dir);
      model.clear();
      await checkInvariants(ctx, initialFree, initialDirs, model);
      if (HAVE_E2FS) await fsckClean(await commitToFile(ctx));
    }), { numRuns: FC_RUNS });
  });

  test(`inode allocator: allocate every inode, ENOSPC, free them all (${spec.name})`, { skip }, async () => {
    const ctx = await openCtx(await fixtureBytes(spec));
    const { inodes, txn, table, vol } = ctx;
    const initialFree = table.freeInodes();
    const initialDirs = table.usedDirs();
    const got: Array<[number, boolean]> = [];
    for (let i = 0; i < initialFree; i++) {
      const dir = i % 5 === 0;
      const parent = got.length ? got[(i * 31) % got.length]![0] : 2;
      got.push([await inodes.alloc(txn, parent, dir), dir]);
    }
    assert.equal(new Set(got.map(([i]) => i)).size, initialFree);
    assert.equal(table.freeInodes(), 0);
    assert.equal(await inodes.countFreeInBitmaps(), 0);
    await assert.rejects(inodes.alloc(txn, 2, false), (e: unknown) => e instanceof Ext4Error && e.code === 'ENOSPC');
    await assert.rejects(inodes.alloc(txn, 2, true), (e: unknown) => e instanceof Ext4Error && e.code === 'ENOSPC');
    assert.ok(table.groups.every((gd) => !(gd.flags & BG_FLAGS.inodeUninit) && gd.itableUnused === 0));
    for (const [ino, dir] of got.reverse()) await inodes.free(txn, ino, dir);
    await checkInvariants(ctx, initialFree, initialDirs, new Map());
    assert.ok(vol.geo.groupCount > 1);
    if (HAVE_E2FS) await fsckClean(await commitToFile(ctx));
  });
}

test('inode allocator: group choice, INODE_UNINIT and itable_unused', { skip: !HAVE_E2FS }, async () => {
  const ctx = await openCtx(await fixtureBytes(FIXTURES[0]!));
  const { inodes, txn, table, vol } = ctx;
  const ipg = vol.geo.inodesPerGroup;
  // mke2fs uses 1..11 (lost+found is 11): the next file of the root goes to 12.
  assert.equal(await inodes.alloc(txn, 2, false), 12);
  assert.equal(table.desc(0).itableUnused, ipg - 12);
  // A file whose parent lives in an INODE_UNINIT group takes that group's first inode.
  assert.ok(table.inodeUninit(2));
  assert.equal(await inodes.alloc(txn, 2 * ipg + 5, false), 2 * ipg + 1);
  assert.equal(table.inodeUninit(2), false);
  assert.equal(table.desc(2).itableUnused, ipg - 1);
  assert.equal(await inodes.alloc(txn, 2 * ipg + 5, false), 2 * ipg + 2);
  assert.equal(table.desc(2).itableUnused, ipg - 2);
  await inodes.free(txn, 2 * ipg + 2, false);
  assert.equal(table.desc(2).itableUnused, ipg - 2, 'freeing never raises itable_unused');
  // Directories spread away from a group that already holds directories.
  const d = await inodes.alloc(txn, 2, true);
  const dg = Math.floor((d - 1) / ipg);
  assert.notEqual(dg, 0);
  assert.equal(table.desc(dg).usedDirsCount, 1);
  const d2 = await inodes.alloc(txn, 2, true);
  assert.notEqual(Math.floor((d2 - 1) / ipg), dg);
  // Reserved, out of range, double free.
  const isErr = (code: string, detail: string) => (e: unknown) => e instanceof Ext4Error && e.code === code && e.detail === detail;
  await assert.rejects(inodes.free(txn, 7, false), isErr('EUCLEAN', 'inode-free-range'));
  await assert.rejects(inodes.free(txn, vol.geo.inodesCount + 1, false), isErr('EUCLEAN', 'inode-free-range'));
  await assert.rejects(inodes.free(txn, 2 * ipg + 2, false), isErr('EUCLEAN', 'inode-double-free'));
  await assert.rejects(inodes.free(txn, vol.geo.inodesCount, false), isErr('EUCLEAN', 'inode-double-free'));
  await assert.rejects(inodes.free(txn, 2 * ipg + 1, true), isErr('EUCLEAN', 'group-used-dirs'));
  assert.equal(await inodes.isAllocated(2 * ipg + 1), true);
});

test('inode allocator: corrupt or inconsistent inode bitmaps are refused', { skip: !HAVE_E2FS }, async () => {
  const bytes = await fixtureBytes(FIXTURES[0]!);
  const isErr = (code: string, detail: string) => (e: unknown) => e instanceof Ext4Error && e.code === code && e.detail === detail;
  {
    const ctx0 = await openCtx(bytes);
    const bad = bytes.slice();
    bad[ctx0.table.desc(0).inodeBitmap * ctx0.vol.blockSize + 100]! ^= 1;
    const ctx = await openCtx(bad);
    await assert.rejects(ctx.inodes.alloc(ctx.txn, 2, false), isErr('EBADMSG', 'inode bitmap-checksum'));
  }
  {
    const ctx = await openCtx(bytes);
    ctx.table.desc(0).inodeBitmap = 0;
    await assert.rejects(ctx.inodes.alloc(ctx.txn, 2, false), isErr('EUCLEAN', 'inode-bitmap-location'));
  }
  {
    const ctx = await openCtx(bytes);
    ctx.table.desc(0).freeInodesCount += 1;
    await assert.rejects(ctx.inodes.alloc(ctx.txn, 2, false), isErr('EUCLEAN', 'group-free-inodes'));
  }
});

test('inode allocator: an inode in a BLOCK_UNINIT group leaves the block bitmap uninitialised (e2fsck agrees)', { skip: !HAVE_E2FS }, async () => {
  const ctx = await openCtx(await fixtureBytes(FIXTURES[0]!));
  const { inodes, txn, table, vol } = ctx;
  const ipg = vol.geo.inodesPerGroup;
  assert.ok(table.blockUninit(1) && table.inodeUninit(1));
  const ino = await inodes.alloc(txn, ipg + 1, false);
  assert.equal(ino, ipg + 1);
  assert.ok(table.blockUninit(1) && !table.inodeUninit(1));
  const path = await commitToFile(ctx);
  // Give the inode a body and a name, so that it is a real in-use file for e2fsck.
  const r = await debugfsRaw(path, [`sif <${ino}> mode 0100644`, `sif <${ino}> links_count 1`, `ln <${ino}> /f`].join('\n'), { write: true });
  assert.deepEqual(r.stderr.split('\n').filter((l) => l.trim() && !/^debugfs \d/.test(l)), []);
  const st = await debugfsRaw(path, 'stat /f');
  assert.match(st.stdout, new RegExp(`Inode: ${ino}\\s+Type: regular`));
  await fsckClean(path);
});
