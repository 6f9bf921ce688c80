// The on-disk inode (struct ext4_inode, Documentation/filesystems/ext4/inodes.rst): decode and
// encode of every field, extended timestamps, the i_blocks units rules and the inode checksum.
import { badChecksum, corrupt, unsupported, assert, type Ext4ErrorWhere } from '../errors/ext4-error.ts';
import { u16, u32, hiLo, setU16, setU32, hi32 } from '../util/bytes.ts';
import { crc32cUpdate } from '../util/crc.ts';
import { inodeCsumSeed } from './checksum.ts';

// Field offsets, named as in struct ext4_inode (osd1/osd2 use the Linux variants).
export const i_mode = 0x00;
export const i_uid = 0x02;
export const i_size_lo = 0x04;
export const i_atime = 0x08;
export const i_ctime = 0x0c;
export const i_mtime = 0x10;
export const i_dtime = 0x14;
export const i_gid = 0x18;
export const i_links_count = 0x1a;
export const i_blocks_lo = 0x1c;
export const i_flags = 0x20;
export const l_i_version = 0x24;
export const i_block = 0x28;
export const i_generation = 0x64;
export const i_file_acl_lo = 0x68;
export const i_size_high = 0x6c;
export const i_obso_faddr = 0x70;
export const l_i_blocks_high = 0x74;
export const l_i_file_acl_high = 0x76;
export const l_i_uid_high = 0x78;
export const l_i_gid_high = 0x7a;
export const l_i_checksum_lo = 0x7c;
export const l_i_reserved = 0x7e;
export const i_extra_isize = 0x80;
export const i_checksum_hi = 0x82;
export const i_ctime_extra = 0x84;
export const i_mtime_extra = 0x88;
export const i_atime_extra = 0x8c;
export const i_crtime = 0x90;
export const i_crtime_extra = 0x94;
export const i_version_hi = 0x98;
export const i_projid = 0x9c;

/** EXT2_GOOD_OLD_INODE_SIZE: the part of every inode record that is always present. */
export const GOOD_OLD_INODE_SIZE = 128;
/** sizeof(i_block): 15 u32 slots (EXT4_N_BLOCKS). */
export const I_BLOCK_SIZE = 60;

// i_mode file types and permission bits.
export const S_IFMT = 0xf000;
export const S_IFSOCK = 0xc000;
export const S_IFLNK = 0xa000;
export const S_IFREG = 0x8000;
export const S_IFBLK = 0x6000;
export const S_IFDIR = 0x4000;
export const S_IFCHR = 0x2000;
export const S_IFIFO = 0x1000;
export const S_ISUID = 0x800;
export const S_ISGID = 0x400;
export const S_ISVTX = 0x200;

// i_flags.
export const SECRM_FL = 0x1;
export const UNRM_FL = 0x2;
export const COMPR_FL = 0x4;
export const SYNC_FL = 0x8;
export const IMMUTABLE_FL = 0x10;
export const APPEND_FL = 0x20;
export const NODUMP_FL = 0x40;
export const NOATIME_FL = 0x80;
export const DIRTY_FL = 0x100;
export const COMPRBLK_FL = 0x200;
export const NOCOMPR_FL = 0x400;
export const ENCRYPT_FL = 0x800;
export const INDEX_FL = 0x1000;
export const IMAGIC_FL = 0x2000;
export const JOURNAL_DATA_FL = 0x4000;
export const NOTAIL_FL = 0x8000;
export const DIRSYNC_FL = 0x10000;
export const TOPDIR_FL = 0x20000;
export const HUGE_FILE_FL = 0x40000;
export const EXTENTS_FL = 0x80000;
export const VERITY_FL = 0x100000;
export const EA_INODE_FL = 0x200000;
export const EOFBLOCKS_FL = 0x400000;
export const DAX_FL = 0x2000000;
export const INLINE_DATA_FL = 0x10000000;
export const PROJINHERIT_FL = 0x20000000;
export const CASEFOLD_FL = 0x40000000;
export const RESERVED_FL = 0x80000000;

export const isDirMode = (mode: number): boolean => (mode & S_IFMT) === S_IFDIR;
export const isRegMode = (mode: number): boolean => (mode & S_IFMT) === S_IFREG;
export const isSymlinkMode = (mode: number): boolean => (mode & S_IFMT) === S_IFLNK;

export interface Timestamp {
  /** Seconds since the epoch: signed 32-bit on disk plus (epoch bits << 32). */
  sec: number;
  nsec: number;
}

