// The state one mkfs run builds up before anything reaches the device: the planned layout,
// the inodes made so far, the data allocator over the blocks the layout left free, and the
// pending writes. The steps in inodes.ts and groups.ts fill it; mkfs.ts runs them in order.
import { type BlockDevice } from '../device/block-device.ts';
import { Ext4Error } from '../errors/ext4-error.ts';
import { INCOMPAT } from '../format/features.ts';
import { type Superblock } from '../format/superblock.ts';
import { blankInode, EXTENTS_FL, I_BLOCK_SIZE, type Inode } from '../format/inode.ts';
import { encodeDirBlock, type DirEntry } from '../format/dirent.ts';
import { inodeCsumSeed } from '../format/checksum.ts';
import { encodeUtf8 } from '../util/bytes.ts';
import { ceilDiv } from '../util/checked-math.ts';
import { fsBlock, type FsBlock } from '../util/brand.ts';
import { type Geometry } from '../layout/geometry.ts';
import { buildExtentTree, type Run } from '../mapping/extent-build.ts';
import { buildBlockMap } from '../mapping/blockmap-build.ts';
import { type QuotaUsage } from '../format/quota.ts';
import { type MkfsParams } from './options.ts';
import { type MkfsLayout } from './layout.ts';

/** Pending writes, flushed in block order in coalesced chunks. */
export class WriteSet {
  private items: Array<{ off: number; bytes: Uint8Array }> = [];
  constructor(private readonly blockSize: number) {}
  block(b: number, bytes: Uint8Array): void { this.items.push({ off: b * this.blockSize, bytes }); }
  at(off: number, bytes: Uint8Array): void { this.items.push({ off, bytes }); }
  async flush(dev: BlockDevice): Promise<void> {
    const items = this.items.sort((a, b) => a.off - b.off);
    const CHUNK = 1 << 20;
    const inflight: Array<Promise<void>> = [];
    let i = 0;
    for (let head = items[0]; head !== undefined; head = items[i]) {
      if (inflight.length >= 32) await Promise.all(inflight.splice(0));
      let j = i + 1;
      let end = head.off + head.bytes.length;
      for (let next = items[j]; next !== undefined && next.off === end && end - head.off < CHUNK; next = items[j]) {
        end += next.bytes.length;
        j++;
      }
      if (j === i + 1) {
        inflight.push(dev.write(head.off, head.bytes));
      } else {
        const buf = new Uint8Array(end - head.off);
        for (const it of items.slice(i, j)) buf.set(it.bytes, it.off - head.off);
        inflight.push(dev.write(head.off, buf));
      }
      i = j;
    }
    await Promise.all(inflight);
    this.items = [];
  }
}

/** Allocates whole clusters for data after the metadata is placed. */
export class DataAllocator {
  constructor(private readonly lay: MkfsLayout) {}
  /** Runs covering `countBlocks` blocks, cluster-aligned, starting at or after `goal`. */
  alloc(countBlocks: number, goal: number): Run[] {
    const { geo, used } = this.lay;
    const R = geo.clusterRatio;
    const runs: Run[] = [];
    let need = ceilDiv(countBlocks, R) * R;
    let fileBlock = 0;
    let from = Math.max(goal, geo.firstDataBlock);
    let wrapped = false;
    while (need > 0) {
      const p = used.findFree(from, R, geo.blocksCount, R);
      if (p === undefined) {
        if (wrapped) throw new Ext4Error('ENOSPC', 'mkfs: filesystem too small for its initial files', { detail: 'mkfs-too-small' });
        wrapped = true;
        from = geo.firstDataBlock;
        continue;
      }
      const gapEnd = used.freeUntil(p, geo.blocksCount);
      const take = Math.min(need, Math.floor((gapEnd - p) / R) * R);
      used.add(p, p + take);
      const inFile = Math.min(take, countBlocks - fileBlock);
      if (inFile > 0) runs.push({ fileBlock, fsBlock: p, countBlocks: inFile });
      fileBlock += inFile;
      need -= take;
      from = p + take;
    }
    return runs;
  }
  one(goal: number): FsBlock {
    return fsBlock(firstRun(this.alloc(1, goal)).fsBlock);
  }
}

