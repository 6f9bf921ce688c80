// One extent tree node (Documentation/filesystems/ext4/ifork.rst, "Extent Tree"): the 12-byte
// header, index or leaf entries, and the ext4_extent_tail checksum of non-root blocks.
import { badChecksum, corrupt, assert, type Ext4ErrorWhere } from '../errors/ext4-error.ts';
import { u16, u32, hiLo, setU16, setU32, hi32 } from '../util/bytes.ts';
import { crc32cUpdate } from '../util/crc.ts';
import { fileBlock, fsBlock, type FileBlock, type FsBlock } from '../util/brand.ts';

// struct ext4_extent_header
export const eh_magic = 0x0;
export const eh_entries = 0x2;
export const eh_max = 0x4;
export const eh_depth = 0x6;
export const eh_generation = 0x8;
// struct ext4_extent_idx (relative to the entry)
export const ei_block = 0x0;
export const ei_leaf_lo = 0x4;
export const ei_leaf_hi = 0x8;
// struct ext4_extent (relative to the entry)
export const ee_block = 0x0;
export const ee_len = 0x4;
export const ee_start_hi = 0x6;
export const ee_start_lo = 0x8;

export const EXT4_EXT_MAGIC = 0xf30a;
export const EXTENT_HEADER_SIZE = 12;
export const EXTENT_ENTRY_SIZE = 12;
export const EXTENT_TAIL_SIZE = 4;
/** Bytes of i_block holding the root node. */
export const EXTENT_ROOT_SIZE = 60;
/** (60 - 12) / 12 entries fit in the inode. */
export const EXTENT_ROOT_MAX_ENTRIES = 4;
/** Logical blocks are < 2^32 and 4 * 84^5 >= 2^32 (1 KiB blocks), so 5 levels always suffice. */
export const EXT4_MAX_EXTENT_DEPTH = 5;
/** ee_len <= 32768 is an initialized extent of that length; above, unwritten of (ee_len - 32768). */
export const EXT_INIT_MAX_LEN = 32768;
export const EXT_UNWRITTEN_MAX_LEN = 32767;
/** Logical blocks are 32-bit: an extent must end at or before 2^32. */
export const EXT_MAX_LOGICAL_END = 0x1_0000_0000;

export interface Extent {
  fileBlock: FileBlock;
  countBlocks: number;
  fsBlock: FsBlock;
  unwritten: boolean;
}

export interface ExtentIndex {
  /** First logical block this subtree covers (ei_block). */
  fileBlock: FileBlock;
  /** Block of the child node (ei_leaf_hi:ei_leaf_lo). */
  child: FsBlock;
}

interface ExtentNodeCommon {
  max: number;
  generation: number;
}
export interface ExtentLeafNode extends ExtentNodeCommon {
  kind: 'leaf';
  depth: 0;
  extents: Extent[];
}
export interface ExtentIndexNode extends ExtentNodeCommon {
  kind: 'index';
  depth: number;
  indexes: ExtentIndex[];
}
export type ExtentNode = ExtentLeafNode | ExtentIndexNode;

export interface ExtentNodeOptions {
  /** The root lives in the inode's 60-byte i_block; other nodes fill a block and carry a tail. */
  isRoot: boolean;
  blockSize: number;
  /** The inode's checksum seed; non-root nodes are verified (decode) or stamped (encode) when given. */
  inodeSeed?: number | undefined;
}

/** Most entries a node of this kind can hold. */
export function extentNodeCapacity(isRoot: boolean, blockSize: number): number {
  return isRoot ? EXTENT_ROOT_MAX_ENTRIES : Math.floor((blockSize - EXTENT_HEADER_SIZE) / EXTENT_ENTRY_SIZE);
}

/** Offset of ext4_extent_tail: right after eh_max entry slots. */
export const extentTailOffset = (max: number): number => EXTENT_HEADER_SIZE + EXTENT_ENTRY_SIZE * max;

