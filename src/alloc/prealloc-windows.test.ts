// Preallocation windows in the cluster allocator: interleaved streams each stay one run and
// start in a region that can hold a whole extent; other allocations keep out of windows while
// anything else is free and take them when nothing else is; windows never make an allocation
// fail, never overlap and always lie on free clusters (random sequences against a model).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MemoryDevice } from '../device/memory-device.ts';
import { mkfs, type MkfsOptions } from '../mkfs/mkfs.ts';
import { Volume } from '../fs/volume.ts';
import { WriteBackJournal, type Handle } from '../journal/transaction.ts';
import { type GroupDesc } from '../format/group-desc.ts';
import { EXT_INIT_MAX_LEN } from '../format/extent.ts';
import { groupBlockCount, groupFirstBlock } from '../layout/geometry.ts';
import { GroupTable } from './group-table.ts';
import { ClusterAllocator, type ClusterRun } from './cluster-allocator.ts';
import { PreallocWindows } from './prealloc-windows.ts';

const FC_RUNS = Number(process.env.ALLOC_FC_RUNS ?? 10);

interface Spec { name: string; sizeBytes: number; opts: MkfsOptions }
const ONE_K_32M: Spec = { name: '1 KiB blocks, 32 MiB (4 groups, sparse_super backups)', sizeBytes: 32 << 20, opts: { blockSize: 1024 } };
const BIGALLOC_16: Spec = { name: 'bigalloc R=16, 1 KiB blocks, 72 MiB', sizeBytes: 72 << 20, opts: { blockSize: 1024, features: 'bigalloc', clusterBytes: 16384 } };
const FOUR_K_24M: Spec = { name: '4 KiB blocks, 24 MiB (smaller than one extent)', sizeBytes: 24 << 20, opts: { blockSize: 4096 } };

const images = new Map<string, Promise<Uint8Array>>();
function imageOf(spec: Spec): Promise<Uint8Array> {
  let p = images.get(spec.name);
  if (!p) {
    p = (async () => {
      const dev = new MemoryDevice(spec.sizeBytes);
      await mkfs(dev, { timeSec: 1_700_000_000, deviceZeroed: true, ...spec.opts });
      return dev.bytes;
    })();
    images.set(spec.name, p);
  }
  return p;
}

interface Ctx { alloc: ClusterAllocator; txn: Handle; used: Uint8Array; groups: Array<[number, number]>; slot: number }

async function open(spec: Spec): Promise<Ctx> {
  const vol = await Volume.open(new MemoryDevice((await imageOf(spec)).slice()));
  const journal = new WriteBackJournal(vol.cache);
  const alloc = new ClusterAllocator(vol.geo, new GroupTable(vol.geo, vol.groups as GroupDesc[]), { reader: journal.start(0) });
  const geo = vol.geo;
  const groups: Array<[number, number]> = [];
  for (let g = 0; g < geo.groupCount; g++) {
    groups.push([Math.floor(groupFirstBlock(geo, g) / geo.clusterRatio), Math.ceil(groupBlockCount(geo, g) / geo.clusterRatio)]);
  }
  const used = new Uint8Array(geo.clustersCount);
  for (let c = 0; c < used.length; c++) used[c] = (await alloc.isAllocated(c)) ? 1 : 0;
  return { alloc, txn: journal.start(1e9), used, groups, slot: Math.floor(EXT_INIT_MAX_LEN / geo.clusterRatio) };
}

function take(ctx: Ctx, r: ClusterRun): void {
  for (let c = r.cluster; c < r.cluster + r.count; c++) assert.equal(ctx.used[c], 0, `cluster ${c} handed out twice`);
  ctx.used.fill(1, r.cluster, r.cluster + r.count);
}

const freeCount = (ctx: Ctx) => ctx.used.reduce((n, u) => n + (u ? 0 : 1), 0);

/** Runs [cluster, cluster + count) of each owner, merged when contiguous. */
function mergeRuns(runs: ClusterRun[]): ClusterRun[] {
  const out: ClusterRun[] = [];
  for (const r of runs) {
    const last = out[out.length - 1];
    if (last && last.cluster + last.count === r.cluster) last.count += r.count; else out.push({ ...r });
  }
  return out;
}

/** Interleaves `owners` streams of `step` clusters until each holds `perOwner`; returns each owner's runs. */
async function interleave(ctx: Ctx, owners: number, step: number, perOwner: number): Promise<ClusterRun[][]> {
  const runs: ClusterRun[][] = Array.from({ length: owners }, () => []);
  const goal = new Array<number | undefined>(owners).fill(undefined);
  for (let done = 0; done < perOwner; done += step) {
    for (let o = 0; o < owners; o++) {
      const r = await ctx.alloc.allocStream(ctx.txn, 100 + o, goal[o] ?? 0, step, { continuing: goal[o] !== undefined, keepWindow: true });
      assert.ok(r, 'allocStream failed with free space left');
      take(ctx, r);
      runs[o]!.push(r);
      goal[o] = r.cluster + r.count;
      await ctx.alloc.checkWindows(ctx.txn);
    }
  }
  return runs;
}

