// Write operations on one inode's extent tree (ifork.rst, "Extent Tree"): lookup, insert with
// merge / split / depth growth, range removal with the bigalloc partial-cluster rules, unwritten
// conversion. All node blocks go through the transaction; the root lives in the caller's i_block.
//
// Invariants kept on every write (and assumed, where it matters, of what is read):
// * entries of a node are sorted and do not overlap (decodeExtentNode checks it);
// * an index key equals the first key of its child (e2fsck repairs a mismatch), so the extent
//   before a logical block is always found in the leaf an index search picks;
// * non-root nodes are never empty (an emptied node is freed and its index entry dropped);
// * adjacent extents inside one leaf that could be one extent are merged.
import { assert, corrupt, Ext4Error } from '../errors/ext4-error.ts';
import { freePieces, keptClusters, type MappedExtents, type Piece } from './extent-free.ts';
import {
  childRange, lastAtOrBelow, readChildNode, readRootNode, rememberEncodedNode, type ExtentNodeSource,
} from './extent-node.ts';
import { fileBlock as toFileBlock, fsBlock as toFsBlock } from '../util/brand.ts';
import { setU16 } from '../util/bytes.ts';
import {
  encodeExtentNode, extentNodeCapacity, eh_depth, eh_entries, eh_magic, eh_max,
  EXTENT_ROOT_SIZE, EXTENT_ROOT_MAX_ENTRIES, EXT4_EXT_MAGIC, EXT4_MAX_EXTENT_DEPTH, EXT_INIT_MAX_LEN,
  EXT_UNWRITTEN_MAX_LEN, EXT_MAX_LOGICAL_END,
  type Extent, type ExtentIndexNode, type ExtentLeafNode, type ExtentNode,
} from '../format/extent.ts';
import type { MetaTxn } from '../journal/transaction.ts';

export interface ExtentTreeEnv {
  /** All node-block reads and writes go through it. */
  txn: MetaTxn;
  blockSize: number;
  /** Blocks per cluster, R (1 without bigalloc). */
  clusterRatio: number;
  ino: number;
  /** metadata_csum: node tails are verified on read and stamped on write. */
  inodeSeed: number | undefined;
  /** s_blocks_count: every pointer read must be below it (EUCLEAN otherwise). */
  blocksCount: number;
  /** The inode's 60-byte i_block, mutated in place (the caller persists the inode). */
  root: Uint8Array;
  /** One block for a new node (the caller charges i_blocks; may throw ENOSPC). */
  allocNodeBlock(goal: number): Promise<number>;
  freeNodeBlock(block: number): Promise<void>;
  /**
   * Free `count` physical clusters starting at physical cluster `cluster`; `logicalCluster` is
   * the logical cluster of the first (the caller re-reserves delayed blocks of a pending cluster).
   */
  freeDataClusters(cluster: number, count: number, logicalCluster: number): Promise<void>;
}

/** Largest logical block number (ee_block is 32-bit). */
const LAST_FILE_BLOCK = EXT_MAX_LOGICAL_END - 1;

/** An empty tree: header only, eh_max 4, depth 0 (what a new extent-mapped inode starts with). */
export function initExtentRoot(root: Uint8Array): void {
  assert(root.length >= EXTENT_ROOT_SIZE, 'i_block must be 60 bytes');
  root.fill(0, 0, EXTENT_ROOT_SIZE);
  setU16(root, eh_magic, EXT4_EXT_MAGIC);
  setU16(root, eh_entries, 0);
  setU16(root, eh_max, EXTENT_ROOT_MAX_ENTRIES);
  setU16(root, eh_depth, 0);
}

// ---- small helpers --------------------------------------------------------------------------

const endOf = (e: Extent): number => e.fileBlock + e.countBlocks;
const maxLenOf = (unwritten: boolean): number => (unwritten ? EXT_UNWRITTEN_MAX_LEN : EXT_INIT_MAX_LEN);
const entryCount = (n: ExtentNode): number => (n.kind === 'leaf' ? n.extents.length : n.indexes.length);
const firstKey = (n: ExtentNode): number | undefined =>
  n.kind === 'leaf' ? n.extents[0]?.fileBlock : n.indexes[0]?.fileBlock;
