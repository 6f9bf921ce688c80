// The inode allocator: inode bitmaps, group choice for new files and directories, lazy
// initialisation of INODE_UNINIT groups, bg_itable_unused, and the descriptors' free-inode and
// used-directory counts and bitmap checksums. Layout: kernel Documentation/filesystems/ext4/
// blockgroup.rst ("Lazy Block Group Initialization"), group_descr.rst.
import { Ext4Error, assert, corrupt, badChecksum } from '../errors/ext4-error.ts';
import { BG_FLAGS } from '../format/group-desc.ts';
import { type Geometry } from '../layout/geometry.ts';
import { type MetaTxn } from '../journal/transaction.ts';
import { type BlockReader, type GroupTable, countZeroBits, findBit, markBitmapEnd, testBit } from './group-table.ts';

export interface InodeAllocatorOptions {
  /** s_first_ino: inodes below it are reserved and never handed out (default 11). */
  firstIno?: number;
  /** Reads bitmaps for `isAllocated` when no transaction is passed. */
  reader?: BlockReader;
}

export class InodeAllocator {
  readonly #geo: Geometry;
  readonly #table: GroupTable;
  readonly #firstIno: number;
  readonly #reader: BlockReader | undefined;
  #lastTxn: BlockReader | undefined;
  readonly #verified = new Set<number>();
  /** Per group, an index below which no inode is free (the search starts there, not at 0). */
  readonly #noneFreeBelow = new Map<number, number>();
  #lock: Promise<unknown> = Promise.resolve();
  /** Calls to #exclusive not finished yet. */
  #pending = 0;

  constructor(geo: Geometry, table: GroupTable, opts: InodeAllocatorOptions = {}) {
    this.#geo = geo;
    this.#table = table;
    this.#firstIno = opts.firstIno ?? 11;
    this.#reader = opts.reader;
    assert(Number.isInteger(this.#firstIno) && this.#firstIno >= 1, `bad first inode ${this.#firstIno}`);
    for (let g = 0; g < geo.groupCount; g++) {
      const gd = table.desc(g);
      if (gd.freeInodesCount > geo.inodesPerGroup || gd.itableUnused > geo.inodesPerGroup) {
        throw corrupt('group-desc-counts', `group ${g}: inode counts exceed ${geo.inodesPerGroup} inodes per group`, { group: g });
      }
    }
  }

  /**
   * Allocates an inode. Directories spread out: the group (searched from the parent's) with at
   * least the average free inodes and free clusters and the fewest directories. Files stay in
   * the parent's group, else the next group with a free inode. ENOSPC when every group is full.
   * With ITABLE_ZEROED clear the slot may hold stale bytes: the caller writes a whole inode.
   */
  alloc(txn: MetaTxn, parentIno: number, isDir: boolean): Promise<number> {
    return this.#exclusive(txn, async () => {
      const geo = this.#geo;
      const G = geo.groupCount;
      const parentGroup = Number.isInteger(parentIno) && parentIno >= 1 && parentIno <= geo.inodesCount
        ? Math.floor((parentIno - 1) / geo.inodesPerGroup) : 0;
      // Groups in search order, from the parent's: a file's inode is almost always in the first
      // group or two, and a 2 TiB image has 16,384 groups (plain loops: this runs once per file).
      const spread = isDir ? this.#dirGroup(parentGroup) : undefined;
      if (spread !== undefined) {
        const ino = await this.#takeIn(txn, spread, isDir);
        if (ino !== 0) return ino;
      }
      for (let i = 0; i < G; i++) {
        const g = (parentGroup + i) % G;
        if (this.#table.desc(g).freeInodesCount === 0) continue;
        const ino = await this.#takeIn(txn, g, isDir);
        if (ino !== 0) return ino;
      }
      throw new Ext4Error('ENOSPC', 'no free inodes', { detail: 'no-free-inodes' });
    });
  }

  /**
   * For a new directory: the group, searched from the parent's, with at least the average free
   * inodes and free clusters and the fewest directories (undefined when none qualifies).
   */
  #dirGroup(parentGroup: number): number | undefined {
    const table = this.#table;
    const G = this.#geo.groupCount;
    let freeInodes = 0;
    let freeClusters = 0;
    for (const gd of table.groups) { freeInodes += gd.freeInodesCount; freeClusters += gd.freeBlocksCount; }
    const avgInodes = freeInodes / G;
    const avgClusters = freeClusters / G;
    let best: number | undefined;
    for (let i = 0; i < G; i++) {
      const gd = table.desc((parentGroup + i) % G);
      if (gd.freeInodesCount === 0 || gd.freeInodesCount < avgInodes || gd.freeBlocksCount < avgClusters) continue;
      if (best === undefined || gd.usedDirsCount < table.desc(best).usedDirsCount) best = (parentGroup + i) % G;
    }
    return best;
  }

