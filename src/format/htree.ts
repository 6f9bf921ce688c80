// Hash-tree (dx) index blocks: dx_root in a directory's first block, dx_node interior blocks, and
// the dx_tail checksum (Documentation/filesystems/ext4/directory.rst, "Hash Tree Directories").

import { assert, badChecksum, corrupt, type Ext4ErrorWhere } from '../errors/ext4-error.ts';
import { setU16, setU32, u16, u32 } from '../util/bytes.ts';
import { crc32cUpdate } from '../util/crc.ts';
import { DX_HASH_HALF_MD4, DX_HASH_LEGACY, DX_HASH_SIPHASH, DX_HASH_TEA } from './dir-hash.ts';
import { decodeRecLen, encodeRecLen, FT_DIR } from './dirent.ts';

/** dx_root: '.' (12 bytes) + '..' (12 bytes) + dx_root_info (8 bytes), then the count/limit. */
export const DX_ROOT_INFO_OFFSET = 24;
export const DX_ROOT_INFO_LENGTH = 8;
export const DX_ROOT_COUNT_OFFSET = 32;
/** dx_node: a fake empty dirent header (8 bytes), then the count/limit. */
export const DX_NODE_COUNT_OFFSET = 8;
export const DX_ENTRY_SIZE = 8;
/** struct dx_tail: dt_reserved u32, dt_checksum u32. */
export const DX_TAIL_SIZE = 8;
/** dx_root_info.unused_flags bit the kernel refuses ("unimplemented hash flags"). */
export const DX_FLAG_UNIMPLEMENTED = 1;
/** indirect_levels must stay below these (tree depth 2, or 3 with INCOMPAT_LARGEDIR). */
export const DX_HTREE_LEVEL_COMPAT = 2;
export const DX_HTREE_LEVEL_LARGEDIR = 3;

/**
 * One index entry. entries[0] has no stored hash (its slot holds limit/count) and stands for
 * hash 0; its `block` is the dx_countlimit's block field. Blocks are logical, within the dir.
 */
export interface DxEntry {
  hash: number;
  block: number;
}

export interface DxRoot {
  dotInode: number;
  dotFileType: number;
  dotdotInode: number;
  dotdotFileType: number;
  hashVersion: number;
  infoLength: number;
  indirectLevels: number;
  unusedFlags: number;
  limit: number;
  /** entries.length === count (the count includes entries[0]). */
  entries: DxEntry[];
  /** Stored dx_tail checksum, when metadata_csum. */
  checksum?: number;
  /**
   * dx_tail.dt_reserved. Not always zero: when the kernel converts a linear block into a root
   * in place, the old dirent tail's bytes remain there (and are covered by the checksum).
   */
  tailReserved?: number;
}

export interface DxNode {
  limit: number;
  entries: DxEntry[];
  checksum?: number;
  tailReserved?: number;
}

export interface DxOpts {
  blockSize: number;
  /** INCOMPAT_FILETYPE: whether the '.'/'..' records of the root carry a file_type byte. */
  filetype?: boolean;
  /** metadata_csum: limits leave room for a dx_tail. Defaults to `csumInodeSeed !== undefined`. */
  metadataCsum?: boolean;
  /** Per-inode checksum seed; when given the dx_tail checksum is verified / computed. */
  csumInodeSeed?: number;
  /** INCOMPAT_LARGEDIR: allows a third index level. */
  largeDir?: boolean;
  /** Number of blocks in the directory; when given, entry blocks at or past it are corrupt. */
  dirBlocks?: number;
  where?: Ext4ErrorWhere;
}

export interface DxEncodeOpts {
  blockSize: number;
  filetype?: boolean;
  metadataCsum?: boolean;
  csumInodeSeed?: number;
  /** Leave unused index slots (past `count`) as they are in `block`, for in-place edits. */
  keepSlack?: boolean;
}

const csumOn = (o: { metadataCsum?: boolean; csumInodeSeed?: number }): boolean =>
  o.metadataCsum ?? o.csumInodeSeed !== undefined;

/** Number of dx_entry slots (including the count/limit header) in a root block. */
export function dxRootLimit(blockSize: number, metadataCsum: boolean): number {
  return Math.floor((blockSize - DX_ROOT_COUNT_OFFSET - (metadataCsum ? DX_TAIL_SIZE : 0)) / DX_ENTRY_SIZE);
}

