// Linear directory blocks: ext4_dir_entry(_2) records, the 12-byte checksum tail, and the
// dirent arrays of inline-data directories (Documentation/filesystems/ext4/directory.rst,
// "Linear (Classic) Directories"; inlinedata.rst, "Inline Directories").

import { assert, badChecksum, corrupt, type Ext4ErrorWhere } from '../errors/ext4-error.ts';
import { setU16, setU32, u16, u32 } from '../util/bytes.ts';
import { crc32cUpdate } from '../util/crc.ts';

/** Directory entry file types (ext4_dir_entry_2.file_type). */
export const FT_UNKNOWN = 0;
export const FT_REG_FILE = 1;
export const FT_REG = FT_REG_FILE;
export const FT_DIR = 2;
export const FT_CHRDEV = 3;
export const FT_BLKDEV = 4;
export const FT_FIFO = 5;
export const FT_SOCK = 6;
export const FT_SYMLINK = 7;
export const FT_MAX = 8;
/** file_type of the checksum tail's fake entry. */
export const FT_DIR_CSUM = 0xde;

export const EXT4_NAME_LEN = 255;
/** inode + rec_len + name_len + file_type. */
export const DIRENT_HEADER_LEN = 8;
/** sizeof(struct ext4_dir_entry_tail). */
export const DIR_TAIL_LEN = 12;
/** Smallest record the kernel accepts: a header plus a 1-byte name, rounded to 4. */
export const DIRENT_MIN_REC_LEN = 12;
/** Marks a whole-block rec_len when the block is 64 KiB (see decodeRecLen). */
export const EXT4_MAX_REC_LEN = 65535;
/** Inline directories: i_block starts with the parent's inode number. */
export const INLINE_DOTDOT_SIZE = 4;
export const INLINE_IBLOCK_SIZE = 60;

export interface DirEntry {
  inode: number;
  /** Decoded record length in bytes (already expanded for 64 KiB+ blocks). */
  recLen: number;
  nameLen: number;
  fileType: number;
  name: Uint8Array;
  /** Byte offset of the record inside the buffer it was decoded from. */
  offset: number;
}

export interface DirBlockOpts {
  blockSize: number;
  /** INCOMPAT_FILETYPE: name_len is u8 + file_type u8; otherwise name_len is u16. */
  filetype: boolean;
  /** metadata_csum: a checksum tail is required. Defaults to `csumInodeSeed !== undefined`. */
  metadataCsum?: boolean;
  /** Per-inode checksum seed; when given the tail checksum is verified (decode) or set (encode). */
  csumInodeSeed?: number;
  /** s_inodes_count; when given, entry inode numbers above it are corrupt. */
  inodesCount?: number;
  where?: Ext4ErrorWhere;
}

export interface EncodeDirBlockOpts {
  blockSize: number;
  filetype: boolean;
  /** Write a checksum tail. Defaults to `csumInodeSeed !== undefined`. */
  metadataCsum?: boolean;
  /** When given the tail checksum is computed; otherwise the tail holds checksum 0. */
  csumInodeSeed?: number;
  /**
   * Leave bytes that carry no information (after each name up to its rec_len) as they are in
   * `block`, for in-place edits. Default false: every byte is written, slack zeroed.
   */
  keepSlack?: boolean;
}

export interface DecodedDirBlock {
  entries: DirEntry[];
  hasTail: boolean;
  /** The stored tail checksum, when there is a tail. */
  checksum?: number;
}

/** rec_len needed for a name of `nameLen` bytes: 8-byte header + name, rounded up to 4. */
export function direntRecLenFor(nameLen: number): number {
  return (DIRENT_HEADER_LEN + nameLen + 3) & ~3;
}

/**
 * On-disk rec_len → bytes. Blocks of 64 KiB and more cannot hold the length in 16 bits: there a
 * stored 65535 or 0 means "the whole block", and the two low bits carry bits 16..17.
 */
export function decodeRecLen(raw: number, blockSize: number): number {
  if (blockSize < 65536) return raw;
  if (raw === EXT4_MAX_REC_LEN || raw === 0) return blockSize;
  return (raw & 65532) | ((raw & 3) << 16);
}

/** Bytes → on-disk rec_len; the inverse of decodeRecLen. */
export function encodeRecLen(len: number, blockSize: number): number {
  assert(Number.isInteger(len) && len >= 0 && len % 4 === 0, `rec_len ${len} is not a multiple of 4`);
  if (len < 65536) return len;
  assert(len <= blockSize && len < 1 << 18, `rec_len ${len} cannot be encoded for block size ${blockSize}`);
  if (len === blockSize) return blockSize === 65536 ? EXT4_MAX_REC_LEN : 0;
  return (len & 65532) | ((len >>> 16) & 3);
}

