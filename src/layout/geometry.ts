// Filesystem geometry derived from a validated superblock: groups, cluster ratio, where the
// superblock copies and group descriptors live, and block <-> cluster <-> group math.
// Layout facts: kernel Documentation/filesystems/ext4/overview.rst (blockgroup.rst, bigalloc.rst).
import { type FsBlock, type Cluster, type GroupNo, type InodeNo, fsBlock, cluster, groupNo } from '../util/brand.ts';
import { COMPAT, INCOMPAT, RO_COMPAT } from '../format/features.ts';
import { blockSizeOf, clusterSizeOf, fsChecksumSeed, type Superblock } from '../format/superblock.ts';
import { log2 } from '../util/checked-math.ts';
import { type GdCsumMode } from '../format/group-desc.ts';

export interface Geometry {
  readonly blockSize: number;
  readonly clusterSize: number;
  /** Blocks per cluster (R); 1 without bigalloc. */
  readonly clusterRatio: number;
  readonly clusterBits: number;
  readonly blocksCount: number;
  readonly clustersCount: number;
  readonly firstDataBlock: number;
  readonly blocksPerGroup: number;
  readonly clustersPerGroup: number;
  readonly inodesPerGroup: number;
  readonly inodesCount: number;
  readonly inodeSize: number;
  readonly groupCount: number;
  readonly descSize: number;
  readonly descPerBlock: number;
  /** Group descriptor blocks (not counting reserved GDT blocks). */
  readonly gdtBlocks: number;
  readonly reservedGdtBlocks: number;
  readonly firstMetaBg: number;
  readonly metaBg: boolean;
  readonly sparseSuper: boolean;
  readonly sparseSuper2: boolean;
  readonly backupBgs: readonly number[];
  readonly flexBgSize: number;
  readonly metadataCsum: boolean;
  readonly gdCsum: GdCsumMode;
  /** Seed of every metadata checksum (s_checksum_seed or crc32c(uuid)). */
  readonly csumSeed: number;
  readonly inodesPerBlock: number;
  readonly inodeTableBlocks: number;
}

export function geometryOf(sb: Superblock): Geometry {
  const blockSize = blockSizeOf(sb);
  const clusterSize = clusterSizeOf(sb);
  const clusterRatio = clusterSize / blockSize;
  const is64 = (sb.featureIncompat & INCOMPAT['64bit']) !== 0;
  const descSize = is64 ? sb.descSize : 32;
  const groupCount = Math.ceil((sb.blocksCount - sb.firstDataBlock) / sb.blocksPerGroup);
  const descPerBlock = blockSize / descSize;
  const metadataCsum = (sb.featureRoCompat & RO_COMPAT.metadata_csum) !== 0;
  const csumSeed = fsChecksumSeed(sb);
  const gdCsum: GdCsumMode = metadataCsum ? { kind: 'crc32c', fsSeed: csumSeed }
    : sb.featureRoCompat & RO_COMPAT.uninit_bg ? { kind: 'crc16', uuid: sb.uuid } : { kind: 'none' };
  // Revision 0 superblocks leave s_inode_size zero: their records are 128 bytes.
  const inodeSize = sb.revLevel === 0 ? 128 : sb.inodeSize;
  const inodesPerBlock = blockSize / inodeSize;
  return {
    blockSize, clusterSize, clusterRatio, clusterBits: log2(clusterRatio),
    blocksCount: sb.blocksCount,
    clustersCount: Math.ceil(sb.blocksCount / clusterRatio),
    firstDataBlock: sb.firstDataBlock,
    blocksPerGroup: sb.blocksPerGroup,
    clustersPerGroup: sb.blocksPerGroup / clusterRatio,
    inodesPerGroup: sb.inodesPerGroup,
    inodesCount: sb.inodesCount,
    inodeSize,
    groupCount, descSize, descPerBlock,
    gdtBlocks: Math.ceil(groupCount / descPerBlock),
    reservedGdtBlocks: sb.featureCompat & COMPAT.resize_inode ? sb.reservedGdtBlocks : 0,
    firstMetaBg: sb.firstMetaBg,
    metaBg: (sb.featureIncompat & INCOMPAT.meta_bg) !== 0,
    sparseSuper: (sb.featureRoCompat & RO_COMPAT.sparse_super) !== 0,
    sparseSuper2: (sb.featureCompat & COMPAT.sparse_super2) !== 0,
    backupBgs: sb.backupBgs,
    flexBgSize: sb.featureIncompat & INCOMPAT.flex_bg ? 2 ** sb.logGroupsPerFlex : 1,
    metadataCsum, gdCsum, csumSeed, inodesPerBlock,
    inodeTableBlocks: Math.ceil(sb.inodesPerGroup / inodesPerBlock),
  };
}

