// ClusterAllocator against a model set over mke2fs and ext4kit-mkfs images (1 KiB, 4 KiB, bigalloc
// R=4 and R=16, uninit_bg with 32-byte descriptors), with e2fsck -fn as the oracle once freed again.
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
import { groupBlockCount, groupFirstBlock } from '../layout/geometry.ts';
import { Ext4Error } from '../errors/ext4-error.ts';
import { GroupTable } from './group-table.ts';
import { ClusterAllocator, type ClusterRun } from './cluster-allocator.ts';
import { makeImage, tmpImagePath, type MakeImageOptions } from '../../test/support/images.ts';
import { e2fsck, haveE2fsprogs } from '../../test/support/oracles.ts';

const HAVE_E2FS = haveE2fsprogs();
const FC_RUNS = Number(process.env.ALLOC_FC_RUNS ?? 10);

interface FixtureSpec {
  name: string;
  mke2fs?: Omit<MakeImageOptions, 'out'>;
  mkfs?: { sizeBytes: number; opts: MkfsOptions };
}

const FIXTURES: FixtureSpec[] = [
  { name: 'mke2fs 1k', mke2fs: { blockSize: 1024, sizeBytes: 32 << 20 } },
  { name: 'mke2fs 4k, 4096 blocks/group, partial last group', mke2fs: { blockSize: 4096, sizeBytes: 72 << 20, extra: ['-g', '4096'] } },
  { name: 'mke2fs bigalloc R=4', mke2fs: { blockSize: 1024, clusterBytes: 4096, sizeBytes: 40 << 20, extra: ['-g', '2048'] } },
  { name: 'mke2fs bigalloc R=16', mke2fs: { blockSize: 1024, clusterBytes: 16384, sizeBytes: 56 << 20, extra: ['-g', '1024'] } },
  { name: 'mke2fs 1k uninit_bg, no flex_bg, 32-byte descriptors', mke2fs: { blockSize: 1024, sizeBytes: 24 << 20, features: '^metadata_csum,^flex_bg,^64bit,uninit_bg' } },
  { name: 'mkfs 1k', mkfs: { sizeBytes: 32 << 20, opts: { blockSize: 1024 } } },
  { name: 'mkfs bigalloc R=4', mkfs: { sizeBytes: 112 << 20, opts: { blockSize: 1024, features: 'bigalloc', clusterBytes: 4096 } } },
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
  alloc: ClusterAllocator;
  txn: Handle;
  /** [firstCluster, clusterCount) of each group. */
  groups: Array<[number, number]>;
}

async function openCtx(bytes: Uint8Array): Promise<Ctx> {
  const dev = new MemoryDevice(bytes.slice());
  const vol = await Volume.open(dev);
  const journal = new WriteBackJournal(vol.cache);
  const table = new GroupTable(vol.geo, vol.groups as GroupDesc[]);
  const alloc = new ClusterAllocator(vol.geo, table, { reader: journal.start(0) });
  const geo = vol.geo;
  const groups: Array<[number, number]> = [];
  for (let g = 0; g < geo.groupCount; g++) {
    groups.push([Math.floor(groupFirstBlock(geo, g) / geo.clusterRatio), Math.ceil(groupBlockCount(geo, g) / geo.clusterRatio)]);
  }
  return { dev, vol, journal, table, alloc, txn: journal.start(1e9), groups };
}

