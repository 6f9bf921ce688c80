// Where mkfs puts things: geometry from the resolved options, a superblock with every field
// decided, and the location of each group's bitmaps and inode table. Pure: no I/O.
import { Ext4Error } from '../errors/ext4-error.ts';
import { COMPAT, INCOMPAT, RO_COMPAT } from '../format/features.ts';
import { decodeSuperblock, type Superblock, EXT4_SUPER_MAGIC } from '../format/superblock.ts';
import { crc32cUpdate } from '../util/crc.ts';
import { u32 } from '../util/bytes.ts';
import { ceilDiv, log2 } from '../util/checked-math.ts';
import { RangeSet } from '../util/range-set.ts';
import { geometryOf, groupFirstBlock, groupSuperAndGdtBlocks, superBlockOfGroup, type Geometry } from '../layout/geometry.ts';
import type { MkfsParams } from './options.ts';

export interface GroupTables {
  blockBitmap: number;
  inodeBitmap: number;
  inodeTable: number;
}

export interface MkfsLayout {
  sb: Superblock;
  geo: Geometry;
  tables: GroupTables[];
  /** Blocks used so far (superblock/GDT copies, bitmaps, inode tables). */
  used: RangeSet;
  /** Blocks of each group's superblock/GDT/reserved-GDT region: [start, end). */
  superRegion: (g: number) => [number, number];
}

const tooSmall = (why: string) => new Ext4Error('ENOSPC', `mkfs: filesystem too small: ${why}`, { detail: 'mkfs-too-small' });

/** mke2fs's rule: reserve enough GDT blocks to grow to 1024× (capped at 2^32 blocks). */
function reservedGdtBlocks(blocks: number, fdb: number, bpg: number, descPerBlock: number, gdtBlocks: number, blockSize: number): number {
  const maxBlocks = Math.min(0xffffffff, blocks * 1024);
  const rsvGroups = ceilDiv(maxBlocks - fdb, bpg);
  const rsv = ceilDiv(rsvGroups, descPerBlock) - gdtBlocks;
  return Math.max(0, Math.min(rsv, blockSize / 4));
}

export function planLayout(p: MkfsParams): MkfsLayout {
  const bs = p.blockSize;
  const R = p.clusterRatio;
  const f = { ...p.features };
  const fdb = bs === 1024 && R === 1 ? 1 : 0;
  const bpg = R === 1 ? Math.min(8 * bs, 65528) : 8 * bs * R;
  const is64 = (f.incompat & INCOMPAT['64bit']) !== 0;
  const descSize = is64 ? 64 : 32;
  const descPerBlock = bs / descSize;
  const inodesPerBlock = bs / p.inodeSize;
  let blocks = p.blocksCount;

  for (;;) {
    if (blocks - fdb < 64) throw tooSmall(`${blocks} blocks`);
    const groups = ceilDiv(blocks - fdb, bpg);
    const gdtBlocks = ceilDiv(groups, descPerBlock);
    let rsv = f.compat & COMPAT.resize_inode ? reservedGdtBlocks(blocks, fdb, bpg, descPerBlock, gdtBlocks, bs) : 0;
    if (!(f.incompat & INCOMPAT.meta_bg) && rsv + gdtBlocks > (bpg * 3) / 4) {
      f.incompat |= INCOMPAT.meta_bg;
      f.compat &= ~COMPAT.resize_inode;
      rsv = 0;
    }
    // Inodes per group: whole inode-table blocks, whole bitmap bytes, at most one bitmap block.
    const unit = Math.max(8, inodesPerBlock);
    let ipg = Math.max(ceilDiv(p.inodesCountWanted, groups), ceilDiv(16, groups));
    ipg = Math.min(ceilDiv(ipg, unit) * unit, 8 * bs);
    if (ipg * groups > 0xffffffff) ipg = Math.floor(0xffffffff / groups / unit) * unit;
    const itb = (ipg * p.inodeSize) / bs;

    const sb = decodeSuperblock(new Uint8Array(1024));
    Object.assign(sb, {
      inodesCount: ipg * groups, blocksCount: blocks, firstDataBlock: fdb,
      logBlockSize: log2(bs / 1024), logClusterSize: log2((bs * R) / 1024),
      blocksPerGroup: bpg, clustersPerGroup: bpg / R, inodesPerGroup: ipg,
      magic: EXT4_SUPER_MAGIC, state: 1, errors: 1, revLevel: 1, maxMntCount: 0xffff,
      firstIno: 11, inodeSize: p.inodeSize, featureCompat: f.compat, featureIncompat: f.incompat,
      featureRoCompat: f.roCompat, uuid: p.uuid, volumeName: p.label, reservedGdtBlocks: rsv,
      descSize: is64 ? 64 : 0, firstMetaBg: 0,
      logGroupsPerFlex: f.incompat & INCOMPAT.flex_bg ? 4 : 0,
      hashSeed: [0, 4, 8, 12].map((o) => u32(p.hashSeed, o)),
    } satisfies Partial<Superblock>);
    if (f.roCompat & RO_COMPAT.metadata_csum) sb.checksumType = 1;
    if (f.incompat & INCOMPAT.metadata_csum_seed) sb.checksumSeed = crc32cUpdate(0xffffffff, p.uuid);
    const geo = geometryOf(sb);

    const superRegion = (g: number): [number, number] => {
      const { superBlocks, gdtBlocks: gdt, reservedGdt } = groupSuperAndGdtBlocks(geo, g);
      const start = g === 0 ? 0 : groupFirstBlock(geo, g);
      const base = superBlocks ? superBlockOfGroup(geo, g) + 1 : groupFirstBlock(geo, g);
      return [start, superBlocks || gdt ? base + gdt + reservedGdt : start];
    };

    // A last group too small to hold its own metadata plus some data is dropped, as mke2fs does.
    const rem = (blocks - fdb) % bpg;
    if (rem !== 0 && groups > 1) {
      const [s, e] = superRegion(groups - 1);
      const overhead = e - s + 2 + itb;
      if (rem < overhead + 50) { blocks -= rem; continue; }
    }

    const used = new RangeSet();
    for (let g = 0; g < groups; g++) {
      const [s, e] = superRegion(g);
      used.add(s, e);
    }
    const tables: GroupTables[] = new Array(groups);
    const flex = geo.flexBgSize;
    const place = (from: number, len: number): number => {
      const at = used.findFree(from, len, blocks);
      if (at === undefined) throw tooSmall('no room for group metadata');
      used.add(at, at + len);
      return at;
    };
    for (let fg = 0; fg < groups; fg += flex) {
      const n = Math.min(flex, groups - fg);
      let cursor = superRegion(fg)[1];
      const bb: number[] = [], ib: number[] = [], it: number[] = [];
      for (let i = 0; i < n; i++) { cursor = place(cursor, 1); bb.push(cursor); cursor++; }
      for (let i = 0; i < n; i++) { cursor = place(cursor, 1); ib.push(cursor); cursor++; }
      for (let i = 0; i < n; i++) { cursor = place(cursor, itb); it.push(cursor); cursor += itb; }
      for (let i = 0; i < n; i++) tables[fg + i] = { blockBitmap: bb[i]!, inodeBitmap: ib[i]!, inodeTable: it[i]! };
    }
    return { sb, geo, tables, used, superRegion };
  }
}
