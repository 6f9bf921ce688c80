// Extent-tree writes against a reference model (fast-check): block-level mapping, tree structure,
// node-block accounting and the bigalloc partial-cluster freeing rules (§4.4), cross-checked with
// the read-side walker; §4.4 cases as unit tests; and edits of a tree made by mke2fs/debugfs.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, openSync, readSync, writeSync, closeSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { Ext4Error } from '../errors/ext4-error.ts';
import { u16, u32, xorU8 } from '../util/bytes.ts';
import { fileBlock, fsBlock, inodeNo, type FsBlock } from '../util/brand.ts';
import { fsCsumSeed, inodeCsumSeed } from '../format/checksum.ts';
import { decodeInode, EXTENTS_FL, S_IFREG, type Inode } from '../format/inode.ts';
import {
  decodeExtentNode, encodeExtentNode, extentNodeCapacity, type Extent, type ExtentNode,
} from '../format/extent.ts';
import type { MetaTxn } from '../journal/transaction.ts';
import { mapOneBlock, mapRun } from './map-run.ts';
import { iterateMappings, type MapContext } from './read-map.ts';
import {
  extentInsert, extentIterate, extentLookup, extentRemoveRange, extentSetUnwritten, extentTreeNodeCount,
  initExtentRoot, logicalClusterMapped, type ExtentTreeEnv,
} from './extent-tree.ts';

// ---- harness --------------------------------------------------------------------------------

/** Metadata blocks in a Map; `fallback` supplies blocks never written (an image underneath). */
class MemTxn implements MetaTxn {
  readonly blocks = new Map<number, Uint8Array>();
  constructor(readonly blockSize: number, readonly fallback?: (b: number) => Uint8Array) {}
  async read(b: number): Promise<Uint8Array> {
    const x = this.blocks.get(b) ?? this.fallback?.(b);
    if (!x) throw new Error(`read of block ${b}, which holds no node`);
    return x;
  }
  async getWrite(b: number): Promise<Uint8Array> {
    let x = this.blocks.get(b);
    if (!x) { x = (await this.read(b)).slice(); this.blocks.set(b, x); }
    return x;
  }
  getNew(b: number): Uint8Array {
    const x = new Uint8Array(this.blockSize);
    this.blocks.set(b, x);
    return x;
  }
  forget(b: number): void { this.blocks.delete(b); }
  /** Every block counts as committed: finalizers (deferred checksums) run at once. */
  isDirty(): boolean { return false; }
  onCommit(b: number, finalize: (bytes: Uint8Array) => void): void { finalize(this.blocks.get(b)!); }
}

interface FreeCall { cluster: number; count: number; logicalCluster: number }

interface Harness {
  env: ExtentTreeEnv;
  txn: MemTxn;
  R: number;
  nodesLive: Set<number>;
  nodesAllocated: number;
  nodesFreed: number;
  frees: FreeCall[];
  /** Throws ENOSPC when it returns true (called before each node allocation). */
  failAlloc: (() => boolean) | undefined;
}

const BLOCKS_COUNT = 1 << 24;
const NODE_BASE = 1 << 23;

function harness(blockSize: number, R: number, seed?: number): Harness {
  const txn = new MemTxn(blockSize);
  const root = new Uint8Array(60);
  initExtentRoot(root);
  let nextNode = NODE_BASE;
  const h: Harness = {
    txn, R, nodesLive: new Set(), nodesAllocated: 0, nodesFreed: 0, frees: [], failAlloc: undefined,
    env: {
      txn, blockSize, clusterRatio: R, ino: 12, inodeSeed: seed, blocksCount: BLOCKS_COUNT, root,
      allocNodeBlock: async () => {
        if (h.failAlloc?.()) throw new Ext4Error('ENOSPC', 'no space');
        const b = nextNode;
        nextNode += R; // one cluster per node block
        h.nodesAllocated++;
        h.nodesLive.add(b);
        return b;
      },
      freeNodeBlock: async (b) => {
        assert.ok(h.nodesLive.delete(b), `node block ${b} freed twice or never allocated`);
        h.nodesFreed++;
      },
      freeDataClusters: async (cluster, count, logicalCluster) => {
        assert.ok(Number.isInteger(count) && count >= 1, `free of ${count} clusters`);
        h.frees.push({ cluster, count, logicalCluster });
      },
    },
  };
  return h;
}

const ext = (l: number, n: number, p: number, unwritten = false): Extent =>
  ({ fileBlock: fileBlock(l), countBlocks: n, fsBlock: fsBlock(p), unwritten });

async function listExtents(env: ExtentTreeEnv): Promise<Extent[]> {
  const out: Extent[] = [];
  for await (const e of extentIterate(env)) out.push(e);
  return out;
}

function inodeOf(root: Uint8Array): Inode {
  return { mode: S_IFREG | 0o644, flags: EXTENTS_FL, iBlock: root } as unknown as Inode;
}