/** Number of dx_entry slots (including the count/limit header) in an interior node block. */
export function dxNodeLimit(blockSize: number, metadataCsum: boolean): number {
  return Math.floor((blockSize - DX_NODE_COUNT_OFFSET - (metadataCsum ? DX_TAIL_SIZE : 0)) / DX_ENTRY_SIZE);
}

const ZERO_CSUM = new Uint8Array(4);

/**
 * The dx_tail checksum: crc32c over the block from its start through the `count` used entries,
 * then over the whole dx_tail (which sits right after `limit` entry slots) with its checksum
 * field taken as zero. Unused slots between count and limit are not covered.
 */
export function dxChecksum(block: Uint8Array, countOffset: number, count: number, limit: number, inodeSeed: number): number {
  const tail = countOffset + limit * DX_ENTRY_SIZE;
  let c = crc32cUpdate(inodeSeed, block, 0, countOffset + count * DX_ENTRY_SIZE);
  c = crc32cUpdate(c, block, tail, tail + 4);
  return crc32cUpdate(c, ZERO_CSUM);
}

/** Recomputes and stores the dx_tail checksum of an encoded root or node block in place (dt_reserved kept). */
export function setDxTail(block: Uint8Array, kind: 'root' | 'node', inodeSeed: number): void {
  const countOffset = kind === 'root' ? DX_ROOT_COUNT_OFFSET : DX_NODE_COUNT_OFFSET;
  const limit = u16(block, countOffset);
  const count = u16(block, countOffset + 2);
  const tail = countOffset + limit * DX_ENTRY_SIZE;
  assert(count <= limit && tail + DX_TAIL_SIZE <= block.length, 'dx block has no room for its tail');
  setU32(block, tail + 4, dxChecksum(block, countOffset, count, limit, inodeSeed));
}

/** Index of the entry to follow for `hash`: the last one whose hash is <= it. */
export function dxFindEntry(entries: readonly DxEntry[], hash: number): number {
  let lo = 1;
  let hi = entries.length - 1;
  let found = 0;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (entries[mid]!.hash <= hash) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return found;
}

function checkArgs(block: Uint8Array, blockSize: number): void {
  assert(Number.isInteger(blockSize) && blockSize >= 1024 && blockSize % 4 === 0, `bad block size ${blockSize}`);
  assert(block.length >= blockSize, `dx block buffer is ${block.length} bytes, block size ${blockSize}`);
}

/** Shared count/limit/entries/tail decoding for root and node. */
interface DxIndex { limit: number; entries: DxEntry[]; checksum?: number; tailReserved?: number }

function decodeIndex(block: Uint8Array, countOffset: number, expectedLimit: number, opts: DxOpts): DxIndex {
  const where = opts.where;
  const limit = u16(block, countOffset);
  const count = u16(block, countOffset + 2);
  if (limit !== expectedLimit) {
    throw corrupt('dx-limit', `dx limit ${limit}, expected ${expectedLimit} for this block size`, where);
  }
  if (count === 0 || count > limit) {
    throw corrupt('dx-count', `dx count ${count} outside 1..${limit}`, where);
  }
  const entries: DxEntry[] = [{ hash: 0, block: u32(block, countOffset + 4) }];
  for (let i = 1; i < count; i++) {
    const off = countOffset + i * DX_ENTRY_SIZE;
    const hash = u32(block, off);
    if (hash < entries[i - 1]!.hash) {
      throw corrupt('dx-hash-order', `dx entry ${i} hash 0x${hash.toString(16)} is below its predecessor`, where);
    }
    entries.push({ hash, block: u32(block, off + 4) });
  }
  if (opts.dirBlocks !== undefined) {
    for (const e of entries) {
      if (e.block === 0 || e.block >= opts.dirBlocks) {
        throw corrupt('dx-block-range', `dx entry points at directory block ${e.block} of ${opts.dirBlocks}`, where);
      }
    }
  }
  if (!csumOn(opts)) return { limit, entries };
  const tail = countOffset + limit * DX_ENTRY_SIZE;
  const stored = u32(block, tail + 4);
  if (opts.csumInodeSeed !== undefined && dxChecksum(block, countOffset, count, limit, opts.csumInodeSeed) !== stored) {
    throw badChecksum('htree', where);
  }
  return { limit, entries, checksum: stored, tailReserved: u32(block, tail) };
}

