// Quota files in the kernel's v2 format, revision 1 ("vfsv1"): a header and info block, a
// 4-level radix tree of 1 KiB blocks indexed by id bytes, and data blocks of 72-byte dquots.
// Encoding lays blocks out as e2fsprogs (mke2fs, e2fsck, tune2fs) does when it writes a fresh file.

import { Ext4Error, corrupt, unsupported, type Ext4ErrorWhere } from '../errors/ext4-error.ts';
import { u16, u32, u64, setU16, setU32, setU64 } from '../util/bytes.ts';

export type QuotaType = 'user' | 'group' | 'project';

export interface QuotaUsage {
  /** dqb_curspace, in bytes. */
  spaceBytes: number;
  /** dqb_curinodes. */
  inodes: number;
  /** Block limits; stored on disk in 1 KiB quota blocks (rounded up). */
  softBytes?: number;
  hardBytes?: number;
  softInodes?: number;
  hardInodes?: number;
  /** Grace deadlines (seconds since the epoch) once a soft limit is exceeded; 0 when unset. */
  btime?: number;
  itime?: number;
}

export interface QuotaFileInfo {
  version: number;
  /** dqi_bgrace / dqi_igrace, seconds. */
  blockGrace: number;
  inodeGrace: number;
  flags: number;
  /** dqi_blocks: 1 KiB blocks in use, including the header block and tree root. */
  blocks: number;
  freeBlock: number;
  freeEntry: number;
}

export const QUOTA_MAGIC: Readonly<Record<QuotaType, number>> = {
  user: 0xd9c01f11, group: 0xd9c01927, project: 0xd9c03f14,
};
const V2_VERSION_R1 = 1;
/** QT_BLKSIZE: quota tree blocks are 1 KiB whatever the filesystem block size. */
export const QT_BLKSIZE = 1024;
const QT_TREEDEPTH = 4;
/** QT_TREEOFF: the tree root is block 1 (block 0 holds the header and info). */
const QT_TREEOFF = 1;
const REFS_PER_BLOCK = QT_BLKSIZE / 4;
/** 7 days: MAX_DQ_TIME / MAX_IQ_TIME, the default grace periods. */
export const DEFAULT_GRACE = 7 * 24 * 60 * 60;
/** Limits are kept in QUOTABLOCK_SIZE units. */
const QUOTABLOCK_SIZE = 1024;

// struct v2_disk_dqheader then struct v2_disk_dqinfo (at V2_DQINFOOFF = 8).
const dqh_magic = 0;
const dqh_version = 4;
const dqi_bgrace = 8;
const dqi_igrace = 12;
const dqi_flags = 16;
const dqi_blocks = 20;
const dqi_free_blk = 24;
const dqi_free_entry = 28;
// struct qt_disk_dqdbheader, 16 bytes at the start of each data block.
const dqdh_next_free = 0;
const dqdh_prev_free = 4;
const dqdh_entries = 8;
const DQDBHEADER_SIZE = 16;
// struct v2r1_disk_dqblk, 72 bytes.
const dqb_id = 0;
const dqb_ihardlimit = 8;
const dqb_isoftlimit = 16;
const dqb_curinodes = 24;
const dqb_bhardlimit = 32;
const dqb_bsoftlimit = 40;
const dqb_curspace = 48;
const dqb_btime = 56;
const dqb_itime = 64;
export const V2R1_DQBLK_SIZE = 72;
/** Dquots per data block: (1024 - 16) / 72 = 14. */
const DQSTR_IN_BLK = Math.floor((QT_BLKSIZE - DQDBHEADER_SIZE) / V2R1_DQBLK_SIZE);

const treeIndex = (id: number, depth: number): number => (id >>> ((QT_TREEDEPTH - depth - 1) * 8)) & 0xff;

function isUnused(b: Uint8Array, off: number): boolean {
  for (let i = 0; i < V2R1_DQBLK_SIZE; i++) if (b[off + i] !== 0) return false;
  return true;
}

function usageIsEmpty(u: QuotaUsage): boolean {
  return !u.spaceBytes && !u.inodes && !u.softBytes && !u.hardBytes && !u.softInodes && !u.hardInodes;
}

