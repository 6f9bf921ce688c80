// The jbd2 journal superblock: the first block of the journal, 1024 bytes, all big-endian
// (Documentation/filesystems/ext4/journal.rst, "Super Block").

import { corrupt, badChecksum, assert, type Ext4ErrorWhere } from '../../errors/ext4-error.ts';
import { u8, u32be, setU32be } from '../../util/bytes.ts';
import { crc32cUpdate } from '../../util/crc.ts';

export const JBD2_MAGIC = 0xc03b3998;
export const JBD2_SUPERBLOCK_SIZE = 1024;
export const JBD2_SUPERBLOCK_V1 = 3;
export const JBD2_SUPERBLOCK_V2 = 4;
/** JBD2_MIN_JOURNAL_BLOCKS. */
export const JBD2_MIN_JOURNAL_BLOCKS = 1024;
/** Fast-commit blocks when the feature is on and s_num_fc_blks is 0. */
export const JBD2_DEFAULT_FAST_COMMIT_BLOCKS = 256;
export const JBD2_USERS_MAX = 48;
export const JBD2_CRC32C_CHKSUM = 4;

export const JBD2_FEATURE_COMPAT_CHECKSUM = 0x1;
export const JBD2_FEATURE_INCOMPAT_REVOKE = 0x1;
export const JBD2_FEATURE_INCOMPAT_64BIT = 0x2;
export const JBD2_FEATURE_INCOMPAT_ASYNC_COMMIT = 0x4;
export const JBD2_FEATURE_INCOMPAT_CSUM_V2 = 0x8;
export const JBD2_FEATURE_INCOMPAT_CSUM_V3 = 0x10;
export const JBD2_FEATURE_INCOMPAT_FAST_COMMIT = 0x20;

// Field offsets (journal_superblock_t).
const h_magic = 0x0;
const h_blocktype = 0x4;
const h_sequence = 0x8;
const s_blocksize = 0xc;
const s_maxlen = 0x10;
const s_first = 0x14;
const s_sequence = 0x18;
const s_start = 0x1c;
const s_errno = 0x20;
const s_feature_compat = 0x24;
const s_feature_incompat = 0x28;
const s_feature_ro_compat = 0x2c;
const s_uuid = 0x30;
const s_nr_users = 0x40;
const s_dynsuper = 0x44;
const s_max_transaction = 0x48;
const s_max_trans_data = 0x4c;
const s_checksum_type = 0x50;
const s_num_fc_blks = 0x54;
const s_head = 0x58;
const s_checksum = 0xfc;
const s_users = 0x100;
const USERS_BYTES = 16 * JBD2_USERS_MAX;

export interface JournalSuperblock {
  /** 3 (v1) or 4 (v2); fields from featureCompat on are meaningful only in v2. */
  blockType: number;
  /** h_sequence of the block header (0 in superblocks written by mke2fs). */
  headerSequence: number;
  blockSize: number;
  /** s_maxlen: journal length in blocks, fast-commit area included. */
  maxLen: number;
  /** s_first: first block of log information. */
  first: number;
  /** s_sequence: first commit ID expected in the log. */
  sequence: number;
  /** s_start: block of the start of the log, 0 when the journal is clean. */
  start: number;
  /** s_errno (signed), set when the journal was aborted. */
  errno: number;
  featureCompat: number;
  featureIncompat: number;
  featureRoCompat: number;
  uuid: Uint8Array;
  nrUsers: number;
  dynSuper: number;
  maxTransaction: number;
  maxTransData: number;
  checksumType: number;
  /** s_num_fc_blks: fast-commit blocks at the end of the journal (0: default when enabled). */
  numFcBlocks: number;
  /** s_head: block of the log head, kept up to date by recent kernels. */
  head: number;
  checksum: number;
  /** s_users: 16-byte ids of filesystems sharing the journal (zero for an internal journal). */
  users: Uint8Array;
}

const hasCsumV2or3 = (incompat: number): boolean =>
  (incompat & (JBD2_FEATURE_INCOMPAT_CSUM_V2 | JBD2_FEATURE_INCOMPAT_CSUM_V3)) !== 0;

/** The v2/v3 superblock checksum: crc32c seeded with ~0 over the 1024 bytes, s_checksum as 0. */
export function journalSuperblockChecksum(bytes: Uint8Array): number {
  let c = crc32cUpdate(0xffffffff, bytes, 0, s_checksum);
  c = crc32cUpdate(c, new Uint8Array(4));
  return crc32cUpdate(c, bytes, s_checksum + 4, JBD2_SUPERBLOCK_SIZE);
}

