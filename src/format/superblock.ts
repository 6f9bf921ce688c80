// The ext4 superblock (1024 bytes at byte 1024 of the device): every field, decoded and encoded,
// validated before anything else is trusted. Layout: kernel Documentation/filesystems/ext4/super.rst.
import { corrupt, badChecksum, unsupported } from '../errors/ext4-error.ts';
import { u8, u16, u32, setU8, setU16, setU32, decodeCString, encodeCString } from '../util/bytes.ts';
import { crc32cUpdate } from '../util/crc.ts';
import { INCOMPAT, RO_COMPAT, COMPAT, READABLE_INCOMPAT, featureNames, type FeatureSet } from './features.ts';

export const SUPERBLOCK_OFFSET = 1024;
export const SUPERBLOCK_SIZE = 1024;
export const EXT4_SUPER_MAGIC = 0xef53;
const s_checksum = 0x3fc;

type Kind = 'u8' | 'u16' | 'u32' | 'bytes16' | 'bytes64' | 'str16' | 'str32' | 'str64';
/** Plain fields: [camelCase name, kernel offset, kind]. Split hi/lo values are handled below. */
const FIELDS = [
  ['inodesCount', 0x0, 'u32'], ['freeInodesCount', 0x10, 'u32'], ['firstDataBlock', 0x14, 'u32'],
  ['logBlockSize', 0x18, 'u32'], ['logClusterSize', 0x1c, 'u32'], ['blocksPerGroup', 0x20, 'u32'],
  ['clustersPerGroup', 0x24, 'u32'], ['inodesPerGroup', 0x28, 'u32'], ['mntCount', 0x34, 'u16'],
  ['maxMntCount', 0x36, 'u16'], ['magic', 0x38, 'u16'], ['state', 0x3a, 'u16'], ['errors', 0x3c, 'u16'],
  ['minorRevLevel', 0x3e, 'u16'], ['checkInterval', 0x44, 'u32'], ['creatorOs', 0x48, 'u32'],
  ['revLevel', 0x4c, 'u32'], ['defResuid', 0x50, 'u16'], ['defResgid', 0x52, 'u16'], ['firstIno', 0x54, 'u32'],
  ['inodeSize', 0x58, 'u16'], ['blockGroupNr', 0x5a, 'u16'], ['featureCompat', 0x5c, 'u32'],
  ['featureIncompat', 0x60, 'u32'], ['featureRoCompat', 0x64, 'u32'], ['uuid', 0x68, 'bytes16'],
  ['volumeName', 0x78, 'str16'], ['lastMounted', 0x88, 'str64'], ['algorithmUsageBitmap', 0xc8, 'u32'],
  ['preallocBlocks', 0xcc, 'u8'], ['preallocDirBlocks', 0xcd, 'u8'], ['reservedGdtBlocks', 0xce, 'u16'],
  ['journalUuid', 0xd0, 'bytes16'], ['journalInum', 0xe0, 'u32'], ['journalDev', 0xe4, 'u32'],
  ['lastOrphan', 0xe8, 'u32'], ['defHashVersion', 0xfc, 'u8'], ['jnlBackupType', 0xfd, 'u8'],
  ['descSize', 0xfe, 'u16'], ['defaultMountOpts', 0x100, 'u32'], ['firstMetaBg', 0x104, 'u32'],
  ['minExtraIsize', 0x15c, 'u16'], ['wantExtraIsize', 0x15e, 'u16'], ['flags', 0x160, 'u32'],
  ['raidStride', 0x164, 'u16'], ['mmpInterval', 0x166, 'u16'], ['raidStripeWidth', 0x170, 'u32'],
  ['logGroupsPerFlex', 0x174, 'u8'], ['checksumType', 0x175, 'u8'], ['encryptionLevel', 0x176, 'u8'],
  ['snapshotInum', 0x180, 'u32'], ['snapshotId', 0x184, 'u32'], ['snapshotList', 0x190, 'u32'],
  ['errorCount', 0x194, 'u32'], ['firstErrorIno', 0x19c, 'u32'], ['firstErrorFunc', 0x1a8, 'str32'],
  ['firstErrorLine', 0x1c8, 'u32'], ['lastErrorIno', 0x1d0, 'u32'], ['lastErrorLine', 0x1d4, 'u32'],
  ['lastErrorFunc', 0x1e0, 'str32'], ['mountOpts', 0x200, 'str64'], ['usrQuotaInum', 0x240, 'u32'],
  ['grpQuotaInum', 0x244, 'u32'], ['overheadClusters', 0x248, 'u32'], ['lpfIno', 0x268, 'u32'],
  ['prjQuotaInum', 0x26c, 'u32'], ['checksumSeed', 0x270, 'u32'], ['firstErrorErrcode', 0x27a, 'u8'],
  ['lastErrorErrcode', 0x27b, 'u8'], ['encoding', 0x27c, 'u16'], ['encodingFlags', 0x27e, 'u16'],
  ['orphanFileInum', 0x280, 'u32'], ['checksum', s_checksum, 'u32'],
] as const satisfies ReadonlyArray<readonly [string, number, Kind]>;

