// mkfs: builds an empty ext4 filesystem on a block device — superblock and GDT copies,
// bitmaps, inode tables, root and lost+found, journal, resize inode, quota and orphan files.
// Uses format/, layout/ and the device; never the mounted filesystem (fs/). The steps live in
// build.ts (state and helpers), inodes.ts (the inodes mkfs makes) and groups.ts (per-group
// metadata); their order decides where every block lands, so it is fixed here.
import { type BlockDevice } from '../device/block-device.ts';
import { Ext4Error } from '../errors/ext4-error.ts';
import { allFeatureNames } from '../format/features.ts';
import { featureSet, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE } from '../format/superblock.ts';
import { resolveMkfsOptions, type MkfsOptions } from './options.ts';
import { planLayout } from './layout.ts';
import { MkfsBuild } from './build.ts';
import {
  createJournal, createOrphanFile, createQuotaFiles, createReservedInodes, createResizeInode, createRootAndLostFound,
} from './inodes.ts';
import { TreeBuilder } from './bulk-tree.ts';
import { finishSuperblock, writeGroupDescriptors, writeInodeTables, writeSuperblocksAndGdt } from './groups.ts';

export type { MkfsOptions } from './options.ts';

export interface MkfsResult {
  blockSize: number;
  clusterSize: number;
  blocksCount: number;
  groupCount: number;
  inodesCount: number;
  features: string[];
  uuid: Uint8Array;
}

/**
 * Makes the filesystem. With `populate`, a tree is built into it before the quota files and the
 * metadata are written (mkfs -d); a failure there leaves the device without a valid superblock.
 */
export async function mkfs(device: BlockDevice, options: MkfsOptions = {}, populate?: (tree: TreeBuilder) => Promise<void>): Promise<MkfsResult> {
  if (device.readOnly) throw new Ext4Error('EROFS', 'mkfs: device is read-only');
  const params = resolveMkfsOptions(options, device.sizeBytes);
  const b = new MkfsBuild(params, planLayout(params));

  createReservedInodes(b);
  const lostFoundEnd = createRootAndLostFound(b, populate !== undefined);
  createResizeInode(b, lostFoundEnd);
  createJournal(b);
  createOrphanFile(b);
  if (populate) {
    // The tree's data goes to the device before the superblock: an old one must not survive a failure.
    await device.write(SUPERBLOCK_OFFSET, new Uint8Array(SUPERBLOCK_SIZE));
    const tree = new TreeBuilder(b, device);
    await populate(tree);
    await tree.finish();
  }
  createQuotaFiles(b);

  await writeInodeTables(b, device);
  const { gdt, freeClusters } = writeGroupDescriptors(b);
  finishSuperblock(b, freeClusters);
  writeSuperblocksAndGdt(b, gdt);
  await b.writes.flush(device);
  await device.flush();

  const { geo, sb } = b;
  return {
    blockSize: geo.blockSize, clusterSize: geo.blockSize * geo.clusterRatio, blocksCount: geo.blocksCount,
    groupCount: geo.groupCount, inodesCount: geo.inodesCount, features: allFeatureNames(featureSet(sb)), uuid: sb.uuid,
  };
}
