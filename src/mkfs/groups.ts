// The per-group metadata mkfs writes once every inode and data block is placed: inode tables,
// block and inode bitmaps with the group descriptors, and the superblock with its copies.
import { type BlockDevice } from '../device/block-device.ts';
import { INCOMPAT, RO_COMPAT } from '../format/features.ts';
import { encodeSuperblock, SUPERBLOCK_OFFSET, type Superblock } from '../format/superblock.ts';
import { BG_FLAGS, decodeGroupDesc, encodeGroupDesc, setGroupDescChecksum, type GroupDesc } from '../format/group-desc.ts';
import { encodeInode, S_IFDIR, S_IFMT, type Inode } from '../format/inode.ts';
import { crc32cUpdate } from '../util/crc.ts';
import { ceilDiv } from '../util/checked-math.ts';
import { groupFirstBlock, groupBlockCount, groupHasSuper, superBlockOfGroup, descriptorBlock } from '../layout/geometry.ts';
import { padTo, type MkfsBuild } from './build.ts';
import { type GroupTables } from './layout.ts';

/** Inode tables may be left unzeroed in groups without inodes (the kernel zeroes them lazily). */
const lazyInitOf = (b: MkfsBuild): boolean => b.csum || b.has('roCompat', RO_COMPAT.uninit_bg);

/** The highest inode number in use (every lower one counts as used too). */
function highestInode(b: MkfsBuild): number {
  let n = b.built.last;
  for (const ino of b.inodes.keys()) if (ino > n) n = ino;
  return n;
}

function tablesOf(b: MkfsBuild, g: number): GroupTables {
  const t = b.lay.tables[g];
  if (t === undefined) throw new Error(`mkfs: no tables planned for group ${g}`);
  return t;
}

/**
 * Encodes every inode into its inode-table block and zeroes the inode tables that need it
 * (all, unless the device reads as zeros or lazy init leaves groups without inodes alone).
 * The zeroing goes to the device at once; the encoded blocks join the pending writes.
 */
export async function writeInodeTables(b: MkfsBuild, device: BlockDevice): Promise<void> {
  const { geo, bs } = b;
  const itableBytes = b.itable;
  for (const [ino, inode] of b.inodes) encodeInodeInto(b, itableBytes, ino, inode);
  if (!b.params.deviceZeroed) {
    const lazyInit = lazyInitOf(b);
    const usedInodes = highestInode(b);
    const tableBytes = geo.inodeTableBlocks * bs;
    const zero = new Uint8Array(Math.min(tableBytes, 1 << 20));
    for (let g = 0; g < geo.groupCount; g++) {
      const groupHasInodes = g * geo.inodesPerGroup < usedInodes;
      if ((lazyInit && !groupHasInodes) || b.zeroedTables.has(g)) continue;
      for (let done = 0; done < tableBytes; done += zero.length) {
        const len = Math.min(zero.length, tableBytes - done);
        await device.write(tablesOf(b, g).inodeTable * bs + done, zero.subarray(0, len));
      }
    }
  }
  for (const [blk, bytes] of itableBytes) b.writes.block(blk, bytes);
  itableBytes.clear();
}

/** Encodes `inode` into its slot of its inode-table block in `itable` (made when missing); returns the block. */
export function encodeInodeInto(b: MkfsBuild, itable: Map<number, Uint8Array>, ino: number, inode: Inode): number {
  const { geo, bs } = b;
  const g = Math.floor((ino - 1) / geo.inodesPerGroup);
  const idx = (ino - 1) % geo.inodesPerGroup;
  const blk = tablesOf(b, g).inodeTable + Math.floor(idx / geo.inodesPerBlock);
  let block = itable.get(blk);
  if (!block) { block = new Uint8Array(bs); itable.set(blk, block); }
  const off = (idx % geo.inodesPerBlock) * geo.inodeSize;
  encodeInode(inode, block.subarray(off, off + geo.inodeSize), {
    ino, inodeSize: geo.inodeSize, fsCsumSeed: b.csum ? geo.csumSeed : undefined, hugeFile: b.has('roCompat', RO_COMPAT.huge_file),
    blockSize: bs, has64bit: b.has('incompat', INCOMPAT['64bit']),
  });
  return blk;
}

