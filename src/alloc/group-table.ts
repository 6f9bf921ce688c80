// The in-memory group descriptor table of a mounted filesystem: descriptors shared with the read
// side, dirty tracking and write-back into the primary GDT blocks, bitmap checksums, and the
// bitmap bit helpers both allocators use. Layout: kernel Documentation/filesystems/ext4/group_descr.rst.
import { assert, corrupt } from '../errors/ext4-error.ts';
import { BG_FLAGS, encodeGroupDesc, setGroupDescChecksum, type GroupDesc } from '../format/group-desc.ts';
import { descriptorBlock, type Geometry } from '../layout/geometry.ts';
import { type MetaTxn } from '../journal/transaction.ts';
import { u16 } from '../util/bytes.ts';
import { crc32cUpdate } from '../util/crc.ts';

/** Where a block is read from outside a transaction (a journal handle's `read` sees uncommitted changes). */
export type BlockReader = Pick<MetaTxn, 'read'> & Partial<Pick<MetaTxn, 'busyViews'>>;

export class GroupTable {
  readonly #dirty = new Set<number>();

  /** `groups` are shared, not copied: the read side (inode lookup) sees every change at once. */
  constructor(readonly geo: Geometry, readonly groups: readonly GroupDesc[]) {
    assert(groups.length === geo.groupCount, `group table has ${groups.length} descriptors for ${geo.groupCount} groups`);
  }

  get groupCount(): number { return this.groups.length; }

  desc(g: number): GroupDesc {
    assert(Number.isInteger(g) && g >= 0 && g < this.groups.length, `group ${g} out of range`);
    return this.groups[g]!;
  }

  /** BLOCK_UNINIT / INODE_UNINIT / itable_unused mean something only with group checksums (uninit_bg or metadata_csum). */
  get lazyInit(): boolean { return this.geo.gdCsum.kind !== 'none'; }
  blockUninit(g: number): boolean { return this.lazyInit && (this.desc(g).flags & BG_FLAGS.blockUninit) !== 0; }
  inodeUninit(g: number): boolean { return this.lazyInit && (this.desc(g).flags & BG_FLAGS.inodeUninit) !== 0; }

  markDirty(g: number): void {
    this.desc(g);
    this.#dirty.add(g);
  }