interface RegionOpts {
  filetype: boolean;
  blockSize: number;
  inodesCount?: number;
  where?: Ext4ErrorWhere;
}

/**
 * Decodes the record chain covering bytes [start, end) of `buf`; records must tile it exactly.
 * With `tailOff`, a chain that lands exactly on a checksum tail there stops before it.
 */
function decodeRegion(buf: Uint8Array, start: number, end: number, o: RegionOpts, tailOff = -1): { entries: DirEntry[]; tail: boolean } {
  const entries: DirEntry[] = [];
  let off = start;
  while (off < end) {
    if (off === tailOff && isTailAt(buf, off)) return { entries, tail: true };
    if (end - off < DIRENT_HEADER_LEN) {
      throw corrupt('dirent-rec-len-overrun', `directory entry header at offset ${off} crosses the end (${end})`, o.where);
    }
    const inode = u32(buf, off);
    const recLen = decodeRecLen(u16(buf, off + 4), o.blockSize);
    let nameLen: number;
    let fileType: number;
    if (o.filetype) {
      nameLen = buf[off + 6]!;
      fileType = buf[off + 7]!;
    } else {
      nameLen = u16(buf, off + 6);
      fileType = FT_UNKNOWN;
    }
    if (recLen % 4 !== 0) {
      throw corrupt('dirent-rec-len-align', `rec_len ${recLen} at offset ${off} is not a multiple of 4`, o.where);
    }
    if (recLen < DIRENT_MIN_REC_LEN) {
      throw corrupt('dirent-rec-len-min', `rec_len ${recLen} at offset ${off} is below the minimum ${DIRENT_MIN_REC_LEN}`, o.where);
    }
    if (recLen > end - off) {
      throw corrupt('dirent-rec-len-overrun', `rec_len ${recLen} at offset ${off} runs past the end (${end})`, o.where);
    }
    if (nameLen > EXT4_NAME_LEN) {
      throw corrupt('dirent-name-len', `name_len ${nameLen} at offset ${off} exceeds ${EXT4_NAME_LEN}`, o.where);
    }
    if (direntRecLenFor(nameLen) > recLen) {
      throw corrupt('dirent-name-len', `name_len ${nameLen} at offset ${off} does not fit rec_len ${recLen}`, o.where);
    }
    if (o.inodesCount !== undefined && inode > o.inodesCount) {
      throw corrupt('dirent-inode-range', `entry at offset ${off} names inode ${inode} beyond the inode count ${o.inodesCount}`, o.where);
    }
    entries.push({
      inode, recLen, nameLen, fileType,
      name: buf.slice(off + DIRENT_HEADER_LEN, off + DIRENT_HEADER_LEN + nameLen),
      offset: off,
    });
    off += recLen;
  }
  return { entries, tail: false };
}

function encodeRegion(entries: readonly DirEntry[], buf: Uint8Array, start: number, end: number,
  o: { filetype: boolean; blockSize: number; keepSlack?: boolean }): void {
  let off = start;
  for (const e of entries) {
    assert(e.nameLen === e.name.length && e.nameLen <= EXT4_NAME_LEN, 'dirent name length mismatch');
    assert(e.recLen >= direntRecLenFor(e.nameLen) && e.recLen % 4 === 0 && off + e.recLen <= end,
      `dirent rec_len ${e.recLen} at offset ${off} does not fit`);
    setU32(buf, off, e.inode);
    setU16(buf, off + 4, encodeRecLen(e.recLen, o.blockSize));
    if (o.filetype) {
      buf[off + 6] = e.nameLen;
      buf[off + 7] = e.fileType & 0xff;
    } else {
      setU16(buf, off + 6, e.nameLen);
    }
    buf.set(e.name, off + DIRENT_HEADER_LEN);
    if (!o.keepSlack) buf.fill(0, off + DIRENT_HEADER_LEN + e.nameLen, off + e.recLen);
    off += e.recLen;
  }
  assert(off === end, `dirents cover ${off - start} bytes, expected ${end - start}`);
}