/** First key of a node that cannot be empty (a split half, a moved root). */
function keyOf(n: ExtentNode): number {
  const k = firstKey(n);
  assert(k !== undefined, 'empty extent node where entries are required');
  return k;
}
const copyExtent = (e: Extent): Extent =>
  ({ fileBlock: e.fileBlock, countBlocks: e.countBlocks, fsBlock: e.fsBlock, unwritten: e.unwritten });
const mkExtent = (fileBlock: number, countBlocks: number, fsBlock: number, unwritten: boolean): Extent =>
  ({ fileBlock: toFileBlock(fileBlock), countBlocks, fsBlock: toFsBlock(fsBlock), unwritten });

function canMerge(a: Extent, b: Extent): boolean {
  return a.unwritten === b.unwritten && endOf(a) === b.fileBlock && a.fsBlock + a.countBlocks === b.fsBlock &&
    a.countBlocks + b.countBlocks <= maxLenOf(a.unwritten);
}

/** Merges every mergeable neighbour pair of a sorted list (never changes the first start). */
function mergeAdjacent(list: readonly Extent[]): Extent[] {
  const out: Extent[] = [];
  for (const e of list) {
    const last = out[out.length - 1];
    if (last && canMerge(last, e)) last.countBlocks += e.countBlocks;
    else out.push(copyExtent(e));
  }
  return out;
}

/** Merges, in place, the mergeable neighbour pairs among list[from..to] (clamped to the list). */
function mergeAround(list: Extent[], from: number, to: number): void {
  let i = Math.max(0, from);
  let last = Math.min(list.length - 1, to);
  while (i < last) {
    const a = list[i]!;
    const b = list[i + 1]!;
    if (canMerge(a, b)) {
      list[i] = mkExtent(a.fileBlock, a.countBlocks + b.countBlocks, a.fsBlock, a.unwritten);
      list.splice(i + 1, 1);
      last--;
    } else i++;
  }
}

function checkEnv(env: ExtentTreeEnv): void {
  const bs = env.blockSize;
  assert(Number.isInteger(bs) && bs >= 1024 && (bs & (bs - 1)) === 0, `block size ${bs}`);
  const r = env.clusterRatio;
  assert(Number.isInteger(r) && r >= 1 && (r & (r - 1)) === 0, `cluster ratio ${r}`);
  assert(Number.isSafeInteger(env.blocksCount) && env.blocksCount > 0, 'blocks count');
  assert(env.root.length >= EXTENT_ROOT_SIZE, 'i_block must be 60 bytes');
}

function checkFileBlock(b: number, what: string): void {
  assert(Number.isSafeInteger(b) && b >= 0 && b <= LAST_FILE_BLOCK, `${what} ${b} is not a file block`);
}

// ---- reading nodes (everything read is validated) -------------------------------------------

function nodeSource(env: ExtentTreeEnv): ExtentNodeSource {
  return { blockSize: env.blockSize, blocksCount: env.blocksCount, ino: env.ino, inodeSeed: env.inodeSeed, readBlock: (b) => env.txn.read(b) };
}

function decodeRoot(env: ExtentTreeEnv): ExtentNode {
  return readRootNode(nodeSource(env), env.root);
}

/**
 * Reads the child `block` of a node at `parentDepth` covering keys [lo, hi). `shared`: the
 * caller only reads the node (it may be the cached decode of the block, never to be changed).
 */
function readNode(
  env: ExtentTreeEnv, block: number, parentDepth: number, lo: number, hi: number, seen?: Set<number>, shared = false,
): Promise<ExtentNode> {
  return readChildNode(nodeSource(env), block, parentDepth, lo, hi, seen, shared);
}

