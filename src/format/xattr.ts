// Extended attributes on disk: the in-inode area after i_extra_isize and the external xattr
// block (Documentation/filesystems/ext4/attributes.rst), their entry/block hashes and checksum.

import { Ext4Error, corrupt, badChecksum, assert, type Ext4ErrorWhere } from '../errors/ext4-error.ts';
import { u8, u16, u32, setU16, setU32, decodeUtf8, encodeUtf8 } from '../util/bytes.ts';
import { crc32cUpdate } from '../util/crc.ts';

export const XATTR_MAGIC = 0xea020000;
/** struct ext4_xattr_header is 32 bytes; entries follow it. */
export const XATTR_BLOCK_HEADER_SIZE = 32;
/** The in-inode area starts with a 4-byte h_magic (struct ext4_xattr_ibody_header). */
export const XATTR_IBODY_HEADER_SIZE = 4;
/** Fixed part of struct ext4_xattr_entry, before e_name. */
export const XATTR_ENTRY_HEADER_SIZE = 16;
const GOOD_OLD_INODE_SIZE = 128;

// Header field offsets (struct ext4_xattr_header).
const h_magic = 0x0;
const h_refcount = 0x4;
const h_blocks = 0x8;
const h_hash = 0xc;
const h_checksum = 0x10;
// Entry field offsets (struct ext4_xattr_entry).
const e_name_len = 0x0;
const e_name_index = 0x1;
const e_value_offs = 0x2;
const e_value_inum = 0x4;
const e_value_size = 0x8;
const e_hash = 0xc;
const e_name = 0x10;

export const XATTR_INDEX_USER = 1;
export const XATTR_INDEX_POSIX_ACL_ACCESS = 2;
export const XATTR_INDEX_POSIX_ACL_DEFAULT = 3;
export const XATTR_INDEX_TRUSTED = 4;
export const XATTR_INDEX_SECURITY = 6;
export const XATTR_INDEX_SYSTEM = 7;
export const XATTR_INDEX_RICHACL = 8;

/** Name index → prefix stripped from the stored name. 2, 3 and 8 are whole names. */
const PREFIXES: ReadonlyMap<number, string> = new Map([
  [XATTR_INDEX_USER, 'user.'],
  [XATTR_INDEX_POSIX_ACL_ACCESS, 'system.posix_acl_access'],
  [XATTR_INDEX_POSIX_ACL_DEFAULT, 'system.posix_acl_default'],
  [XATTR_INDEX_TRUSTED, 'trusted.'],
  [XATTR_INDEX_SECURITY, 'security.'],
  [XATTR_INDEX_SYSTEM, 'system.'],
  [XATTR_INDEX_RICHACL, 'system.richacl'],
]);
/** Indices whose prefix is a complete name: their entries legitimately have e_name_len 0. */
const WHOLE_NAME_INDICES: ReadonlySet<number> = new Set([
  XATTR_INDEX_POSIX_ACL_ACCESS, XATTR_INDEX_POSIX_ACL_DEFAULT, XATTR_INDEX_RICHACL,
]);
/** Longest prefixes first, so "system.posix_acl_access" wins over "system.". */
const PREFIX_ORDER: ReadonlyArray<[number, string]> =
  [...PREFIXES.entries()].sort((a, b) => b[1].length - a[1].length);

/** `system.data` marks an inode with inline data. */
export const INLINE_DATA_XATTR = { nameIndex: XATTR_INDEX_SYSTEM, name: 'data' } as const;

export interface XattrEntry {
  nameIndex: number;
  /** Name suffix as stored (prefix of the index removed). */
  name: string;
  fullName: string;
  /** The value; empty when it lives in an EA inode (valueInum != 0): the caller reads it. */
  value: Uint8Array;
  /** Inode holding the value (ea_inode feature), 0 when the value is stored in place. */
  valueInum: number;
  /** e_value_size: equals value.length unless valueInum != 0. */
  valueSize: number;
  hash: number;
}