async function readMapExtents(env: ExtentTreeEnv): Promise<Extent[]> {
  const ctx: MapContext = {
    blockSize: env.blockSize, blocksCount: env.blocksCount, ino: inodeNo(env.ino), inodeSeed: env.inodeSeed,
    readBlock: (b: FsBlock) => env.txn.read(b),
  };
  const out: Extent[] = [];
  for await (const m of iterateMappings(inodeOf(env.root), ctx)) out.push(ext(m.fileBlock, m.countBlocks, m.fsBlock, m.unwritten));
  return out;
}

interface TreeShape { extents: Extent[]; nodes: Set<number>; depth: number }

/** Decodes every node from the raw bytes and checks the structural rules. */
async function checkTree(h: Harness): Promise<TreeShape> {
  const { env, txn } = h;
  const cap = extentNodeCapacity(false, env.blockSize);
  const extents: Extent[] = [];
  const nodes = new Set<number>();
  const root = decodeExtentNode(env.root, { isRoot: true, blockSize: env.blockSize, where: {} });
  assert.equal(root.max, 4);
  const walk = (node: ExtentNode, block: number | undefined, lo: number, hi: number): void => {
    if (block !== undefined) {
      assert.equal(node.max, cap, 'non-root node max');
      assert.ok((node.kind === 'leaf' ? node.extents.length : node.indexes.length) > 0, 'empty non-root node');
    }
    if (node.kind === 'leaf') {
      node.extents.forEach((e, i) => {
        assert.ok(e.fileBlock >= lo && e.fileBlock + e.countBlocks <= hi, `extent ${e.fileBlock} outside ${lo}..${hi}`);
        const prev = node.extents[i - 1];
        if (prev) {
          assert.ok(prev.fileBlock + prev.countBlocks <= e.fileBlock, 'overlap');
          const mergeable = prev.unwritten === e.unwritten && prev.fileBlock + prev.countBlocks === e.fileBlock &&
            prev.fsBlock + prev.countBlocks === e.fsBlock && prev.countBlocks + e.countBlocks <= (e.unwritten ? 32767 : 32768);
          assert.ok(!mergeable, `unmerged neighbours at ${e.fileBlock}`);
        }
        if (h.R > 1) assert.equal(e.fileBlock % h.R, e.fsBlock % h.R, 'cluster offset rule');
        extents.push(e);
      });
      return;
    }
    node.indexes.forEach((x, i) => {
      const childHi = i + 1 < node.indexes.length ? node.indexes[i + 1]!.fileBlock : hi;
      assert.ok(x.fileBlock >= lo && x.fileBlock < childHi, 'index key order/range');
      assert.ok(!nodes.has(x.child), 'node reached twice');
      nodes.add(x.child);
      const bytes = txn.blocks.get(x.child);
      assert.ok(bytes, `index points to unwritten block ${x.child}`);
      const child = decodeExtentNode(bytes, { isRoot: false, blockSize: env.blockSize, inodeSeed: env.inodeSeed, where: { block: x.child } });
      assert.equal(child.depth, node.depth - 1, 'depth consistency');
      const first = child.kind === 'leaf' ? child.extents[0]?.fileBlock : child.indexes[0]?.fileBlock;
      assert.equal(x.fileBlock, first, 'index key = first key of child');
      walk(child, x.child, x.fileBlock, childHi);
    });
  };
  walk(root, undefined, 0, 2 ** 32);
  return { extents, nodes, depth: root.depth };
}

// ---- reference model ------------------------------------------------------------------------

class Model {
  readonly map = new Map<number, { p: number; u: boolean }>();
  /** Physical clusters ever handed to data (never reused, so "freed exactly once" is checkable). */
  readonly allocated = new Set<number>();
  /** Physical cluster -> the logical cluster it was allocated for. */
  readonly owner = new Map<number, number>();
  readonly freed = new Set<number>();
  nextCluster: number;
  constructor(readonly R: number) { this.nextCluster = Math.ceil(4096 / R); }

  lcPhys(lc: number): number | undefined {
    for (let b = lc * this.R; b < (lc + 1) * this.R; b++) {
      const m = this.map.get(b);
      if (m) return Math.floor(m.p / this.R);
    }
    return undefined;
  }

  /** How many blocks of (l, p, n) can be mapped without breaking the bigalloc rules. */
  validPrefix(l: number, p: number, n: number): number {
    const R = this.R;
    if (l % R !== p % R || p < 1) return 0;
    const local = new Map<number, number>();
    for (let i = 0; i < n; i++) {
      const lb = l + i;
      const pb = p + i;
      if (lb > 0xffffffff || this.map.has(lb) || pb >= NODE_BASE) return i;
      const lc = Math.floor(lb / R);
      const pc = Math.floor(pb / R);
      const cur = local.get(lc) ?? this.lcPhys(lc);
      if (cur !== undefined ? cur !== pc : this.allocated.has(pc)) return i;
      local.set(lc, pc);
    }
    return n;
  }

  insert(l: number, p: number, n: number, u: boolean): void {
    for (let i = 0; i < n; i++) {
      this.map.set(l + i, { p: p + i, u });
      const pc = Math.floor((p + i) / this.R);
      if (!this.allocated.has(pc)) {
        this.allocated.add(pc);
        this.owner.set(pc, Math.floor((l + i) / this.R));
      }
    }
    this.nextCluster = Math.max(this.nextCluster, Math.floor((p + n - 1) / this.R) + 1);
  }