/** Writes a node: to i_block for the root, else into its block (fresh: just allocated). */
async function storeNode(env: ExtentTreeEnv, block: number | undefined, node: ExtentNode, fresh = false): Promise<void> {
  if (block === undefined) {
    node.max = EXTENT_ROOT_MAX_ENTRIES;
    env.root.fill(0, 0, EXTENT_ROOT_SIZE);
    encodeExtentNode(node, env.root, { isRoot: true, blockSize: env.blockSize });
    return;
  }
  // Rewritten nodes get the full capacity, as the kernel and e2fsprogs create them.
  node.max = extentNodeCapacity(false, env.blockSize);
  const buf = fresh ? env.txn.getNew(block) : await env.txn.getWrite(block);
  buf.fill(0, 0, env.blockSize);
  encodeExtentNode(node, buf, { isRoot: false, blockSize: env.blockSize, inodeSeed: env.inodeSeed });
  // Writers never touch a node after storing it: the next read of this block can return it.
  rememberEncodedNode(buf, env.inodeSeed, env.blockSize, node);
}

// ---- paths ----------------------------------------------------------------------------------

interface Level {
  /** undefined for the root (i_block). */
  block: number | undefined;
  node: ExtentNode;
  /** Index nodes: the entry followed to the next level. */
  idx: number;
  /** Exclusive upper key bound the parent gives this node. */
  hi: number;
  dirty: boolean;
}
type Path = Level[];

/**
 * Root-to-leaf path towards `target` (the first subtree when target precedes every key).
 * `readOnly`: the caller changes no node of the path (lookups), so cached decodes are shared.
 */
async function findPath(env: ExtentTreeEnv, target: number, readOnly = false): Promise<Path> {
  const path: Path = [{ block: undefined, node: decodeRoot(env), idx: -1, hi: EXT_MAX_LOGICAL_END, dirty: false }];
  // Depth strictly decreases (readNode checks it), so this ends after at most 6 levels.
  for (;;) {
    const lv = lastLevel(path);
    if (lv.node.kind === 'leaf') return path;
    const i = Math.max(0, lastAtOrBelow(lv.node.indexes, target));
    lv.idx = i;
    const x = indexAt(lv.node, i);
    const { lo, hi } = childRange(lv.node, i, lv.hi);
    const child = await readNode(env, x.child, lv.node.depth, lo, hi, undefined, readOnly);
    path.push({ block: x.child, node: child, idx: -1, hi, dirty: false });
  }
}

function levelAt(path: Path, l: number): Level {
  const lv = path[l];
  assert(lv !== undefined, `extent path of ${path.length} levels has no level ${l}`);
  return lv;
}

/** The deepest level of a path (paths always hold the root). */
const lastLevel = (path: Path): Level => levelAt(path, path.length - 1);

/** Entry `i` of an index node; callers pass an index they found inside it. */
function indexAt(node: ExtentIndexNode, i: number): ExtentIndexNode['indexes'][number] {
  const x = node.indexes[i];
  assert(x !== undefined, `extent index entry ${i} of ${node.indexes.length}`);
  return x;
}

function leafOf(path: Path): ExtentLeafNode {
  const { node } = lastLevel(path);
  assert(node.kind === 'leaf', 'extent path does not end in a leaf');
  return node;
}

/** After the first key of path[from] changed, rewrites the parent keys that named it. */
function propagateKeys(path: Path, from: number): void {
  for (let l = from; l > 0; l--) {
    const k = firstKey(levelAt(path, l).node);
    if (k === undefined) return;
    const parent = levelAt(path, l - 1);
    const x = indexAt(parent.node as ExtentIndexNode, parent.idx);
    if (x.fileBlock === k) return;
    x.fileBlock = toFileBlock(k);
    parent.dirty = true;
  }
}

/** Allocates `n` node blocks up front so that a failure leaves the tree untouched. */
async function allocNodes(env: ExtentTreeEnv, n: number, goal: number): Promise<number[]> {
  const got: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const prev = got[got.length - 1];
      const b = await env.allocNodeBlock(prev === undefined ? goal : prev + 1);
      assert(Number.isSafeInteger(b) && b >= 1 && b < env.blocksCount, `allocNodeBlock returned ${b}`);
      got.push(b);
    }
  } catch (err) {
    for (const b of got) await env.freeNodeBlock(b);
    throw err;
  }
  return got;
}

function goalOf(path: Path, fallback: number): number {
  const leaf = lastLevel(path);
  return leaf.block !== undefined ? leaf.block + 1 : fallback;
}