function encodeIndex(x: Readonly<DxIndex>, block: Uint8Array,
  countOffset: number, blockSize: number, opts: DxEncodeOpts): void {
  const count = x.entries.length;
  assert(count >= 1 && count <= x.limit, `dx count ${count} outside 1..${x.limit}`);
  const csum = csumOn(opts);
  const tail = countOffset + x.limit * DX_ENTRY_SIZE;
  assert(tail + (csum ? DX_TAIL_SIZE : 0) <= blockSize, `dx limit ${x.limit} does not fit the block`);
  setU16(block, countOffset, x.limit);
  setU16(block, countOffset + 2, count);
  setU32(block, countOffset + 4, x.entries[0]!.block);
  for (let i = 1; i < count; i++) {
    const off = countOffset + i * DX_ENTRY_SIZE;
    setU32(block, off, x.entries[i]!.hash);
    setU32(block, off + 4, x.entries[i]!.block);
  }
  if (!opts.keepSlack) block.fill(0, countOffset + count * DX_ENTRY_SIZE, blockSize);
  if (csum) {
    setU32(block, tail, x.tailReserved ?? 0);
    if (opts.csumInodeSeed !== undefined) {
      setU32(block, tail + 4, dxChecksum(block, countOffset, count, x.limit, opts.csumInodeSeed));
    } else {
      setU32(block, tail + 4, x.checksum ?? 0);
    }
  }
}

/** Decodes and validates a dx_root block. */
export function decodeDxRoot(block: Uint8Array, opts: DxOpts): DxRoot {
  const { blockSize, where } = opts;
  checkArgs(block, blockSize);
  const filetype = opts.filetype ?? true;
  const nameLenAt = (off: number): number => (filetype ? block[off + 6]! : u16(block, off + 6));
  const fileTypeAt = (off: number): number => (filetype ? block[off + 7]! : 0);

  if (decodeRecLen(u16(block, 4), blockSize) !== 12 || nameLenAt(0) !== 1 || block[8] !== 0x2e) {
    throw corrupt('dx-root-dot', "dx_root does not start with a 12-byte '.' record", where);
  }
  if (decodeRecLen(u16(block, 16), blockSize) !== blockSize - 12 || nameLenAt(12) !== 2 ||
    block[20] !== 0x2e || block[21] !== 0x2e) {
    throw corrupt('dx-root-dotdot', "dx_root '..' record must cover the rest of the block", where);
  }
  const reservedZero = u32(block, DX_ROOT_INFO_OFFSET);
  const hashVersion = block[DX_ROOT_INFO_OFFSET + 4]!;
  const infoLength = block[DX_ROOT_INFO_OFFSET + 5]!;
  const indirectLevels = block[DX_ROOT_INFO_OFFSET + 6]!;
  const unusedFlags = block[DX_ROOT_INFO_OFFSET + 7]!;
  if (reservedZero !== 0) {
    throw corrupt('dx-root-reserved', `dx_root_info.reserved_zero is ${reservedZero}`, where);
  }
  if (infoLength !== DX_ROOT_INFO_LENGTH) {
    throw corrupt('dx-root-info-length', `dx_root_info.info_length is ${infoLength}, expected 8`, where);
  }
  if (hashVersion !== DX_HASH_LEGACY && hashVersion !== DX_HASH_HALF_MD4 && hashVersion !== DX_HASH_TEA &&
    hashVersion !== DX_HASH_SIPHASH) {
    throw corrupt('dx-root-hash-version', `unknown dx_root hash version ${hashVersion}`, where);
  }
  if (unusedFlags & DX_FLAG_UNIMPLEMENTED) {
    throw corrupt('dx-root-flags', `dx_root_info.unused_flags 0x${unusedFlags.toString(16)} has unimplemented bits`, where);
  }
  const maxLevels = opts.largeDir ? DX_HTREE_LEVEL_LARGEDIR : DX_HTREE_LEVEL_COMPAT;
  if (indirectLevels >= maxLevels) {
    throw corrupt('dx-root-levels', `dx_root indirect_levels ${indirectLevels} must be below ${maxLevels}`, where);
  }
  const idx = decodeIndex(block, DX_ROOT_COUNT_OFFSET, dxRootLimit(blockSize, csumOn(opts)), opts);
  const root: DxRoot = {
    dotInode: u32(block, 0),
    dotFileType: fileTypeAt(0),
    dotdotInode: u32(block, 12),
    dotdotFileType: fileTypeAt(12),
    hashVersion, infoLength, indirectLevels, unusedFlags,
    limit: idx.limit,
    entries: idx.entries,
  };
  if (idx.checksum !== undefined) {
    root.checksum = idx.checksum;
    root.tailReserved = idx.tailReserved!;
  }
  return root;
}