/** The first run of a non-empty allocation. */
export function firstRun(runs: readonly Run[]): Run {
  const r = runs[0];
  if (r === undefined) throw new Error('mkfs: empty allocation');
  return r;
}

/** The last run of a non-empty allocation. */
export function lastRun(runs: readonly Run[]): Run {
  const r = runs[runs.length - 1];
  if (r === undefined) throw new Error('mkfs: empty allocation');
  return r;
}

export function padTo(b: Uint8Array, len: number): Uint8Array {
  if (b.length >= len) return b;
  const out = new Uint8Array(len);
  out.set(b);
  return out;
}

/** One directory entry for dirBlock: child inode, name, file type. */
export type DirBlockEntry = [child: number, name: string, fileType: number];

export class MkfsBuild {
  readonly sb: Superblock;
  readonly geo: Geometry;
  readonly bs: number;
  /** Blocks per cluster. */
  readonly R: number;
  readonly csum: boolean;
  readonly writes: WriteSet;
  readonly alloc: DataAllocator;
  /** Every inode made, by number, in the order made (inode tables and quota usage follow it). */
  readonly inodes = new Map<number, Inode>();
  readonly blocks512PerCluster: number;
  /** Inode-table blocks holding inodes already encoded (by a bulk build) and not yet written. */
  readonly itable = new Map<number, Uint8Array>();
  /**
   * Inodes a bulk build encoded and dropped from `inodes`: every inode in [first, last] is in
   * use (in `itable`, written, or still in `inodes`); directories per group; usage per owner.
   */
  readonly built = {
    first: 0, last: -1, dirsPerGroup: new Map<number, number>(),
    byUser: new Map<number, QuotaUsage>(), byGroup: new Map<number, QuotaUsage>(),
  };
  /** Groups whose inode table is zeroed already (on a device that does not read as zeros). */
  readonly zeroedTables = new Set<number>();
  private readonly fileRuns = new Map<number, Run[]>();
  private bulkTemplate: Inode | undefined;

  constructor(readonly params: MkfsParams, readonly lay: MkfsLayout) {
    this.sb = lay.sb;
    this.geo = lay.geo;
    this.bs = this.geo.blockSize;
    this.R = this.geo.clusterRatio;
    this.csum = this.geo.metadataCsum;
    this.writes = new WriteSet(this.bs);
    this.alloc = new DataAllocator(lay);
    this.blocks512PerCluster = (this.bs * this.R) / 512;
  }

  has(kind: 'compat' | 'incompat' | 'roCompat', bit: number): boolean {
    const { sb } = this;
    return ((kind === 'compat' ? sb.featureCompat : kind === 'incompat' ? sb.featureIncompat : sb.featureRoCompat) & bit) !== 0;
  }

  get now(): number { return this.params.timeSec; }

  /** A new inode with every time set to mkfs time, recorded for the inode tables. */
  newInode(ino: number, mode: number, extraIsize = this.geo.inodeSize > 128 ? 32 : 0): Inode {
    const inode = blankInode(this.geo.inodeSize, extraIsize);
    const t = { sec: this.now, nsec: 0 };
    Object.assign(inode, { mode, atime: t, ctime: { ...t }, mtime: { ...t }, linksCount: 1 });
    if (inode.crtime) inode.crtime = { ...t };
    this.inodes.set(ino, inode);
    return inode;
  }

  /**
   * newInode for a bulk build (bulk-tree.ts), several times cheaper: the fields are copied from
   * one blank inode, and every such inode shares one all-zero `raw` (only read: encodeInode
   * copies it under the fields; a bulk-built inode is encoded into its table block, never
   * decoded), so no buffer is allocated per inode.
   */
  newBulkInode(ino: number, mode: number): Inode {
    this.bulkTemplate ??= blankInode(this.geo.inodeSize, this.geo.inodeSize > 128 ? 32 : 0);
    const tpl = this.bulkTemplate;
    const t = { sec: this.now, nsec: 0 };
    const inode: Inode = {
      ...tpl, iBlock: new Uint8Array(I_BLOCK_SIZE), mode, atime: t, ctime: { ...t }, mtime: { ...t },
      crtime: tpl.crtime ? { ...t } : undefined, linksCount: 1,
    };
    this.inodes.set(ino, inode);
    return inode;
  }