test(`prealloc windows: interleaved streams stay one run each, each in a region that holds a whole extent (${BIGALLOC_16.name})`, async () => {
  const ctx = await open(BIGALLOC_16);
  const initial = ctx.used.slice();
  const perOwner = ctx.slot / 2;
  const runs = await interleave(ctx, 2, 8, perOwner);
  for (const [o, list] of runs.entries()) {
    const merged = mergeRuns(list);
    assert.equal(merged.length, 1, `owner ${o}: ${merged.length} runs ${JSON.stringify(merged)}`);
    // The region a whole extent needs was free (no bitmaps, no inode table) when the stream began.
    const s = merged[0]!.cluster;
    for (let c = s; c < s + ctx.slot; c++) assert.equal(initial[c], 0, `owner ${o}: cluster ${c} of its region held metadata`);
    // The window holds the rest of that region.
    const w = ctx.alloc.windowOf(100 + o)!;
    assert.deepEqual([w.cluster, w.count], [s + perOwner, ctx.slot - perOwner]);
  }
  const starts = runs.map((l) => l[0]!.cluster).sort((a, b) => a - b);
  assert.ok(starts[1]! - starts[0]! >= ctx.slot, `regions ${starts.join(', ')} overlap`);
  // A closing file (keepWindow false) still continues its run, and its window goes.
  const w0 = ctx.alloc.windowOf(100)!;
  const r = (await ctx.alloc.allocStream(ctx.txn, 100, w0.cluster, 4, { continuing: true, keepWindow: false }))!;
  assert.equal(r.cluster, w0.cluster);
  assert.equal(ctx.alloc.windowOf(100), undefined);
  ctx.alloc.releaseWindow(101);
  assert.equal(ctx.alloc.windowOf(101), undefined);
  assert.equal(ctx.alloc.windowClusters, 0);
});

test(`prealloc windows: interleaved streams stay one run each where no region holds a whole extent (${ONE_K_32M.name})`, async () => {
  const ctx = await open(ONE_K_32M);
  const runs = await interleave(ctx, 3, 16, 2048);
  for (const [o, list] of runs.entries()) {
    const merged = mergeRuns(list);
    assert.equal(merged.length, 1, `owner ${o}: ${merged.length} runs ${JSON.stringify(merged)}`);
  }
});

test('prealloc windows: other allocations keep out of windows until nothing else is free, and never fail because of them', async () => {
  const ctx = await open(FOUR_K_24M);
  const initialFree = freeCount(ctx);
  // No region can hold a whole extent here: the stream takes the largest free run, and its
  // window half of the spare space.
  const spare = freeCount(ctx);
  const first = (await ctx.alloc.allocStream(ctx.txn, 7, 0, 16, { continuing: false, keepWindow: true, spareClusters: spare }))!;
  take(ctx, first);
  const w = ctx.alloc.windowOf(7)!;
  assert.equal(w.cluster, first.cluster + 16);
  assert.equal(w.count, Math.floor(spare / 2));
  // Metadata-style allocations (no owner) land outside the window while other space is free.
  const meta = (await ctx.alloc.allocRun(ctx.txn, w.cluster, 1))!;
  take(ctx, meta);
  assert.ok(meta.cluster < w.cluster || meta.cluster >= w.cluster + w.count, `metadata cluster ${meta.cluster} inside the window`);
  // A second stream with no free region outside windows splits the largest window.
  let outside = 0;
  for (;;) {
    const r = await ctx.alloc.allocRun(ctx.txn, 0, 64, 1);
    if (!r) break;
    take(ctx, r);
    const win = ctx.alloc.windowOf(7);
    if (win && r.cluster < win.cluster + win.count && win.cluster < r.cluster + r.count) break;
    outside += r.count;
    await ctx.alloc.checkWindows(ctx.txn);
    if (freeCount(ctx) === (ctx.alloc.windowOf(7)?.count ?? 0)) break;
  }
  assert.ok(outside > 0);
  // Everything left is window: a new stream still gets space (the window's second half).
  const before = ctx.alloc.windowOf(7)!;
  assert.equal(freeCount(ctx), before.count, 'only the window is free');
  const second = (await ctx.alloc.allocStream(ctx.txn, 8, 0, 4, { continuing: false, keepWindow: true }))!;
  take(ctx, second);
  assert.equal(second.cluster, before.cluster + Math.floor(before.count / 2));
  assert.equal(ctx.alloc.windowOf(7)!.count, Math.floor(before.count / 2), 'the first stream keeps the first half');
  await ctx.alloc.checkWindows(ctx.txn);
  // Then every remaining cluster can still be allocated by anyone.
  for (;;) {
    const r = await ctx.alloc.allocRun(ctx.txn, 0, 64, 1);
    if (!r) break;
    take(ctx, r);
    await ctx.alloc.checkWindows(ctx.txn);
  }
  assert.equal(freeCount(ctx), 0);
  assert.equal(ctx.alloc.freeClusters, 0);
  assert.equal(ctx.alloc.windowClusters, 0);
  assert.ok(initialFree > 0);
});