  remove(first: number, last: number): void {
    for (const k of [...this.map.keys()]) if (k >= first && k <= last) this.map.delete(k);
  }

  setUnwritten(first: number, count: number, u: boolean): void {
    for (let b = first; b < first + count; b++) this.map.get(b)!.u = u;
  }

  sortedMapped(): number[] {
    return [...this.map.keys()].sort((a, b) => a - b);
  }

  /** [s, t] of logically contiguous mapped blocks around b (physically contiguous if `phys`). */
  runAround(b: number, phys: boolean): [number, number] {
    let s = b;
    let t = b;
    const ok = (x: number, y: number) => this.map.has(y) && (!phys || (this.map.get(y)!.p === this.map.get(x)!.p + (y - x) &&
      this.map.get(y)!.u === this.map.get(x)!.u));
    while (s > 0 && ok(s, s - 1)) s--;
    while (ok(t, t + 1)) t++;
    return [s, t];
  }
}

/** Accounts the harness's free calls into the model, asserting each cluster is freed once and by its owner. */
function absorbFrees(h: Harness, m: Model): void {
  for (const f of h.frees.splice(0)) {
    for (let k = 0; k < f.count; k++) {
      const c = f.cluster + k;
      assert.ok(m.allocated.has(c), `freed cluster ${c} was never allocated`);
      assert.ok(!m.freed.has(c), `cluster ${c} freed twice`);
      assert.equal(f.logicalCluster + k, m.owner.get(c), `logical cluster passed for cluster ${c}`);
      m.freed.add(c);
    }
  }
}

async function checkAgainstModel(h: Harness, m: Model): Promise<TreeShape> {
  absorbFrees(h, m);
  const shape = await checkTree(h);
  const iterated = await listExtents(h.env);
  assert.deepEqual(iterated, shape.extents, 'extentIterate = decoded leaves');
  assert.deepEqual(await readMapExtents(h.env), iterated, 'read-map agrees');
  const got = new Map<number, { p: number; u: boolean }>();
  for (const e of iterated) for (let i = 0; i < e.countBlocks; i++) got.set(e.fileBlock + i, { p: e.fsBlock + i, u: e.unwritten });
  assert.deepEqual(new Map([...got].sort((a, b) => a[0] - b[0])), new Map([...m.map].sort((a, b) => a[0] - b[0])), 'mapping = model');
  // Freed clusters = allocated clusters no longer referenced by any mapped block.
  const referenced = new Set([...m.map.values()].map((v) => Math.floor(v.p / m.R)));
  const expectFreed = [...m.allocated].filter((c) => !referenced.has(c)).sort((a, b) => a - b);
  assert.deepEqual([...m.freed].sort((a, b) => a - b), expectFreed, 'freed clusters');
  // Node blocks: allocated - freed = live = reachable = extentTreeNodeCount.
  assert.equal(h.nodesAllocated - h.nodesFreed, h.nodesLive.size);
  assert.deepEqual([...shape.nodes].sort((a, b) => a - b), [...h.nodesLive].sort((a, b) => a - b), 'live node blocks = reachable');
  assert.equal(await extentTreeNodeCount(h.env), shape.nodes.size);
  // Spot checks of the lookups.
  for (const b of [...m.map.keys()].slice(0, 5)) {
    const e = await extentLookup(h.env, b);
    assert.ok(e && e.fileBlock <= b && b < e.fileBlock + e.countBlocks && e.fsBlock + (b - e.fileBlock) === m.map.get(b)!.p);
  }
  return shape;
}

// ---- operations -----------------------------------------------------------------------------

type Op =
  | { t: 'fresh'; a: number; len: number; gap: number; u: boolean }
  | { t: 'extend'; a: number; len: number; left: boolean; u: boolean }
  | { t: 'many'; a: number; k: number; stride: number }
  | { t: 'rm'; a: number; len: number }
  | { t: 'punch'; a: number; b: number; c: number }
  | { t: 'trunc'; a: number; zero: boolean }
  | { t: 'unw'; a: number; b: number; len: number; u: boolean };

function opArb(cap: number): fc.Arbitrary<Op> {
  const n = fc.nat({ max: 1 << 30 });
  return fc.oneof(
    { weight: 4, arbitrary: fc.record({ t: fc.constant('fresh' as const), a: n, len: fc.integer({ min: 1, max: 60 }), gap: fc.integer({ min: 0, max: 1 }), u: fc.boolean() }) },
    { weight: 3, arbitrary: fc.record({ t: fc.constant('extend' as const), a: n, len: fc.integer({ min: 1, max: 20 }), left: fc.boolean(), u: fc.boolean() }) },
    { weight: 4, arbitrary: fc.record({ t: fc.constant('many' as const), a: n, k: fc.integer({ min: 1, max: cap * 5 }), stride: fc.integer({ min: 2, max: 3 }) }) },
    { weight: 3, arbitrary: fc.record({ t: fc.constant('rm' as const), a: n, len: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 3000 })) }) },
    { weight: 3, arbitrary: fc.record({ t: fc.constant('punch' as const), a: n, b: n, c: n }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('trunc' as const), a: n, zero: fc.boolean() }) },
    { weight: 3, arbitrary: fc.record({ t: fc.constant('unw' as const), a: n, b: n, len: fc.integer({ min: 1, max: 100 }), u: fc.boolean() }) },
  );
}