/**
 * Replaces the leaf's extents with `extents` (sorted, within the leaf's key range) and writes the
 * path. A leaf or index node that overflows is split in two (a new right sibling), the root grows
 * one level when it overflows. `atEnd`: the overflow comes from appending after the last extent,
 * so the left node stays full (sequential writes pack leaves).
 */
async function commitLeaf(env: ExtentTreeEnv, path: Path, extents: Extent[], atEnd: boolean, goal: number): Promise<void> {
  const leafL = path.length - 1;
  const cap = extentNodeCapacity(false, env.blockSize);
  const maxAt = (l: number): number => (l === 0 ? EXTENT_ROOT_MAX_ENTRIES : cap);

  let need = 0;
  for (let l = leafL, n = extents.length; n > maxAt(l); l--) {
    need++;
    if (l === 0) {
      if (levelAt(path, 0).node.depth + 1 > EXT4_MAX_EXTENT_DEPTH) {
        throw new Ext4Error('EFBIG', `extent tree of inode ${env.ino} would exceed depth ${EXT4_MAX_EXTENT_DEPTH}`,
          { detail: 'extent-depth-limit', where: { inode: env.ino } });
      }
      assert(n <= cap, 'root overflow larger than a node');
      break;
    }
    assert(n <= 2 * cap, 'node overflow larger than one split');
    n = entryCount(levelAt(path, l - 1).node) + 1;
  }
  const pool = await allocNodes(env, need, goal);

  const leafLv = levelAt(path, leafL);
  (leafLv.node as ExtentLeafNode).extents = extents;
  leafLv.dirty = true;
  propagateKeys(path, leafL);

  const fresh: Array<{ block: number; node: ExtentNode }> = [];
  for (let l = leafL; ; l--) {
    const lv = levelAt(path, l);
    const node = lv.node;
    const count = entryCount(node);
    if (count <= maxAt(l)) break;
    const b = pool.pop();
    assert(b !== undefined, 'fewer node blocks preallocated than the split needs');
    if (l === 0) {
      // Grow in depth: the root's entries move to a new block, the root points to it.
      const child: ExtentNode = node.kind === 'leaf'
        ? { kind: 'leaf', depth: 0, max: cap, generation: 0, extents: node.extents }
        : { kind: 'index', depth: node.depth, max: cap, generation: 0, indexes: node.indexes };
      fresh.push({ block: b, node: child });
      lv.node = {
        kind: 'index', depth: node.depth + 1, max: EXTENT_ROOT_MAX_ENTRIES, generation: node.generation,
        indexes: [{ fileBlock: toFileBlock(keyOf(child)), child: toFsBlock(b) }],
      };
      lv.dirty = true;
      break;
    }
    const splitAt = atEnd ? maxAt(l) : Math.ceil(count / 2);
    let right: ExtentNode;
    if (node.kind === 'leaf') {
      right = { kind: 'leaf', depth: 0, max: cap, generation: 0, extents: node.extents.splice(splitAt) };
    } else {
      right = { kind: 'index', depth: node.depth, max: cap, generation: 0, indexes: node.indexes.splice(splitAt) };
    }
    fresh.push({ block: b, node: right });
    const parent = levelAt(path, l - 1);
    const px = (parent.node as ExtentIndexNode).indexes;
    atEnd = parent.idx + 1 === px.length;
    px.splice(parent.idx + 1, 0, { fileBlock: toFileBlock(keyOf(right)), child: toFsBlock(b) });
    parent.dirty = true;
  }
  assert(pool.length === 0, 'preallocated node blocks left over');
  for (const f of fresh) await storeNode(env, f.block, f.node, true);
  for (const lv of path) if (lv.dirty) await storeNode(env, lv.block, lv.node);
}

// ---- iteration ------------------------------------------------------------------------------