const isPowerOf = (n: number, base: number): boolean => {
  if (n < 1) return false;
  while (n % base === 0) n /= base;
  return n === 1;
};

/** Whether group g holds a copy of the superblock (and, outside meta_bg, of the GDT). */
export function groupHasSuper(geo: Pick<Geometry, 'sparseSuper' | 'sparseSuper2' | 'backupBgs'>, g: number): boolean {
  if (g === 0) return true;
  if (geo.sparseSuper2) return g === geo.backupBgs[0] || g === geo.backupBgs[1];
  if (g === 1 || !geo.sparseSuper) return true;
  if (g % 2 === 0) return false;
  return isPowerOf(g, 3) || isPowerOf(g, 5) || isPowerOf(g, 7);
}

export const groupFirstBlock = (geo: Geometry, g: number): FsBlock => fsBlock(geo.firstDataBlock + g * geo.blocksPerGroup);

export function groupBlockCount(geo: Geometry, g: number): number {
  return g === geo.groupCount - 1 ? geo.blocksCount - geo.firstDataBlock - g * geo.blocksPerGroup : geo.blocksPerGroup;
}

/** Block holding the superblock copy of group g (group 0: the block containing byte 1024). */
export function superBlockOfGroup(geo: Geometry, g: number): FsBlock {
  if (g === 0) return fsBlock(geo.blockSize === 1024 ? 1 : 0);
  return groupFirstBlock(geo, g);
}

/** Block of descriptor block i (0-based), primary copy. */
export function descriptorBlock(geo: Geometry, i: number): FsBlock {
  if (!geo.metaBg || i < geo.firstMetaBg) return fsBlock(superBlockOfGroup(geo, 0) + 1 + i);
  const g = i * geo.descPerBlock;
  const base = g === 0 ? superBlockOfGroup(geo, 0) : groupFirstBlock(geo, g);
  return fsBlock(base + (groupHasSuper(geo, g) ? 1 : 0));
}

export const groupOfBlock = (geo: Geometry, b: number): GroupNo =>
  groupNo(Math.floor((b - geo.firstDataBlock) / geo.blocksPerGroup));
export const clusterOfBlock = (geo: Geometry, b: FsBlock | number): Cluster => cluster(Math.floor(b / geo.clusterRatio));
export const firstBlockOfCluster = (geo: Geometry, c: Cluster | number): FsBlock => fsBlock(c * geo.clusterRatio);
export const groupOfInode = (geo: Geometry, ino: InodeNo | number): GroupNo => groupNo(Math.floor((ino - 1) / geo.inodesPerGroup));
export const indexInGroup = (geo: Geometry, ino: InodeNo | number): number => (ino - 1) % geo.inodesPerGroup;

/**
 * Blocks used by superblock/GDT/reserved-GDT copies at the start of group g (not bitmaps or
 * inode tables, which flex_bg may place elsewhere).
 */
export function groupSuperAndGdtBlocks(geo: Geometry, g: number): { superBlocks: number; gdtBlocks: number; reservedGdt: number } {
  const hasSuper = groupHasSuper(geo, g);
  let gdt = 0;
  let reserved = 0;
  if (!geo.metaBg) {
    if (hasSuper) { gdt = geo.gdtBlocks; reserved = geo.reservedGdtBlocks; }
  } else {
    const metaGroup = Math.floor(g / geo.descPerBlock);
    if (metaGroup < geo.firstMetaBg) {
      if (hasSuper) { gdt = geo.firstMetaBg; reserved = geo.reservedGdtBlocks; }
    } else {
      const r = g % geo.descPerBlock;
      if (r === 0 || r === 1 || r === geo.descPerBlock - 1) gdt = 1;
    }
  }
  return { superBlocks: hasSuper ? 1 : 0, gdtBlocks: gdt, reservedGdt: reserved };
}
