// After a replay, the group descriptors' free-cluster and free-inode counts are recounted from
// the bitmaps (what e2fsck's pass 5 would say after a replay) and the superblock totals summed
// from them: Linux journals descriptors with their bitmaps, so this normally changes nothing,
// but a log written by another tool (or a descriptor logged without its bitmap) cannot leave
// counts that disagree with the bitmaps, which the write path rejects. Groups whose bitmaps are
// not initialised (BLOCK_UNINIT / INODE_UNINIT) keep their counts. A group whose free-inode
// count disagreed with its bitmap (its descriptor was not logged with the bitmap) also gets its
// used-directory count recounted from the inode table (the inodes marked used, up to the last
// one); other groups keep it (a full inode-table scan on every replay would cost gigabytes on a
// large filesystem).
import { type BlockDevice } from '../../device/block-device.ts';
import { Ext4Error } from '../../errors/ext4-error.ts';
import { BG_FLAGS, decodeGroupDesc, encodeGroupDesc, setGroupDescChecksum } from '../../format/group-desc.ts';
import { descriptorBlock, groupBlockCount, type Geometry } from '../../layout/geometry.ts';

/** Test hook: a deliberately broken recovery that sums the descriptors as they are (the checks must catch it). */
export const groupCountTestHooks = { keepDescriptors: false, keepUsedDirs: false };

/** Inode-table bytes read at a time when counting directories. */
const ITABLE_CHUNK_BYTES = 256 * 1024;
const S_IFMT = 0xf000;
const S_IFDIR = 0x4000;

/** Directories among the inodes marked used in `bits` (the group's inode bitmap), read from its inode table; undefined when the table lies outside the filesystem. */
async function countDirs(device: BlockDevice, geo: Geometry, gd: { inodeTable: number; itableUnused: number }, bits: Uint8Array): Promise<number | undefined> {
  const lazy = geo.gdCsum.kind !== 'none';
  let last = -1;
  const limit = lazy ? Math.max(0, geo.inodesPerGroup - Math.min(gd.itableUnused, geo.inodesPerGroup)) : geo.inodesPerGroup;
  for (let i = 0; i < limit; i++) if (bits[i >> 3]! & (1 << (i & 7))) last = i;
  if (last < 0) return 0;
  const tableEnd = gd.inodeTable + geo.inodeTableBlocks;
  // A table outside the filesystem keeps the count: the volume's descriptor checks report it.
  if (!Number.isSafeInteger(gd.inodeTable) || gd.inodeTable < geo.firstDataBlock || tableEnd > geo.blocksCount) return undefined;
  const perChunk = Math.max(1, Math.floor(ITABLE_CHUNK_BYTES / geo.inodeSize));
  let dirs = 0;
  for (let first = 0; first <= last; first += perChunk) {
    const n = Math.min(perChunk, last + 1 - first);
    const bytes = await device.read(gd.inodeTable * geo.blockSize + first * geo.inodeSize, n * geo.inodeSize);
    for (let k = 0; k < n; k++) {
      const i = first + k;
      if (!(bits[i >> 3]! & (1 << (i & 7)))) continue;
      const mode = bytes[k * geo.inodeSize]! | (bytes[k * geo.inodeSize + 1]! << 8);
      if ((mode & S_IFMT) === S_IFDIR) dirs++;
    }
  }
  return dirs;
}

/** Zero bits among the first `end` bits. */
function zeroBits(bits: Uint8Array, end: number): number {
  let ones = 0;
  for (let i = 0; i < end; i++) if (bits[i >> 3]! & (1 << (i & 7))) ones++;
  return end - ones;
}

/**
 * Recounts every initialised group's free clusters and inodes from its bitmaps, rewrites the
 * descriptor blocks that change (checksums included), and returns the totals.
 */
export async function recountGroups(device: BlockDevice, geo: Geometry): Promise<{ freeClusters: number; freeInodes: number; groupsFixed: number }> {
  let freeClusters = 0;
  let freeInodes = 0;
  let groupsFixed = 0;
  let g = 0;
  const inFs = (b: number, what: string, group: number) => {
    if (!Number.isSafeInteger(b) || b < geo.firstDataBlock || b >= geo.blocksCount) {
      throw new Ext4Error('EUCLEAN', `group ${group}: ${what} ${b} outside the filesystem`, { detail: 'group-desc-location', where: { group } });
    }
    return b;
  };
  for (let i = 0; i < geo.gdtBlocks && g < geo.groupCount; i++) {
    const blk = inFs(descriptorBlock(geo, i), 'descriptor block', g);
    const bytes = await device.read(blk * geo.blockSize, geo.blockSize);
    let changed = false;
    for (let k = 0; k < geo.descPerBlock && g < geo.groupCount; k++, g++) {
      const at = bytes.subarray(k * geo.descSize, (k + 1) * geo.descSize);
      const gd = decodeGroupDesc(at, geo.descSize);
      let fixed = false;
      const lazy = geo.gdCsum.kind !== 'none';
      // A bitmap outside the filesystem keeps its count: the volume's own descriptor checks
      // report it when the image is opened.
      const inside = (b: number) => Number.isSafeInteger(b) && b >= geo.firstDataBlock && b < geo.blocksCount;
      if (!(lazy && gd.flags & BG_FLAGS.blockUninit) && inside(gd.blockBitmap)) {
        const bits = await device.read(gd.blockBitmap * geo.blockSize, geo.blockSize);
        const n = zeroBits(bits, Math.min(geo.clustersPerGroup, Math.ceil(groupBlockCount(geo, g) / geo.clusterRatio)));
        if (n !== gd.freeBlocksCount) { gd.freeBlocksCount = n; fixed = true; }
      }
      if (!(lazy && gd.flags & BG_FLAGS.inodeUninit) && inside(gd.inodeBitmap)) {
        const bits = await device.read(gd.inodeBitmap * geo.blockSize, geo.blockSize);
        const n = zeroBits(bits, geo.inodesPerGroup);
        if (n !== gd.freeInodesCount) {
          gd.freeInodesCount = n;
          fixed = true;
          const dirs = await countDirs(device, geo, gd, bits);
          if (dirs !== undefined && !groupCountTestHooks.keepUsedDirs) gd.usedDirsCount = dirs;
        }
      }
      if (fixed && !groupCountTestHooks.keepDescriptors) {
        encodeGroupDesc(gd, at, geo.descSize);
        setGroupDescChecksum(at, g, geo.descSize, geo.gdCsum);
        changed = true;
        groupsFixed++;
      }
      freeClusters += gd.freeBlocksCount;
      freeInodes += gd.freeInodesCount;
    }
    if (changed) await device.write(blk * geo.blockSize, bytes);
  }
  return { freeClusters, freeInodes, groupsFixed };
}