const toQuotaBlocks = (bytes: number | undefined): number => Math.ceil((bytes ?? 0) / QUOTABLOCK_SIZE);

function checkNat(v: number | undefined, what: string): number {
  const n = v ?? 0;
  if (!Number.isSafeInteger(n) || n < 0) throw new Ext4Error('EINVAL', `quota ${what} must be a non-negative safe integer: ${n}`);
  return n;
}

/**
 * A complete quota file for `usage`, laid out the way e2fsprogs writes a fresh one: ids in
 * ascending order, each inserted by walking the tree from the root and allocating tree blocks
 * on the way down, then a slot in the current data block with free entries (a new block when
 * there is none; a block leaves the free list when it gets its 14th dquot). Ids whose usage
 * and limits are all zero are left out, as e2fsprogs deletes them. Length = dqi_blocks KiB.
 */
export function encodeQuotaFile(
  type: QuotaType,
  usage: ReadonlyMap<number, QuotaUsage>,
  opts: { blockGrace?: number; inodeGrace?: number; flags?: number } = {},
): Uint8Array {
  const blocks: Uint8Array[] = [new Uint8Array(QT_BLKSIZE), new Uint8Array(QT_BLKSIZE)];
  let freeEntry = 0;
  const newBlock = (): number => { blocks.push(new Uint8Array(QT_BLKSIZE)); return blocks.length - 1; };

  const ids = [...usage.keys()].sort((a, b) => a - b);
  for (const id of ids) {
    if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) throw new Ext4Error('EINVAL', `quota id out of range: ${id}`);
    const u = usage.get(id)!;
    if (usageIsEmpty(u)) continue;

    let tree = QT_TREEOFF;
    for (let depth = 0; depth < QT_TREEDEPTH - 1; depth++) {
      const ref = treeIndex(id, depth) * 4;
      let child = u32(blocks[tree]!, ref);
      if (child === 0) { child = newBlock(); setU32(blocks[tree]!, ref, child); }
      tree = child;
    }
    let data = freeEntry;
    if (data === 0) { data = newBlock(); freeEntry = data; }
    const db = blocks[data]!;
    const entries = u16(db, dqdh_entries);
    if (entries + 1 >= DQSTR_IN_BLK) {
      // Full: leaves the (single-element) list of blocks with free entries.
      freeEntry = u32(db, dqdh_next_free);
      setU32(db, dqdh_next_free, 0);
      setU32(db, dqdh_prev_free, 0);
    }
    setU16(db, dqdh_entries, entries + 1);
    let slot = DQDBHEADER_SIZE;
    while (!isUnused(db, slot)) slot += V2R1_DQBLK_SIZE;
    setU32(blocks[tree]!, treeIndex(id, QT_TREEDEPTH - 1) * 4, data);

    setU32(db, slot + dqb_id, id);
    setU64(db, slot + dqb_ihardlimit, checkNat(u.hardInodes, 'hardInodes'));
    setU64(db, slot + dqb_isoftlimit, checkNat(u.softInodes, 'softInodes'));
    setU64(db, slot + dqb_curinodes, checkNat(u.inodes, 'inodes'));
    setU64(db, slot + dqb_bhardlimit, toQuotaBlocks(checkNat(u.hardBytes, 'hardBytes')));
    setU64(db, slot + dqb_bsoftlimit, toQuotaBlocks(checkNat(u.softBytes, 'softBytes')));
    setU64(db, slot + dqb_curspace, checkNat(u.spaceBytes, 'spaceBytes'));
    setU64(db, slot + dqb_btime, checkNat(u.btime, 'btime'));
    setU64(db, slot + dqb_itime, checkNat(u.itime, 'itime'));
  }

  const out = new Uint8Array(blocks.length * QT_BLKSIZE);
  blocks.forEach((b, i) => { out.set(b, i * QT_BLKSIZE); });
  setU32(out, dqh_magic, QUOTA_MAGIC[type]);
  setU32(out, dqh_version, V2_VERSION_R1);
  setU32(out, dqi_bgrace, opts.blockGrace ?? DEFAULT_GRACE);
  setU32(out, dqi_igrace, opts.inodeGrace ?? DEFAULT_GRACE);
  setU32(out, dqi_flags, opts.flags ?? 0);
  setU32(out, dqi_blocks, blocks.length);
  setU32(out, dqi_free_blk, 0);
  setU32(out, dqi_free_entry, freeEntry);
  return out;
}