/** Flushes descriptors, commits, writes the superblock's free counts (blocks = clusters × R), runs e2fsck -fn. */
async function commitAndFsck(ctx: Ctx, fsck = true): Promise<void> {
  const h = ctx.journal.start(ctx.vol.geo.gdtBlocks);
  await ctx.table.flush(h);
  h.stop();
  // A commit waits for running handles (as jbd2's does): end the test's long-lived one, then reopen it.
  ctx.txn.stop();
  await ctx.journal.commit();
  (ctx as { txn: typeof ctx.txn }).txn = ctx.journal.start(1e9);
  const sb = ctx.vol.sb;
  sb.freeBlocksCount = ctx.alloc.freeClusters * ctx.vol.geo.clusterRatio;
  sb.freeInodesCount = ctx.table.freeInodes();
  await ctx.dev.write(SUPERBLOCK_OFFSET, encodeSuperblock(sb));
  if (!HAVE_E2FS || !fsck) return;
  const path = tmpImagePath('cluster-alloc');
  writeFileSync(path, ctx.dev.bytes);
  try {
    const r = await e2fsck(path);
    assert.equal(r.exitCode, 0, r.output);
    assert.doesNotMatch(r.output, /Fix\?|differences|wrong|Padding/i, r.output);
  } finally {
    rmSync(path, { force: true });
  }
}

async function snapshot(ctx: Ctx): Promise<Uint8Array> {
  const used = new Uint8Array(ctx.vol.geo.clustersCount);
  for (let c = 0; c < used.length; c++) used[c] = (await ctx.alloc.isAllocated(c)) ? 1 : 0;
  return used;
}

const snapshots = new Map<string, Promise<Uint8Array>>();
function initialSnapshot(spec: FixtureSpec): Promise<Uint8Array> {
  let p = snapshots.get(spec.name);
  if (!p) {
    p = fixtureBytes(spec).then(openCtx).then(snapshot);
    snapshots.set(spec.name, p);
  }
  return p;
}

/** Longest free run (inside one group) of the model, and the free run starting at a cluster. */
function longestRun(used: Uint8Array, groups: Array<[number, number]>): number {
  let best = 0;
  for (const [first, n] of groups) {
    let cur = 0;
    for (let c = first; c < first + n; c++) {
      cur = used[c] ? 0 : cur + 1;
      if (cur > best) best = cur;
    }
  }
  return best;
}
function runAt(used: Uint8Array, groups: Array<[number, number]>, c: number): number {
  const grp = groups.find(([f, n]) => c >= f && c < f + n);
  if (!grp) return 0;
  let e = c;
  while (e < grp[0] + grp[1] && !used[e]) e++;
  return e - c;
}

async function checkCounts(ctx: Ctx, expectedFree: number): Promise<void> {
  assert.equal(ctx.alloc.freeClusters, expectedFree, 'running free count vs model');
  assert.equal(await ctx.alloc.countFreeInBitmaps(), expectedFree, 'bitmaps vs model');
  assert.equal(ctx.table.freeClusters(), expectedFree, 'descriptors vs model');
}

type Cmd =
  | { kind: 'run'; goal: number; want: number; min: number }
  | { kind: 'exact'; at: number; n: number }
  | { kind: 'free'; pick: number; off: number; n: number }
  | { kind: 'double'; pick: number };

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('run' as const), goal: fc.nat(), want: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 20000 })), min: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('exact' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 48 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('free' as const), pick: fc.nat(), off: fc.nat(), n: fc.integer({ min: 1, max: 4000 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('double' as const), pick: fc.nat() }) },
);

