// The machinery under the extent-tree operations (extent-tree.ts) of one inode (ifork.rst,
// "Extent Tree"): the environment, reading and storing nodes (everything read is validated,
// every node stored goes through the transaction or into i_block), root-to-leaf paths, and
// committing a changed leaf with node splits and depth growth; plus in-order iteration.
// Nothing here decides what the mapping becomes: the operations do.
import { assert, Ext4Error } from '../errors/ext4-error.ts';
import {
  childRange, lastAtOrBelow, readChildNode, readRootNode, rememberEncodedNode, type ExtentNodeSource,
} from './extent-node.ts';
import { fileBlock as toFileBlock, fsBlock as toFsBlock } from '../util/brand.ts';
import {
  encodeExtentNode, extentNodeCapacity,
  EXTENT_ROOT_SIZE, EXTENT_ROOT_MAX_ENTRIES, EXT4_MAX_EXTENT_DEPTH, EXT_INIT_MAX_LEN,
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
export const LAST_FILE_BLOCK = EXT_MAX_LOGICAL_END - 1;

// ---- small helpers --------------------------------------------------------------------------

export const endOf = (e: Extent): number => e.fileBlock + e.countBlocks;
export const maxLenOf = (unwritten: boolean): number => (unwritten ? EXT_UNWRITTEN_MAX_LEN : EXT_INIT_MAX_LEN);
export const entryCount = (n: ExtentNode): number => (n.kind === 'leaf' ? n.extents.length : n.indexes.length);
export const firstKey = (n: ExtentNode): number | undefined =>
  n.kind === 'leaf' ? n.extents[0]?.fileBlock : n.indexes[0]?.fileBlock;
/** First key of a node that cannot be empty (a split half, a moved root). */
export function keyOf(n: ExtentNode): number {
  const k = firstKey(n);
  assert(k !== undefined, 'empty extent node where entries are required');
  return k;
}
export const copyExtent = (e: Extent): Extent =>
  ({ fileBlock: e.fileBlock, countBlocks: e.countBlocks, fsBlock: e.fsBlock, unwritten: e.unwritten });
export const mkExtent = (fileBlock: number, countBlocks: number, fsBlock: number, unwritten: boolean): Extent =>
  ({ fileBlock: toFileBlock(fileBlock), countBlocks, fsBlock: toFsBlock(fsBlock), unwritten });

export function canMerge(a: Extent, b: Extent): boolean {
  return a.unwritten === b.unwritten && endOf(a) === b.fileBlock && a.fsBlock + a.countBlocks === b.fsBlock &&
    a.countBlocks + b.countBlocks <= maxLenOf(a.unwritten);
}

/** Merges every mergeable neighbour pair of a sorted list (never changes the first start). */
export function mergeAdjacent(list: readonly Extent[]): Extent[] {
  const out: Extent[] = [];
  for (const e of list) {
    const last = out[out.length - 1];
    if (last && canMerge(last, e)) last.countBlocks += e.countBlocks;
    else out.push(copyExtent(e));
  }
  return out;
}

/** Merges, in place, the mergeable neighbour pairs among list[from..to] (clamped to the list). */
export function mergeAround(list: Extent[], from: number, to: number): void {
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

export function checkEnv(env: ExtentTreeEnv): void {
  const bs = env.blockSize;
  assert(Number.isInteger(bs) && bs >= 1024 && (bs & (bs - 1)) === 0, `block size ${bs}`);
  const r = env.clusterRatio;
  assert(Number.isInteger(r) && r >= 1 && (r & (r - 1)) === 0, `cluster ratio ${r}`);
  assert(Number.isSafeInteger(env.blocksCount) && env.blocksCount > 0, 'blocks count');
  assert(env.root.length >= EXTENT_ROOT_SIZE, 'i_block must be 60 bytes');
}

export function checkFileBlock(b: number, what: string): void {
  assert(Number.isSafeInteger(b) && b >= 0 && b <= LAST_FILE_BLOCK, `${what} ${b} is not a file block`);
}

// ---- reading nodes (everything read is validated) -------------------------------------------

export function nodeSource(env: ExtentTreeEnv): ExtentNodeSource {
  return { blockSize: env.blockSize, blocksCount: env.blocksCount, ino: env.ino, inodeSeed: env.inodeSeed, readBlock: (b) => env.txn.read(b) };
}

export function decodeRoot(env: ExtentTreeEnv): ExtentNode {
  return readRootNode(nodeSource(env), env.root);
}

/**
 * Reads the child `block` of a node at `parentDepth` covering keys [lo, hi). `shared`: the
 * caller only reads the node (it may be the cached decode of the block, never to be changed).
 */
export function readNode(
  env: ExtentTreeEnv, block: number, parentDepth: number, lo: number, hi: number, seen?: Set<number>, shared = false,
): Promise<ExtentNode> {
  return readChildNode(nodeSource(env), block, parentDepth, lo, hi, seen, shared);
}

/** Writes a node: to i_block for the root, else into its block (fresh: just allocated). */
export async function storeNode(env: ExtentTreeEnv, block: number | undefined, node: ExtentNode, fresh = false): Promise<void> {
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

export interface Level {
  /** undefined for the root (i_block). */
  block: number | undefined;
  node: ExtentNode;
  /** Index nodes: the entry followed to the next level. */
  idx: number;
  /** Exclusive upper key bound the parent gives this node. */
  hi: number;
  dirty: boolean;
}
export type Path = Level[];

/**
 * Root-to-leaf path towards `target` (the first subtree when target precedes every key).
 * `readOnly`: the caller changes no node of the path (lookups), so cached decodes are shared.
 */
export async function findPath(env: ExtentTreeEnv, target: number, readOnly = false): Promise<Path> {
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

export function levelAt(path: Path, l: number): Level {
  const lv = path[l];
  assert(lv !== undefined, `extent path of ${path.length} levels has no level ${l}`);
  return lv;
}

/** The deepest level of a path (paths always hold the root). */
export const lastLevel = (path: Path): Level => levelAt(path, path.length - 1);

/** Entry `i` of an index node; callers pass an index they found inside it. */
export function indexAt(node: ExtentIndexNode, i: number): ExtentIndexNode['indexes'][number] {
  const x = node.indexes[i];
  assert(x !== undefined, `extent index entry ${i} of ${node.indexes.length}`);
  return x;
}

export function leafOf(path: Path): ExtentLeafNode {
  const { node } = lastLevel(path);
  assert(node.kind === 'leaf', 'extent path does not end in a leaf');
  return node;
}

/** After the first key of path[from] changed, rewrites the parent keys that named it. */
export function propagateKeys(path: Path, from: number): void {
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
export async function allocNodes(env: ExtentTreeEnv, n: number, goal: number): Promise<number[]> {
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

export function goalOf(path: Path, fallback: number): number {
  const leaf = lastLevel(path);
  return leaf.block !== undefined ? leaf.block + 1 : fallback;
}

/**
 * Replaces the leaf's extents with `extents` (sorted, within the leaf's key range) and writes the
 * path. A leaf or index node that overflows is split in two (a new right sibling), the root grows
 * one level when it overflows. `atEnd`: the overflow comes from appending after the last extent,
 * so the left node stays full (sequential writes pack leaves).
 */
export async function commitLeaf(env: ExtentTreeEnv, path: Path, extents: Extent[], atEnd: boolean, goal: number): Promise<void> {
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

export async function* walkFrom(
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
export function extentsFrom(env: ExtentTreeEnv, start: number): AsyncGenerator<Extent> {
  return walkFrom(env, decodeRoot(env), EXT_MAX_LOGICAL_END, start, new Set());
}

export async function firstExtentFrom(env: ExtentTreeEnv, start: number): Promise<Extent | undefined> {
  for await (const e of extentsFrom(env, start)) return e;
  return undefined;
}
