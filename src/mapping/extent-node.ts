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
 * Block buffers whose extent-node checksum was verified, with the inode seed and a copy of the
 * bytes then: when a buffer comes back unchanged (random small writes re-read the same leaves
 * many times per second), a word compare replaces the CRC over the block (several times
 * cheaper); a buffer changed in place since is checked again.
 */
const checksumVerified = new WeakMap<Uint8Array, { seed: number; words: Int32Array }>();

function wordsOf(bytes: Uint8Array): Int32Array | undefined {
  return bytes.byteOffset % 4 === 0 && bytes.length % 4 === 0 ? new Int32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4) : undefined;
}

function unchangedSinceVerified(bytes: Uint8Array, seed: number): boolean {
  const seen = checksumVerified.get(bytes);
  if (!seen || seen.seed !== seed) return false;
  const now = wordsOf(bytes);
  if (!now || now.length !== seen.words.length) return false;
  for (let i = 0; i < now.length; i++) if (now[i] !== seen.words[i]) return false;
  return true;
}

function rememberVerified(bytes: Uint8Array, seed: number): void {
  const words = wordsOf(bytes);
  if (words) checksumVerified.set(bytes, { seed, words: words.slice() });
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
 * with the parent.
 */
export async function readChildNode(
  src: ExtentNodeSource, block: number, parentDepth: number, lo: number, hi: number, seen?: Set<number>,
): Promise<ExtentNode> {
  const where = { inode: src.ino, block };
  if (seen) {
    if (seen.has(block)) throw corrupt('extent-loop', `extent tree reaches block ${block} twice`, where);
    seen.add(block);
  }
  const bytes = await src.readBlock(block);
  const verified = src.inodeSeed !== undefined && unchangedSinceVerified(bytes, src.inodeSeed);
  const node = decodeExtentNode(bytes, {
    isRoot: false, blockSize: src.blockSize, inodeSeed: verified ? undefined : src.inodeSeed, where,
  });
  if (!verified && src.inodeSeed !== undefined) rememberVerified(bytes, src.inodeSeed);
  if (node.depth !== parentDepth - 1) {
    throw corrupt('extent-depth', `extent node at depth ${node.depth} below a node at depth ${parentDepth}`, where);
  }
  checkExtentNode(node, lo, hi, src.blocksCount, where);
  return node;
}