/** crc32c from the inode seed over the node up to its tail (checksums.rst, "Extents"). */
export function extentBlockChecksum(bytes: Uint8Array, max: number, inodeSeed: number): number {
  return crc32cUpdate(inodeSeed, bytes, 0, extentTailOffset(max));
}

/** Decodes and validates one node. `where` names the inode and block for errors. */
export function decodeExtentNode(bytes: Uint8Array, opts: ExtentNodeOptions & { where: Ext4ErrorWhere }): ExtentNode {
  const { where } = opts;
  const size = opts.isRoot ? EXTENT_ROOT_SIZE : opts.blockSize;
  if (bytes.length < size) throw corrupt('extent-truncated', `extent node is ${bytes.length} bytes, expected ${size}`, where);
  if (u16(bytes, eh_magic) !== EXT4_EXT_MAGIC) {
    throw corrupt('extent-magic', `bad extent header magic 0x${u16(bytes, eh_magic).toString(16)}`, where);
  }
  const entries = u16(bytes, eh_entries);
  const max = u16(bytes, eh_max);
  const depth = u16(bytes, eh_depth);
  const capacity = extentNodeCapacity(opts.isRoot, opts.blockSize);
  if (max === 0 || max > capacity || (!opts.isRoot && extentTailOffset(max) + EXTENT_TAIL_SIZE > size)) {
    throw corrupt('extent-max', `eh_max ${max} is not in 1..${capacity}`, where);
  }
  if (entries > max) throw corrupt('extent-entries', `eh_entries ${entries} exceeds eh_max ${max}`, where);
  if (depth > EXT4_MAX_EXTENT_DEPTH) throw corrupt('extent-depth', `eh_depth ${depth} exceeds ${EXT4_MAX_EXTENT_DEPTH}`, where);
  if (!opts.isRoot && opts.inodeSeed !== undefined) {
    const tail = extentTailOffset(max);
    if (extentBlockChecksum(bytes, max, opts.inodeSeed) !== u32(bytes, tail)) throw badChecksum('extent', where);
  }
  const generation = u32(bytes, eh_generation);

  if (depth === 0) {
    const extents: Extent[] = [];
    let prevEnd = 0;
    for (let i = 0; i < entries; i++) {
      const o = EXTENT_HEADER_SIZE + i * EXTENT_ENTRY_SIZE;
      const start = u32(bytes, o + ee_block);
      const rawLen = u16(bytes, o + ee_len);
      if (rawLen === 0) throw corrupt('extent-len', `extent ${i} has length 0`, where);
      const unwritten = rawLen > EXT_INIT_MAX_LEN;
      const len = unwritten ? rawLen - EXT_INIT_MAX_LEN : rawLen;
      if (start + len > EXT_MAX_LOGICAL_END) {
        throw corrupt('extent-range', `extent ${i} (${start}+${len}) ends past logical block 2^32`, where);
      }
      if (start < prevEnd) throw corrupt('extent-order', `extent ${i} at ${start} overlaps or precedes the previous one`, where);
      prevEnd = start + len;
      extents.push({
        fileBlock: fileBlock(start),
        countBlocks: len,
        fsBlock: fsBlock(hiLo(u16(bytes, o + ee_start_hi), u32(bytes, o + ee_start_lo))),
        unwritten,
      });
    }
    return { kind: 'leaf', depth: 0, max, generation, extents };
  }

  // An index node with no entries leads nowhere; the kernel refuses it too.
  if (entries === 0) throw corrupt('extent-empty-index', `index node at depth ${depth} has no entries`, where);
  const indexes: ExtentIndex[] = [];
  let prev = -1;
  for (let i = 0; i < entries; i++) {
    const o = EXTENT_HEADER_SIZE + i * EXTENT_ENTRY_SIZE;
    const key = u32(bytes, o + ei_block);
    if (key <= prev) throw corrupt('extent-index-order', `index ${i} key ${key} is not above the previous key ${prev}`, where);
    prev = key;
    indexes.push({ fileBlock: fileBlock(key), child: fsBlock(hiLo(u16(bytes, o + ei_leaf_hi), u32(bytes, o + ei_leaf_lo))) });
  }
  return { kind: 'index', depth, max, generation, indexes };
}