/** What the encoders need; a decoded XattrEntry satisfies it. */
export interface XattrEntryInput {
  nameIndex: number;
  name: string;
  value: Uint8Array;
  valueInum?: number;
  /** Required when valueInum != 0 (the size of the value held by the EA inode). */
  valueSize?: number;
  /** Only used for EA-inode entries, whose hash covers the EA inode's value hash. */
  hash?: number;
}

export interface XattrBlock {
  refcount: number;
  blocks: number;
  hash: number;
  checksum: number;
  entries: XattrEntry[];
}

/** On-disk size of an entry with a name of `nameLen` bytes: EXT4_XATTR_LEN, 4-byte padded. */
export const xattrEntrySize = (nameLen: number): number => (nameLen + XATTR_ENTRY_HEADER_SIZE + 3) & ~3;
/** On-disk size of a value of `len` bytes: EXT4_XATTR_SIZE, 4-byte padded. */
export const xattrValueSize = (len: number): number => (len + 3) & ~3;

/** Maps a full attribute name to its index and stored suffix (index 0 keeps the whole name). */
export function splitXattrName(fullName: string): { nameIndex: number; name: string } {
  for (const [index, prefix] of PREFIX_ORDER) {
    if (WHOLE_NAME_INDICES.has(index)) {
      if (fullName === prefix) return { nameIndex: index, name: '' };
    } else if (fullName.startsWith(prefix) && fullName.length > prefix.length) {
      return { nameIndex: index, name: fullName.slice(prefix.length) };
    }
  }
  return { nameIndex: 0, name: fullName };
}

/** The full name; an unknown index yields the stored suffix alone. */
export function joinXattrName(nameIndex: number, name: string): string {
  return (PREFIXES.get(nameIndex) ?? '') + name;
}

/**
 * e_hash of an entry whose value is stored in place: the name bytes folded in with a 5-bit
 * rotate, then the value as little-endian 32-bit words (zero padded) with a 16-bit rotate.
 * Name bytes are unsigned by default; `signedChars` gives the variant old kernels computed on
 * architectures where char is signed (e2fsck accepts both).
 */
export function xattrEntryHash(name: Uint8Array | string, value: Uint8Array, signedChars = false): number {
  const nb = typeof name === 'string' ? encodeUtf8(name) : name;
  let hash = 0;
  for (let i = 0; i < nb.length; i++) {
    const c = signedChars ? (nb[i]! << 24) >> 24 : nb[i]!;
    hash = ((hash << 5) ^ (hash >>> 27) ^ c) >>> 0;
  }
  const words = xattrValueSize(value.length) >>> 2;
  for (let w = 0; w < words; w++) {
    const o = w * 4;
    const word = ((value[o] ?? 0) | ((value[o + 1] ?? 0) << 8) | ((value[o + 2] ?? 0) << 16) | ((value[o + 3] ?? 0) << 24)) >>> 0;
    hash = ((hash << 16) ^ (hash >>> 16) ^ word) >>> 0;
  }
  return hash;
}

/** h_hash of an xattr block: entry hashes folded with a 16-bit rotate; 0 if any entry hash is 0. */
export function xattrBlockHash(entries: ReadonlyArray<{ hash: number }>): number {
  let hash = 0;
  for (const e of entries) {
    if (e.hash === 0) return 0;
    hash = ((hash << 16) ^ (hash >>> 16) ^ e.hash) >>> 0;
  }
  return hash;
}

/** Block checksum: crc32c(fs seed, le64 block number, block with h_checksum zeroed). */
export function xattrBlockChecksum(block: Uint8Array, blockNo: number, csumSeed: number): number {
  const bn = new Uint8Array(8);
  setU32(bn, 0, blockNo % 0x1_0000_0000);
  setU32(bn, 4, Math.floor(blockNo / 0x1_0000_0000));
  let c = crc32cUpdate(csumSeed, bn);
  c = crc32cUpdate(c, block, 0, h_checksum);
  c = crc32cUpdate(c, new Uint8Array(4));
  return crc32cUpdate(c, block, h_checksum + 4, block.length);
}

