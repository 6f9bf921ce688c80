// A mounted filesystem's read side: validates the superblock and every group descriptor before
// anything else, then reads inodes and hands lower layers the small contexts they need.
import { type BlockDevice } from '../device/block-device.ts';
import { corrupt, Ext4Error } from '../errors/ext4-error.ts';
import {
  decodeSuperblock, validateSuperblock, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE, type Superblock,
} from '../format/superblock.ts';
import { decodeGroupDesc, verifyGroupDesc, BG_FLAGS, type GroupDesc } from '../format/group-desc.ts';
import { decodeInode, type Inode } from '../format/inode.ts';
import { inodeCsumSeed } from '../format/checksum.ts';
import { INCOMPAT, RO_COMPAT } from '../format/features.ts';
import { geometryOf, descriptorBlock, groupFirstBlock, groupBlockCount, type Geometry } from '../layout/geometry.ts';
import { BlockCache } from '../cache/block-cache.ts';
import { type MapContext } from '../mapping/read-map.ts';
import { type FsBlock, type InodeNo, inodeNo } from '../util/brand.ts';

export interface OpenVolumeOptions {
  readOnly?: boolean;
}

export class Volume {
  readonly readOnly: boolean;
  private constructor(
    readonly device: BlockDevice,
    readonly sb: Superblock,
    readonly geo: Geometry,
    readonly groups: readonly GroupDesc[],
    readonly cache: BlockCache,
    /** Why the image could only be opened read-only, if it could not be opened writable. */
    readonly forcedReadOnly: string | undefined,
    readOnly: boolean,
  ) {
    this.readOnly = readOnly;
  }

  static async open(device: BlockDevice, opts: OpenVolumeOptions = {}): Promise<Volume> {
    if (device.sizeBytes < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE) {
      throw corrupt('device-too-small', `image of ${device.sizeBytes} bytes is too small to hold a superblock`);
    }
    const sb = decodeSuperblock(await device.read(SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE));
    const verdict = validateSuperblock(sb, device.sizeBytes);
    const geo = geometryOf(sb);
    if (geo.blocksCount * geo.blockSize > device.sizeBytes) {
      throw corrupt('superblock-blocks-count', `superblock: ${geo.blocksCount} blocks of ${geo.blockSize} bytes exceed the ${device.sizeBytes}-byte image`, { block: 0 });
    }
    const groups = await readGroupDescs(device, geo);
    const forced = verdict.forceReadOnly ?? (device.readOnly ? 'device is read-only' : undefined);
    const cache = new BlockCache(device, geo.blockSize, geo.blocksCount);
    return new Volume(device, sb, geo, groups, cache, verdict.forceReadOnly, opts.readOnly === true || forced !== undefined);
  }

  get blockSize(): number { return this.geo.blockSize; }
  has(kind: 'incompat' | 'roCompat', bit: number): boolean {
    return ((kind === 'incompat' ? this.sb.featureIncompat : this.sb.featureRoCompat) & bit) !== 0;
  }
  get filetype(): boolean { return this.has('incompat', INCOMPAT.filetype); }
  get hugeFile(): boolean { return this.has('roCompat', RO_COMPAT.huge_file); }

  readBlock = (block: FsBlock | number): Promise<Uint8Array> => this.cache.read(block);

  /** Reads and verifies an inode. Inodes in never-initialised table space read as all zeros. */
  async readInode(ino: InodeNo | number): Promise<Inode> {
    const { geo } = this;
    if (!Number.isInteger(ino) || ino < 1 || ino > geo.inodesCount) {
      throw corrupt('inode-number', `inode number ${ino} out of range 1..${geo.inodesCount}`, { inode: ino });
    }
    const g = Math.floor((ino - 1) / geo.inodesPerGroup);
    const idx = (ino - 1) % geo.inodesPerGroup;
    const gd = this.groups[g]!;
    const opts = {
      ino, inodeSize: geo.inodeSize, fsCsumSeed: geo.metadataCsum ? geo.csumSeed : undefined,
      hugeFile: this.hugeFile, blockSize: geo.blockSize, has64bit: this.has('incompat', INCOMPAT['64bit']),
    };
    const lazy = geo.gdCsum.kind !== 'none';
    if (lazy && ((gd.flags & BG_FLAGS.inodeUninit) || idx >= geo.inodesPerGroup - gd.itableUnused)) {
      return decodeInode(new Uint8Array(geo.inodeSize), opts);
    }
    const blk = gd.inodeTable + Math.floor(idx / geo.inodesPerBlock);
    const block = await this.readBlock(blk);
    const off = (idx % geo.inodesPerBlock) * geo.inodeSize;
    return decodeInode(block.subarray(off, off + geo.inodeSize), opts);
  }