export interface Inode {
  /** Copy of all inodeSize bytes; encodeInode writes the fields over it so unknown bytes survive. */
  raw: Uint8Array;
  mode: number;
  uid: number;
  gid: number;
  sizeBytes: number;
  atime: Timestamp;
  ctime: Timestamp;
  mtime: Timestamp;
  /** Undefined when i_extra_isize does not reach i_crtime. */
  crtime: Timestamp | undefined;
  /** Deletion time, or the next orphan's inode number while on the orphan list. */
  dtime: number;
  linksCount: number;
  /** i_blocks in 512-byte units, already scaled when HUGE_FILE_FL counts in fs blocks. */
  blocks512: number;
  flags: number;
  generation: number;
  /** Extended attribute block (i_file_acl); 0 when none. */
  fileAcl: number;
  /** The 60 bytes of i_block: block map, extent root, fast symlink target or inline data. */
  iBlock: Uint8Array;
  /** i_extra_isize; 0 for 128-byte inodes. */
  extraIsize: number;
  /** l_i_version plus i_version_hi << 32 when present. With EA_INODE_FL it holds the refcount's high half. */
  version: number;
  projectId: number;
  /** The stored checksum (lo | hi << 16), as read; encodeInode recomputes it. */
  checksum: number;
}

export interface InodeCodecOptions {
  ino: number;
  /** s_inode_size. */
  inodeSize: number;
  /** Verify (decode) or set (encode) the checksum when given: the metadata_csum fs seed. */
  fsCsumSeed?: number | undefined;
  /** The huge_file feature. */
  hugeFile: boolean;
  blockSize: number;
  /** The 64bit feature; when false, l_i_file_acl_high is ignored as the kernel does. Default true. */
  has64bit?: boolean | undefined;
  /**
   * Decode only: `raw` and `iBlock` are views of `bytes` instead of copies (the caller keeps
   * `bytes` unchanged for as long as the inode is used: read-only walks over immutable buffers).
   */
  shareBytes?: boolean | undefined;
}

/** EXT4_FITS_IN_INODE: a field beyond 128 bytes exists only if i_extra_isize covers it. */
const fits = (extraIsize: number, off: number, size: number): boolean =>
  off + size <= GOOD_OLD_INODE_SIZE + extraIsize;

const TWO_ZERO_BYTES = new Uint8Array(2);

function checkGeometry(opts: { inodeSize: number }): void {
  const s = opts.inodeSize;
  if (!(Number.isInteger(s) && s >= GOOD_OLD_INODE_SIZE && (s & (s - 1)) === 0)) assert(false, `inode size ${s}`);
}

function readExtraIsize(bytes: Uint8Array, inodeSize: number): number {
  return inodeSize > GOOD_OLD_INODE_SIZE ? u16(bytes, i_extra_isize) : 0;
}

/**
 * The inode checksum (checksums.rst): crc32c from the inode seed over the whole record with
 * both checksum fields taken as zero. Only the low 16 bits exist when i_extra_isize does not
 * cover i_checksum_hi (then those two bytes are checksummed as they are).
 */
export function inodeChecksum(bytes: Uint8Array, opts: { ino: number; inodeSize: number; fsCsumSeed: number }): number {
  checkGeometry(opts);
  assert(bytes.length >= opts.inodeSize, 'inode buffer shorter than the inode size');
  const size = opts.inodeSize;
  let c = inodeCsumSeed(opts.fsCsumSeed, opts.ino, u32(bytes, i_generation));
  c = crc32cUpdate(c, bytes, 0, l_i_checksum_lo);
  c = crc32cUpdate(c, TWO_ZERO_BYTES);
  c = crc32cUpdate(c, bytes, l_i_checksum_lo + 2, GOOD_OLD_INODE_SIZE);
  let hiFits = false;
  if (size > GOOD_OLD_INODE_SIZE) {
    hiFits = fits(u16(bytes, i_extra_isize), i_checksum_hi, 2);
    c = crc32cUpdate(c, bytes, i_extra_isize, i_checksum_hi);
    c = hiFits ? crc32cUpdate(c, TWO_ZERO_BYTES) : crc32cUpdate(c, bytes, i_checksum_hi, i_checksum_hi + 2);
    c = crc32cUpdate(c, bytes, i_checksum_hi + 2, size);
  }
  return hiFits ? c >>> 0 : c & 0xffff;
}

function storedChecksum(bytes: Uint8Array, extraIsize: number): number {
  const lo = u16(bytes, l_i_checksum_lo);
  return fits(extraIsize, i_checksum_hi, 2) ? (lo | (u16(bytes, i_checksum_hi) << 16)) >>> 0 : lo;
}

