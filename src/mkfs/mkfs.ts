// mkfs: builds an empty ext4 filesystem on a block device — superblock and GDT copies,
// bitmaps, inode tables, root and lost+found, journal, resize inode, quota and orphan files.
// Uses format/, layout/ and the device; never the mounted filesystem (fs/).
import { type BlockDevice } from '../device/block-device.ts';
import { Ext4Error } from '../errors/ext4-error.ts';
import { COMPAT, INCOMPAT, RO_COMPAT, allFeatureNames } from '../format/features.ts';
import { encodeSuperblock, featureSet, SUPERBLOCK_OFFSET, type Superblock } from '../format/superblock.ts';
import { BG_FLAGS, decodeGroupDesc, encodeGroupDesc, setGroupDescChecksum, type GroupDesc } from '../format/group-desc.ts';
import { blankInode, encodeInode, EXTENTS_FL, IMMUTABLE_FL, S_IFDIR, S_IFREG, type Inode } from '../format/inode.ts';
import { encodeDirBlock, FT_DIR, type DirEntry } from '../format/dirent.ts';
import { inodeCsumSeed } from '../format/checksum.ts';
import { encodeQuotaFile, type QuotaUsage } from '../format/quota.ts';
import { makeEmptyJournalSuperblock, encodeJournalSuperblock } from '../format/jbd2/superblock.ts';
import { setU32, setU64, encodeUtf8 } from '../util/bytes.ts';
import { crc32cUpdate } from '../util/crc.ts';
import { ceilDiv } from '../util/checked-math.ts';
import { fsBlock, type FsBlock } from '../util/brand.ts';
import { groupFirstBlock, groupBlockCount, groupHasSuper, superBlockOfGroup, descriptorBlock } from '../layout/geometry.ts';
import { buildExtentTree, extentTreeBlocksNeeded, type Run } from '../mapping/extent-build.ts';
import { buildBlockMap } from '../mapping/blockmap-build.ts';
import { resolveMkfsOptions, type MkfsOptions } from './options.ts';
import { planLayout, type MkfsLayout } from './layout.ts';

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

const ROOT_INO = 2, USR_QUOTA_INO = 3, GRP_QUOTA_INO = 4, RESIZE_INO = 7, JOURNAL_INO = 8, LPF_INO = 11;
const ORPHAN_BLOCK_MAGIC = 0x0b10ca04;

/** mke2fs's default orphan file size in blocks. */
function defaultOrphanBlocks(blocks: number, blockSize: number): number {
  const n = blocks < 128 * 1024 ? 32 : blocks < 2 * 1024 * 1024 ? Math.floor(blocks / 4096) : 512;
  return Math.min(n, 512, Math.floor((8 << 20) / blockSize));
}

/** lost+found grows block by block until it reaches 16 KiB (and two blocks), at most 12 blocks. */
function lostFoundBlocks(blockSize: number): number {
  let n = 1;
  for (let i = 1; i < 12; i++) {
    const size = i * blockSize;
    if (size >= 16384 && size >= 2 * blockSize) break;
    n++;
  }
  return n;
}

/** Pending writes, flushed in block order in coalesced chunks. */
class WriteSet {
  private items: Array<{ off: number; bytes: Uint8Array }> = [];
  constructor(private readonly blockSize: number) {}
  block(b: number, bytes: Uint8Array): void { this.items.push({ off: b * this.blockSize, bytes }); }
  at(off: number, bytes: Uint8Array): void { this.items.push({ off, bytes }); }
  async flush(dev: BlockDevice): Promise<void> {
    this.items.sort((a, b) => a.off - b.off);
    const CHUNK = 1 << 20;
    const inflight: Array<Promise<void>> = [];
    let i = 0;
    while (i < this.items.length) {
      if (inflight.length >= 32) await Promise.all(inflight.splice(0));
      let j = i + 1;
      let end = this.items[i]!.off + this.items[i]!.bytes.length;
      while (j < this.items.length && this.items[j]!.off === end && end - this.items[i]!.off < CHUNK) {
        end += this.items[j]!.bytes.length;
        j++;
      }
      if (j === i + 1) {
        inflight.push(dev.write(this.items[i]!.off, this.items[i]!.bytes));
      } else {
        const buf = new Uint8Array(end - this.items[i]!.off);
        for (let k = i; k < j; k++) buf.set(this.items[k]!.bytes, this.items[k]!.off - this.items[i]!.off);
        inflight.push(dev.write(this.items[i]!.off, buf));
      }
      i = j;
    }
    await Promise.all(inflight);
    this.items = [];
  }
}