async function doInsert(h: Harness, m: Model, l: number, p: number, n: number, u: boolean): Promise<void> {
  n = m.validPrefix(l, p, Math.min(n, u ? 32767 : 32768));
  if (n === 0) return;
  await extentInsert(h.env, ext(l, n, p, u));
  m.insert(l, p, n, u);
}

/** A fresh physical start for logical block l: its logical cluster's cluster, else a new one. */
function freshPhys(m: Model, l: number, gap: number): number {
  const pc = m.lcPhys(Math.floor(l / m.R)) ?? m.nextCluster + gap;
  return pc * m.R + (l % m.R);
}

async function applyOp(h: Harness, m: Model, op: Op, L: number): Promise<void> {
  const mapped = m.sortedMapped();
  const pick = (a: number) => mapped[a % mapped.length]!;
  switch (op.t) {
    case 'fresh': {
      const l = op.a % L;
      if (m.map.has(l)) return;
      await doInsert(h, m, l, freshPhys(m, l, op.gap), op.len, op.u);
      return;
    }
    case 'extend': {
      if (mapped.length === 0) return;
      const b = pick(op.a);
      const { p, u } = m.map.get(b)!;
      const flag = op.len % 3 === 0 ? op.u : u;
      if (!op.left) {
        await doInsert(h, m, b + 1, p + 1, op.len, flag);
      } else {
        for (let n = op.len; n >= 1; n = Math.floor(n / 2)) {
          if (b - n >= 0 && p - n >= 1 && m.validPrefix(b - n, p - n, n) === n) {
            await doInsert(h, m, b - n, p - n, n, flag);
            return;
          }
        }
      }
      return;
    }
    case 'many': {
      let l = op.a % L;
      for (let i = 0; i < op.k && l < L; i++, l += op.stride) {
        if (!m.map.has(l)) await doInsert(h, m, l, freshPhys(m, l, 1), 1, (i & 7) === 0);
      }
      return;
    }
    case 'rm': {
      const first = op.a % (L + 20);
      const last = Math.min(first + op.len - 1, 0xffffffff);
      await extentRemoveRange(h.env, first, last);
      m.remove(first, last);
      return;
    }
    case 'punch': {
      if (mapped.length === 0) return;
      const [s, t] = m.runAround(pick(op.a), true);
      if (t - s < 2) return;
      const first = s + 1 + (op.b % (t - s - 1));
      const last = first + (op.c % (t - first));
      assert.ok(first > s && last < t);
      await extentRemoveRange(h.env, first, last);
      m.remove(first, last);
      return;
    }
    case 'trunc': {
      const first = op.zero ? 0 : op.a % (L + 1);
      await extentRemoveRange(h.env, first, 0xffffffff);
      m.remove(first, 0xffffffff);
      return;
    }
    case 'unw': {
      if (mapped.length === 0) return;
      const [s, t] = m.runAround(pick(op.a), false);
      const first = s + (op.b % (t - s + 1));
      const count = Math.min(op.len, t - first + 1);
      await extentSetUnwritten(h.env, first, count, op.u);
      m.setUnwritten(first, count, op.u);
      return;
    }
  }
}

describe('extent tree against a model', () => {
  const configs: Array<{ blockSize: number; R: number; seed?: number; runs: number }> = [
    { blockSize: 1024, R: 1, runs: 30 },
    { blockSize: 1024, R: 1, seed: 0x1234abcd, runs: 15 },
    { blockSize: 1024, R: 4, seed: 0xdeadbeef, runs: 30 },
    { blockSize: 1024, R: 16, runs: 30 },
    { blockSize: 4096, R: 1, seed: 7, runs: 12 },
    { blockSize: 4096, R: 4, runs: 12 },
    { blockSize: 4096, R: 16, seed: 99, runs: 12 },
  ];
  for (const cfg of configs) {
    test(`${cfg.blockSize}-byte blocks, R=${cfg.R}${cfg.seed === undefined ? '' : ', metadata_csum'}`, async () => {
      const cap = extentNodeCapacity(false, cfg.blockSize);
      const L = cap * 16;
      let maxDepth = 0;
      await fc.assert(fc.asyncProperty(fc.array(opArb(cap), { minLength: 1, maxLength: 30, size: 'medium' }), async (ops) => {
        const h = harness(cfg.blockSize, cfg.R, cfg.seed);
        const m = new Model(cfg.R);
        for (const op of ops) {
          await applyOp(h, m, op, L);
          const shape = await checkAgainstModel(h, m);
          maxDepth = Math.max(maxDepth, shape.depth);
        }
        await extentRemoveRange(h.env, 0, 0xffffffff);
        m.remove(0, 0xffffffff);
        const shape = await checkAgainstModel(h, m);
        assert.equal(shape.depth, 0);
        assert.equal(h.nodesLive.size, 0);
        assert.equal(m.freed.size, m.allocated.size);
      }), { numRuns: cfg.runs, seed: 20240611 + cfg.blockSize + cfg.R });
      assert.ok(maxDepth >= 2, `tree reached depth ${maxDepth} only`);
    });
  }
});