/** Whether the 12 bytes at `off` are a checksum tail (inode 0, rec_len 12, name_len 0, 0xDE). */
function isTailAt(block: Uint8Array, off: number): boolean {
  return u32(block, off) === 0 && u16(block, off + 4) === DIR_TAIL_LEN &&
    block[off + 6] === 0 && block[off + 7] === FT_DIR_CSUM;
}

function checkBlockArgs(block: Uint8Array, blockSize: number): void {
  assert(Number.isInteger(blockSize) && blockSize >= 1024 && blockSize % 4 === 0, `bad block size ${blockSize}`);
  assert(block.length >= blockSize, `directory block buffer is ${block.length} bytes, block size ${blockSize}`);
}

/** crc32c of everything before the tail, seeded with the directory inode's checksum seed. */
export function dirBlockChecksum(block: Uint8Array, inodeSeed: number, blockSize: number = block.length): number {
  return crc32cUpdate(inodeSeed, block, 0, blockSize - DIR_TAIL_LEN);
}

/** Writes the checksum tail's fake entry and its checksum over the rest of the block. */
export function setDirBlockTail(block: Uint8Array, inodeSeed: number, blockSize: number = block.length): void {
  checkBlockArgs(block, blockSize);
  const t = blockSize - DIR_TAIL_LEN;
  setU32(block, t, 0);
  setU16(block, t + 4, DIR_TAIL_LEN);
  block[t + 6] = 0;
  block[t + 7] = FT_DIR_CSUM;
  setU32(block, t + 8, dirBlockChecksum(block, inodeSeed, blockSize));
}

/**
 * Decodes one leaf directory block. Deleted records (inode 0) are kept so that the result
 * re-encodes to the same bytes; the checksum tail is reported by `hasTail`, not as an entry.
 * A tail is recognised wherever the record chain lands on one, with or without metadata_csum.
 */
export function decodeDirBlock(block: Uint8Array, opts: DirBlockOpts): DecodedDirBlock {
  const { blockSize } = opts;
  checkBlockArgs(block, blockSize);
  const csum = opts.metadataCsum ?? opts.csumInodeSeed !== undefined;
  const tailOff = blockSize - DIR_TAIL_LEN;
  const { entries, tail } = decodeRegion(block, 0, blockSize, opts, tailOff);
  if (!tail) {
    if (csum) throw corrupt('dirent-tail-missing', 'directory block has no checksum tail', opts.where);
    return { entries, hasTail: false };
  }
  const stored = u32(block, tailOff + 8);
  if (opts.csumInodeSeed !== undefined && dirBlockChecksum(block, opts.csumInodeSeed, blockSize) !== stored) {
    throw badChecksum('dirent', opts.where);
  }
  return { entries, hasTail: true, checksum: stored };
}

/**
 * Encodes `entries` (which must tile the block, or the block minus the tail) into `block`.
 * With metadataCsum the tail is written; its checksum is computed when csumInodeSeed is given.
 */
export function encodeDirBlock(entries: readonly DirEntry[], block: Uint8Array, opts: EncodeDirBlockOpts): void {
  const { blockSize } = opts;
  checkBlockArgs(block, blockSize);
  const csum = opts.metadataCsum ?? opts.csumInodeSeed !== undefined;
  const end = csum ? blockSize - DIR_TAIL_LEN : blockSize;
  encodeRegion(entries, block, 0, end, opts);
  if (csum) {
    if (opts.csumInodeSeed !== undefined) {
      setDirBlockTail(block, opts.csumInodeSeed, blockSize);
    } else {
      setU32(block, end, 0);
      setU16(block, end + 4, DIR_TAIL_LEN);
      block[end + 6] = 0;
      block[end + 7] = FT_DIR_CSUM;
      setU32(block, end + 8, 0);
    }
  }
}

/**
 * In-place insertion into a directory block's bytes (records [0, end)), for a block the caller
 * has already validated: the offset of the first record with room for a `nameLen`-byte name — a
 * deleted record's whole length counts, a live one offers what lies past its own name — or -1.
 */
export function findDirSlot(block: Uint8Array, nameLen: number, end: number, blockSize: number): number {
  const need = direntRecLenFor(nameLen);
  for (let off = 0; off + DIRENT_HEADER_LEN <= end;) {
    const recLen = decodeRecLen(block[off + 4]! | (block[off + 5]! << 8), blockSize);
    if (recLen < DIRENT_MIN_REC_LEN || off + recLen > end) return -1;
    const live = (block[off]! | block[off + 1]! | block[off + 2]! | block[off + 3]!) !== 0;
    if (recLen - (live ? direntRecLenFor(block[off + 6]!) : 0) >= need) return off;
    off += recLen;
  }
  return -1;
}

