// mkfs: builds an empty ext4 filesystem on a block device — superblock and GDT copies,
// bitmaps, inode tables, root and lost+found, journal, resize inode, quota and orphan files.
// Uses format/, layout/ and the device; never the mounted filesystem (fs/). The steps live in
// build.ts (state and helpers), inodes.ts (the inodes mkfs makes) and groups.ts (per-group
// metadata); their order decides where every block lands, so it is fixed here.
import { type BlockDevice } from '../device/block-device.ts';
import { Ext4Error } from '../errors/ext4-error.ts';
import { allFeatureNames } from '../format/features.ts';
import { featureSet } from '../format/superblock.ts';
import { resolveMkfsOptions, type MkfsOptions } from './options.ts';
import { planLayout } from './layout.ts';
import { MkfsBuild } from './build.ts';
import {
  createJournal, createOrphanFile, createQuotaFiles, createReservedInodes, createResizeInode, createRootAndLostFound,
} from './inodes.ts';
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

export async function mkfs(device: BlockDevice, options: MkfsOptions = {}): Promise<MkfsResult> {
  if (device.readOnly) throw new Ext4Error('EROFS', 'mkfs: device is read-only');
  const params = resolveMkfsOptions(options, device.sizeBytes);
  const b = new MkfsBuild(params, planLayout(params));

  createReservedInodes(b);
  const lostFoundEnd = createRootAndLostFound(b);
  createResizeInode(b, lostFoundEnd);
  createJournal(b);
  createOrphanFile(b);
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