async function* walkFrom(
  env: ExtentTreeEnv, node: ExtentNode, hi: number, start: number, seen: Set<number>,
): AsyncGenerator<Extent> {
  if (node.kind === 'leaf') {
    for (const e of node.extents) if (endOf(e) > start) yield copyExtent(e);
    return;
  }
  const xs = node.indexes;
  for (let i = Math.max(0, lastAtOrBelow(xs, start)); i < xs.length; i++) {
    const { lo, hi: childHi } = childRange(node, i, hi);
    const child = await readNode(env, indexAt(node, i).child, node.depth, lo, childHi, seen, true);
    yield* walkFrom(env, child, childHi, start, seen);
  }
}

/** Extents that end after `start`, in logical order. */
function extentsFrom(env: ExtentTreeEnv, start: number): AsyncGenerator<Extent> {
  return walkFrom(env, decodeRoot(env), EXT_MAX_LOGICAL_END, start, new Set());
}

async function firstExtentFrom(env: ExtentTreeEnv, start: number): Promise<Extent | undefined> {
  for await (const e of extentsFrom(env, start)) return e;
  return undefined;
}

/** Every extent of the tree in logical order (copies; do not modify the tree while iterating). */
export async function* extentIterate(env: ExtentTreeEnv): AsyncGenerator<Extent> {
  checkEnv(env);
  yield* extentsFrom(env, 0);
}

/** The extent containing `fileBlock`, or undefined for a hole. */
export async function extentLookup(env: ExtentTreeEnv, fileBlock: number): Promise<Extent | undefined> {
  checkEnv(env);
  checkFileBlock(fileBlock, 'lookup of');
  const leaf = leafOf(await findPath(env, fileBlock, true));
  const i = lastAtOrBelow(leaf.extents, fileBlock);
  const e = leaf.extents[i];
  return e && fileBlock < endOf(e) ? copyExtent(e) : undefined;
}

/**
 * A bound for hole scans: the first block after `fileBlock` that may be mapped (the start of the
 * next extent in the leaf that covers `fileBlock`, or that leaf's upper key bound); undefined
 * when no extent can follow. One tree walk instead of one per block of the hole.
 */
export async function extentNextBound(env: ExtentTreeEnv, fileBlock: number): Promise<number | undefined> {
  checkEnv(env);
  checkFileBlock(fileBlock, 'lookup of');
  const path = await findPath(env, fileBlock, true);
  const leaf = leafOf(path);
  const next = leaf.extents[lastAtOrBelow(leaf.extents, fileBlock) + 1];
  if (next) return next.fileBlock;
  const hi = path[path.length - 1]!.hi;
  return hi >= EXT_MAX_LOGICAL_END ? undefined : hi;
}

/** The extent containing `fileBlock` or the nearest one before it. */
async function extentAtOrBefore(env: ExtentTreeEnv, fileBlock: number): Promise<Extent | undefined> {
  const leaf = leafOf(await findPath(env, fileBlock, true));
  const e = leaf.extents[lastAtOrBelow(leaf.extents, fileBlock)];
  return e && copyExtent(e);
}

/**
 * bigalloc: whether any block of logical cluster `logicalCluster` is mapped, and the physical
 * cluster holding it (all mapped blocks of a logical cluster share one physical cluster, §1).
 */
export async function logicalClusterMapped(
  env: ExtentTreeEnv, logicalCluster: number,
): Promise<{ physicalCluster: number } | undefined> {
  checkEnv(env);
  const r = env.clusterRatio;
  const a = logicalCluster * r;
  checkFileBlock(a, 'logical cluster start');
  const b = a + r - 1;
  const e = await firstExtentFrom(env, a);
  if (!e || e.fileBlock > b) return undefined;
  const blk = Math.max(a, e.fileBlock);
  return { physicalCluster: Math.floor((e.fsBlock + (blk - e.fileBlock)) / r) };
}

/** Number of non-root node blocks (each charged to i_blocks as one cluster). */
export async function extentTreeNodeCount(env: ExtentTreeEnv): Promise<number> {
  checkEnv(env);
  const seen = new Set<number>();
  const count = async (node: ExtentNode, hi: number): Promise<number> => {
    if (node.kind === 'leaf') return 0;
    let n = 0;
    for (const [i, x] of node.indexes.entries()) {
      const range = childRange(node, i, hi);
      n += 1 + await count(await readNode(env, x.child, node.depth, range.lo, range.hi, seen, true), range.hi);
    }
    return n;
  };
  return count(decodeRoot(env), EXT_MAX_LOGICAL_END);
}