/** Runs one command against the allocator and the model; `runs` are the clusters the test owns. */
async function step(ctx: Ctx, used: Uint8Array, runs: ClusterRun[], cmd: Cmd): Promise<void> {
  const { alloc, txn, groups } = ctx;
  const total = used.length;
  const cpg = ctx.vol.geo.clustersPerGroup;
  if (cmd.kind === 'run') {
    const goal = cmd.goal % total;
    const want = cmd.want;
    const min = 1 + (cmd.min % Math.min(want, 200));
    const capped = Math.min(want, cpg);
    const longest = longestRun(used, groups);
    const atGoal = runAt(used, groups, goal);
    const r = await alloc.allocRun(txn, goal, want, min);
    if (!r) {
      assert.ok(longest < min, `undefined although a run of ${longest} >= ${min} exists`);
      return;
    }
    assert.ok(r.count >= min && r.count <= capped, `run ${r.count} outside [${min}, ${capped}]`);
    const grp = groups.find(([f, n]) => r.cluster >= f && r.cluster + r.count <= f + n);
    assert.ok(grp, `run ${r.cluster}+${r.count} crosses a group boundary`);
    for (let c = r.cluster; c < r.cluster + r.count; c++) assert.equal(used[c], 0, `cluster ${c} handed out twice`);
    if (r.count < capped) assert.equal(r.count, longest, 'short run although a longer one exists');
    if (atGoal >= capped) assert.equal(r.cluster, goal, 'a full run at the goal was not taken');
    used.fill(1, r.cluster, r.cluster + r.count);
    runs.push(r);
  } else if (cmd.kind === 'exact') {
    const at = cmd.at % total;
    const n = Math.min(cmd.n, total - at);
    let expect = true;
    for (let c = at; c < at + n; c++) if (used[c]) expect = false;
    const ok = await alloc.allocExact(txn, at, n);
    assert.equal(ok, expect, `allocExact(${at}, ${n})`);
    if (ok) { used.fill(1, at, at + n); runs.push({ cluster: at, count: n }); }
  } else if (cmd.kind === 'free') {
    if (runs.length === 0) return;
    const i = cmd.pick % runs.length;
    const r = runs[i]!;
    const off = cmd.off % r.count;
    const n = Math.min(cmd.n, r.count - off);
    await alloc.free(txn, r.cluster + off, n);
    used.fill(0, r.cluster + off, r.cluster + off + n);
    const pieces = [{ cluster: r.cluster, count: off }, { cluster: r.cluster + off + n, count: r.count - off - n }].filter((p) => p.count > 0);
    runs.splice(i, 1, ...pieces);
  } else {
    let c = cmd.pick % total;
    for (let k = 0; k < total && (used[c] || !groups.some(([f, m]) => c >= f && c < f + m)); k++) c = (c + 1) % total;
    if (used[c]) return;
    const before = alloc.freeClusters;
    await assert.rejects(alloc.free(txn, c, 1), (e: unknown) => e instanceof Ext4Error && e.code === 'EUCLEAN' && e.detail === 'bitmap-double-free');
    assert.equal(alloc.freeClusters, before);
  }
}

for (const spec of FIXTURES) {
  const skip = spec.mke2fs && !HAVE_E2FS ? 'e2fsprogs not installed' : false;

  test(`cluster allocator: random alloc/free against a model (${spec.name})`, { skip }, async () => {
    const bytes = await fixtureBytes(spec);
    const initial = await initialSnapshot(spec);
    const initialFree = initial.reduce((n, u) => n + (u ? 0 : 1), 0);
    await fc.assert(fc.asyncProperty(fc.array(cmdArb, { minLength: 1, maxLength: 40 }), async (cmds) => {
      const ctx = await openCtx(bytes);
      const used = initial.slice();
      const runs: ClusterRun[] = [];
      await checkCounts(ctx, initialFree);
      for (const cmd of cmds) {
        await step(ctx, used, runs, cmd);
        await checkCounts(ctx, initialFree - runs.reduce((n, r) => n + r.count, 0));
      }
      for (const r of runs) await ctx.alloc.free(ctx.txn, r.cluster, r.count);
      await checkCounts(ctx, initialFree);
      assert.deepEqual(await snapshot(ctx), initial, 'bitmaps restored');
      await commitAndFsck(ctx);
    }), { numRuns: FC_RUNS });
  });

  test(`cluster allocator: allocate everything, then free everything (${spec.name})`, { skip }, async () => {
    const bytes = await fixtureBytes(spec);
    const initial = await initialSnapshot(spec);
    const ctx = await openCtx(bytes);
    const { alloc, txn, table } = ctx;
    const total = ctx.vol.geo.clustersCount;
    const initialFree = alloc.freeClusters;
    const hadUninit = table.groups.some((gd) => gd.flags & BG_FLAGS.blockUninit);
    const runs: ClusterRun[] = [];
    let goal = Math.floor(total / 3);
    for (;;) {
      const r = await alloc.allocRun(txn, goal, 1 + (runs.length * 37) % 700);
      if (!r) break;
      runs.push(r);
      goal = (r.cluster + r.count + 101 * runs.length) % total;
    }
    assert.equal(runs.reduce((n, r) => n + r.count, 0), initialFree);
    await checkCounts(ctx, 0);
    assert.equal(await alloc.allocRun(txn, 0, 1), undefined);
    assert.equal(await alloc.allocExact(txn, runs[0]!.cluster, 1), false);
    assert.ok(table.groups.every((gd) => !(gd.flags & BG_FLAGS.blockUninit)), 'every BLOCK_UNINIT group was initialised');
    // Free in a scrambled order, in pieces.
    const order = runs.map((r, i) => ({ r, k: (i * 7919) % runs.length })).sort((a, b) => a.k - b.k).map((x) => x.r);
    for (const r of order) {
      const half = Math.floor(r.count / 2);
      if (half > 0) await alloc.free(txn, r.cluster + r.count - half, half);
      await alloc.free(txn, r.cluster, r.count - half);
    }
    await checkCounts(ctx, initialFree);
    assert.deepEqual(await snapshot(ctx), initial);
    assert.ok(hadUninit, 'the fixture has BLOCK_UNINIT groups');
    await commitAndFsck(ctx);
  });
}