  get dirtyGroups(): number[] { return [...this.#dirty].sort((a, b) => a - b); }

  /** Encodes every dirty descriptor into its primary GDT block, with its checksum. Backup GDTs are left alone, as the kernel does. */
  async flush(txn: MetaTxn): Promise<void> {
    const { geo } = this;
    for (const [g, bitmap] of this.#pendingBlockCsum) this.desc(g).blockBitmapCsum = this.blockBitmapCsum(bitmap);
    this.#pendingBlockCsum.clear();
    for (const [g, bitmap] of this.#pendingInodeCsum) this.desc(g).inodeBitmapCsum = this.inodeBitmapCsum(bitmap);
    this.#pendingInodeCsum.clear();
    for (const g of this.dirtyGroups) {
      const buf = await txn.getWrite(descriptorBlock(geo, Math.floor(g / geo.descPerBlock)));
      const off = (g % geo.descPerBlock) * geo.descSize;
      const slot = buf.subarray(off, off + geo.descSize);
      const gd = this.groups[g]!;
      encodeGroupDesc(gd, slot, geo.descSize);
      setGroupDescChecksum(slot, g, geo.descSize, geo.gdCsum);
      gd.checksum = u16(slot, 0x1e);
      gd.raw = slot.slice();
      this.#dirty.delete(g);
    }
  }

  freeClusters(): number { return this.groups.reduce((n, gd) => n + gd.freeBlocksCount, 0); }
  freeInodes(): number { return this.groups.reduce((n, gd) => n + gd.freeInodesCount, 0); }
  usedDirs(): number { return this.groups.reduce((n, gd) => n + gd.usedDirsCount, 0); }

  // Bitmap checksums (metadata_csum only): crc32c(fs seed, bitmap) over clusters_per_group/8 or
  // inodes_per_group/8 bytes; 32-byte descriptors keep only the low 16 bits.

  #csumMask(): number { return this.geo.descSize >= 64 ? 0xffffffff : 0xffff; }

  blockBitmapCsum(bitmap: Uint8Array): number {
    return (crc32cUpdate(this.geo.csumSeed, bitmap, 0, this.geo.clustersPerGroup / 8) & this.#csumMask()) >>> 0;
  }
  inodeBitmapCsum(bitmap: Uint8Array): number {
    return (crc32cUpdate(this.geo.csumSeed, bitmap, 0, this.geo.inodesPerGroup / 8) & this.#csumMask()) >>> 0;
  }
  blockBitmapCsumOk(g: number, bitmap: Uint8Array): boolean {
    return !this.geo.metadataCsum || (this.desc(g).blockBitmapCsum & this.#csumMask()) >>> 0 === this.blockBitmapCsum(bitmap);
  }
  inodeBitmapCsumOk(g: number, bitmap: Uint8Array): boolean {
    return !this.geo.metadataCsum || (this.desc(g).inodeBitmapCsum & this.#csumMask()) >>> 0 === this.inodeBitmapCsum(bitmap);
  }
  /** Bitmaps whose checksums are computed at the next flush (they change many times per commit). */
  readonly #pendingBlockCsum = new Map<number, Uint8Array>();
  setBlockBitmapCsum(g: number, bitmap: Uint8Array): void {
    if (this.geo.metadataCsum) { this.#pendingBlockCsum.set(g, bitmap); this.#dirty.add(g); }
  }
  readonly #pendingInodeCsum = new Map<number, Uint8Array>();
  setInodeBitmapCsum(g: number, bitmap: Uint8Array): void {
    if (this.geo.metadataCsum) { this.#pendingInodeCsum.set(g, bitmap); this.#dirty.add(g); }
  }

  /** A bitmap block number must lie inside the filesystem (and not be block 0). */
  checkBitmapBlock(g: number, block: number, what: 'block' | 'inode'): void {
    if (!Number.isSafeInteger(block) || block < 1 || block >= this.geo.blocksCount) {
      throw corrupt(`${what}-bitmap-location`, `group ${g}: ${what} bitmap block ${block} is outside the filesystem`, { group: g, block });
    }
  }
}

// ---- bitmap bits (bit i = byte i>>3, bit i&7, as ext4 stores them) -----------------------------

export const testBit = (bits: Uint8Array, i: number): boolean => ((bits[i >> 3]! >> (i & 7)) & 1) !== 0;

export function setBitRange(bits: Uint8Array, from: number, to: number): void {
  for (let i = from; i < to; i++) bits[i >> 3]! |= 1 << (i & 7);
}

export function clearBitRange(bits: Uint8Array, from: number, to: number): void {
  for (let i = from; i < to; i++) bits[i >> 3]! &= ~(1 << (i & 7));
}

/** First index in [from, end) whose bit equals `value`, or `end`. Skips whole bytes that cannot match. */
export function findBit(bits: Uint8Array, from: number, end: number, value: 0 | 1): number {
  const skip = value ? 0x00 : 0xff;
  let i = from;
  while (i < end) {
    if ((i & 7) === 0 && i + 8 <= end && bits[i >> 3] === skip) { i += 8; continue; }
    if (((bits[i >> 3]! >> (i & 7)) & 1) === value) return i;
    i++;
  }
  return end;
}

const POPCOUNT = Uint8Array.from({ length: 256 }, (_, b) => { let n = 0; for (let v = b; v; v >>= 1) n += v & 1; return n; });

/** Number of clear bits in [0, end). */
export function countZeroBits(bits: Uint8Array, end: number): number {
  let ones = 0;
  const whole = end >> 3;
  for (let i = 0; i < whole; i++) ones += POPCOUNT[bits[i]!]!;
  for (let i = whole * 8; i < end; i++) if (testBit(bits, i)) ones++;
  return end - ones;
}

/** Sets the padding bits from `from` to the end of the block, as the kernel's ext4_mark_bitmap_end does. */
export function markBitmapEnd(bits: Uint8Array, from: number): void {
  const firstWhole = Math.ceil(from / 8);
  setBitRange(bits, from, Math.min(firstWhole * 8, bits.length * 8));
  bits.fill(0xff, firstWhole);
}