// ---- insert ---------------------------------------------------------------------------------

/**
 * Maps `e`, which must not overlap an existing mapping. Merges with contiguous neighbours in the
 * same leaf, splits full nodes and grows the tree as needed. Node blocks are allocated before
 * anything is changed: an allocation failure leaves the tree as it was.
 */
export async function extentInsert(env: ExtentTreeEnv, e: Extent): Promise<void> {
  checkEnv(env);
  const r = env.clusterRatio;
  assert(Number.isInteger(e.countBlocks) && e.countBlocks >= 1 && e.countBlocks <= maxLenOf(e.unwritten),
    `extent length ${e.countBlocks}`);
  checkFileBlock(e.fileBlock, 'extent start');
  assert(endOf(e) <= EXT_MAX_LOGICAL_END, 'extent ends past logical block 2^32');
  assert(Number.isSafeInteger(e.fsBlock) && e.fsBlock >= 1 && e.fsBlock + e.countBlocks <= env.blocksCount,
    `extent physical range ${e.fsBlock}+${e.countBlocks} outside the filesystem`);
  if (r > 1) {
    // bigalloc layout rules (§1): same offset inside the cluster, and a logical cluster that is
    // already partly mapped keeps its physical cluster.
    assert(e.fileBlock % r === e.fsBlock % r, `extent ${e.fileBlock}->${e.fsBlock} is not cluster-aligned`);
    for (const blk of [e.fileBlock, endOf(e) - 1]) {
      const m = await logicalClusterMapped(env, Math.floor(blk / r));
      const pc = Math.floor((e.fsBlock + (blk - e.fileBlock)) / r);
      assert(!m || m.physicalCluster === pc, `logical block ${blk} must go to physical cluster ${m?.physicalCluster}`);
    }
  }

  const path = await findPath(env, e.fileBlock);
  const leafLv = lastLevel(path);
  const extents = (leafLv.node as ExtentLeafNode).extents;
  const pos = lastAtOrBelow(extents, e.fileBlock) + 1;
  const prev = extents[pos - 1];
  const next = extents[pos];
  assert(!prev || endOf(prev) <= e.fileBlock, `extent ${e.fileBlock}+${e.countBlocks} overlaps ${prev?.fileBlock}+${prev?.countBlocks}`);
  assert(!next || next.fileBlock >= endOf(e), `extent ${e.fileBlock}+${e.countBlocks} overlaps ${next?.fileBlock}+${next?.countBlocks}`);
  if (endOf(e) > leafLv.hi) {
    // The next subtree's key lies inside e although nothing is mapped there: its key is not the
    // first block of its child, which e2fsck reports as corrupt.
    const after = await firstExtentFrom(env, leafLv.hi);
    assert(!after || after.fileBlock >= endOf(e), `extent ${e.fileBlock}+${e.countBlocks} overlaps ${after?.fileBlock}`);
    throw corrupt('extent-index-key', `index key ${leafLv.hi} is below the first block of its subtree`, { inode: env.ino });
  }
  const list = extents.slice();
  list.splice(pos, 0, copyExtent(e));
  await commitLeaf(env, path, mergeAdjacent(list), pos === extents.length, goalOf(path, e.fsBlock));
}

// ---- unwritten conversion -------------------------------------------------------------------

/** Splits a run into extents no longer than the on-disk maximum for its state. */
function chunks(fileBlock: number, count: number, fsBlock: number, unwritten: boolean): Extent[] {
  const out: Extent[] = [];
  const max = maxLenOf(unwritten);
  for (let done = 0; done < count; done += max) {
    out.push(mkExtent(fileBlock + done, Math.min(max, count - done), fsBlock + done, unwritten));
  }
  return out;
}

/**
 * Marks [first, first+count) unwritten or written. Every block of the range must be mapped
 * (checked before anything changes). Extents are split at the range edges, keeping the state
 * of the parts outside, and merged with neighbours of the same state.
 */