  /** Takes the first free inode of group `g` (its number), or 0 when the bitmap has none. */
  async #takeIn(txn: MetaTxn, g: number, isDir: boolean): Promise<number> {
    const geo = this.#geo;
    const bits = await this.#view(txn, g);
    const from = Math.max(g === 0 ? Math.min(this.#firstIno - 1, geo.inodesPerGroup) : 0, this.#noneFreeBelow.get(g) ?? 0);
    const idx = findBit(bits, from, geo.inodesPerGroup, 0);
    if (idx === geo.inodesPerGroup) return 0;
    this.#noneFreeBelow.set(g, idx + 1);
    await this.#markUsed(txn, g, idx, isDir);
    return g * geo.inodesPerGroup + idx + 1;
  }

  /**
   * Marks inode `ino` in use (journal fast-commit replay names the inode); false when it already
   * was. EUCLEAN when it is reserved or out of range.
   */
  allocExact(txn: MetaTxn, ino: number, isDir: boolean): Promise<boolean> {
    return this.#exclusive(txn, async () => {
      const geo = this.#geo;
      if (!Number.isInteger(ino) || ino < this.#firstIno || ino > geo.inodesCount) {
        throw corrupt('inode-alloc-range', `marking inode ${ino} in use: reserved or out of range`, { inode: ino });
      }
      const g = Math.floor((ino - 1) / geo.inodesPerGroup);
      const idx = (ino - 1) % geo.inodesPerGroup;
      if (testBit(await this.#view(txn, g), idx)) return false;
      await this.#markUsed(txn, g, idx, isDir);
      return true;
    });
  }

  /** Sets bit `idx` of group `g`'s inode bitmap and updates the group's counts. */
  async #markUsed(txn: MetaTxn, g: number, idx: number, isDir: boolean): Promise<void> {
    const geo = this.#geo;
    const buf = await this.#writable(txn, g);
    buf[idx >> 3]! |= 1 << (idx & 7);
    const gd = this.#table.desc(g);
    gd.freeInodesCount--;
    if (isDir) gd.usedDirsCount++;
    // bg_itable_unused counts the never-used inodes at the end of the table.
    if (this.#table.lazyInit && idx >= geo.inodesPerGroup - gd.itableUnused) gd.itableUnused = geo.inodesPerGroup - (idx + 1);
    this.#table.setInodeBitmapCsum(g, buf);
    this.#table.markDirty(g);
  }

  /** Frees an inode; EUCLEAN when it is reserved, out of range or already free. */
  free(txn: MetaTxn, ino: number, isDir: boolean): Promise<void> {
    return this.#exclusive(txn, async () => {
      const geo = this.#geo;
      if (!Number.isInteger(ino) || ino < this.#firstIno || ino > geo.inodesCount) {
        throw corrupt('inode-free-range', `freeing inode ${ino}: reserved or out of range`, { inode: ino });
      }
      const g = Math.floor((ino - 1) / geo.inodesPerGroup);
      const idx = (ino - 1) % geo.inodesPerGroup;
      const bits = await this.#view(txn, g);
      if (!testBit(bits, idx)) throw corrupt('inode-double-free', `inode ${ino} is already free`, { inode: ino, group: g });
      const gd = this.#table.desc(g);
      if (isDir && gd.usedDirsCount === 0) throw corrupt('group-used-dirs', `group ${g}: freeing directory ${ino} with no directories counted`, { inode: ino, group: g });
      const buf = await this.#writable(txn, g);
      buf[idx >> 3]! &= ~(1 << (idx & 7));
      if (idx < (this.#noneFreeBelow.get(g) ?? 0)) this.#noneFreeBelow.set(g, idx);
      gd.freeInodesCount++;
      if (isDir) gd.usedDirsCount--;
      this.#table.setInodeBitmapCsum(g, buf);
      this.#table.markDirty(g);
    });
  }

  async isAllocated(ino: number, txn?: BlockReader): Promise<boolean> {
    const geo = this.#geo;
    assert(Number.isInteger(ino) && ino >= 1 && ino <= geo.inodesCount, `inode ${ino} out of range`);
    const g = Math.floor((ino - 1) / geo.inodesPerGroup);
    const r = txn ?? this.#reader ?? this.#lastTxn;
    assert(r, 'InodeAllocator: no reader (pass a transaction, or `reader` at construction)');
    return testBit(await this.#view(r, g), (ino - 1) % geo.inodesPerGroup);
  }

  /** Free inodes counted from the bitmaps (INODE_UNINIT groups as all free). */
  async countFreeInBitmaps(txn?: BlockReader): Promise<number> {
    const r = txn ?? this.#reader ?? this.#lastTxn;
    assert(r, 'InodeAllocator: no reader (pass a transaction, or `reader` at construction)');
    let n = 0;
    for (let g = 0; g < this.#geo.groupCount; g++) n += countZeroBits(await this.#view(r, g), this.#geo.inodesPerGroup);
    return n;
  }

  /** The bitmap an INODE_UNINIT group gets on first use: all free, padding bits set (kernel ext4_read_inode_bitmap). */
  #uninitImage(): Uint8Array {
    const bits = new Uint8Array(this.#geo.blockSize);
    markBitmapEnd(bits, this.#geo.inodesPerGroup);
    return bits;
  }

  async #view(reader: BlockReader, g: number): Promise<Uint8Array> {
    const gd = this.#table.desc(g);
    const uninit = this.#table.inodeUninit(g);
    let bits: Uint8Array;
    if (uninit) {
      bits = this.#uninitImage();
    } else {
      this.#table.checkBitmapBlock(g, gd.inodeBitmap, 'inode');
      bits = await reader.read(gd.inodeBitmap);
    }
    if (!this.#verified.has(g)) {
      const where = { group: g, block: gd.inodeBitmap };
      if (!uninit && !this.#table.inodeBitmapCsumOk(g, bits)) throw badChecksum('inode bitmap', where);
      const free = countZeroBits(bits, this.#geo.inodesPerGroup);
      if (free !== gd.freeInodesCount) {
        throw corrupt('group-free-inodes', `group ${g}: ${free} free inodes in the bitmap, ${gd.freeInodesCount} in the descriptor`, where);
      }
      this.#verified.add(g);
    }
    return bits;
  }

  async #writable(txn: MetaTxn, g: number): Promise<Uint8Array> {
    const gd = this.#table.desc(g);
    if (!this.#table.inodeUninit(g)) return txn.getWrite(gd.inodeBitmap);
    const buf = txn.getNew(gd.inodeBitmap);
    buf.set(this.#uninitImage());
    gd.flags &= ~BG_FLAGS.inodeUninit;
    // The whole table was unused: itable_unused restarts from the inode handed out now.
    gd.itableUnused = this.#geo.inodesPerGroup;
    this.#table.setInodeBitmapCsum(g, buf);
    this.#table.markDirty(g);
    return buf;
  }

  /**
   * Runs `fn` after every earlier call has finished. With none pending (the usual case: callers
   * hold the filesystem's allocation lock) it starts at once, without a turn through the chain.
   */
  #exclusive<T>(txn: MetaTxn, fn: () => Promise<T>): Promise<T> {
    this.#lastTxn = txn;
    this.#pending++;
    const run = this.#pending === 1 ? fn() : this.#lock.then(fn, fn);
    this.#lock = run.then(this.#settled, this.#settled);
    return run;
  }

  readonly #settled = (): void => { this.#pending--; };
}