/** 64-bit values split into lo/hi words: [name, lo offset, hi offset, hi width]. hi counts only with 64bit where noted. */
const SPLIT = [
  ['blocksCount', 0x4, 0x150, 'u32'], ['rBlocksCount', 0x8, 0x154, 'u32'], ['freeBlocksCount', 0xc, 0x158, 'u32'],
  ['mtime', 0x2c, 0x275, 'u8'], ['wtime', 0x30, 0x274, 'u8'], ['lastCheck', 0x40, 0x277, 'u8'],
  ['mkfsTime', 0x108, 0x276, 'u8'], ['firstErrorTime', 0x198, 0x278, 'u8'], ['lastErrorTime', 0x1cc, 0x279, 'u8'],
  ['mmpBlock', 0x168, 0x16c, 'u32'], ['kbytesWritten', 0x178, 0x17c, 'u32'],
  ['snapshotRBlocksCount', 0x188, 0x18c, 'u32'], ['firstErrorBlock', 0x1a0, 0x1a4, 'u32'],
  ['lastErrorBlock', 0x1d8, 0x1dc, 'u32'],
] as const;

type FieldName = (typeof FIELDS)[number][0];
type SplitName = (typeof SPLIT)[number][0];
type FieldType<K extends Kind> = K extends 'bytes16' | 'bytes64' ? Uint8Array : K extends `str${string}` ? string : number;

export type Superblock = { [F in (typeof FIELDS)[number] as F[0]]: FieldType<F[2]> } & { [S in SplitName]: number } & {
  /** s_hash_seed as four u32 words. */
  hashSeed: number[];
  /** s_jnl_blocks: the journal inode's i_block and size, 17 words. */
  jnlBlocks: number[];
  /** s_backup_bgs (sparse_super2). */
  backupBgs: number[];
  /** A copy of all 1024 bytes: encode writes fields over it, so reserved bytes round-trip. */
  raw: Uint8Array;
};

function readKind(b: Uint8Array, off: number, kind: Kind): number | string | Uint8Array {
  switch (kind) {
    case 'u8': return u8(b, off);
    case 'u16': return u16(b, off);
    case 'u32': return u32(b, off);
    case 'bytes16': return b.slice(off, off + 16);
    case 'bytes64': return b.slice(off, off + 64);
    case 'str16': return decodeCString(b, off, 16);
    case 'str32': return decodeCString(b, off, 32);
    case 'str64': return decodeCString(b, off, 64);
  }
}

function writeKind(b: Uint8Array, off: number, kind: Kind, v: number | string | Uint8Array): void {
  switch (kind) {
    case 'u8': setU8(b, off, v as number); break;
    case 'u16': setU16(b, off, v as number); break;
    case 'u32': setU32(b, off, v as number); break;
    case 'bytes16': b.set((v as Uint8Array).subarray(0, 16), off); break;
    case 'bytes64': b.set((v as Uint8Array).subarray(0, 64), off); break;
    case 'str16': encodeCString(b, off, 16, v as string); break;
    case 'str32': encodeCString(b, off, 32, v as string); break;
    case 'str64': encodeCString(b, off, 64, v as string); break;
  }
}

const is64 = (incompat: number): boolean => (incompat & INCOMPAT['64bit']) !== 0;

/** Splits on hi words that are ignored without the 64bit feature. */
const HI_NEEDS_64BIT = new Set<string>(['blocksCount', 'rBlocksCount', 'freeBlocksCount']);

export function superblockChecksum(bytes: Uint8Array): number {
  return crc32cUpdate(0xffffffff, bytes, 0, s_checksum);
}

/** Decodes without validation; `validateSuperblock` decides whether the result can be trusted. */
export function decodeSuperblock(bytes: Uint8Array): Superblock {
  if (bytes.length < SUPERBLOCK_SIZE) throw corrupt('superblock-short', `superblock truncated: ${bytes.length} bytes`);
  const raw = bytes.slice(0, SUPERBLOCK_SIZE);
  const sb: Record<string, unknown> = { raw };
  for (const [name, off, kind] of FIELDS) sb[name] = readKind(raw, off, kind);
  const incompat = sb['featureIncompat'] as number;
  for (const [name, lo, hi, hiKind] of SPLIT) {
    const hiVal = HI_NEEDS_64BIT.has(name) && !is64(incompat) ? 0 : hiKind === 'u8' ? u8(raw, hi) : u32(raw, hi);
    sb[name] = hiVal * 0x1_0000_0000 + u32(raw, lo);
  }
  sb['hashSeed'] = [0, 1, 2, 3].map((i) => u32(raw, 0xec + 4 * i));
  sb['jnlBlocks'] = Array.from({ length: 17 }, (_, i) => u32(raw, 0x10c + 4 * i));
  sb['backupBgs'] = [u32(raw, 0x24c), u32(raw, 0x250)];
  return sb as Superblock;
}

