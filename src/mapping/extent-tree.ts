// Operations on one inode's extent tree (ifork.rst, "Extent Tree"): lookup, insert with
// merge / split / depth growth, range removal with the bigalloc partial-cluster rules, unwritten
// conversion. All node blocks go through the transaction; the root lives in the caller's i_block.
//
// Invariants kept on every write (and assumed, where it matters, of what is read):
// * entries of a node are sorted and do not overlap (decodeExtentNode checks it);
// * an index key equals the first key of its child (e2fsck repairs a mismatch), so the extent
//   before a logical block is always found in the leaf an index search picks;
// * non-root nodes are never empty (an emptied node is freed and its index entry dropped);
// * adjacent extents inside one leaf that could be one extent are merged.
// The node, path and split machinery is in extent-path.ts.
import { assert, corrupt } from '../errors/ext4-error.ts';
import { freePieces, keptClusters, type MappedExtents, type Piece } from './extent-free.ts';
import { childRange, lastAtOrBelow } from './extent-node.ts';
import {
  checkEnv, checkFileBlock, commitLeaf, copyExtent, decodeRoot, endOf, entryCount,
  extentsFrom, findPath, firstExtentFrom, firstKey, goalOf, indexAt, lastLevel, leafOf, maxLenOf, mergeAdjacent,
  mergeAround, mkExtent, readNode, storeNode, type ExtentTreeEnv, type Path,
} from './extent-path.ts';
import { fileBlock as toFileBlock } from '../util/brand.ts';
import { setU16 } from '../util/bytes.ts';
import {
  eh_depth, eh_entries, eh_magic, eh_max, EXTENT_ROOT_SIZE, EXTENT_ROOT_MAX_ENTRIES, EXT4_EXT_MAGIC, EXT_MAX_LOGICAL_END,
  type Extent, type ExtentLeafNode, type ExtentNode,
} from '../format/extent.ts';

export type { ExtentTreeEnv } from './extent-path.ts';

/** An empty tree: header only, eh_max 4, depth 0 (what a new extent-mapped inode starts with). */
export function initExtentRoot(root: Uint8Array): void {
  assert(root.length >= EXTENT_ROOT_SIZE, 'i_block must be 60 bytes');
  root.fill(0, 0, EXTENT_ROOT_SIZE);
  setU16(root, eh_magic, EXT4_EXT_MAGIC);
  setU16(root, eh_entries, 0);
  setU16(root, eh_max, EXTENT_ROOT_MAX_ENTRIES);
  setU16(root, eh_depth, 0);
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