function isAllZeroRange(b: Uint8Array, end: number): boolean {
  for (let i = 0; i < end; i++) if (b[i] !== 0) return false;
  return true;
}

const signed32 = (v: number): number => v | 0;

function decodeTime(bytes: Uint8Array, secOff: number, extraOff: number, extraIsize: number): Timestamp {
  const base = signed32(u32(bytes, secOff));
  if (!fits(extraIsize, extraOff, 4)) return { sec: base, nsec: 0 };
  const extra = u32(bytes, extraOff);
  return { sec: base + (extra & 3) * 0x1_0000_0000, nsec: extra >>> 2 };
}

// Range of seconds representable: signed 32-bit, widened by two epoch bits when the extra field exists.
const MIN_SEC = -0x8000_0000;
const MAX_SEC_NARROW = 0x7fff_ffff;
const MAX_SEC_WIDE = 0x3_7fff_ffff;
/** The 30-bit nanosecond field; values above 999999999 are not meaningful but are kept as found. */
const MAX_NSEC = 0x3fff_ffff;

/** Writes a timestamp, clamping to what the record can hold (as the kernel truncates to s_time_max). */
function encodeTime(bytes: Uint8Array, t: Timestamp, secOff: number, extraOff: number, extraIsize: number): void {
  const wide = fits(extraIsize, extraOff, 4);
  let sec = Math.trunc(t.sec);
  sec = Math.min(Math.max(sec, MIN_SEC), wide ? MAX_SEC_WIDE : MAX_SEC_NARROW);
  const lo = ((sec % 0x1_0000_0000) + 0x1_0000_0000) % 0x1_0000_0000;
  setU32(bytes, secOff, lo);
  if (!wide) return;
  const epoch = (sec - signed32(lo)) / 0x1_0000_0000;
  const nsec = Math.min(Math.max(Math.trunc(t.nsec), 0), MAX_NSEC);
  setU32(bytes, extraOff, ((nsec << 2) | (epoch & 3)) >>> 0);
}

/** Decodes one inode record. Verifies the checksum when `fsCsumSeed` is given. */
export function decodeInode(bytes: Uint8Array, opts: InodeCodecOptions): Inode {
  checkGeometry(opts);
  const where: Ext4ErrorWhere = { inode: opts.ino };
  const size = opts.inodeSize;
  if (bytes.length < size) throw corrupt('inode-truncated', `inode record is ${bytes.length} bytes, expected ${size}`, where);
  const extraIsize = readExtraIsize(bytes, size);
  if (GOOD_OLD_INODE_SIZE + extraIsize > size) {
    throw corrupt('inode-extra-isize', `i_extra_isize ${extraIsize} does not fit in a ${size}-byte inode`, where);
  }
  if (extraIsize % 4 !== 0) throw corrupt('inode-extra-isize-align', `i_extra_isize ${extraIsize} is not a multiple of 4`, where);

  const checksum = storedChecksum(bytes, extraIsize);
  if (opts.fsCsumSeed !== undefined) {
    const want = inodeChecksum(bytes, { ino: opts.ino, inodeSize: size, fsCsumSeed: opts.fsCsumSeed });
    // A never-used record in a lazily zeroed inode table has no checksum yet; it decodes as empty.
    if (want !== checksum && !isAllZeroRange(bytes, size)) throw badChecksum('inode', where);
  }

  const flags = u32(bytes, i_flags);
  const sizeHi = u32(bytes, i_size_high);
  const sizeBytes = hiLo(sizeHi, u32(bytes, i_size_lo));
  if (!Number.isSafeInteger(sizeBytes)) throw unsupported('inode-size-too-large', `i_size (high word ${sizeHi}) exceeds 2^53`, where);

  let blocks512: number;
  const blocksLo = u32(bytes, i_blocks_lo);
  if (!opts.hugeFile) {
    blocks512 = blocksLo;
  } else {
    const n = hiLo(u16(bytes, l_i_blocks_high), blocksLo);
    // 48-bit count; in fs blocks when HUGE_FILE_FL is set (inodes.rst, i_blocks_lo).
    blocks512 = flags & HUGE_FILE_FL ? n * (opts.blockSize / 512) : n;
    if (!Number.isSafeInteger(blocks512)) throw unsupported('inode-blocks-too-large', `i_blocks exceeds 2^53`, where);
  }

  const fileAclHi = opts.has64bit === false ? 0 : u16(bytes, l_i_file_acl_high);
  const versionHi = fits(extraIsize, i_version_hi, 4) ? u32(bytes, i_version_hi) : 0;
  const version = hiLo(versionHi, u32(bytes, l_i_version));
  if (!Number.isSafeInteger(version)) throw unsupported('inode-version-too-large', 'i_version exceeds 2^53', where);

  return {
    raw: opts.shareBytes ? bytes.subarray(0, size) : bytes.slice(0, size),
    mode: u16(bytes, i_mode),
    uid: (u16(bytes, i_uid) | (u16(bytes, l_i_uid_high) << 16)) >>> 0,
    gid: (u16(bytes, i_gid) | (u16(bytes, l_i_gid_high) << 16)) >>> 0,
    sizeBytes,
    atime: decodeTime(bytes, i_atime, i_atime_extra, extraIsize),
    ctime: decodeTime(bytes, i_ctime, i_ctime_extra, extraIsize),
    mtime: decodeTime(bytes, i_mtime, i_mtime_extra, extraIsize),
    crtime: fits(extraIsize, i_crtime, 4) ? decodeTime(bytes, i_crtime, i_crtime_extra, extraIsize) : undefined,
    dtime: u32(bytes, i_dtime),
    linksCount: u16(bytes, i_links_count),
    blocks512,
    flags,
    generation: u32(bytes, i_generation),
    fileAcl: hiLo(fileAclHi, u32(bytes, i_file_acl_lo)),
    iBlock: opts.shareBytes ? bytes.subarray(i_block, i_block + I_BLOCK_SIZE) : bytes.slice(i_block, i_block + I_BLOCK_SIZE),
    extraIsize,
    version,
    projectId: fits(extraIsize, i_projid, 4) ? u32(bytes, i_projid) : 0,
    checksum,
  };
}