/** Encodes into `out` (1024 bytes) over `sb.raw`, and sets the checksum when metadata_csum is on. */
export function encodeSuperblock(sb: Superblock, out: Uint8Array = new Uint8Array(SUPERBLOCK_SIZE)): Uint8Array {
  out.set(sb.raw.subarray(0, SUPERBLOCK_SIZE));
  for (const [name, off, kind] of FIELDS) writeKind(out, off, kind, sb[name as FieldName] as number | string | Uint8Array);
  for (const [name, lo, hi, hiKind] of SPLIT) {
    const v = sb[name];
    setU32(out, lo, v % 0x1_0000_0000);
    if (HI_NEEDS_64BIT.has(name) && !is64(sb.featureIncompat)) continue;
    const hiVal = Math.floor(v / 0x1_0000_0000);
    if (hiKind === 'u8') setU8(out, hi, hiVal); else setU32(out, hi, hiVal);
  }
  sb.hashSeed.forEach((w, i) => { setU32(out, 0xec + 4 * i, w); });
  sb.jnlBlocks.forEach((w, i) => { setU32(out, 0x10c + 4 * i, w); });
  sb.backupBgs.forEach((w, i) => { setU32(out, 0x24c + 4 * i, w); });
  if (sb.featureRoCompat & RO_COMPAT.metadata_csum) {
    sb.checksum = superblockChecksum(out);
    setU32(out, s_checksum, sb.checksum);
  }
  return out;
}

export function featureSet(sb: Superblock): FeatureSet {
  return { compat: sb.featureCompat, incompat: sb.featureIncompat, roCompat: sb.featureRoCompat };
}

export const blockSizeOf = (sb: Superblock): number => 1024 * 2 ** sb.logBlockSize;
export const clusterSizeOf = (sb: Superblock): number =>
  sb.featureRoCompat & RO_COMPAT.bigalloc ? 1024 * 2 ** sb.logClusterSize : blockSizeOf(sb);

/** The seed of every metadata checksum: s_checksum_seed with metadata_csum_seed, else crc32c(uuid). */
export function fsChecksumSeed(sb: Superblock): number {
  return sb.featureIncompat & INCOMPAT.metadata_csum_seed ? sb.checksumSeed : crc32cUpdate(0xffffffff, sb.uuid);
}

export interface SuperblockVerdict {
  /** Set when unknown ro_compat features (or needs_recovery, for now) allow only a read-only open. */
  forceReadOnly: string | undefined;
}

/**
 * Checks every rule that later arithmetic relies on. Throws EUCLEAN/EBADMSG/ENOTSUP;
 * returns whether the image must be opened read-only.
 */