/**
 * Walks an entry table starting at `first` with values relative to `valueBase`, the region
 * ending at `end` (the kernel's ext4_xattr_check_entries rules plus alignment and name_len).
 */
function decodeEntries(b: Uint8Array, first: number, valueBase: number, end: number, where: Ext4ErrorWhere | undefined): XattrEntry[] {
  const raw: Array<{ nameIndex: number; nameBytes: Uint8Array; offs: number; inum: number; size: number; hash: number }> = [];
  let p = first;
  // Every entry takes at least 16 bytes, which bounds the walk.
  for (;;) {
    if (p + 4 > end) throw corrupt('xattr-entry-bounds', 'xattr entry table runs past the end of its area', where);
    if (u32(b, p) === 0) break;
    if (p + XATTR_ENTRY_HEADER_SIZE > end) throw corrupt('xattr-entry-bounds', 'xattr entry runs past the end of its area', where);
    const nameLen = u8(b, p + e_name_len);
    const nameIndex = u8(b, p + e_name_index);
    const next = p + xattrEntrySize(nameLen);
    if (next + 4 > end) throw corrupt('xattr-entry-bounds', 'xattr entry name runs past the end of its area', where);
    if (nameLen === 0 && !WHOLE_NAME_INDICES.has(nameIndex)) {
      throw corrupt('xattr-name-len', `xattr entry with empty name (index ${nameIndex})`, where);
    }
    raw.push({
      nameIndex,
      nameBytes: b.subarray(p + e_name, p + e_name + nameLen),
      offs: u16(b, p + e_value_offs),
      inum: u32(b, p + e_value_inum),
      size: u32(b, p + e_value_size),
      hash: u32(b, p + e_hash),
    });
    p = next;
  }
  const tableEnd = p + 4;
  const out: XattrEntry[] = [];
  for (const r of raw) {
    const name = decodeUtf8(r.nameBytes);
    let value = new Uint8Array(0);
    if (r.inum === 0 && r.size !== 0) {
      const start = valueBase + r.offs;
      if (r.size > end - valueBase || r.offs > end - valueBase - r.size) {
        throw corrupt('xattr-value-bounds', `xattr value (offset ${r.offs}, size ${r.size}) runs past the end of its area`, where);
      }
      if (start < tableEnd) throw corrupt('xattr-value-overlap', `xattr value at offset ${r.offs} overlaps the entry table`, where);
      if ((r.offs & 3) !== 0) throw corrupt('xattr-value-align', `xattr value offset ${r.offs} is not 4-byte aligned`, where);
      value = b.slice(start, start + r.size);
    }
    out.push({
      nameIndex: r.nameIndex, name, fullName: joinXattrName(r.nameIndex, name), value,
      valueInum: r.inum, valueSize: r.size, hash: r.hash,
    });
  }
  return out;
}

function ibodyStart(inodeSize: number, extraIsize: number, where: Ext4ErrorWhere | undefined): number {
  if (!Number.isInteger(extraIsize) || extraIsize < 0 || (extraIsize & 3) !== 0 || GOOD_OLD_INODE_SIZE + extraIsize > inodeSize) {
    throw corrupt('xattr-extra-isize', `i_extra_isize ${extraIsize} does not fit a ${inodeSize}-byte inode`, where);
  }
  return GOOD_OLD_INODE_SIZE + extraIsize;
}

/**
 * Attributes stored after the inode's 128 + i_extra_isize bytes. No magic there simply means
 * none (how the kernel reads it). `inodeBytes` holds one on-disk inode of `inodeSize` bytes.
 */