export async function extentSetUnwritten(env: ExtentTreeEnv, first: number, count: number, unwritten: boolean): Promise<void> {
  checkEnv(env);
  checkFileBlock(first, 'range start');
  assert(Number.isInteger(count) && count >= 1 && first + count <= EXT_MAX_LOGICAL_END, `range length ${count}`);
  const end = first + count;
  // The common case (a write into part of one unwritten extent) needs one path: the range check
  // walks the tree only when the first extent does not cover the whole range.
  let path: Path | undefined = await findPath(env, first);
  const head = leafOf(path).extents[lastAtOrBelow(leafOf(path).extents, first)];
  if (!head || first < head.fileBlock || endOf(head) < end) {
    let covered = first;
    for await (const e of extentsFrom(env, first)) {
      if (e.fileBlock > covered) break;
      covered = endOf(e);
      if (covered >= end) break;
    }
    assert(covered >= end, `range ${first}+${count} is not fully mapped (hole at ${covered})`);
  }

  for (let cur = first; cur < end;) {
    path ??= await findPath(env, cur);
    const extents = leafOf(path).extents;
    const i = lastAtOrBelow(extents, cur);
    const e = extents[i];
    assert(e && cur < endOf(e), `block ${cur} is not mapped`);
    const stop = Math.min(endOf(e), end);
    if (e.unwritten !== unwritten) {
      const pieces: Extent[] = [];
      if (e.fileBlock < cur) pieces.push(mkExtent(e.fileBlock, cur - e.fileBlock, e.fsBlock, e.unwritten));
      pieces.push(...chunks(cur, stop - cur, e.fsBlock + (cur - e.fileBlock), unwritten));
      if (stop < endOf(e)) pieces.push(mkExtent(stop, endOf(e) - stop, e.fsBlock + (stop - e.fileBlock), e.unwritten));
      // The path's leaf is this call's own copy: replace e in place and merge only around the
      // pieces (the rest of the leaf is already merged), not a rebuild of the whole leaf.
      extents.splice(i, 1, ...pieces);
      mergeAround(extents, i - 1, i + pieces.length);
      await commitLeaf(env, path, extents, false, goalOf(path, e.fsBlock));
    }
    path = undefined;
    cur = stop;
  }
}

// ---- removal --------------------------------------------------------------------------------

/**
 * Removes every mapping in [first, last] (inclusive; truncate passes 0xffffffff), splitting
 * extents at the edges, then frees the data. Emptied node blocks are freed and the root takes
 * over a single child that fits in it.
 *
 * Data freeing (§4.4, computed instead of carried as a tofree/nofree record): a physical cluster
 * of a removed block is freed unless a block outside the range is still mapped in it. With the
 * bigalloc rules such blocks can only sit in the logical clusters of `first` and `last` (their
 * mapped blocks outside the range are "nofree"), plus — guarding trees that break the rules — the
 * nearest mapped block on each side. Clusters shared by several removed extents are freed once.
 * freeDataClusters runs after the tree no longer references the clusters.
 */
export async function extentRemoveRange(env: ExtentTreeEnv, first: number, last: number): Promise<void> {
  checkEnv(env);
  checkFileBlock(first, 'range start');
  checkFileBlock(last, 'range end');
  assert(first <= last, `range ${first}..${last} is empty`);
  const kept = env.clusterRatio > 1 ? await keptClusters(mappedExtents(env), env.clusterRatio, first, last) : new Set<number>();
  const pieces: Piece[] = [];

  // A punch strictly inside one extent leaves two parts: the leaf gains an entry and may split.
  const path = await findPath(env, first);
  const extents = leafOf(path).extents;
  const i = lastAtOrBelow(extents, first);
  const e = extents[i];
  if (e && e.fileBlock < first && last < endOf(e) - 1) {
    const left = mkExtent(e.fileBlock, first - e.fileBlock, e.fsBlock, e.unwritten);
    const right = mkExtent(last + 1, endOf(e) - last - 1, e.fsBlock + (last + 1 - e.fileBlock), e.unwritten);
    const list = [...extents.slice(0, i), left, right, ...extents.slice(i + 1)];
    await commitLeaf(env, path, list, false, goalOf(path, e.fsBlock));
    pieces.push({ l: first, p: e.fsBlock + (first - e.fileBlock), n: last - first + 1 });
  } else {
    let root = decodeRoot(env);
    if (await removeIn(env, root, EXT_MAX_LOGICAL_END, first, last, pieces, new Set())) {
      if (root.kind === 'index' && root.indexes.length === 0) {
        root = { kind: 'leaf', depth: 0, max: EXTENT_ROOT_MAX_ENTRIES, generation: root.generation, extents: [] };
      }
      root = await collapseRoot(env, root);
      await storeNode(env, undefined, root);
    }
  }
  await freePieces(pieces, kept, env.clusterRatio, env.freeDataClusters);
}