/**
 * Puts a record for (ino, name, fileType) at the slot findDirSlot returned: a live record there
 * keeps its name and gives up its slack, a deleted one is taken over whole.
 */
export function insertDirent(block: Uint8Array, slot: number, ino: number, name: Uint8Array, fileType: number,
  opts: { blockSize: number; filetype: boolean }): void {
  const { blockSize } = opts;
  let at = slot;
  let recLen = decodeRecLen(block[slot + 4]! | (block[slot + 5]! << 8), blockSize);
  if ((block[slot]! | block[slot + 1]! | block[slot + 2]! | block[slot + 3]!) !== 0) {
    const used = direntRecLenFor(block[slot + 6]!);
    setU16(block, slot + 4, encodeRecLen(used, blockSize));
    at = slot + used;
    recLen -= used;
  }
  setU32(block, at, ino);
  setU16(block, at + 4, encodeRecLen(recLen, blockSize));
  block[at + 6] = name.length;
  block[at + 7] = opts.filetype ? fileType & 0xff : 0;
  block.set(name, at + DIRENT_HEADER_LEN);
  block.fill(0, at + DIRENT_HEADER_LEN + name.length, at + recLen);
}

// ---- Inline-data directories ---------------------------------------------------------------
// i_block (60 bytes) = parent inode (4) + a 56-byte dirent array; the "system.data" xattr value,
// when non-empty, is a second dirent array. Records never span the two and there is no tail
// (the inode checksum covers both). '.' and '..' are not stored as records.

export interface InlineDirOpts {
  filetype: boolean;
  inodesCount?: number;
  where?: Ext4ErrorWhere;
}

export interface InlineDirHead {
  parent: number;
  /** Records of the i_block part; offsets are relative to the start of i_block. */
  entries: DirEntry[];
}

const inlineRegion = (o: InlineDirOpts): RegionOpts => ({
  filetype: o.filetype, blockSize: 0, inodesCount: o.inodesCount, where: o.where,
});

/** Decodes the i_block part of an inline directory: parent inode, then records to byte 60. */
export function decodeInlineDirHead(iblock: Uint8Array, opts: InlineDirOpts): InlineDirHead {
  if (iblock.length < INLINE_IBLOCK_SIZE) {
    throw corrupt('inline-dir-size', `inline directory i_block is ${iblock.length} bytes`, opts.where);
  }
  const parent = u32(iblock, 0);
  if (opts.inodesCount !== undefined && parent > opts.inodesCount) {
    throw corrupt('dirent-inode-range', `inline directory parent ${parent} beyond the inode count ${opts.inodesCount}`, opts.where);
  }
  return { parent, entries: decodeRegion(iblock, INLINE_DOTDOT_SIZE, INLINE_IBLOCK_SIZE, inlineRegion(opts)).entries };
}

/** Decodes the system.data xattr value of an inline directory (records only; may be empty). */
export function decodeInlineDirEntries(value: Uint8Array, opts: InlineDirOpts): DirEntry[] {
  return decodeRegion(value, 0, value.length, inlineRegion(opts)).entries;
}

/** Both parts of an inline directory. */
export function decodeInlineDir(
  iblock: Uint8Array,
  opts: InlineDirOpts & { xattrValue?: Uint8Array },
): { parent: number; entries: DirEntry[]; xattrEntries: DirEntry[] } {
  const head = decodeInlineDirHead(iblock, opts);
  const xattrEntries = opts.xattrValue ? decodeInlineDirEntries(opts.xattrValue, opts) : [];
  return { parent: head.parent, entries: head.entries, xattrEntries };
}

export function encodeInlineDirHead(head: { parent: number; entries: readonly DirEntry[] }, iblock: Uint8Array,
  opts: { filetype: boolean; keepSlack?: boolean }): void {
  assert(iblock.length >= INLINE_IBLOCK_SIZE, 'inline i_block buffer too small');
  setU32(iblock, 0, head.parent);
  encodeRegion(head.entries, iblock, INLINE_DOTDOT_SIZE, INLINE_IBLOCK_SIZE, { ...opts, blockSize: 0 });
}

export function encodeInlineDirEntries(entries: readonly DirEntry[], value: Uint8Array,
  opts: { filetype: boolean; keepSlack?: boolean }): void {
  encodeRegion(entries, value, 0, value.length, { ...opts, blockSize: 0 });
}