/**
 * Writes `inode` into `bytes` (at least inodeSize long): starts from `inode.raw`, overwrites
 * every decoded field, and sets the checksum when `fsCsumSeed` is given. Values a record
 * cannot hold are a caller bug (asserted), except timestamps, which are clamped, and
 * crtime/version-high/nanoseconds, which are dropped when i_extra_isize has no room for them.
 */
export function encodeInode(inode: Inode, bytes: Uint8Array, opts: InodeCodecOptions): void {
  checkGeometry(opts);
  const size = opts.inodeSize;
  assert(bytes.length >= size, 'inode buffer shorter than the inode size');
  assert(inode.raw.length >= size, 'inode.raw shorter than the inode size');
  assert(inode.iBlock.length === I_BLOCK_SIZE, 'i_block must be 60 bytes');
  const extra = size > GOOD_OLD_INODE_SIZE ? inode.extraIsize : 0;
  if (extra % 4 !== 0 || GOOD_OLD_INODE_SIZE + extra > size) assert(false, `i_extra_isize ${extra}`);
  if (bytes !== inode.raw) bytes.set(inode.raw.length === size ? inode.raw : inode.raw.subarray(0, size), 0);

  setU16(bytes, i_mode, inode.mode);
  assert(inode.uid >= 0 && inode.uid <= 0xffff_ffff && inode.gid >= 0 && inode.gid <= 0xffff_ffff, 'uid/gid range');
  setU16(bytes, i_uid, inode.uid & 0xffff);
  setU16(bytes, l_i_uid_high, inode.uid >>> 16);
  setU16(bytes, i_gid, inode.gid & 0xffff);
  setU16(bytes, l_i_gid_high, inode.gid >>> 16);
  assert(Number.isSafeInteger(inode.sizeBytes) && inode.sizeBytes >= 0, 'size');
  setU32(bytes, i_size_lo, inode.sizeBytes % 0x1_0000_0000);
  setU32(bytes, i_size_high, hi32(inode.sizeBytes));
  setU32(bytes, i_dtime, inode.dtime);
  setU16(bytes, i_links_count, inode.linksCount);
  setU32(bytes, i_flags, inode.flags);
  setU32(bytes, i_generation, inode.generation);
  bytes.set(inode.iBlock, i_block);

  const b = inode.blocks512;
  assert(Number.isSafeInteger(b) && b >= 0, 'i_blocks');
  if (!opts.hugeFile) {
    assert(b <= 0xffff_ffff, 'i_blocks needs huge_file');
    setU32(bytes, i_blocks_lo, b);
  } else {
    const per = opts.blockSize / 512;
    const n = inode.flags & HUGE_FILE_FL ? b / per : b;
    assert(Number.isInteger(n) && n < 2 ** 48, 'i_blocks does not fit its 48-bit field');
    setU32(bytes, i_blocks_lo, n % 0x1_0000_0000);
    setU16(bytes, l_i_blocks_high, hi32(n));
  }

  assert(Number.isSafeInteger(inode.fileAcl) && inode.fileAcl >= 0 && inode.fileAcl < 2 ** 48, 'i_file_acl');
  setU32(bytes, i_file_acl_lo, inode.fileAcl % 0x1_0000_0000);
  if (opts.has64bit === false) assert(hi32(inode.fileAcl) === 0, 'i_file_acl above 2^32 needs 64bit');
  else setU16(bytes, l_i_file_acl_high, hi32(inode.fileAcl));

  assert(Number.isSafeInteger(inode.version) && inode.version >= 0, 'i_version');
  setU32(bytes, l_i_version, inode.version % 0x1_0000_0000);
  if (fits(extra, i_version_hi, 4)) setU32(bytes, i_version_hi, hi32(inode.version));

  if (size > GOOD_OLD_INODE_SIZE) setU16(bytes, i_extra_isize, extra);
  encodeTime(bytes, inode.atime, i_atime, i_atime_extra, extra);
  encodeTime(bytes, inode.ctime, i_ctime, i_ctime_extra, extra);
  encodeTime(bytes, inode.mtime, i_mtime, i_mtime_extra, extra);
  if (inode.crtime !== undefined && fits(extra, i_crtime, 4)) encodeTime(bytes, inode.crtime, i_crtime, i_crtime_extra, extra);
  if (fits(extra, i_projid, 4)) setU32(bytes, i_projid, inode.projectId);
  else assert(inode.projectId === 0, 'project id needs i_extra_isize >= 32');

  if (opts.fsCsumSeed !== undefined) {
    const c = inodeChecksum(bytes, { ino: opts.ino, inodeSize: size, fsCsumSeed: opts.fsCsumSeed });
    setU16(bytes, l_i_checksum_lo, c & 0xffff);
    if (fits(extra, i_checksum_hi, 2)) setU16(bytes, i_checksum_hi, c >>> 16);
  }
}