/** Zeroes group `g`'s inode table now (before any of its blocks is written). */
export async function zeroInodeTable(b: MkfsBuild, device: BlockDevice, g: number): Promise<void> {
  const { geo, bs } = b;
  const tableBytes = geo.inodeTableBlocks * bs;
  const zero = new Uint8Array(Math.min(tableBytes, 1 << 20));
  for (let done = 0; done < tableBytes; done += zero.length) {
    await device.write(tablesOf(b, g).inodeTable * bs + done, zero.subarray(0, Math.min(zero.length, tableBytes - done)));
  }
  b.zeroedTables.add(g);
}

/** Sets every bit from `from` to the end of the bitmap block (the padding e2fsck expects). */
function setTrailingBits(bitmap: Uint8Array, from: number): void {
  for (let bit = from; bit < bitmap.length * 8 && bit & 7; bit++) setBit(bitmap, bit);
  bitmap.fill(0xff, Math.ceil(from / 8));
}

function setBit(bitmap: Uint8Array, bit: number): void {
  const i = bit >> 3;
  const byte = bitmap[i];
  if (byte === undefined) throw new RangeError(`mkfs: bit ${bit} outside a ${bitmap.length}-byte bitmap`);
  bitmap[i] = byte | (1 << (bit & 7));
}

/** Group `g`'s block bitmap (a cluster is used when any block in it is) and its used-cluster count. */
function blockBitmapOf(b: MkfsBuild, g: number): { bitmap: Uint8Array; usedClusters: number; nClusters: number } {
  const { geo, R } = b;
  const start = groupFirstBlock(geo, g);
  const nBlocks = groupBlockCount(geo, g);
  const nClusters = ceilDiv(nBlocks, R);
  const startCluster = Math.floor(start / R);
  const bitmap = new Uint8Array(b.bs);
  let usedClusters = 0;
  let lastMarked = -1;
  for (const [s, e] of b.lay.used.within(start, start + nBlocks)) {
    for (let c = Math.floor(s / R); c <= Math.floor((e - 1) / R); c++) {
      if (c === lastMarked) continue;
      setBit(bitmap, c - startCluster);
      lastMarked = c;
      usedClusters++;
    }
  }
  setTrailingBits(bitmap, nClusters);
  return { bitmap, usedClusters, nClusters };
}

/** Each group's inode bitmap, used-inode and directory counts and highest used index + 1. */
function inodeBitmaps(b: MkfsBuild): Array<{ ibitmap: Uint8Array; inodesUsed: number; dirs: number; highest: number }> {
  const { geo } = b;
  const out = Array.from({ length: geo.groupCount }, (_, g) => ({ ibitmap: new Uint8Array(b.bs), inodesUsed: 0, dirs: b.built.dirsPerGroup.get(g) ?? 0, highest: 0 }));
  const mark = (ino: number): void => {
    const g = out[Math.floor((ino - 1) / geo.inodesPerGroup)];
    if (g === undefined) throw new RangeError(`mkfs: inode ${ino} beyond the last group`);
    const idx = (ino - 1) % geo.inodesPerGroup;
    const byte = g.ibitmap[idx >> 3]!;
    if (byte & (1 << (idx & 7))) return;
    g.ibitmap[idx >> 3] = byte | (1 << (idx & 7));
    g.inodesUsed++;
    g.highest = Math.max(g.highest, idx + 1);
  };
  for (const [ino, inode] of b.inodes) {
    mark(ino);
    if ((inode.mode & S_IFMT) === S_IFDIR) out[Math.floor((ino - 1) / geo.inodesPerGroup)]!.dirs++;
  }
  for (let ino = b.built.first; ino <= b.built.last; ino++) mark(ino);
  for (const g of out) setTrailingBits(g.ibitmap, geo.inodesPerGroup);
  return out;
}

/**
 * Block and inode bitmaps and the group descriptor of every group; bitmaps of groups that lazy
 * init marks uninitialised are not written. Returns the descriptor table and the free clusters.
 */