export function decodeInodeXattrs(inodeBytes: Uint8Array, inodeSize: number, extraIsize: number, where?: Ext4ErrorWhere): XattrEntry[] {
  const base = ibodyStart(inodeSize, extraIsize, where);
  const end = Math.min(inodeSize, inodeBytes.length);
  if (base + XATTR_IBODY_HEADER_SIZE > end) return [];
  if (u32(inodeBytes, base) !== XATTR_MAGIC) return [];
  const first = base + XATTR_IBODY_HEADER_SIZE;
  return decodeEntries(inodeBytes, first, first, end, where);
}

/** An external xattr block; verifies its checksum when `csumSeed` (the fs checksum seed) is given. */
export function decodeXattrBlock(block: Uint8Array, opts: { blockNo: number; csumSeed?: number; where?: Ext4ErrorWhere }): XattrBlock {
  const where: Ext4ErrorWhere = { ...opts.where, block: opts.where?.block ?? opts.blockNo };
  if (block.length < XATTR_BLOCK_HEADER_SIZE + 4) throw corrupt('xattr-entry-bounds', 'xattr block too small', where);
  if (u32(block, h_magic) !== XATTR_MAGIC) throw corrupt('xattr-block-magic', 'bad xattr block magic', where);
  const blocks = u32(block, h_blocks);
  if (blocks !== 1) throw corrupt('xattr-block-count', `xattr block claims ${blocks} blocks`, where);
  const checksum = u32(block, h_checksum);
  if (opts.csumSeed !== undefined && xattrBlockChecksum(block, opts.blockNo, opts.csumSeed) !== checksum) {
    throw badChecksum('xattr-block', where);
  }
  return {
    refcount: u32(block, h_refcount),
    blocks,
    hash: u32(block, h_hash),
    checksum,
    entries: decodeEntries(block, XATTR_BLOCK_HEADER_SIZE, 0, block.length, where),
  };
}

interface Prepared { nameIndex: number; nameBytes: Uint8Array; value: Uint8Array; inum: number; size: number; hash: number }

function prepare(e: XattrEntryInput): Prepared {
  const nameBytes = encodeUtf8(e.name);
  if (nameBytes.length > 255) throw new Ext4Error('ERANGE', `xattr name too long: ${nameBytes.length} bytes`);
  if (!Number.isInteger(e.nameIndex) || e.nameIndex < 0 || e.nameIndex > 255) {
    throw new Ext4Error('EINVAL', `xattr name index out of range: ${e.nameIndex}`);
  }
  if (nameBytes.length === 0 && !WHOLE_NAME_INDICES.has(e.nameIndex)) throw new Ext4Error('EINVAL', 'empty xattr name');
  const inum = e.valueInum ?? 0;
  if (inum !== 0) {
    const size = e.valueSize ?? e.value.length;
    return { nameIndex: e.nameIndex, nameBytes, value: new Uint8Array(0), inum, size, hash: e.hash ?? 0 };
  }
  return { nameIndex: e.nameIndex, nameBytes, value: e.value, inum: 0, size: e.value.length, hash: 0 };
}

/**
 * Lays out the entry table from `first` and the values downwards from `end`, in entry order
 * (as both the kernel and e2fsprogs do for a freshly written set). An empty value gets the
 * current value boundary as its offset; an EA-inode entry gets offset 0.
 */
function encodeEntries(list: Prepared[], b: Uint8Array, first: number, valueBase: number, end: number, hashOf: (p: Prepared) => number): void {
  let tableEnd = first;
  let valuesBytes = 0;
  for (const p of list) {
    tableEnd += xattrEntrySize(p.nameBytes.length);
    if (p.inum === 0) valuesBytes += xattrValueSize(p.size);
  }
  if (tableEnd + 4 + valuesBytes > end) {
    throw new Ext4Error('ENOSPC', `xattrs need ${tableEnd + 4 + valuesBytes - first} bytes, ${end - first} available`);
  }
  let p = first;
  let valueEnd = end;
  for (const e of list) {
    let offs = 0;
    if (e.inum === 0) {
      valueEnd -= xattrValueSize(e.size);
      b.set(e.value, valueEnd);
      offs = valueEnd - valueBase;
      if (offs > 0xffff) throw new Ext4Error('EINVAL', 'xattr value offset does not fit 16 bits');
    }
    b[p + e_name_len] = e.nameBytes.length;
    b[p + e_name_index] = e.nameIndex;
    setU16(b, p + e_value_offs, offs);
    setU32(b, p + e_value_inum, e.inum);
    setU32(b, p + e_value_size, e.size);
    setU32(b, p + e_hash, hashOf(e));
    b.set(e.nameBytes, p + e_name);
    p += xattrEntrySize(e.nameBytes.length);
  }
}