  inodeSeed(ino: number, inode: Inode): number | undefined {
    return this.geo.metadataCsum ? inodeCsumSeed(this.geo.csumSeed, ino, inode.generation) : undefined;
  }

  mapContext(ino: number, inode: Inode): MapContext {
    return {
      blockSize: this.geo.blockSize, blocksCount: this.geo.blocksCount, readBlock: this.readBlock,
      ino: inodeNo(ino), inodeSeed: this.inodeSeed(ino, inode), clusterSize: this.geo.clusterSize,
      eaInodeFeature: this.has('incompat', INCOMPAT.ea_inode),
    };
  }

  async close(): Promise<void> {
    this.cache.clear();
    await this.device.close();
  }
}

/** Reads and checks every group descriptor: checksum, and bitmaps/table inside the filesystem. */
async function readGroupDescs(device: BlockDevice, geo: Geometry): Promise<GroupDesc[]> {
  const groups: GroupDesc[] = [];
  const flexBg = geo.flexBgSize > 1;
  const last = geo.blocksCount;
  for (let i = 0; i < geo.gdtBlocks; i++) {
    const blk = descriptorBlock(geo, i);
    if (blk >= last) throw corrupt('group-desc-location', `group descriptor block ${blk} is outside the filesystem`, { block: blk });
    const bytes = await device.read(blk * geo.blockSize, geo.blockSize);
    for (let k = 0; k < geo.descPerBlock && groups.length < geo.groupCount; k++) {
      const g = groups.length;
      const raw = bytes.subarray(k * geo.descSize, (k + 1) * geo.descSize);
      verifyGroupDesc(raw, g, geo.descSize, geo.gdCsum);
      const gd = decodeGroupDesc(raw, geo.descSize);
      const where = { group: g, block: blk };
      const inRange = (b: number, n: number) => b > 0 && b + n <= last;
      if (!inRange(gd.blockBitmap, 1)) throw corrupt('group-desc-block-bitmap', `group ${g}: block bitmap ${gd.blockBitmap} outside the filesystem`, where);
      if (!inRange(gd.inodeBitmap, 1)) throw corrupt('group-desc-inode-bitmap', `group ${g}: inode bitmap ${gd.inodeBitmap} outside the filesystem`, where);
      if (!inRange(gd.inodeTable, geo.inodeTableBlocks)) throw corrupt('group-desc-inode-table', `group ${g}: inode table ${gd.inodeTable} outside the filesystem`, where);
      if (!flexBg) {
        const start = groupFirstBlock(geo, g);
        const end = start + groupBlockCount(geo, g);
        const inGroup = (b: number, n: number) => b >= start && b + n <= end;
        if (!inGroup(gd.blockBitmap, 1) || !inGroup(gd.inodeBitmap, 1) || !inGroup(gd.inodeTable, geo.inodeTableBlocks)) {
          throw corrupt('group-desc-not-in-group', `group ${g}: bitmaps or inode table outside the group`, where);
        }
      }
      if (gd.freeInodesCount > geo.inodesPerGroup || gd.itableUnused > geo.inodesPerGroup) {
        throw corrupt('group-desc-counts', `group ${g}: inode counts exceed ${geo.inodesPerGroup} inodes per group`, where);
      }
      groups.push(gd);
    }
  }
  if (groups.length !== geo.groupCount) throw new Ext4Error('EUCLEAN', 'group descriptor table is short', { detail: 'group-desc-count' });
  return groups;
}