/** Header and info block, validated against the file length. */
export function decodeQuotaInfo(bytes: Uint8Array, type: QuotaType, where?: Ext4ErrorWhere): QuotaFileInfo {
  if (bytes.length < 2 * QT_BLKSIZE) {
    throw corrupt('quota-file-size', `quota file of ${bytes.length} bytes lacks a header block and tree root`, where);
  }
  if (u32(bytes, dqh_magic) !== QUOTA_MAGIC[type]) throw corrupt('quota-magic', `bad ${type} quota file magic`, where);
  const version = u32(bytes, dqh_version);
  if (version === 0) throw unsupported('quota-version', 'quota format v2r0 (32-bit limits) is not supported', where);
  if (version !== V2_VERSION_R1) throw corrupt('quota-version', `unknown quota file version ${version}`, where);
  const info: QuotaFileInfo = {
    version,
    blockGrace: u32(bytes, dqi_bgrace),
    inodeGrace: u32(bytes, dqi_igrace),
    flags: u32(bytes, dqi_flags),
    blocks: u32(bytes, dqi_blocks),
    freeBlock: u32(bytes, dqi_free_blk),
    freeEntry: u32(bytes, dqi_free_entry),
  };
  const fileBlocks = Math.ceil(bytes.length / QT_BLKSIZE);
  if (info.blocks < QT_TREEOFF + 1 || info.blocks > fileBlocks) {
    throw corrupt('quota-info-blocks', `dqi_blocks ${info.blocks} does not fit a ${fileBlocks}-block quota file`, where);
  }
  if (info.freeBlock >= info.blocks || info.freeEntry >= info.blocks) {
    throw corrupt('quota-info-free', `free list head (${info.freeBlock}, ${info.freeEntry}) beyond dqi_blocks ${info.blocks}`, where);
  }
  return info;
}

function readU64(b: Uint8Array, off: number, where: Ext4ErrorWhere | undefined): number {
  const v = u64(b, off);
  if (!Number.isSafeInteger(v)) throw corrupt('quota-value-range', 'quota value above 2^53', where);
  return v;
}

/**
 * Every dquot in a quota file, by id. Walks the tree from the root: tree depth is fixed at 4,
 * every reference must point inside dqi_blocks (and not at the header or root), a tree block
 * has exactly one parent, each data block is read once however many leaves share it, and every
 * dquot must be where its id's path leads.
 */