export function validateSuperblock(sb: Superblock, deviceSizeBytes: number): SuperblockVerdict {
  const bad = (detail: string, msg: string) => corrupt(`superblock-${detail}`, `superblock: ${msg}`, { block: 0 });
  if (sb.magic !== EXT4_SUPER_MAGIC) throw bad('magic', `bad magic 0x${sb.magic.toString(16)}`);
  if (sb.featureRoCompat & RO_COMPAT.metadata_csum) {
    if (sb.checksumType !== 1) throw bad('checksum-type', `unknown checksum type ${sb.checksumType}`);
    if (superblockChecksum(sb.raw) !== sb.checksum) throw badChecksum('superblock', { block: 0 });
  }
  if (sb.revLevel > 1) throw unsupported('superblock-revision', `superblock: unsupported revision ${sb.revLevel}`);
  if (sb.featureIncompat & INCOMPAT.journal_dev) throw unsupported('journal-dev', 'image is an external journal device, not a filesystem');
  const unknownIncompat = sb.featureIncompat & ~READABLE_INCOMPAT;
  if (unknownIncompat) {
    throw unsupported('incompat-feature', `unsupported incompat features: ${featureNames('incompat', unknownIncompat).join(', ')}`);
  }
  if (sb.logBlockSize > 6) throw bad('block-size', `block size 2^${10 + sb.logBlockSize} out of range`);
  const blockSize = blockSizeOf(sb);
  const bigalloc = (sb.featureRoCompat & RO_COMPAT.bigalloc) !== 0;
  if (bigalloc) {
    if (sb.logClusterSize < sb.logBlockSize || sb.logClusterSize > sb.logBlockSize + 16) {
      throw bad('cluster-size', `cluster size 2^${10 + sb.logClusterSize} invalid for block size ${blockSize}`);
    }
  }
  const ratio = clusterSizeOf(sb) / blockSize;
  if (sb.blocksPerGroup === 0 || sb.blocksPerGroup > 8 * blockSize * ratio || sb.blocksPerGroup % 8 !== 0) {
    throw bad('blocks-per-group', `blocks per group ${sb.blocksPerGroup} invalid`);
  }
  if (bigalloc ? sb.clustersPerGroup * ratio !== sb.blocksPerGroup : sb.clustersPerGroup !== sb.blocksPerGroup && sb.clustersPerGroup !== 0) {
    throw bad('clusters-per-group', `clusters per group ${sb.clustersPerGroup} inconsistent with ${sb.blocksPerGroup} blocks per group`);
  }
  const expectFirst = blockSize === 1024 && ratio === 1 ? 1 : 0;
  if (sb.firstDataBlock !== expectFirst && !(blockSize === 1024 && sb.firstDataBlock === 0 && bigalloc)) {
    throw bad('first-data-block', `first data block ${sb.firstDataBlock} invalid for block size ${blockSize}`);
  }
  if (sb.blocksCount <= sb.firstDataBlock || !Number.isSafeInteger(sb.blocksCount)) {
    throw bad('blocks-count', `blocks count ${sb.blocksCount} invalid`);
  }
  if (sb.blocksCount > Number.MAX_SAFE_INTEGER / blockSize) {
    throw unsupported('too-large', `filesystem of ${sb.blocksCount} blocks is too large`);
  }
  const groups = Math.ceil((sb.blocksCount - sb.firstDataBlock) / sb.blocksPerGroup);
  if (sb.inodesPerGroup === 0 || sb.inodesPerGroup > 8 * blockSize || sb.inodesPerGroup % 8 !== 0 && sb.revLevel > 0) {
    throw bad('inodes-per-group', `inodes per group ${sb.inodesPerGroup} invalid`);
  }
  if (sb.inodesCount !== groups * sb.inodesPerGroup && sb.inodesCount > groups * sb.inodesPerGroup) {
    throw bad('inodes-count', `inodes count ${sb.inodesCount} exceeds ${groups} groups × ${sb.inodesPerGroup}`);
  }
  if (sb.revLevel >= 1) {
    if (sb.inodeSize < 128 || sb.inodeSize > blockSize || (sb.inodeSize & (sb.inodeSize - 1)) !== 0) {
      throw bad('inode-size', `inode size ${sb.inodeSize} invalid`);
    }
    if (sb.firstIno < 11 || sb.firstIno > sb.inodesCount) throw bad('first-ino', `first inode ${sb.firstIno} invalid`);
  }
  if (is64(sb.featureIncompat)) {
    if (sb.descSize < 32 || sb.descSize > 1024 || (sb.descSize & (sb.descSize - 1)) !== 0) {
      throw bad('desc-size', `group descriptor size ${sb.descSize} invalid`);
    }
  }
  if (sb.logGroupsPerFlex > 31) throw bad('flex-bg', `log groups per flex ${sb.logGroupsPerFlex} invalid`);
  if (sb.featureIncompat & INCOMPAT.meta_bg) {
    const descPerBlock = blockSize / (is64(sb.featureIncompat) ? sb.descSize : 32);
    if (sb.firstMetaBg > Math.ceil(groups / descPerBlock)) throw bad('first-meta-bg', `first meta_bg ${sb.firstMetaBg} too large`);
  }
  if (sb.freeBlocksCount > sb.blocksCount) throw bad('free-blocks', `free blocks ${sb.freeBlocksCount} > blocks ${sb.blocksCount}`);
  if (sb.firstDataBlock * blockSize > deviceSizeBytes) throw bad('device-size', 'device too small for the superblock');

  let forceReadOnly: string | undefined;
  const unknownRo = sb.featureRoCompat & ~KNOWN_RO;
  if (unknownRo) forceReadOnly = `unknown ro_compat features: ${featureNames('ro_compat', unknownRo).join(', ')}`;
  else if (sb.featureIncompat & INCOMPAT.needs_recovery) forceReadOnly = 'journal needs recovery (it could not be replayed: see info().journal)';
  return { forceReadOnly };
}

const KNOWN_RO = Object.values(RO_COMPAT).reduce((a, b) => a | b, 0) & ~(RO_COMPAT.has_snapshot | RO_COMPAT.replica | RO_COMPAT.shared_blocks);

export const SB_STATE = { valid: 0x1, errors: 0x2, orphans: 0x4 } as const;
export { COMPAT, INCOMPAT, RO_COMPAT };