/**
 * Removes [first, last] below `node` (covering keys up to `hi`), right to left, appending the
 * removed runs to `pieces`. Children are written or freed here; the caller writes `node`.
 * Returns whether `node` changed.
 */
async function removeIn(
  env: ExtentTreeEnv, node: ExtentNode, hi: number, first: number, last: number, pieces: Piece[], seen: Set<number>,
): Promise<boolean> {
  if (node.kind === 'leaf') {
    const out: Extent[] = [];
    const removed: Piece[] = [];
    for (const e of node.extents) {
      const s = e.fileBlock;
      const t = endOf(e) - 1;
      if (t < first || s > last) { out.push(e); continue; }
      if (s < first) out.push(mkExtent(s, first - s, e.fsBlock, e.unwritten));
      const a = Math.max(s, first);
      const b = Math.min(t, last);
      removed.push({ l: a, p: e.fsBlock + (a - s), n: b - a + 1 });
      if (t > last) out.push(mkExtent(last + 1, t - last, e.fsBlock + (last + 1 - s), e.unwritten));
    }
    if (removed.length === 0) return false;
    assert(out.length <= node.extents.length, 'removal split an extent in the general path');
    node.extents = out;
    pieces.push(...removed.reverse());
    return true;
  }
  let changed = false;
  const xs = node.indexes;
  for (let i = xs.length - 1; i >= 0; i--) {
    const { lo, hi: childHi } = childRange(node, i, hi);
    if (lo > last) continue;
    if (childHi <= first) break;
    const x = indexAt(node, i);
    const cb = x.child;
    const child = await readNode(env, cb, node.depth, lo, childHi, seen);
    if (!(await removeIn(env, child, childHi, first, last, pieces, seen))) continue;
    changed = true;
    if (entryCount(child) === 0) {
      xs.splice(i, 1);
      env.txn.forget(cb);
      await env.freeNodeBlock(cb);
    } else {
      await storeNode(env, cb, child);
      const k = firstKey(child);
      assert(k !== undefined, 'a non-empty node has a first key');
      x.fileBlock = toFileBlock(k);
    }
  }
  return changed;
}

/** While the root has one child whose entries fit in i_block, the child moves into the root. */
async function collapseRoot(env: ExtentTreeEnv, root: ExtentNode): Promise<ExtentNode> {
  while (root.kind === 'index' && root.indexes.length === 1) {
    const x = indexAt(root, 0);
    const child = await readNode(env, x.child, root.depth, x.fileBlock, EXT_MAX_LOGICAL_END);
    if (entryCount(child) > EXTENT_ROOT_MAX_ENTRIES) break;
    const generation = root.generation;
    root = child.kind === 'leaf'
      ? { kind: 'leaf', depth: 0, max: EXTENT_ROOT_MAX_ENTRIES, generation, extents: child.extents }
      : { kind: 'index', depth: child.depth, max: EXTENT_ROOT_MAX_ENTRIES, generation, indexes: child.indexes };
    env.txn.forget(x.child);
    await env.freeNodeBlock(x.child);
  }
  return root;
}

/** The tree's mapped extents as the partial-cluster rules read them. */
function mappedExtents(env: ExtentTreeEnv): MappedExtents {
  return {
    from: (start) => extentsFrom(env, start),
    atOrBefore: (b) => extentAtOrBefore(env, b),
    firstFrom: (b) => firstExtentFrom(env, b),
  };
}