/** Allocates whole clusters for data after the metadata is placed. */
class DataAllocator {
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
    return fsBlock(this.alloc(1, goal)[0]!.fsBlock);
  }
}

export async function mkfs(device: BlockDevice, options: MkfsOptions = {}): Promise<MkfsResult> {
  if (device.readOnly) throw new Ext4Error('EROFS', 'mkfs: device is read-only');
  const params = resolveMkfsOptions(options, device.sizeBytes);
  const lay = planLayout(params);
  const { sb, geo, tables, used } = lay;
  const bs = geo.blockSize;
  const R = geo.clusterRatio;
  const now = params.timeSec;
  const csum = geo.metadataCsum;
  const fsSeed = geo.csumSeed;
  const has = (kind: 'compat' | 'incompat' | 'roCompat', bit: number) =>
    ((kind === 'compat' ? sb.featureCompat : kind === 'incompat' ? sb.featureIncompat : sb.featureRoCompat) & bit) !== 0;
  const filetype = has('incompat', INCOMPAT.filetype);
  const extents = has('incompat', INCOMPAT.extent);
  const writes = new WriteSet(bs);
  const alloc = new DataAllocator(lay);
  const inodes = new Map<number, Inode>();
  const blocks512PerCluster = (bs * R) / 512;
  const fileRuns = new Map<number, Run[]>();

  const newInode = (ino: number, mode: number, extraIsize = geo.inodeSize > 128 ? 32 : 0): Inode => {
    const inode = blankInode(geo.inodeSize, extraIsize);
    const t = { sec: now, nsec: 0 };
    Object.assign(inode, { mode, atime: t, ctime: { ...t }, mtime: { ...t }, linksCount: 1 });
    if (inode.crtime) inode.crtime = { ...t };
    inodes.set(ino, inode);
    return inode;
  };
  const inodeSeed = (ino: number) => (csum ? inodeCsumSeed(fsSeed, ino, 0) : undefined);

  /** Allocates data for a file, maps it with extents (or a block map when the fs has none), and sets i_blocks. */
  const mapFile = (ino: number, inode: Inode, countBlocks: number, goal: number): Run[] => {
    const runs = alloc.alloc(countBlocks, goal);
    let treeClusters = 0;
    if (extents) {
      inode.flags |= EXTENTS_FL;
      const treeBlocks = extentTreeBlocksNeeded(runs.reduce((n, r) => n + ceilDiv(r.countBlocks, 32768), 0), bs);
      const tree = buildExtentTree(runs, {
        blockSize: bs, inodeSeed: inodeSeed(ino),
        allocBlock: () => { treeClusters++; return alloc.one(runs[runs.length - 1]!.fsBlock); },
      });
      void treeBlocks;
      inode.iBlock.set(tree.iBlock);
      for (const n of tree.nodeBlocks) writes.block(n.block, n.bytes);
    } else {
      // ext2/ext3: direct, then indirect blocks (allocated right after the data).
      const map = buildBlockMap(runs, {
        blockSize: bs, allocBlock: () => { treeClusters++; return alloc.one(runs[runs.length - 1]!.fsBlock); },
      });
      inode.iBlock.set(map.iBlock);
      for (const n of map.indirectBlocks) writes.block(n.block, n.bytes);
    }
    inode.blocks512 = (ceilDiv(countBlocks, R) + treeClusters) * blocks512PerCluster;
    fileRuns.set(ino, runs);
    return runs;
  };
  const writeFileData = (ino: number, data: Uint8Array) => {
    for (const r of fileRuns.get(ino)!) {
      const part = data.subarray(r.fileBlock * bs, (r.fileBlock + r.countBlocks) * bs);
      if (part.length) writes.block(r.fsBlock, part.length === r.countBlocks * bs ? part : padTo(part, r.countBlocks * bs));
    }
  };

  // Reserved inodes 1..10 exist (and are checksummed) even when unused.
  for (let ino = 1; ino < 11; ino++) {
    const inode = newInode(ino, 0, 0);
    inode.linksCount = 0;
    if (ino !== 1) { inode.atime = inode.ctime = inode.mtime = { sec: 0, nsec: 0 }; }
  }

  // Root directory and lost+found.
  const root = newInode(ROOT_INO, S_IFDIR | 0o755);
  root.linksCount = 3;
  root.sizeBytes = bs;
  const rootRuns = mapFile(ROOT_INO, root, 1, superAreaEnd(lay));
  const lpf = newInode(LPF_INO, S_IFDIR | 0o700);
  lpf.linksCount = 2;
  const lpfBlocks = lostFoundBlocks(bs);
  lpf.sizeBytes = lpfBlocks * bs;
  const lpfRuns = mapFile(LPF_INO, lpf, lpfBlocks, rootRuns[0]!.fsBlock + 1);
  const dirBlock = (ino: number, entries: Array<[number, string, number]>): Uint8Array => {
    const block = new Uint8Array(bs);
    const tail = csum ? 12 : 0;
    const list: DirEntry[] = [];
    let off = 0;
    entries.forEach(([child, name, ft], i) => {
      const nameBytes = encodeUtf8(name);
      const recLen = i === entries.length - 1 ? bs - tail - off : 8 + ((nameBytes.length + 3) & ~3);
      list.push({ inode: child, recLen, nameLen: nameBytes.length, fileType: filetype ? ft : 0, name: nameBytes, offset: off });
      off += recLen;
    });
    if (list.length === 0) list.push({ inode: 0, recLen: bs - tail, nameLen: 0, fileType: 0, name: new Uint8Array(0), offset: 0 });
    encodeDirBlock(list, block, { blockSize: bs, filetype, metadataCsum: csum, csumInodeSeed: inodeSeed(ino) });
    return block;
  };
  writes.block(rootRuns[0]!.fsBlock, dirBlock(ROOT_INO, [[ROOT_INO, '.', FT_DIR], [ROOT_INO, '..', FT_DIR], [LPF_INO, 'lost+found', FT_DIR]]));
  for (const r of lpfRuns) {
    for (let k = 0; k < r.countBlocks; k++) {
      const first = r.fileBlock + k === 0;
      writes.block(r.fsBlock + k, dirBlock(LPF_INO, first ? [[LPF_INO, '.', FT_DIR], [ROOT_INO, '..', FT_DIR]] : []));
    }
  }
  const dirsInGroup0 = 2;

  // Resize inode: a block-mapped file whose double-indirect block lists the primary reserved
  // GDT blocks, each of which lists its backups (the layout e2fsck checks).
  if (has('compat', COMPAT.resize_inode)) {
    const resize = newInode(RESIZE_INO, S_IFREG | 0o600);
    const apb = bs / 4;
    const dind = alloc.one(lpfRuns[lpfRuns.length - 1]!.fsBlock);
    const dindBytes = new Uint8Array(bs);
    const backups: number[] = [];
    for (let g = 1; g < geo.groupCount; g++) if (groupHasSuper(geo, g)) backups.push(g);
    const primaryStart = superBlockOfGroup(geo, 0) + 1 + geo.gdtBlocks;
    for (let i = 0; i < geo.reservedGdtBlocks; i++) {
      const pblk = primaryStart + i;
      setU32(dindBytes, 4 * ((geo.gdtBlocks + i) % apb), pblk);
      const ind = new Uint8Array(bs);
      backups.forEach((g, j) => { if (j < apb) setU32(ind, 4 * j, superBlockOfGroup(geo, g) + 1 + geo.gdtBlocks + i); });
      writes.block(pblk, ind);
    }
    writes.block(dind, dindBytes);
    setU32(resize.iBlock, 4 * 13, dind);
    resize.sizeBytes = (apb * apb + apb + 12) * bs;
    // e2fsck charges every block the resize inode references as a whole cluster.
    resize.blocks512 = (1 + geo.reservedGdtBlocks * (1 + Math.min(backups.length, apb))) * blocks512PerCluster;
  }

  // Journal: an empty, valid jbd2 journal in the middle of the filesystem.
  if (has('compat', COMPAT.has_journal)) {
    const journal = newInode(JOURNAL_INO, S_IFREG | 0o600);
    journal.sizeBytes = params.journalBlocks * bs;
    const goal = groupFirstBlock(geo, Math.floor(geo.groupCount / 2));
    const runs = mapFile(JOURNAL_INO, journal, params.journalBlocks, goal);
    const jsb = new Uint8Array(bs);
    encodeJournalSuperblock(makeEmptyJournalSuperblock({ blockSize: bs, journalBlocks: params.journalBlocks, uuid: sb.uuid }), jsb);
    writes.block(runs[0]!.fsBlock, jsb);
    sb.journalInum = JOURNAL_INO;
    sb.jnlBackupType = 1;
    for (let i = 0; i < 15; i++) sb.jnlBlocks[i] = journal.iBlock[4 * i]! | (journal.iBlock[4 * i + 1]! << 8) | (journal.iBlock[4 * i + 2]! << 16) | ((journal.iBlock[4 * i + 3]! << 24) >>> 0);
    sb.jnlBlocks = sb.jnlBlocks.map((w) => w >>> 0);
    sb.jnlBlocks[15] = Math.floor(journal.sizeBytes / 0x1_0000_0000);
    sb.jnlBlocks[16] = journal.sizeBytes % 0x1_0000_0000;
  }

  // Orphan file: blocks of empty slots, each ending in magic + checksum.
  const orphanIno = 12;
  if (has('compat', COMPAT.orphan_file)) {
    const orphan = newInode(orphanIno, S_IFREG | 0o600);
    const n = defaultOrphanBlocks(geo.blocksCount, bs);
    orphan.sizeBytes = n * bs;
    const runs = mapFile(orphanIno, orphan, n, superAreaEnd(lay));
    const seed = csum ? inodeCsumSeed(fsSeed, orphanIno, 0) : 0;
    const data = new Uint8Array(n * bs);
    // Each block's checksum covers its physical block number (le64) and its slots.
    for (const r of runs) {
      for (let k = 0; k < r.countBlocks; k++) {
        const block = data.subarray((r.fileBlock + k) * bs, (r.fileBlock + k + 1) * bs);
        setU32(block, bs - 8, ORPHAN_BLOCK_MAGIC);
        if (!csum) continue;
        const where = new Uint8Array(8);
        setU64(where, 0, r.fsBlock + k);
        setU32(block, bs - 4, crc32cUpdate(crc32cUpdate(seed, where), block, 0, bs - 8));
      }
    }
    writeFileData(orphanIno, data);
    sb.orphanFileInum = orphanIno;
  }

  // Quota files: user and group usage of the files mkfs made (root owns everything).
  const quota = has('roCompat', RO_COMPAT.quota);
  const quotaInodes = quota ? [[USR_QUOTA_INO, 'user'], [GRP_QUOTA_INO, 'group']] as const : [];
  for (const [ino, type] of quotaInodes) {
    const inode = newInode(ino, S_IFREG | 0o600);
    inode.flags |= IMMUTABLE_FL;
    const size = encodeQuotaFile(type, new Map([[0, { spaceBytes: 1, inodes: 1 }]])).length;
    inode.sizeBytes = size;
    mapFile(ino, inode, ceilDiv(size, bs), superAreaEnd(lay));
  }
  if (quota) {
    const usage: QuotaUsage = { spaceBytes: 0, inodes: 0 };
    for (const [ino, inode] of inodes) {
      // e2fsck charges root and ordinary inodes; reserved, quota and orphan-file inodes are not counted.
      if ((ino !== ROOT_INO && ino < 11) || ino === orphanIno) continue;
      usage.spaceBytes += inode.blocks512 * 512;
      usage.inodes++;
    }
    for (const [ino, type] of quotaInodes) {
      writeFileData(ino, encodeQuotaFile(type, new Map([[0, usage]])));
    }
    sb.usrQuotaInum = USR_QUOTA_INO;
    sb.grpQuotaInum = GRP_QUOTA_INO;
  }

  // Inode bitmap and table contents.
  const usedInodes = Math.max(...inodes.keys());
  const hugeFile = has('roCompat', RO_COMPAT.huge_file);
  const itableBytes = new Map<number, Uint8Array>();
  for (const [ino, inode] of inodes) {
    const g = Math.floor((ino - 1) / geo.inodesPerGroup);
    const idx = (ino - 1) % geo.inodesPerGroup;
    const blk = tables[g]!.inodeTable + Math.floor(idx / geo.inodesPerBlock);
    let b = itableBytes.get(blk);
    if (!b) { b = new Uint8Array(bs); itableBytes.set(blk, b); }
    const off = (idx % geo.inodesPerBlock) * geo.inodeSize;
    encodeInode(inode, b.subarray(off, off + geo.inodeSize), {
      ino, inodeSize: geo.inodeSize, fsCsumSeed: csum ? fsSeed : undefined, hugeFile, blockSize: bs,
      has64bit: has('incompat', INCOMPAT['64bit']),
    });
  }
  // Inode tables: zero them unless the device is known to read as zeros (or lazy init applies).
  const lazyInit = csum || has('roCompat', RO_COMPAT.uninit_bg);
  const inodeTableBlocks = geo.inodeTableBlocks;
  if (!params.deviceZeroed) {
    const zero = new Uint8Array(Math.min(inodeTableBlocks * bs, 1 << 20));
    for (let g = 0; g < geo.groupCount; g++) {
      const groupHasInodes = g * geo.inodesPerGroup < usedInodes;
      if (lazyInit && !groupHasInodes) continue;
      for (let done = 0; done < inodeTableBlocks * bs; done += zero.length) {
        const len = Math.min(zero.length, inodeTableBlocks * bs - done);
        await device.write(tables[g]!.inodeTable * bs + done, zero.subarray(0, len));
      }
    }
  }
  for (const [blk, bytes] of itableBytes) writes.block(blk, bytes);

  // Block bitmaps, free counts and group descriptors.
  const gdt = new Uint8Array(geo.gdtBlocks * bs);
  let freeClustersTotal = 0;
  const lastGroup = geo.groupCount - 1;
  const clustersPerGroup = geo.clustersPerGroup;
  for (let g = 0; g < geo.groupCount; g++) {
    const start = groupFirstBlock(geo, g);
    const nBlocks = groupBlockCount(geo, g);
    const nClusters = ceilDiv(nBlocks, R);
    const startCluster = Math.floor(start / R);
    // Clusters in use: any used block inside the cluster.
    const bitmap = new Uint8Array(bs);
    let usedClusters = 0;
    let lastMarked = -1;
    for (const [s, e] of used.within(start, start + nBlocks)) {
      for (let c = Math.floor(s / R); c <= Math.floor((e - 1) / R); c++) {
        if (c === lastMarked) continue;
        const bit = c - startCluster;
        bitmap[bit >> 3]! |= 1 << (bit & 7);
        lastMarked = c;
        usedClusters++;
      }
    }
    setTrailingBits(bitmap, nClusters);
    const free = nClusters - usedClusters;
    freeClustersTotal += free;
    const [rs, re] = lay.superRegion(g);
    const ownClusters = re > rs ? Math.floor((re - 1) / R) - Math.floor(Math.max(rs, start) / R) + 1 : 0;
    const blockUninit = lazyInit && g !== lastGroup && usedClusters === ownClusters;

    const ibitmap = new Uint8Array(bs);
    let inodesUsedInGroup = 0;
    let highest = 0;
    for (const ino of inodes.keys()) {
      if (Math.floor((ino - 1) / geo.inodesPerGroup) !== g) continue;
      const idx = (ino - 1) % geo.inodesPerGroup;
      ibitmap[idx >> 3]! |= 1 << (idx & 7);
      inodesUsedInGroup++;
      highest = Math.max(highest, idx + 1);
    }
    setTrailingBits(ibitmap, geo.inodesPerGroup);
    const inodeUninit = lazyInit && inodesUsedInGroup === 0;

    const gd: GroupDesc = decodeGroupDesc(new Uint8Array(geo.descSize), geo.descSize);
    gd.blockBitmap = tables[g]!.blockBitmap;
    gd.inodeBitmap = tables[g]!.inodeBitmap;
    gd.inodeTable = tables[g]!.inodeTable;
    gd.freeBlocksCount = free;
    gd.freeInodesCount = geo.inodesPerGroup - inodesUsedInGroup;
    gd.usedDirsCount = g === 0 ? dirsInGroup0 : 0;
    if (lazyInit) {
      gd.flags = (blockUninit ? BG_FLAGS.blockUninit : 0) | (inodeUninit ? BG_FLAGS.inodeUninit : 0) |
        (params.deviceZeroed || !inodeUninit ? BG_FLAGS.itableZeroed : 0);
      gd.itableUnused = geo.inodesPerGroup - highest;
    }
    if (csum) {
      gd.blockBitmapCsum = crc32cUpdate(fsSeed, bitmap, 0, clustersPerGroup / 8);
      gd.inodeBitmapCsum = crc32cUpdate(fsSeed, ibitmap, 0, geo.inodesPerGroup / 8);
    }
    if (!blockUninit) writes.block(gd.blockBitmap, bitmap);
    if (!inodeUninit) writes.block(gd.inodeBitmap, ibitmap);
    const slot = gdt.subarray(g * geo.descSize, (g + 1) * geo.descSize);
    encodeGroupDesc(gd, slot, geo.descSize);
    setGroupDescChecksum(slot, g, geo.descSize, geo.gdCsum);
  }

  // Superblock counters, then every copy of the superblock and the descriptor blocks.
  const freeInodes = geo.inodesCount - inodes.size - (usedInodes - inodes.size);
  Object.assign(sb, {
    freeBlocksCount: freeClustersTotal * R,
    freeInodesCount: freeInodes,
    rBlocksCount: Math.floor((geo.blocksCount * params.reservedPercent) / 100),
    wtime: now, lastCheck: now, mkfsTime: now,
    defHashVersion: 1, flags: 0x1, defaultMountOpts: 0x0004 | 0x0008,
    minExtraIsize: has('roCompat', RO_COMPAT.extra_isize) && geo.inodeSize > 128 ? 32 : 0,
    wantExtraIsize: has('roCompat', RO_COMPAT.extra_isize) && geo.inodeSize > 128 ? 32 : 0,
  } satisfies Partial<Superblock>);
  for (let g = 0; g < geo.groupCount; g++) {
    if (!groupHasSuper(geo, g)) continue;
    sb.blockGroupNr = g;
    const bytes = encodeSuperblock(sb);
    if (g === 0) writes.at(SUPERBLOCK_OFFSET, bytes);
    else writes.block(superBlockOfGroup(geo, g), padTo(bytes, bs));
    if (!geo.metaBg) writes.block(superBlockOfGroup(geo, g) + 1, gdt);
  }
  sb.blockGroupNr = 0;
  if (geo.metaBg) {
    for (let i = 0; i < geo.gdtBlocks; i++) {
      const part = padTo(gdt.subarray(i * bs, (i + 1) * bs), bs);
      const first = i * geo.descPerBlock;
      const copies = new Set([first, first + 1, first + geo.descPerBlock - 1].filter((g) => g < geo.groupCount));
      for (const g of copies) {
        writes.block(g === first ? descriptorBlock(geo, i) : groupFirstBlock(geo, g) + (groupHasSuper(geo, g) ? 1 : 0), part);
      }
    }
  }
  await writes.flush(device);
  await device.flush();
  void inodeTableBlocks;
  return {
    blockSize: bs, clusterSize: bs * R, blocksCount: geo.blocksCount, groupCount: geo.groupCount,
    inodesCount: geo.inodesCount, features: allFeatureNames(featureSet(sb)), uuid: sb.uuid,
  };
}

/** Sets every bit from `from` to the end of the bitmap block (the padding e2fsck expects). */
function setTrailingBits(bitmap: Uint8Array, from: number): void {
  for (let bit = from; bit < bitmap.length * 8 && bit & 7; bit++) bitmap[bit >> 3]! |= 1 << (bit & 7);
  bitmap.fill(0xff, Math.ceil(from / 8));
}

function padTo(b: Uint8Array, len: number): Uint8Array {
  if (b.length >= len) return b;
  const out = new Uint8Array(len);
  out.set(b);
  return out;
}

/** First block after group 0's superblock, GDT and the flex group's tables: where data starts. */
function superAreaEnd(lay: MkfsLayout): number {
  const t = lay.tables[Math.min(lay.tables.length - 1, lay.geo.flexBgSize - 1)]!;
  return t.inodeTable + lay.geo.inodeTableBlocks;
}