const ONE_K = FIXTURES[0]!;
const UNINIT_BG = FIXTURES[4]!;

test('cluster allocator: runs near the goal in a partly full group are contiguous', { skip: !HAVE_E2FS }, async () => {
  const ctx = await openCtx(await fixtureBytes(ONE_K));
  const { alloc, txn, groups } = ctx;
  const [first, n] = groups[1]!; // a BLOCK_UNINIT group with a superblock backup at its start
  assert.ok(ctx.table.blockUninit(1));
  const x = first + Math.floor(n / 2);
  assert.equal(await alloc.allocExact(txn, x, 100), true);
  assert.equal(ctx.table.blockUninit(1), false);
  await alloc.free(txn, x + 20, 30); // a hole [x+20, x+50)
  assert.deepEqual(await alloc.allocRun(txn, x + 25, 10), { cluster: x + 25, count: 10 });
  // Holes of 5 and 15 remain around the goal: a run of 40 comes from after the allocated block.
  const r = (await alloc.allocRun(txn, x + 20, 40, 40))!;
  assert.equal(r.count, 40);
  assert.ok(r.cluster >= x + 100 && r.cluster + 40 <= first + n, `run ${r.cluster} not after the goal in its group`);
  // The goal's own hole is taken when the request fits it.
  assert.deepEqual(await alloc.allocRun(txn, x + 35, 15), { cluster: x + 35, count: 15 });
  assert.deepEqual(await alloc.allocRun(txn, x + 20, 5), { cluster: x + 20, count: 5 });
  // A request larger than a group is capped to one group's worth (never crosses a boundary).
  const big = (await alloc.allocRun(txn, first, 10 * ctx.vol.geo.clustersPerGroup))!;
  assert.ok(big.count <= ctx.vol.geo.clustersPerGroup);
  assert.equal(await alloc.countFreeInBitmaps(), alloc.freeClusters);
});

