// statfs and the superblock summary (like dumpe2fs -h), as plain data.
import { COMPAT, RO_COMPAT, allFeatureNames } from '../format/features.ts';
import { featureSet } from '../format/superblock.ts';
import { groupSuperAndGdtBlocks } from '../layout/geometry.ts';
import { uuidToString } from '../util/bytes.ts';
import type { Volume } from './volume.ts';

export interface StatFsData { type: number; bsize: number; blocks: number; bfree: number; bavail: number; files: number; ffree: number }

export interface VolumeInfo {
  label: string; uuid: string; state: 'clean' | 'not clean' | 'with errors'; features: string[];
  blockSize: number; clusterSize: number; blocksCount: number; freeBlocks: number; reservedBlocks: number;
  inodesCount: number; freeInodes: number; inodeSize: number; groupCount: number; blocksPerGroup: number;
  clustersPerGroup: number; inodesPerGroup: number; firstDataBlock: number; reservedGdtBlocks: number;
  flexBgSize: number; descSize: number; hashSeed: string; defaultHashVersion: string;
  checksumType: string | undefined; checksumSeed: number | undefined; journalInode: number; orphanFileInode: number;
  created: Date; lastWritten: Date; lastMounted: Date | undefined; mountCount: number;
  forcedReadOnly: string | undefined; readOnly: boolean;
}

/** `resvPoolClusters`: the writable mount's reserve pool (default: what it would be, 2 % of clusters up to 4096). */
export function statfsOf(vol: Volume, dirtyClusters: number, resvPoolClusters?: number): StatFsData {
  const { geo, groups, sb } = vol;
  const R = geo.clusterRatio;
  const freeClusters = groups.reduce((n, g) => n + g.freeBlocksCount, 0);
  const freeInodes = groups.reduce((n, g) => n + g.freeInodesCount, 0);
  let overheadBlocks = 0;
  for (let g = 0; g < geo.groupCount; g++) {
    const { superBlocks, gdtBlocks, reservedGdt } = groupSuperAndGdtBlocks(geo, g);
    overheadBlocks += superBlocks + gdtBlocks + reservedGdt + 2 + geo.inodeTableBlocks;
  }
  if (sb.featureCompat & COMPAT.has_journal && sb.journalInum) {
    overheadBlocks += Math.floor((sb.jnlBlocks[15]! * 2 ** 32 + sb.jnlBlocks[16]!) / geo.blockSize);
  }
  const bfree = (freeClusters - dirtyClusters) * R;
  // As the kernel: the reserved pool kept for metadata (2 % of clusters, at most 4096) is not available either.
  const resvPoolBlocks = (resvPoolClusters ?? Math.min(Math.floor(geo.clustersCount / 50), 4096)) * R;
  return {
    type: 0xef53, bsize: geo.blockSize, blocks: geo.blocksCount - geo.firstDataBlock - overheadBlocks,
    bfree, bavail: Math.max(0, bfree - sb.rBlocksCount - resvPoolBlocks), files: geo.inodesCount, ffree: freeInodes,
  };
}

export function volumeInfo(vol: Volume): VolumeInfo {
  const { sb, geo, groups } = vol;
  const date = (s: number) => new Date(s * 1000);
  const hashNames = ['legacy', 'half_md4', 'tea', 'legacy_unsigned', 'half_md4_unsigned', 'tea_unsigned', 'siphash'];
  const seedBytes = new Uint8Array(16);
  sb.hashSeed.forEach((w, i) => { seedBytes[4 * i] = w & 0xff; seedBytes[4 * i + 1] = (w >>> 8) & 0xff; seedBytes[4 * i + 2] = (w >>> 16) & 0xff; seedBytes[4 * i + 3] = w >>> 24; });
  return {
    label: sb.volumeName, uuid: uuidToString(sb.uuid),
    state: sb.state & 2 ? 'with errors' : sb.state & 1 ? 'clean' : 'not clean',
    features: allFeatureNames(featureSet(sb)),
    blockSize: geo.blockSize, clusterSize: geo.clusterSize, blocksCount: geo.blocksCount,
    freeBlocks: groups.reduce((n, g) => n + g.freeBlocksCount, 0) * geo.clusterRatio,
    reservedBlocks: sb.rBlocksCount, inodesCount: geo.inodesCount,
    freeInodes: groups.reduce((n, g) => n + g.freeInodesCount, 0), inodeSize: geo.inodeSize,
    groupCount: geo.groupCount, blocksPerGroup: geo.blocksPerGroup, clustersPerGroup: geo.clustersPerGroup,
    inodesPerGroup: geo.inodesPerGroup, firstDataBlock: geo.firstDataBlock, reservedGdtBlocks: geo.reservedGdtBlocks,
    flexBgSize: geo.flexBgSize, descSize: geo.descSize, hashSeed: uuidToString(seedBytes),
    defaultHashVersion: hashNames[sb.defHashVersion] ?? `unknown (${sb.defHashVersion})`,
    checksumType: sb.featureRoCompat & RO_COMPAT.metadata_csum ? 'crc32c' : undefined,
    checksumSeed: sb.featureRoCompat & RO_COMPAT.metadata_csum ? geo.csumSeed : undefined,
    journalInode: sb.featureCompat & COMPAT.has_journal ? sb.journalInum : 0,
    orphanFileInode: sb.featureCompat & COMPAT.orphan_file ? sb.orphanFileInum : 0,
    created: date(sb.mkfsTime), lastWritten: date(sb.wtime), lastMounted: sb.mtime ? date(sb.mtime) : undefined,
    mountCount: sb.mntCount, forcedReadOnly: vol.forcedReadOnly, readOnly: vol.readOnly,
  };
}