// ---- unit tests -----------------------------------------------------------------------------

async function setup(R: number, extents: Extent[], blockSize = 1024): Promise<Harness> {
  const h = harness(blockSize, R);
  for (const e of extents) await extentInsert(h.env, e);
  return h;
}
const frees = (h: Harness) => h.frees.map((f) => [f.cluster, f.count, f.logicalCluster]);

describe('§4.4 partial clusters (R = 4)', () => {
  test('punch inside one cluster with mapped blocks on both sides frees nothing', async () => {
    const h = await setup(4, [ext(0, 8, 400)]);
    await extentRemoveRange(h.env, 1, 2);
    assert.deepEqual(frees(h), []);
    assert.deepEqual(await listExtents(h.env), [ext(0, 1, 400), ext(3, 5, 403)]);
  });

  test('punch spanning clusters frees only the clusters with no mapped block left', async () => {
    const h = await setup(4, [ext(0, 16, 400)]);
    await extentRemoveRange(h.env, 2, 13);
    assert.deepEqual(frees(h), [[101, 2, 1]]);
  });

  test('truncate whose first removed block shares a cluster with a remaining extent on the left', async () => {
    // Blocks 0-4 and 6-11 (hole at 5): logical cluster 1 (blocks 4-7) lives in physical cluster 101.
    const h = await setup(4, [ext(0, 5, 400), ext(6, 6, 406)]);
    await extentRemoveRange(h.env, 6, 0xffffffff);
    assert.deepEqual(frees(h), [[102, 1, 2]]);
    h.frees.length = 0;
    await extentRemoveRange(h.env, 4, 0xffffffff);
    assert.deepEqual(frees(h), [[101, 1, 1]]);
  });

  test('truncate inside an extent keeps the cluster its remaining part still uses', async () => {
    const h = await setup(4, [ext(0, 10, 400)]);
    await extentRemoveRange(h.env, 5, 0xffffffff);
    assert.deepEqual(frees(h), [[102, 1, 2]]);
    assert.deepEqual(await listExtents(h.env), [ext(0, 5, 400)]);
  });

  test('removing the first extent of the file with a partial first cluster frees that cluster', async () => {
    const h = await setup(4, [ext(2, 8, 402), ext(20, 4, 800)]);
    await extentRemoveRange(h.env, 0, 9);
    assert.deepEqual(frees(h), [[100, 3, 0]]);
    assert.deepEqual(await listExtents(h.env), [ext(20, 4, 800)]);
  });

  test('a cluster still used by a block left of the first extent is kept', async () => {
    const h = await setup(4, [ext(0, 1, 400), ext(2, 8, 402)]);
    await extentRemoveRange(h.env, 2, 9);
    assert.deepEqual(frees(h), [[101, 2, 1]]);
  });

  test('a cluster shared by two removed extents is freed exactly once', async () => {
    const h = await setup(4, [ext(0, 1, 400), ext(2, 4, 402)]);
    await extentRemoveRange(h.env, 0, 0xffffffff);
    const all = h.frees.flatMap((f) => Array.from({ length: f.count }, (_, k) => f.cluster + k)).sort();
    assert.deepEqual(all, [100, 101]);
  });

  test('a cluster shared with the extent on the right (nofree) is kept', async () => {
    const h = await setup(4, [ext(0, 3, 400), ext(3, 5, 403, true)]);
    assert.equal((await listExtents(h.env)).length, 2);
    await extentRemoveRange(h.env, 0, 2);
    assert.deepEqual(frees(h), []);
    await extentRemoveRange(h.env, 3, 3);
    assert.deepEqual(frees(h), [[100, 1, 0]]);
  });

  test('logicalClusterMapped finds the implied physical cluster', async () => {
    const h = await setup(16, [ext(5, 2, 1605), ext(40, 1, 3208)]);
    assert.deepEqual(await logicalClusterMapped(h.env, 0), { physicalCluster: 100 });
    assert.equal(await logicalClusterMapped(h.env, 1), undefined);
    assert.deepEqual(await logicalClusterMapped(h.env, 2), { physicalCluster: 200 });
    await assert.rejects(extentInsert(h.env, ext(9, 1, 1609 + 16)), /physical cluster 100/);
  });
});