/**
 * Writes the header and entries of `node` into `bytes` (60 bytes for the root, a block
 * otherwise) and, for a non-root node with `inodeSeed`, the tail checksum. Bytes outside
 * those (unused slots, ei_unused) are left as they are: pass a zeroed or the original buffer.
 */
export function encodeExtentNode(node: ExtentNode, bytes: Uint8Array, opts: ExtentNodeOptions): void {
  const size = opts.isRoot ? EXTENT_ROOT_SIZE : opts.blockSize;
  assert(bytes.length >= size, 'extent node buffer too small');
  const capacity = extentNodeCapacity(opts.isRoot, opts.blockSize);
  const count = node.kind === 'leaf' ? node.extents.length : node.indexes.length;
  assert(node.max >= 1 && node.max <= capacity, `eh_max ${node.max} out of 1..${capacity}`);
  assert(count <= node.max, 'more entries than eh_max');
  assert(node.kind === 'leaf' ? node.depth === 0 : node.depth >= 1 && node.depth <= EXT4_MAX_EXTENT_DEPTH, 'extent depth');

  setU16(bytes, eh_magic, EXT4_EXT_MAGIC);
  setU16(bytes, eh_entries, count);
  setU16(bytes, eh_max, node.max);
  setU16(bytes, eh_depth, node.depth);
  setU32(bytes, eh_generation, node.generation);
  if (node.kind === 'leaf') {
    node.extents.forEach((e, i) => {
      const o = EXTENT_HEADER_SIZE + i * EXTENT_ENTRY_SIZE;
      const maxLen = e.unwritten ? EXT_UNWRITTEN_MAX_LEN : EXT_INIT_MAX_LEN;
      assert(Number.isInteger(e.countBlocks) && e.countBlocks >= 1 && e.countBlocks <= maxLen, `extent length ${e.countBlocks}`);
      assert(e.fileBlock >= 0 && e.fileBlock + e.countBlocks <= EXT_MAX_LOGICAL_END, 'extent logical range');
      assert(Number.isSafeInteger(e.fsBlock) && e.fsBlock >= 0 && e.fsBlock < 2 ** 48, 'extent start');
      setU32(bytes, o + ee_block, e.fileBlock);
      setU16(bytes, o + ee_len, e.unwritten ? e.countBlocks + EXT_INIT_MAX_LEN : e.countBlocks);
      setU16(bytes, o + ee_start_hi, hi32(e.fsBlock));
      setU32(bytes, o + ee_start_lo, e.fsBlock % 0x1_0000_0000);
    });
  } else {
    node.indexes.forEach((x, i) => {
      const o = EXTENT_HEADER_SIZE + i * EXTENT_ENTRY_SIZE;
      assert(x.fileBlock >= 0 && x.fileBlock < EXT_MAX_LOGICAL_END, 'index key');
      assert(Number.isSafeInteger(x.child) && x.child >= 0 && x.child < 2 ** 48, 'index child');
      setU32(bytes, o + ei_block, x.fileBlock);
      setU32(bytes, o + ei_leaf_lo, x.child % 0x1_0000_0000);
      setU16(bytes, o + ei_leaf_hi, hi32(x.child));
    });
  }
  if (!opts.isRoot && opts.inodeSeed !== undefined) {
    setU32(bytes, extentTailOffset(node.max), extentBlockChecksum(bytes, node.max, opts.inodeSeed));
  }
}

/** Whether i_block starts like an extent root (used to tell formats apart, not to validate). */
export function hasExtentMagic(iBlock: Uint8Array): boolean {
  return iBlock.length >= 2 && u16(iBlock, eh_magic) === EXT4_EXT_MAGIC;
}
