// One reader and checker for extent-tree nodes (ifork.rst, "Extent Tree"), shared by the
// read-only mapping walk (read-map.ts) and the tree writer (extent-tree.ts). Every node read
// from disk passes through here, so both see the same checks in the same order.
import { corrupt, type Ext4ErrorWhere } from '../errors/ext4-error.ts';
import { decodeExtentNode, EXT_MAX_LOGICAL_END, type ExtentIndexNode, type ExtentNode } from '../format/extent.ts';

/** What reading extent nodes of one inode needs. */
export interface ExtentNodeSource {
  blockSize: number;
  /** s_blocks_count: every pointer must be below it. */
  blocksCount: number;
  ino: number;
  /** metadata_csum: node tails are verified. */
  inodeSeed?: number | undefined;
  readBlock(block: number): Promise<Uint8Array>;
}

/**
 * Block buffers whose extent node was decoded and checked (checksum included), with the bytes
 * then and the decoded node: random small writes re-read the same few leaves many times per
 * second, and while a buffer's bytes are unchanged (a word compare, several times cheaper than
 * the CRC and the decode) the cached node is what decoding would return. A buffer changed in
 * place since is decoded and checked again. Nodes the tree writer has just encoded are
 * remembered too (rememberEncodedNode), so reading back a leaf it wrote costs no decode.
 * `range`: the key range [lo, hi) and filesystem size the node was last checked against.
 */
interface DecodedNode {
  seed: number | undefined;
  blockSize: number;
  /** The buffer itself, as words (made once per buffer). */
  view: Int32Array;
  /** The buffer's words when the node was decoded or encoded (refreshed in place). */
  words: Int32Array;
  /** Never modified: callers that change nodes get a copy (readChildNode's `shared`). */
  node: ExtentNode;
  range: { lo: number; hi: number; blocksCount: number } | undefined;
}
const decodedNodes = new WeakMap<Uint8Array, DecodedNode>();

function wordsOf(bytes: Uint8Array): Int32Array | undefined {
  return bytes.byteOffset % 4 === 0 && bytes.length % 4 === 0 ? new Int32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4) : undefined;
}

function unchangedSinceDecoded(bytes: Uint8Array, seed: number | undefined, blockSize: number): DecodedNode | undefined {
  const seen = decodedNodes.get(bytes);
  if (!seen || seen.seed !== seed || seen.blockSize !== blockSize) return undefined;
  const now = seen.view;
  if (now.length !== seen.words.length) return undefined;
  const was = seen.words;
  for (let i = 0; i < now.length; i++) if (now[i] !== was[i]) return undefined;
  return seen;
}

function rememberDecoded(bytes: Uint8Array, seed: number | undefined, blockSize: number, node: ExtentNode): DecodedNode | undefined {
  const prev = decodedNodes.get(bytes);
  const view = prev?.view ?? wordsOf(bytes);
  if (!view) return undefined;
  // Leaf entries are shared with every owned copy (cloneExtentNode): frozen, so that a writer
  // changing one in place instead of replacing it fails at once rather than corrupting the cache.
  if (node.kind === 'leaf') for (const e of node.extents) if (!Object.isFrozen(e)) Object.freeze(e);
  if (prev && prev.words.length === view.length) {
    // A node rewritten in the same buffer (every conversion): no new snapshot allocated.
    prev.words.set(view);
    prev.seed = seed;
    prev.blockSize = blockSize;
    prev.node = node;
    prev.range = undefined;
    return prev;
  }
  const entry: DecodedNode = { seed, blockSize, view, words: view.slice(), node, range: undefined };
  decodedNodes.set(bytes, entry);
  return entry;
}

/**
 * A copy of a node that can be changed without touching the original: its own header and entry
 * list. A leaf's extents themselves are shared and frozen (writers replace an extent, never
 * change it: one conversion per random write would otherwise copy the whole leaf); an index
 * node's entries are copied (key propagation rewrites them in place).
 */
export function cloneExtentNode(node: ExtentNode): ExtentNode {
  if (node.kind === 'leaf') {
    return { kind: 'leaf', depth: 0, max: node.max, generation: node.generation, extents: node.extents.slice() };
  }
  const indexes = new Array<ExtentIndexNode['indexes'][number]>(node.indexes.length);
  for (let i = 0; i < indexes.length; i++) {
    const x = node.indexes[i]!;
    indexes[i] = { fileBlock: x.fileBlock, child: x.child };
  }
  return { kind: 'index', depth: node.depth, max: node.max, generation: node.generation, indexes };
}

/**
 * The tree writer has just encoded `node` into the non-root block buffer `bytes` (with the
 * checksum of `inodeSeed`): the next read of the unchanged buffer returns it without decoding.
 * The writer must not change `node` afterwards (a copy is kept only by reference).
 */
export function rememberEncodedNode(bytes: Uint8Array, inodeSeed: number | undefined, blockSize: number, node: ExtentNode): void {
  rememberDecoded(bytes, inodeSeed, blockSize, node);
}