/**
 * Writes the in-inode xattr area (everything after 128 + i_extra_isize up to inodeSize) in the
 * given order; no entries leaves the area zeroed without a magic. In-place values get e_hash 0,
 * as both the kernel and e2fsprogs write them; EA-inode entries keep their hash.
 * Throws ENOSPC when they do not fit.
 */
export function encodeInodeXattrs(entries: readonly XattrEntryInput[], inodeBytes: Uint8Array, inodeSize: number, extraIsize: number): void {
  const base = ibodyStart(inodeSize, extraIsize, undefined);
  assert(inodeBytes.length >= inodeSize, 'inode buffer shorter than the inode size');
  const list = entries.map(prepare);
  inodeBytes.fill(0, base, inodeSize);
  if (list.length === 0) return;
  if (base + XATTR_IBODY_HEADER_SIZE + 4 > inodeSize) throw new Ext4Error('ENOSPC', 'no in-inode xattr space');
  const first = base + XATTR_IBODY_HEADER_SIZE;
  const scratch = new Uint8Array(inodeSize);
  encodeEntries(list, scratch, first, first, inodeSize, (e) => (e.inum !== 0 ? e.hash : 0));
  setU32(scratch, base, XATTR_MAGIC);
  inodeBytes.set(scratch.subarray(base, inodeSize), base);
}

/** Sort order of block entries: e_name_index, then e_name_len, then the name bytes. */
function compareEntries(a: Prepared, b: Prepared): number {
  if (a.nameIndex !== b.nameIndex) return a.nameIndex - b.nameIndex;
  if (a.nameBytes.length !== b.nameBytes.length) return a.nameBytes.length - b.nameBytes.length;
  for (let i = 0; i < a.nameBytes.length; i++) {
    if (a.nameBytes[i] !== b.nameBytes[i]) return a.nameBytes[i]! - b.nameBytes[i]!;
  }
  return 0;
}

/**
 * Writes a whole xattr block: header, sorted entries with computed hashes, values from the end,
 * h_hash (computed unless `hash` is given: e2fsprogs 1.47 writes 0 there) and, when `csumSeed` is
 * given, h_checksum. Throws ENOSPC when the entries do not fit.
 */
export function encodeXattrBlock(
  entries: readonly XattrEntryInput[],
  block: Uint8Array,
  opts: { blockNo: number; csumSeed?: number; refcount?: number; hash?: number },
): void {
  const list = entries.map(prepare).sort(compareEntries);
  const scratch = new Uint8Array(block.length);
  const hashes = new Map<Prepared, number>();
  for (const e of list) hashes.set(e, e.inum !== 0 ? e.hash : xattrEntryHash(e.nameBytes, e.value));
  encodeEntries(list, scratch, XATTR_BLOCK_HEADER_SIZE, 0, block.length, (e) => hashes.get(e)!);
  setU32(scratch, h_magic, XATTR_MAGIC);
  setU32(scratch, h_refcount, opts.refcount ?? 1);
  setU32(scratch, h_blocks, 1);
  setU32(scratch, h_hash, opts.hash ?? xattrBlockHash(list.map((e) => ({ hash: hashes.get(e)! }))));
  if (opts.csumSeed !== undefined) setU32(scratch, h_checksum, xattrBlockChecksum(scratch, opts.blockNo, opts.csumSeed));
  block.set(scratch);
}