test('prealloc windows: carving keeps the part before an allocation, drops a window whose start is taken', () => {
  const w = new PreallocWindows();
  w.set(1, 100, 50, 90);
  w.set(2, 200, 10, 200);
  w.carve(120, 5);
  assert.deepEqual(w.get(1), { owner: 1, cluster: 100, count: 20, runStart: 90 });
  w.carve(195, 6);
  assert.equal(w.get(2), undefined);
  assert.equal(w.totalClusters, 20);
  assert.deepEqual(w.blockedFor(3), [{ start: 100, end: 120 }]);
  assert.deepEqual(w.blockedFor(1), []);
  assert.throws(() => w.set(3, 10, 5, 11), /malformed/);
});

type Cmd =
  | { kind: 'stream'; owner: number; want: number; keep: boolean; fresh: boolean }
  | { kind: 'run'; goal: number; want: number; min: number; owner: number | undefined }
  | { kind: 'free'; pick: number; n: number }
  | { kind: 'release'; owner: number };

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('stream' as const), owner: fc.integer({ min: 1, max: 4 }), want: fc.integer({ min: 1, max: 3000 }), keep: fc.boolean(), fresh: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('run' as const), goal: fc.nat(), want: fc.integer({ min: 1, max: 2000 }), min: fc.nat(), owner: fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('free' as const), pick: fc.nat(), n: fc.integer({ min: 1, max: 3000 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('release' as const), owner: fc.integer({ min: 1, max: 4 }) }) },
);

/** Longest free run inside one group that avoids every window except `owner`'s. */
function longestOutside(ctx: Ctx, owner: number | undefined): number {
  const blocked = new Uint8Array(ctx.used.length);
  for (let o = 1; o <= 4; o++) {
    const w = ctx.alloc.windowOf(o);
    if (w && o !== owner) blocked.fill(1, w.cluster, w.cluster + w.count);
  }
  let best = 0;
  for (const [first, n] of ctx.groups) {
    let cur = 0;
    for (let c = first; c < first + n; c++) {
      cur = ctx.used[c] || blocked[c] ? 0 : cur + 1;
      best = Math.max(best, cur);
    }
  }
  return best;
}

for (const spec of [FOUR_K_24M, BIGALLOC_16]) {
  test(`prealloc windows: random streams, allocations and frees against a model (${spec.name})`, async () => {
    await fc.assert(fc.asyncProperty(fc.array(cmdArb, { minLength: 1, maxLength: 60 }), async (cmds) => {
      const ctx = await open(spec);
      const owned: ClusterRun[] = [];
      const goals = new Map<number, number>();
      for (const cmd of cmds) {
        if (cmd.kind === 'stream') {
          const own = ctx.alloc.windowOf(cmd.owner);
          const goal = cmd.fresh ? undefined : goals.get(cmd.owner);
          const r = await ctx.alloc.allocStream(ctx.txn, cmd.owner, goal ?? 0, cmd.want, { continuing: goal !== undefined, keepWindow: cmd.keep, spareClusters: freeCount(ctx) });
          if (!r) { assert.equal(freeCount(ctx), 0, 'stream allocation failed with free clusters left'); continue; }
          assert.ok(r.count >= 1 && r.count <= cmd.want);
          if (own && own.count > 0 && goal === own.cluster) assert.equal(r.cluster, own.cluster, 'the window head was not used');
          take(ctx, r);
          owned.push(r);
          goals.set(cmd.owner, r.cluster + r.count);
          if (!cmd.keep) assert.equal(ctx.alloc.windowOf(cmd.owner), undefined);
        } else if (cmd.kind === 'run') {
          const want = cmd.want;
          const min = 1 + (cmd.min % want);
          const outside = longestOutside(ctx, cmd.owner);
          const windows = [1, 2, 3, 4].filter((o) => o !== cmd.owner).map((o) => ctx.alloc.windowOf(o)).filter((w) => w && w.count > 0);
          const r = await ctx.alloc.allocRun(ctx.txn, cmd.goal % ctx.used.length, want, min, { owner: cmd.owner });
          if (!r) continue;
          const intoWindow = windows.some((w) => r.cluster < w!.cluster + w!.count && w!.cluster < r.cluster + r.count);
          if (intoWindow) assert.ok(outside < min, `took a window although a run of ${outside} >= ${min} was free outside windows`);
          take(ctx, r);
          owned.push(r);
        } else if (cmd.kind === 'free') {
          if (!owned.length) continue;
          const i = cmd.pick % owned.length;
          const r = owned[i]!;
          const n = Math.min(cmd.n, r.count);
          await ctx.alloc.free(ctx.txn, r.cluster, n);
          ctx.used.fill(0, r.cluster, r.cluster + n);
          if (n === r.count) owned.splice(i, 1); else owned[i] = { cluster: r.cluster + n, count: r.count - n };
        } else {
          ctx.alloc.releaseWindow(cmd.owner);
        }
        await ctx.alloc.checkWindows(ctx.txn);
        assert.equal(ctx.alloc.freeClusters, freeCount(ctx));
        assert.ok(ctx.alloc.windowClusters <= freeCount(ctx));
      }
    }), { numRuns: FC_RUNS });
  });
}