test('cluster allocator: corrupt or inconsistent bitmaps are refused', { skip: !HAVE_E2FS }, async () => {
  const bytes = await fixtureBytes(ONE_K);
  const isErr = (code: string, detail: string) => (e: unknown) => e instanceof Ext4Error && e.code === code && e.detail === detail;
  {
    // A flipped bit in group 0's bitmap (metadata_csum): checksum mismatch.
    const ctx0 = await openCtx(bytes);
    const gd = ctx0.table.desc(0);
    const bad = bytes.slice();
    bad[gd.blockBitmap * ctx0.vol.blockSize + 1000]! ^= 0x10;
    const ctx = await openCtx(bad);
    await assert.rejects(ctx.alloc.allocRun(ctx.txn, 0, 1), isErr('EBADMSG', 'block bitmap-checksum'));
  }
  {
    const ctx = await openCtx(bytes);
    ctx.table.desc(0).blockBitmap = ctx.vol.geo.blocksCount + 3;
    await assert.rejects(ctx.alloc.allocRun(ctx.txn, 0, 1), isErr('EUCLEAN', 'block-bitmap-location'));
  }
  {
    const ctx = await openCtx(bytes);
    ctx.table.desc(2).freeBlocksCount -= 1;
    await assert.rejects(ctx.alloc.allocRun(ctx.txn, ctx.groups[2]![0], 1), isErr('EUCLEAN', 'group-free-clusters'));
  }
  {
    const ctx = await openCtx(bytes);
    const { alloc, txn, groups } = ctx;
    const free = alloc.freeClusters;
    await assert.rejects(alloc.free(txn, groups[1]![0] + 500, 2), isErr('EUCLEAN', 'bitmap-double-free'));
    await assert.rejects(alloc.free(txn, groups[0]![0], 1), isErr('EUCLEAN', 'free-system-zone'));
    await assert.rejects(alloc.free(txn, ctx.vol.geo.clustersCount - 1, 2), isErr('EUCLEAN', 'free-out-of-range'));
    assert.equal(alloc.freeClusters, free);
    assert.equal(await alloc.allocExact(txn, ctx.vol.geo.clustersCount - 1, 2), false);
  }
  {
    // Without metadata_csum: group 0's inode table marked free in its bitmap (count adjusted to match).
    const b = await fixtureBytes(UNINIT_BG);
    const ctx0 = await openCtx(b);
    const gd = ctx0.table.desc(0);
    const bad = b.slice();
    const bit = gd.inodeTable - ctx0.groups[0]![0];
    bad[gd.blockBitmap * ctx0.vol.blockSize + (bit >> 3)]! &= ~(1 << (bit & 7));
    const ctx = await openCtx(bad);
    ctx.table.desc(0).freeBlocksCount += 1;
    await assert.rejects(ctx.alloc.allocRun(ctx.txn, 0, 1), isErr('EUCLEAN', 'block-bitmap-metadata-free'));
  }
});

test('cluster allocator: a cluster freed by the running transaction is not handed out again while older bitmaps are busy', { skip: !HAVE_E2FS }, async () => {
  const ctx = await openCtx(await fixtureBytes(ONE_K));
  const [first] = ctx.groups[0]!;
  assert.equal(ctx.table.blockUninit(0), false);
  const a = (await ctx.alloc.allocRun(ctx.txn, first, 1))!;
  const b = (await ctx.alloc.allocRun(ctx.txn, a.cluster + 1, 1))!;
  await commitAndFsck(ctx, false);
  // Allocations alone keep the fast path (no merge with older versions): the next run follows b.
  const c = (await ctx.alloc.allocRun(ctx.txn, a.cluster, 1))!;
  assert.ok(c.cluster > b.cluster, `cluster ${c.cluster} reused an allocated one`);
  await ctx.alloc.free(ctx.txn, a.cluster, 1);
  // The committed bitmap still holds a: it stays busy until the free is durable.
  const d = (await ctx.alloc.allocRun(ctx.txn, a.cluster, 1))!;
  assert.notEqual(d.cluster, a.cluster);
  await commitAndFsck(ctx, false);
  await ctx.alloc.free(ctx.txn, d.cluster, 1);
  await ctx.alloc.free(ctx.txn, c.cluster, 1);
  await commitAndFsck(ctx, false);
  // Once the free is committed, the cluster is handed out again.
  assert.deepEqual(await ctx.alloc.allocRun(ctx.txn, a.cluster, 1), { cluster: a.cluster, count: 1 });
  await ctx.alloc.free(ctx.txn, a.cluster, 1);
  await ctx.alloc.free(ctx.txn, b.cluster, 1);
  await commitAndFsck(ctx);
});