/**
 * Decodes and validates a journal superblock. `journalBlocks` (the journal inode's length) and
 * `blockSize` (the filesystem's) are checked against the superblock when given.
 */
export function decodeJournalSuperblock(
  bytes: Uint8Array,
  opts: { journalBlocks?: number; blockSize?: number; where?: Ext4ErrorWhere } = {},
): JournalSuperblock {
  const where = opts.where;
  if (bytes.length < JBD2_SUPERBLOCK_SIZE) throw corrupt('jbd2-sb-size', `journal superblock needs ${JBD2_SUPERBLOCK_SIZE} bytes, got ${bytes.length}`, where);
  if (u32be(bytes, h_magic) !== JBD2_MAGIC) throw corrupt('jbd2-sb-magic', 'bad journal superblock magic', where);
  const sb: JournalSuperblock = {
    blockType: u32be(bytes, h_blocktype),
    headerSequence: u32be(bytes, h_sequence),
    blockSize: u32be(bytes, s_blocksize),
    maxLen: u32be(bytes, s_maxlen),
    first: u32be(bytes, s_first),
    sequence: u32be(bytes, s_sequence),
    start: u32be(bytes, s_start),
    errno: u32be(bytes, s_errno) | 0,
    featureCompat: u32be(bytes, s_feature_compat),
    featureIncompat: u32be(bytes, s_feature_incompat),
    featureRoCompat: u32be(bytes, s_feature_ro_compat),
    uuid: bytes.slice(s_uuid, s_uuid + 16),
    nrUsers: u32be(bytes, s_nr_users),
    dynSuper: u32be(bytes, s_dynsuper),
    maxTransaction: u32be(bytes, s_max_transaction),
    maxTransData: u32be(bytes, s_max_trans_data),
    checksumType: u8(bytes, s_checksum_type),
    numFcBlocks: u32be(bytes, s_num_fc_blks),
    head: u32be(bytes, s_head),
    checksum: u32be(bytes, s_checksum),
    users: bytes.slice(s_users, s_users + USERS_BYTES),
  };
  if (sb.blockType !== JBD2_SUPERBLOCK_V1 && sb.blockType !== JBD2_SUPERBLOCK_V2) {
    throw corrupt('jbd2-sb-blocktype', `journal superblock has block type ${sb.blockType}`, where);
  }
  const bs = sb.blockSize;
  if (bs < 1024 || bs > 65536 || (bs & (bs - 1)) !== 0 || (opts.blockSize !== undefined && bs !== opts.blockSize)) {
    throw corrupt('jbd2-sb-blocksize', `journal block size ${bs} is invalid or differs from the filesystem's`, where);
  }
  if (sb.maxLen < JBD2_MIN_JOURNAL_BLOCKS || (opts.journalBlocks !== undefined && sb.maxLen > opts.journalBlocks)) {
    throw corrupt('jbd2-sb-maxlen', `journal length ${sb.maxLen} blocks is too small or exceeds the journal file`, where);
  }
  if (sb.first === 0 || sb.first >= sb.maxLen) {
    throw corrupt('jbd2-sb-first', `journal s_first ${sb.first} outside 1..${sb.maxLen - 1}`, where);
  }
  if (sb.blockType === JBD2_SUPERBLOCK_V1) return sb;

  if (sb.nrUsers > JBD2_USERS_MAX) throw corrupt('jbd2-sb-nr-users', `journal claims ${sb.nrUsers} users`, where);
  const incompat = sb.featureIncompat;
  let logEnd = sb.maxLen;
  if (incompat & JBD2_FEATURE_INCOMPAT_FAST_COMMIT) {
    const fc = sb.numFcBlocks || JBD2_DEFAULT_FAST_COMMIT_BLOCKS;
    logEnd = sb.maxLen - fc;
    if (fc >= sb.maxLen || logEnd < JBD2_MIN_JOURNAL_BLOCKS) {
      throw corrupt('jbd2-sb-fc-blocks', `${fc} fast-commit blocks leave too small a log in ${sb.maxLen}`, where);
    }
  }
  if (sb.start !== 0 && (sb.start < sb.first || sb.start >= logEnd)) {
    throw corrupt('jbd2-sb-start', `journal s_start ${sb.start} outside the log ${sb.first}..${logEnd - 1}`, where);
  }
  const csum23 = hasCsumV2or3(incompat);
  if ((incompat & JBD2_FEATURE_INCOMPAT_CSUM_V2 && incompat & JBD2_FEATURE_INCOMPAT_CSUM_V3) ||
      (csum23 && sb.featureCompat & JBD2_FEATURE_COMPAT_CHECKSUM)) {
    throw corrupt('jbd2-sb-csum-version', 'journal enables more than one checksum version', where);
  }
  if (csum23) {
    if (sb.checksumType !== JBD2_CRC32C_CHKSUM) {
      throw corrupt('jbd2-sb-checksum-type', `journal checksum type ${sb.checksumType} is not crc32c`, where);
    }
    if (journalSuperblockChecksum(bytes) !== sb.checksum) throw badChecksum('jbd2-superblock', where);
  }
  return sb;
}