/** Index of the last entry whose key is <= target, or -1. Keys are sorted (checked by decode). */
export function lastAtOrBelow(keys: ReadonlyArray<{ fileBlock: number }>, target: number): number {
  let lo = 0;
  let hi = keys.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const k = keys[mid];
    if (k !== undefined && k.fileBlock <= target) { found = mid; lo = mid + 1; } else hi = mid - 1;
  }
  return found;
}

/** The key range [lo, hi) that entry `i` of an index node gives its child, below the node's own `hi`. */
export function childRange(node: ExtentIndexNode, i: number, hi: number): { lo: number; hi: number } {
  const x = node.indexes[i];
  if (x === undefined) throw new RangeError(`extent index entry ${i} of ${node.indexes.length}`);
  const next = node.indexes[i + 1];
  return { lo: x.fileBlock, hi: next !== undefined ? next.fileBlock : hi };
}

/**
 * Checks a decoded node against the key range its parent gives it, [lo, hi) (every key or
 * extent inside, or a lookup through the parent could never reach it), and every pointer
 * against the filesystem size: extents map blocks in 1..blocksCount-1, children are in range.
 */
export function checkExtentNode(node: ExtentNode, lo: number, hi: number, blocksCount: number, where: Ext4ErrorWhere): void {
  if (node.kind === 'leaf') {
    for (const e of node.extents) {
      if (e.fileBlock < lo || e.fileBlock + e.countBlocks > hi) {
        throw corrupt('extent-key-range', `extent ${e.fileBlock}+${e.countBlocks} lies outside its parent's range ${lo}..${hi}`, where);
      }
      if (e.fsBlock < 1 || e.fsBlock + e.countBlocks > blocksCount) {
        throw corrupt('extent-out-of-range', `extent maps blocks ${e.fsBlock}..${e.fsBlock + e.countBlocks - 1} outside the filesystem`, where);
      }
    }
  } else {
    for (const x of node.indexes) {
      if (x.fileBlock < lo || x.fileBlock >= hi) {
        throw corrupt('extent-key-range', `index key ${x.fileBlock} lies outside its parent's range ${lo}..${hi}`, where);
      }
      if (x.child < 1 || x.child >= blocksCount) {
        throw corrupt('extent-out-of-range', `extent index points to block ${x.child} outside the filesystem`, where);
      }
    }
  }
}

/** Decodes and checks the root node kept in the inode's i_block (key range: all of it). */
export function readRootNode(src: ExtentNodeSource, iBlock: Uint8Array): ExtentNode {
  const where = { inode: src.ino };
  const node = decodeExtentNode(iBlock, { isRoot: true, blockSize: src.blockSize, where });
  checkExtentNode(node, 0, EXT_MAX_LOGICAL_END, src.blocksCount, where);
  return node;
}

/**
 * Reads and checks the child `block` of a node at `parentDepth` covering keys [lo, hi): the
 * loop guard (`seen`, when given: a block reached twice), the checksum, the depth rule (exactly
 * one less than the parent) and the node's keys and pointers. The pointer itself was checked
 * with the parent. `shared`: the caller only reads the node, which may then be the cached
 * decode itself (no copy); callers that change the node leave it false and get their own copy.
 */
export async function readChildNode(
  src: ExtentNodeSource, block: number, parentDepth: number, lo: number, hi: number, seen?: Set<number>, shared = false,
): Promise<ExtentNode> {
  const where = { inode: src.ino, block };
  if (seen) {
    if (seen.has(block)) throw corrupt('extent-loop', `extent tree reaches block ${block} twice`, where);
    seen.add(block);
  }
  const bytes = await src.readBlock(block);
  let cached = unchangedSinceDecoded(bytes, src.inodeSeed, src.blockSize);
  if (!cached) {
    const decoded = decodeExtentNode(bytes, { isRoot: false, blockSize: src.blockSize, inodeSeed: src.inodeSeed, where });
    cached = rememberDecoded(bytes, src.inodeSeed, src.blockSize, decoded);
    if (!cached) return checkChild(decoded, parentDepth, lo, hi, src.blocksCount, where);
  }
  const r = cached.range;
  if (r && r.lo === lo && r.hi === hi && r.blocksCount === src.blocksCount && cached.node.depth === parentDepth - 1) {
    return shared ? cached.node : cloneExtentNode(cached.node);
  }
  checkChild(cached.node, parentDepth, lo, hi, src.blocksCount, where);
  cached.range = { lo, hi, blocksCount: src.blocksCount };
  return shared ? cached.node : cloneExtentNode(cached.node);
}

function checkChild(node: ExtentNode, parentDepth: number, lo: number, hi: number, blocksCount: number, where: Ext4ErrorWhere): ExtentNode {
  if (node.depth !== parentDepth - 1) {
    throw corrupt('extent-depth', `extent node at depth ${node.depth} below a node at depth ${parentDepth}`, where);
  }
  checkExtentNode(node, lo, hi, blocksCount, where);
  return node;
}