export function decodeQuotaFile(input: Uint8Array, type: QuotaType, where?: Ext4ErrorWhere): Map<number, QuotaUsage> {
  const info = decodeQuotaInfo(input, type, where);
  // A short last block reads as zero-filled, as e2fsprogs reads it.
  let bytes = input;
  if (input.length % QT_BLKSIZE !== 0) {
    bytes = new Uint8Array(Math.ceil(input.length / QT_BLKSIZE) * QT_BLKSIZE);
    bytes.set(input);
  }
  const block = (n: number): Uint8Array => bytes.subarray(n * QT_BLKSIZE, (n + 1) * QT_BLKSIZE);
  const treeBlocks = new Set<number>([QT_TREEOFF]);
  /** Data block → ids whose leaf points at it. */
  const dataRefs = new Map<number, Set<number>>();

  const checkRef = (ref: number, depth: number): void => {
    if (ref <= QT_TREEOFF || ref >= info.blocks) {
      throw corrupt('quota-tree-ref', `quota tree reference ${ref} at depth ${depth} outside blocks 2..${info.blocks - 1}`, where);
    }
  };
  // Iterative walk; the stack holds at most 3 * 256 pending blocks, and the one-parent rule
  // makes the total work at most dqi_blocks * 256 references.
  const stack: Array<{ blk: number; depth: number; prefix: number }> = [{ blk: QT_TREEOFF, depth: 0, prefix: 0 }];
  while (stack.length > 0) {
    const { blk, depth, prefix } = stack.pop()!;
    const b = block(blk);
    for (let i = REFS_PER_BLOCK - 1; i >= 0; i--) {
      const ref = u32(b, i * 4);
      if (ref === 0) continue;
      checkRef(ref, depth);
      const idPrefix = prefix * 256 + i;
      if (depth === QT_TREEDEPTH - 1) {
        if (treeBlocks.has(ref)) throw corrupt('quota-tree-shared', `quota block ${ref} used as both tree and data block`, where);
        let ids = dataRefs.get(ref);
        if (!ids) { ids = new Set(); dataRefs.set(ref, ids); }
        ids.add(idPrefix);
      } else {
        if (treeBlocks.has(ref) || dataRefs.has(ref)) {
          throw corrupt('quota-tree-shared', `quota tree block ${ref} reached twice`, where);
        }
        treeBlocks.add(ref);
        stack.push({ blk: ref, depth: depth + 1, prefix: idPrefix });
      }
    }
  }
  for (const ref of dataRefs.keys()) {
    if (treeBlocks.has(ref)) throw corrupt('quota-tree-shared', `quota block ${ref} used as both tree and data block`, where);
  }

  const out = new Map<number, QuotaUsage>();
  for (const [blk, ids] of [...dataRefs].sort((a, b) => a[0] - b[0])) {
    const b = block(blk);
    const entries = u16(b, dqdh_entries);
    if (entries > DQSTR_IN_BLK) throw corrupt('quota-data-entries', `quota data block ${blk} claims ${entries} entries`, where);
    const found = new Set<number>();
    for (let i = 0; i < DQSTR_IN_BLK; i++) {
      const off = DQDBHEADER_SIZE + i * V2R1_DQBLK_SIZE;
      if (isUnused(b, off)) continue;
      const id = u32(b, off + dqb_id);
      if (!ids.has(id)) throw corrupt('quota-entry-misplaced', `quota entry for id ${id} in data block ${blk} is not on its tree path`, where);
      if (found.has(id)) throw corrupt('quota-duplicate-id', `quota id ${id} appears twice`, where);
      found.add(id);
      const u: QuotaUsage = { spaceBytes: readU64(b, off + dqb_curspace, where), inodes: readU64(b, off + dqb_curinodes, where) };
      const soft = readU64(b, off + dqb_bsoftlimit, where);
      const hard = readU64(b, off + dqb_bhardlimit, where);
      const isoft = readU64(b, off + dqb_isoftlimit, where);
      const ihard = readU64(b, off + dqb_ihardlimit, where);
      const btime = readU64(b, off + dqb_btime, where);
      let itime = readU64(b, off + dqb_itime, where);
      // An otherwise empty dquot is written with itime 1 so that it does not look unused.
      if (itime === 1 && id === 0 && !u.spaceBytes && !u.inodes && !soft && !hard && !isoft && !ihard && !btime) itime = 0;
      if (soft) u.softBytes = checkedBytes(soft, where);
      if (hard) u.hardBytes = checkedBytes(hard, where);
      if (isoft) u.softInodes = isoft;
      if (ihard) u.hardInodes = ihard;
      if (btime) u.btime = btime;
      if (itime) u.itime = itime;
      out.set(id, u);
    }
    for (const id of ids) {
      if (!found.has(id)) throw corrupt('quota-entry-missing', `quota id ${id} is referenced but not present in data block ${blk}`, where);
    }
  }
  return new Map([...out].sort((a, b) => a[0] - b[0]));
}

function checkedBytes(quotaBlocks: number, where: Ext4ErrorWhere | undefined): number {
  const v = quotaBlocks * QUOTABLOCK_SIZE;
  if (!Number.isSafeInteger(v)) throw corrupt('quota-value-range', 'quota limit above 2^53 bytes', where);
  return v;
}