/**
 * Writes `sb` into the first 1024 bytes of `bytes` (padding zeroed). With checksum v2/v3 on,
 * s_checksum is computed; otherwise `sb.checksum` is written as given (normally 0).
 */
export function encodeJournalSuperblock(sb: JournalSuperblock, bytes: Uint8Array): void {
  assert(bytes.length >= JBD2_SUPERBLOCK_SIZE, 'journal superblock buffer smaller than 1024 bytes');
  const b = new Uint8Array(JBD2_SUPERBLOCK_SIZE);
  setU32be(b, h_magic, JBD2_MAGIC);
  setU32be(b, h_blocktype, sb.blockType);
  setU32be(b, h_sequence, sb.headerSequence);
  setU32be(b, s_blocksize, sb.blockSize);
  setU32be(b, s_maxlen, sb.maxLen);
  setU32be(b, s_first, sb.first);
  setU32be(b, s_sequence, sb.sequence);
  setU32be(b, s_start, sb.start);
  setU32be(b, s_errno, sb.errno >>> 0);
  setU32be(b, s_feature_compat, sb.featureCompat);
  setU32be(b, s_feature_incompat, sb.featureIncompat);
  setU32be(b, s_feature_ro_compat, sb.featureRoCompat);
  b.set(sb.uuid.subarray(0, 16), s_uuid);
  setU32be(b, s_nr_users, sb.nrUsers);
  setU32be(b, s_dynsuper, sb.dynSuper);
  setU32be(b, s_max_transaction, sb.maxTransaction);
  setU32be(b, s_max_trans_data, sb.maxTransData);
  b[s_checksum_type] = sb.checksumType & 0xff;
  setU32be(b, s_num_fc_blks, sb.numFcBlocks);
  setU32be(b, s_head, sb.head);
  b.set(sb.users.subarray(0, USERS_BYTES), s_users);
  setU32be(b, s_checksum, hasCsumV2or3(sb.featureIncompat) ? journalSuperblockChecksum(b) : sb.checksum);
  bytes.set(b);
}

/**
 * The superblock of a fresh internal journal as `mke2fs -t ext4` (1.47) writes it: v2 block
 * type, h_sequence 0, s_first 1, s_sequence 1, s_start 0 (clean), s_nr_users 1, the filesystem
 * UUID in s_uuid and s_users left zero (mke2fs only fills s_users for an external journal
 * device), no features. mke2fs does not turn on journal checksums even for metadata_csum
 * filesystems; the kernel adds CSUM_V3 (and 64BIT) at the first mount. `csumV3` gives that
 * mounted form directly: INCOMPAT_CSUM_V3, checksum type crc32c and the checksum.
 * `fastCommitBlocks` fills s_num_fc_blks as mke2fs -O fast_commit does (without the
 * FAST_COMMIT feature bit, which the kernel sets); `journalBlocks` is s_maxlen, including them.
 */
export function makeEmptyJournalSuperblock(opts: {
  blockSize: number;
  journalBlocks: number;
  uuid?: Uint8Array;
  sequence?: number;
  csumV3?: boolean;
  bit64?: boolean;
  fastCommitBlocks?: number;
}): JournalSuperblock {
  let incompat = 0;
  if (opts.csumV3) incompat |= JBD2_FEATURE_INCOMPAT_CSUM_V3;
  if (opts.bit64) incompat |= JBD2_FEATURE_INCOMPAT_64BIT;
  return {
    blockType: JBD2_SUPERBLOCK_V2,
    headerSequence: 0,
    blockSize: opts.blockSize,
    maxLen: opts.journalBlocks,
    first: 1,
    sequence: opts.sequence ?? 1,
    start: 0,
    errno: 0,
    featureCompat: 0,
    featureIncompat: incompat,
    featureRoCompat: 0,
    uuid: opts.uuid ? opts.uuid.slice(0, 16) : new Uint8Array(16),
    nrUsers: 1,
    dynSuper: 0,
    maxTransaction: 0,
    maxTransData: 0,
    checksumType: opts.csumV3 ? JBD2_CRC32C_CHKSUM : 0,
    numFcBlocks: opts.fastCommitBlocks ?? 0,
    head: 0,
    checksum: 0,
    users: new Uint8Array(USERS_BYTES),
  };
}