/** Decodes and validates a dx_node (interior index) block. */
export function decodeDxNode(block: Uint8Array, opts: DxOpts): DxNode {
  const { blockSize, where } = opts;
  checkArgs(block, blockSize);
  if (u32(block, 0) !== 0) {
    throw corrupt('dx-node-inode', `dx_node fake entry has inode ${u32(block, 0)}, expected 0`, where);
  }
  if (decodeRecLen(u16(block, 4), blockSize) !== blockSize) {
    throw corrupt('dx-node-rec-len', 'dx_node fake entry must cover the whole block', where);
  }
  const idx = decodeIndex(block, DX_NODE_COUNT_OFFSET, dxNodeLimit(blockSize, csumOn(opts)), opts);
  const node: DxNode = { limit: idx.limit, entries: idx.entries };
  if (idx.checksum !== undefined) {
    node.checksum = idx.checksum;
    node.tailReserved = idx.tailReserved!;
  }
  return node;
}

function writeDotRecord(block: Uint8Array, off: number, inode: number, recLen: number, name: string,
  fileType: number, blockSize: number, o: DxEncodeOpts): void {
  setU32(block, off, inode);
  setU16(block, off + 4, encodeRecLen(recLen, blockSize));
  if (o.filetype ?? true) {
    block[off + 6] = name.length;
    block[off + 7] = fileType;
  } else {
    setU16(block, off + 6, name.length);
  }
  block.fill(0, off + 8, off + 12);
  for (let i = 0; i < name.length; i++) block[off + 8 + i] = 0x2e;
}

/** Encodes a dx_root; `root.limit` is written as given (use dxRootLimit for new roots). */
export function encodeDxRoot(root: DxRoot, block: Uint8Array, opts: DxEncodeOpts): void {
  const { blockSize } = opts;
  checkArgs(block, blockSize);
  writeDotRecord(block, 0, root.dotInode, 12, '.', root.dotFileType, blockSize, opts);
  writeDotRecord(block, 12, root.dotdotInode, blockSize - 12, '..', root.dotdotFileType, blockSize, opts);
  setU32(block, DX_ROOT_INFO_OFFSET, 0);
  block[DX_ROOT_INFO_OFFSET + 4] = root.hashVersion;
  block[DX_ROOT_INFO_OFFSET + 5] = root.infoLength;
  block[DX_ROOT_INFO_OFFSET + 6] = root.indirectLevels;
  block[DX_ROOT_INFO_OFFSET + 7] = root.unusedFlags;
  encodeIndex(root, block, DX_ROOT_COUNT_OFFSET, blockSize, opts);
}

/** Encodes a dx_node; `node.limit` is written as given (use dxNodeLimit for new nodes). */
export function encodeDxNode(node: DxNode, block: Uint8Array, opts: DxEncodeOpts): void {
  const { blockSize } = opts;
  checkArgs(block, blockSize);
  setU32(block, 0, 0);
  setU16(block, 4, encodeRecLen(blockSize, blockSize));
  block[6] = 0;
  block[7] = 0;
  encodeIndex(node, block, DX_NODE_COUNT_OFFSET, blockSize, opts);
}

/** A fresh dx_root for a directory being indexed ('.' and '..' typed as directories). */
export function newDxRoot(dotInode: number, parentInode: number, hashVersion: number, firstLeaf: number,
  blockSize: number, metadataCsum: boolean): DxRoot {
  return {
    dotInode, dotFileType: FT_DIR, dotdotInode: parentInode, dotdotFileType: FT_DIR,
    hashVersion, infoLength: DX_ROOT_INFO_LENGTH, indirectLevels: 0, unusedFlags: 0,
    limit: dxRootLimit(blockSize, metadataCsum),
    entries: [{ hash: 0, block: firstLeaf }],
  };
}