  inodeSeed(ino: number): number | undefined {
    return this.csum ? inodeCsumSeed(this.geo.csumSeed, ino, 0) : undefined;
  }

  /** Allocates data for a file, maps it with extents (or a block map when the fs has none), and sets i_blocks. */
  mapFile(ino: number, inode: Inode, countBlocks: number, goal: number): Run[] {
    const runs = this.alloc.alloc(countBlocks, goal);
    this.mapRuns(ino, inode, runs, ceilDiv(countBlocks, this.R), lastRun(runs).fsBlock);
    this.fileRuns.set(ino, runs);
    return runs;
  }

  /**
   * Maps allocated `runs` (sorted by file block) with extents, or a block map when the fs has
   * none; tree blocks come from the allocator near `goal`. i_blocks counts `dataClusters` and
   * the tree's clusters.
   */
  mapRuns(ino: number, inode: Inode, runs: Run[], dataClusters: number, goal: number): void {
    const { bs, alloc } = this;
    let treeClusters = 0;
    const allocBlock = (): FsBlock => { treeClusters++; return alloc.one(goal); };
    if (this.has('incompat', INCOMPAT.extent)) {
      inode.flags |= EXTENTS_FL;
      const tree = buildExtentTree(runs, { blockSize: bs, inodeSeed: this.inodeSeed(ino), allocBlock });
      inode.iBlock.set(tree.iBlock);
      for (const n of tree.nodeBlocks) this.writes.block(n.block, n.bytes);
    } else {
      // ext2/ext3: direct, then indirect blocks (allocated right after the data).
      const map = buildBlockMap(runs, { blockSize: bs, allocBlock });
      inode.iBlock.set(map.iBlock);
      for (const n of map.indirectBlocks) this.writes.block(n.block, n.bytes);
    }
    inode.blocks512 = (dataClusters + treeClusters) * this.blocks512PerCluster;
  }

  /** The runs mapFile mapped for inode `ino` (empty when none). */
  runsOf(ino: number): readonly Run[] {
    return this.fileRuns.get(ino) ?? [];
  }

  /** Queues a mapped file's contents (zero-padded to whole blocks). */
  writeFileData(ino: number, data: Uint8Array): void {
    const { bs } = this;
    const runs = this.fileRuns.get(ino);
    if (runs === undefined) throw new Error(`mkfs: inode ${ino} has no data mapped`);
    for (const r of runs) {
      const part = data.subarray(r.fileBlock * bs, (r.fileBlock + r.countBlocks) * bs);
      if (part.length) this.writes.block(r.fsBlock, part.length === r.countBlocks * bs ? part : padTo(part, r.countBlocks * bs));
    }
  }

  /** A directory block holding `entries` (an empty block when there are none), with its tail. */
  dirBlock(ino: number, entries: readonly DirBlockEntry[]): Uint8Array {
    const { bs } = this;
    const filetype = this.has('incompat', INCOMPAT.filetype);
    const block = new Uint8Array(bs);
    const tail = this.csum ? 12 : 0;
    const list: DirEntry[] = [];
    let off = 0;
    entries.forEach(([child, name, ft], i) => {
      const nameBytes = encodeUtf8(name);
      const recLen = i === entries.length - 1 ? bs - tail - off : 8 + ((nameBytes.length + 3) & ~3);
      list.push({ inode: child, recLen, nameLen: nameBytes.length, fileType: filetype ? ft : 0, name: nameBytes, offset: off });
      off += recLen;
    });
    if (list.length === 0) list.push({ inode: 0, recLen: bs - tail, nameLen: 0, fileType: 0, name: new Uint8Array(0), offset: 0 });
    encodeDirBlock(list, block, { blockSize: bs, filetype, metadataCsum: this.csum, csumInodeSeed: this.inodeSeed(ino) });
    return block;
  }

  /** First block after group 0's superblock, GDT and the flex group's tables: where data starts. */
  superAreaEnd(): number {
    const { tables, geo } = this.lay;
    const t = tables[Math.min(tables.length - 1, geo.flexBgSize - 1)];
    if (t === undefined) throw new Error('mkfs: layout has no groups');
    return t.inodeTable + geo.inodeTableBlocks;
  }
}