/** A zeroed inode record of `inodeSize` bytes with the given i_extra_isize (default: all of it up to 32). */
export function blankInode(inodeSize: number, extraIsize = Math.min(32, inodeSize - GOOD_OLD_INODE_SIZE)): Inode {
  checkGeometry({ inodeSize });
  const zero = (): Timestamp => ({ sec: 0, nsec: 0 });
  return {
    raw: new Uint8Array(inodeSize), mode: 0, uid: 0, gid: 0, sizeBytes: 0,
    atime: zero(), ctime: zero(), mtime: zero(), crtime: fits(extraIsize, i_crtime, 4) ? zero() : undefined,
    dtime: 0, linksCount: 0, blocks512: 0, flags: 0, generation: 0, fileAcl: 0,
    iBlock: new Uint8Array(I_BLOCK_SIZE), extraIsize, version: 0, projectId: 0, checksum: 0,
  };
}

/**
 * Whether a symlink keeps its target in i_block (a "fast" symlink). The kernel's rule: not
 * inline data, and no blocks charged besides an external xattr block; with the ea_inode
 * feature (where i_blocks may include xattr-inode charges) it uses 0 < size < 60 instead.
 */
export function isFastSymlink(inode: Inode, fs: { clusterSize: number; eaInodeFeature?: boolean }): boolean {
  if (!isSymlinkMode(inode.mode) || (inode.flags & INLINE_DATA_FL)) return false;
  if (fs.eaInodeFeature) return inode.sizeBytes > 0 && inode.sizeBytes < I_BLOCK_SIZE;
  const eaBlocks512 = inode.fileAcl !== 0 ? fs.clusterSize / 512 : 0;
  return inode.blocks512 === eaBlocks512;
}

/** The target bytes of a fast symlink; the length must be 1..59 with no NUL inside it. */
export function fastSymlinkTarget(inode: Inode, where: Ext4ErrorWhere = {}): Uint8Array {
  const n = inode.sizeBytes;
  if (n === 0 || n >= I_BLOCK_SIZE) throw corrupt('symlink-fast-length', `fast symlink length ${n} is not in 1..59`, where);
  const target = inode.iBlock.subarray(0, n);
  if (target.includes(0) || inode.iBlock[n] !== 0) {
    throw corrupt('symlink-fast-length', `fast symlink length ${n} does not match its NUL-terminated target`, where);
  }
  return target.slice();
}