export function writeGroupDescriptors(b: MkfsBuild): { gdt: Uint8Array; freeClusters: number } {
  const { geo, bs } = b;
  const lazyInit = lazyInitOf(b);
  const gdt = new Uint8Array(geo.gdtBlocks * bs);
  let freeClusters = 0;
  const lastGroup = geo.groupCount - 1;
  const ibitmaps = inodeBitmaps(b);
  for (let g = 0; g < geo.groupCount; g++) {
    const { bitmap, usedClusters, nClusters } = blockBitmapOf(b, g);
    const free = nClusters - usedClusters;
    freeClusters += free;
    const [rs, re] = b.lay.superRegion(g);
    const start = groupFirstBlock(geo, g);
    const ownClusters = re > rs ? Math.floor((re - 1) / b.R) - Math.floor(Math.max(rs, start) / b.R) + 1 : 0;
    const blockUninit = lazyInit && g !== lastGroup && usedClusters === ownClusters;
    const { ibitmap, inodesUsed, dirs, highest } = ibitmaps[g]!;
    const inodeUninit = lazyInit && inodesUsed === 0;

    const tables = tablesOf(b, g);
    const gd: GroupDesc = decodeGroupDesc(new Uint8Array(geo.descSize), geo.descSize);
    gd.blockBitmap = tables.blockBitmap;
    gd.inodeBitmap = tables.inodeBitmap;
    gd.inodeTable = tables.inodeTable;
    gd.freeBlocksCount = free;
    gd.freeInodesCount = geo.inodesPerGroup - inodesUsed;
    gd.usedDirsCount = dirs;
    if (lazyInit) {
      gd.flags = (blockUninit ? BG_FLAGS.blockUninit : 0) | (inodeUninit ? BG_FLAGS.inodeUninit : 0) |
        (b.params.deviceZeroed || !inodeUninit ? BG_FLAGS.itableZeroed : 0);
      gd.itableUnused = geo.inodesPerGroup - highest;
    }
    if (b.csum) {
      gd.blockBitmapCsum = crc32cUpdate(geo.csumSeed, bitmap, 0, geo.clustersPerGroup / 8);
      gd.inodeBitmapCsum = crc32cUpdate(geo.csumSeed, ibitmap, 0, geo.inodesPerGroup / 8);
    }
    if (!blockUninit) b.writes.block(gd.blockBitmap, bitmap);
    if (!inodeUninit) b.writes.block(gd.inodeBitmap, ibitmap);
    const slot = gdt.subarray(g * geo.descSize, (g + 1) * geo.descSize);
    encodeGroupDesc(gd, slot, geo.descSize);
    setGroupDescChecksum(slot, g, geo.descSize, geo.gdCsum);
  }
  return { gdt, freeClusters };
}

/** The superblock's counters and the fields mke2fs sets at the end. */
export function finishSuperblock(b: MkfsBuild, freeClusters: number): void {
  const { sb, geo, params } = b;
  const usedInodes = highestInode(b);
  const extraIsize = b.has('roCompat', RO_COMPAT.extra_isize) && geo.inodeSize > 128 ? 32 : 0;
  Object.assign(sb, {
    freeBlocksCount: freeClusters * b.R,
    freeInodesCount: geo.inodesCount - b.inodes.size - (usedInodes - b.inodes.size),
    rBlocksCount: Math.floor((geo.blocksCount * params.reservedPercent) / 100),
    wtime: b.now, lastCheck: b.now, mkfsTime: b.now,
    defHashVersion: 1, flags: 0x1, defaultMountOpts: 0x0004 | 0x0008,
    minExtraIsize: extraIsize,
    wantExtraIsize: extraIsize,
  } satisfies Partial<Superblock>);
}

/**
 * Every copy of the superblock (its group number in each) and of the descriptor table: after
 * each superblock, or with meta_bg in the first, second and last group of each meta group.
 */
export function writeSuperblocksAndGdt(b: MkfsBuild, gdt: Uint8Array): void {
  const { sb, geo, bs } = b;
  for (let g = 0; g < geo.groupCount; g++) {
    if (!groupHasSuper(geo, g)) continue;
    sb.blockGroupNr = g;
    const bytes = encodeSuperblock(sb);
    if (g === 0) b.writes.at(SUPERBLOCK_OFFSET, bytes);
    else b.writes.block(superBlockOfGroup(geo, g), padTo(bytes, bs));
    if (!geo.metaBg) b.writes.block(superBlockOfGroup(geo, g) + 1, gdt);
  }
  sb.blockGroupNr = 0;
  if (!geo.metaBg) return;
  for (let i = 0; i < geo.gdtBlocks; i++) {
    const part = padTo(gdt.subarray(i * bs, (i + 1) * bs), bs);
    const first = i * geo.descPerBlock;
    const copies = new Set([first, first + 1, first + geo.descPerBlock - 1].filter((g) => g < geo.groupCount));
    for (const g of copies) {
      b.writes.block(g === first ? descriptorBlock(geo, i) : groupFirstBlock(geo, g) + (groupHasSuper(geo, g) ? 1 : 0), part);
    }
  }
}