describe('extent tree details', () => {
  test('unwritten state survives splits; conversion respects the length limits', async () => {
    const h = await setup(1, [ext(0, 100, 5000, true)]);
    await extentRemoveRange(h.env, 40, 59);
    assert.deepEqual(await listExtents(h.env), [ext(0, 40, 5000, true), ext(60, 40, 5060, true)]);
    await extentSetUnwritten(h.env, 10, 20, false);
    assert.deepEqual(await listExtents(h.env), [ext(0, 10, 5000, true), ext(10, 20, 5010), ext(30, 10, 5030, true), ext(60, 40, 5060, true)]);
    await extentSetUnwritten(h.env, 0, 40, false);
    assert.deepEqual(await listExtents(h.env), [ext(0, 40, 5000), ext(60, 40, 5060, true)]);

    const big = await setup(1, [ext(0, 32768, 100000), ext(32768, 10, 132768, true)]);
    assert.equal((await listExtents(big.env)).length, 2);
    await extentSetUnwritten(big.env, 0, 32768, true);
    assert.deepEqual(await listExtents(big.env), [ext(0, 32767, 100000, true), ext(32767, 11, 132767, true)]);
    await extentSetUnwritten(big.env, 0, 32778, false);
    assert.deepEqual(await listExtents(big.env), [ext(0, 32767, 100000), ext(32767, 11, 132767)]);
    await assert.rejects(extentSetUnwritten(big.env, 32770, 20, true), /not fully mapped/);
  });

  test('overlapping inserts are refused', async () => {
    const h = await setup(1, [ext(10, 10, 500)]);
    await assert.rejects(extentInsert(h.env, ext(19, 2, 900)), /overlaps/);
    await assert.rejects(extentInsert(h.env, ext(5, 6, 900)), /overlaps/);
    await extentInsert(h.env, ext(20, 5, 510));
    await extentInsert(h.env, ext(5, 5, 495));
    assert.deepEqual(await listExtents(h.env), [ext(5, 20, 495)]);
  });

  test('ends of the logical space', async () => {
    const h = await setup(1, [ext(0xffffffff - 9, 10, 700), ext(0, 1, 600)]);
    await extentRemoveRange(h.env, 0xfffffffe, 0xffffffff);
    assert.deepEqual(await listExtents(h.env), [ext(0, 1, 600), ext(0xffffffff - 9, 8, 700)]);
    assert.deepEqual(frees(h), [[708, 2, 0xfffffffe]]);
  });

  test('sequential appends pack leaves; depth 3 with 1 KiB blocks, then truncate frees everything', async () => {
    const h = harness(1024, 1, 42);
    const n = 4 * 84 * 84 + 10;
    for (let i = 0; i < n; i++) await extentInsert(h.env, ext(2 * i, 1, 10000 + 2 * i));
    let shape = await checkTree(h);
    assert.equal(shape.depth, 3);
    assert.equal(shape.extents.length, n);
    // Full leaves: ceil(n / 84) leaves.
    assert.equal(shape.nodes.size, h.nodesLive.size);
    await extentRemoveRange(h.env, 1000, 50000);
    shape = await checkTree(h);
    assert.equal(shape.extents.length, n - 24501);
    await extentRemoveRange(h.env, 0, 0xffffffff);
    shape = await checkTree(h);
    assert.equal(shape.depth, 0);
    assert.equal(h.nodesLive.size, 0);
    assert.equal(h.frees.reduce((s, f) => s + f.count, 0), n);
  });

  test('ENOSPC while splitting leaves the tree unchanged and returns the blocks taken', async () => {
    const h = harness(1024, 1, 5);
    for (let i = 0; i < 4; i++) await extentInsert(h.env, ext(2 * i, 1, 1000 + 2 * i));
    const before = h.env.root.slice();
    h.failAlloc = () => true;
    await assert.rejects(extentInsert(h.env, ext(100, 1, 3000)), { code: 'ENOSPC' });
    assert.deepEqual(h.env.root, before);
    h.failAlloc = undefined;
    // Fill to 4 full leaves under the root; the next append needs two blocks (leaf split + grow).
    for (let i = 4; i < 4 * 84; i++) await extentInsert(h.env, ext(2 * i, 1, 1000 + 2 * i));
    let shape = await checkTree(h);
    assert.equal(shape.depth, 1);
    assert.equal(shape.nodes.size, 4);
    const snapshot = new Map([...h.txn.blocks].map(([k, v]) => [k, v.slice()]));
    const rootBefore = h.env.root.slice();
    let calls = 0;
    h.failAlloc = () => ++calls === 2;
    await assert.rejects(extentInsert(h.env, ext(10000, 1, 30000)), { code: 'ENOSPC' });
    assert.deepEqual(h.env.root, rootBefore);
    assert.deepEqual(h.txn.blocks, snapshot);
    assert.equal(h.nodesLive.size, 4);
    h.failAlloc = undefined;
    await extentInsert(h.env, ext(10000, 1, 30000));
    shape = await checkTree(h);
    assert.equal(shape.depth, 2);
    assert.equal(shape.nodes.size, 6);
  });

  test('a punch that splits an extent in a full leaf splits the leaf', async () => {
    const h = harness(4096, 1);
    const cap = extentNodeCapacity(false, 4096);
    for (let i = 0; i < cap; i++) await extentInsert(h.env, ext(20 * i, 10, 100000 + 20 * i));
    assert.equal((await checkTree(h)).nodes.size, 1);
    await extentRemoveRange(h.env, 20 * 5 + 3, 20 * 5 + 4);
    const shape = await checkTree(h);
    assert.equal(shape.nodes.size, 2);
    assert.equal(shape.extents.length, cap + 1);
    assert.deepEqual(frees(h), [[100103, 2, 103]]);
  });

  test('corrupt trees are refused with EUCLEAN / EBADMSG', async () => {
    const h = harness(1024, 1, 77);
    for (let i = 0; i < 10; i++) await extentInsert(h.env, ext(2 * i, 1, 1000 + 2 * i));
    const [leafBlock] = [...h.nodesLive];
    const leaf = h.txn.blocks.get(leafBlock!)!;
    xorU8(leaf, 20, 1); // inside an extent entry: checksum no longer matches
    await assert.rejects(extentLookup(h.env, 4), { code: 'EBADMSG' });
    xorU8(leaf, 20, 1);
    // Index pointer outside the filesystem.
    const good = h.env.root.slice();
    const node = decodeExtentNode(h.env.root, { isRoot: true, blockSize: 1024, where: {} });
    assert.equal(node.kind, 'index');
    if (node.kind === 'index') node.indexes[0]!.child = fsBlock(BLOCKS_COUNT + 5);
    encodeExtentNode(node, h.env.root, { isRoot: true, blockSize: 1024 });
    await assert.rejects(extentRemoveRange(h.env, 0, 3), { code: 'EUCLEAN' });
    h.env.root.set(good);
    // A leaf extent mapping past the end of the filesystem.
    const dec = decodeExtentNode(leaf, { isRoot: false, blockSize: 1024, inodeSeed: 77, where: {} });
    if (dec.kind === 'leaf') dec.extents[3]!.fsBlock = fsBlock(BLOCKS_COUNT);
    encodeExtentNode(dec, leaf, { isRoot: false, blockSize: 1024, inodeSeed: 77 });
    await assert.rejects(extentInsert(h.env, ext(100, 1, 5000)), { code: 'EUCLEAN' });
  });
});

// ---- a tree made by mke2fs + debugfs --------------------------------------------------------

const HAVE_TOOLS = spawnSync('mke2fs', ['-V']).status === 0 && spawnSync('debugfs', ['-V']).status === 0;
const ENV = { ...process.env, E2FSPROGS_FAKE_TIME: '1700000000' };
function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: ENV });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

describe('edits of a tree written by debugfs', { skip: HAVE_TOOLS ? false : 'mke2fs/debugfs not installed' }, () => {
  test('insert, split, punch, truncate over an overlay; read-map and debugfs agree', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ext4kit-xt-'));
    try {
      const img = join(dir, 'img');
      const host = join(dir, 'sparse');
      // 60 one-block extents at even logical blocks: a depth-1 tree.
      const fdh = openSync(host, 'w');
      for (let i = 0; i < 60; i++) writeSync(fdh, new Uint8Array(1024).fill(65 + (i % 26)), 0, 1024, i * 2048);
      closeSync(fdh);
      run('mke2fs', ['-q', '-t', 'ext4', '-b', '1024', '-U', '9e2d7c41-0a5b-4c3d-8e6f-112233445566', '-F', img, '32M']);
      run('debugfs', ['-w', '-R', `write ${host} f`, img]);
      const loc = /located at block (\d+), offset 0x([0-9a-f]+)/.exec(run('debugfs', ['-R', 'imap f', img]))!;
      const ino = Number(/Inode: (\d+)/.exec(run('debugfs', ['-R', 'stat f', img]))![1]);

      const fd = openSync(img, 'r');
      const readBytes = (off: number, len: number) => { const b = new Uint8Array(len); readSync(fd, b, 0, len, off); return b; };
      const sb = readBytes(1024, 1024);
      const blockSize = 1024 << u32(sb, 0x18);
      const blocksCount = u32(sb, 0x4);
      const inodeSize = u16(sb, 0x58);
      const fsSeed = u32(sb, 0x64) & 0x400 ? (u32(sb, 0x60) & 0x2000 ? u32(sb, 0x270) : fsCsumSeed(sb.subarray(0x68, 0x78))) : undefined;
      const inodeOff = Number(loc[1]) * blockSize + parseInt(loc[2]!, 16);
      const raw = readBytes(inodeOff, inodeSize);
      const inode = decodeInode(raw, { ino, inodeSize, fsCsumSeed: fsSeed, hugeFile: (u32(sb, 0x64) & 8) !== 0, blockSize });
      closeSync(fd);
      const fd2 = openSync(img, 'r');
      const txn = new MemTxn(blockSize, (b) => { const x = new Uint8Array(blockSize); readSync(fd2, x, 0, blockSize, b * blockSize); return x; });

      const root = inode.iBlock.slice();
      let nextNode = 20000;
      const freedData: FreeCall[] = [];
      const env: ExtentTreeEnv = {
        txn, blockSize, clusterRatio: 1, ino, blocksCount, root,
        inodeSeed: fsSeed === undefined ? undefined : inodeCsumSeed(fsSeed, ino, inode.generation),
        allocNodeBlock: async () => nextNode++,
        freeNodeBlock: async () => {},
        freeDataClusters: async (cluster, count, logicalCluster) => { freedData.push({ cluster, count, logicalCluster }); },
      };
      const model = new Map<number, number>();
      for (const e of await listExtents(env)) for (let i = 0; i < e.countBlocks; i++) model.set(e.fileBlock + i, e.fsBlock + i);
      assert.equal(model.size, 60);
      assert.equal(await extentTreeNodeCount(env), 1);

      const check = async () => {
        const mine = await listExtents(env);
        assert.deepEqual(await readMapExtents(env), mine);
        const got = new Map<number, number>();
        for (const e of mine) for (let i = 0; i < e.countBlocks; i++) got.set(e.fileBlock + i, e.fsBlock + i);
        assert.deepEqual(new Map([...got].sort((a, b) => a[0] - b[0])), new Map([...model].sort((a, b) => a[0] - b[0])));
        return mine;
      };
      // Fill odd blocks 1..39 from a free region, then 60 more extents past the end: the leaf splits.
      for (let l = 1; l < 40; l += 2) { await extentInsert(env, ext(l, 1, 25000 + l)); model.set(l, 25000 + l); }
      for (let l = 200; l < 320; l += 2) { await extentInsert(env, ext(l, 1, 26000 + l)); model.set(l, 26000 + l); }
      await check();
      assert.equal(await extentTreeNodeCount(env), 2);
      const p10 = model.get(10)!;
      await extentRemoveRange(env, 10, 30);
      for (let l = 10; l <= 30; l++) model.delete(l);
      await extentRemoveRange(env, 250, 0xffffffff);
      for (const k of [...model.keys()]) if (k >= 250) model.delete(k);
      await extentSetUnwritten(env, 200, 1, true);
      const mine = await check();
      assert.ok(freedData.some((f) => f.cluster === p10 && f.logicalCluster === 10));

      // Write the overlay and the new i_block into a copy; debugfs reads the same extents.
      const copy = join(dir, 'copy');
      copyFileSync(img, copy);
      const fdw = openSync(copy, 'r+');
      for (const [b, bytes] of txn.blocks) writeSync(fdw, bytes, 0, blockSize, b * blockSize);
      writeSync(fdw, root, 0, 60, inodeOff + 0x28);
      closeSync(fdw);
      closeSync(fd2);
      const out = run('debugfs', ['-n', '-R', 'ex f', copy]);
      const leafRows = out.split('\n').map((line) => /^\s*(\d+)\/\s*(\d+)\s+\d+\/\s*\d+\s+(\d+) -\s+(\d+)\s+(\d+)(?: -\s+\d+)?\s+(\d+)\s*(Uninit)?/.exec(line))
        .filter((r): r is RegExpExecArray => r !== null && r[1] === r[2]);
      assert.deepEqual(leafRows.map((r) => ext(Number(r[3]), Number(r[6]), Number(r[5]), r[7] === 'Uninit')), mine);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});


// ---- the shared map step (map-run.ts) ----------------------------------------------------------

test('mapOneBlock: a block of a backed logical cluster goes to its physical cluster without allocating', async () => {
  const h = await setup(4, [ext(1, 1, 1001)]);
  const asked: number[] = [];
  const alloc = async () => { asked.push(1); return 2000; };
  assert.equal(await mapOneBlock(h.env, 2, alloc), 1002);
  assert.deepEqual(asked, []);
  // Logical cluster 1 is not backed: one new cluster, at the block's offset inside it.
  assert.equal(await mapOneBlock(h.env, 5, alloc), 2001);
  assert.deepEqual(asked, [1]);
  assert.deepEqual(await listExtents(h.env), [ext(1, 2, 1001), ext(5, 1, 2001)]);
  // Without bigalloc nothing is implied.
  const plain = await setup(1, [ext(0, 1, 500)]);
  assert.equal(await mapOneBlock(plain.env, 1, async () => 700), 700);
  assert.deepEqual(await listExtents(plain.env), [ext(0, 1, 500), ext(1, 1, 700)]);
});

test('mapRun: stops before a backed last cluster and maps what the allocator gave', async () => {
  const h = await setup(4, [ext(13, 1, 3001)]);
  const wants: Array<[number, number]> = [];
  const run = await mapRun(h.env, 8, 14, false, async (want, firstLogical) => {
    wants.push([want, firstLogical]);
    return { cluster: 600, countClusters: want };
  });
  assert.deepEqual(wants, [[1, 2]], 'logical cluster 3 is backed: only cluster 2 is new');
  assert.deepEqual(run, { fileBlock: 8, fsBlock: 2400, countBlocks: 4, implied: false });
  const next = await mapRun(h.env, 12, 13, false, async () => assert.fail('implied: no allocation'));
  assert.deepEqual(next, { fileBlock: 12, fsBlock: 3000, countBlocks: 1, implied: true });
  assert.deepEqual(await listExtents(h.env), [ext(8, 4, 2400), ext(12, 2, 3000)]);
});
