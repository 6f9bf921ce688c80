// The cluster allocator: block bitmaps (one bit per cluster), goal-directed search for contiguous
// free runs, exact allocation and freeing, lazy initialisation of BLOCK_UNINIT groups, and the
// group descriptors' free counts and bitmap checksums. The bitmap side of SpaceAccounting's `free`.
// On-disk rules: kernel Documentation/filesystems/ext4/blockgroup.rst ("Lazy Block Group
// Initialization"), bigalloc.rst; delalloc-bigalloc spec §1.
import { assert, corrupt, badChecksum } from '../errors/ext4-error.ts';
import { BG_FLAGS } from '../format/group-desc.ts';
import { groupBlockCount, groupFirstBlock, groupSuperAndGdtBlocks, type Geometry } from '../layout/geometry.ts';
import { type MetaTxn } from '../journal/transaction.ts';
import { ceilDiv } from '../util/checked-math.ts';
import {
  type BlockReader, type GroupTable, clearBitRange, countZeroBits, findBit, markBitmapEnd, setBitRange, testBit,
} from './group-table.ts';

export interface ClusterRun {
  cluster: number;
  count: number;
}

export interface ClusterAllocatorOptions {
  /** Reads bitmaps for `isAllocated` / `countFreeInBitmaps` when no transaction is passed. */
  reader?: BlockReader;
}

/** [startBit, endBit) ranges of one group's bitmap that hold filesystem metadata. */
type BitRanges = Array<[number, number]>;

export class ClusterAllocator {
  readonly #geo: Geometry;
  readonly #table: GroupTable;
  #free: number;
  readonly #reader: BlockReader | undefined;
  /** The last transaction seen: the reader of last resort for the read-only calls. */
  #lastTxn: BlockReader | undefined;
  /** Groups whose on-disk bitmap (or BLOCK_UNINIT image) has been checked against its descriptor. */
  readonly #verified = new Set<number>();
  #meta: BitRanges[] | undefined;
  #lock: Promise<unknown> = Promise.resolve();

  constructor(geo: Geometry, table: GroupTable, opts: ClusterAllocatorOptions = {}) {
    this.#geo = geo;
    this.#table = table;
    this.#reader = opts.reader;
    for (let g = 0; g < geo.groupCount; g++) {
      const free = table.desc(g).freeBlocksCount;
      if (free > this.#groupClusters(g)) {
        throw corrupt('group-free-clusters', `group ${g}: ${free} free clusters in a group of ${this.#groupClusters(g)}`, { group: g });
      }
    }
    this.#free = table.freeClusters();
  }

  /** Free clusters: the running total of the descriptors' counts, exact after every call. */
  get freeClusters(): number { return this.#free; }

  /**
   * A contiguous run of free clusters near `goalCluster`: at or after the goal in its group, then
   * the following groups (wrapping), then the goal group before the goal. The first run of
   * `wantClusters` wins; otherwise the longest run of at least `minClusters`. A run never crosses
   * a group boundary. Undefined when no run of `minClusters` exists.
   */
  allocRun(txn: MetaTxn, goalCluster: number, wantClusters: number, minClusters = 1): Promise<ClusterRun | undefined> {
    assert(Number.isSafeInteger(goalCluster), `bad goal ${goalCluster}`);
    assert(Number.isInteger(minClusters) && minClusters >= 1 && Number.isInteger(wantClusters) && wantClusters >= minClusters,
      `bad run request want=${wantClusters} min=${minClusters}`);
    return this.#exclusive(txn, async () => {
      const geo = this.#geo;
      const G = geo.groupCount;
      const want = Math.min(wantClusters, geo.clustersPerGroup);
      if (minClusters > want) return undefined;
      const at = this.#locate(goalCluster) ?? { g: 0, bit: 0 };
      let best: { g: number; bit: number; len: number } | undefined;
      for (let i = 0; i <= G; i++) {
        const g = (at.g + i) % G;
        // i === G revisits the goal group for runs that start before the goal.
        if (i === G && at.bit === 0) break;
        if (this.#table.desc(g).freeBlocksCount < minClusters) continue;
        const n = this.#groupClusters(g);
        const from = i === 0 ? at.bit : 0;
        const startLimit = i === G ? at.bit : n;
        const bits = await this.#view(txn, g);
        for (let s = findBit(bits, from, startLimit, 0); s < startLimit; s = findBit(bits, s, startLimit, 0)) {
          // Only `want` clusters matter: stop scanning the free run there.
          const e = findBit(bits, s, Math.min(n, s + want), 1);
          const len = e - s;
          if (len >= want) return this.#take(txn, g, s, want);
          if (len >= minClusters && (!best || len > best.len)) best = { g, bit: s, len };
          s = e;
        }
      }
      return best ? this.#take(txn, best.g, best.bit, best.len) : undefined;
    });
  }

  /**
   * Like allocRun, but when the goal cluster itself is taken (another file's data sits where
   * this file would continue), the run starts in the middle of the largest free run of the
   * group with the most free clusters: concurrent streams then spread apart instead of
   * interleaving chunk by chunk (what mballoc's per-inode preallocation achieves).
   */
  allocStream(txn: MetaTxn, goalCluster: number, wantClusters: number): Promise<ClusterRun | undefined> {
    return this.#exclusive(txn, async () => {
      const at = this.#locate(goalCluster);
      if (at) {
        const bits = await this.#view(txn, at.g);
        if (findBit(bits, at.bit, at.bit + 1, 0) === at.bit) return undefined; // goal free: caller uses allocRun
      }
      const geo = this.#geo;
      let g = -1;
      for (let i = 0; i < geo.groupCount; i++) {
        if (g < 0 || this.#table.desc(i).freeBlocksCount > this.#table.desc(g).freeBlocksCount) g = i;
      }
      if (g < 0 || this.#table.desc(g).freeBlocksCount < wantClusters * 4) return undefined;
      const n = this.#groupClusters(g);
      const bits = await this.#view(txn, g);
      let best = { s: 0, len: 0 };
      for (let s = findBit(bits, 0, n, 0); s < n;) {
        const e = findBit(bits, s, n, 1);
        if (e - s > best.len) best = { s, len: e - s };
        s = findBit(bits, e, n, 0);
      }
      if (best.len < wantClusters * 4) return undefined;
      return this.#take(txn, g, best.s + Math.floor(best.len / 2), Math.min(wantClusters, Math.ceil(best.len / 2)));
    });
  }

  /** Allocates exactly [cluster, cluster + count) if every cluster of it is free; false otherwise. */
  allocExact(txn: MetaTxn, cluster: number, count: number): Promise<boolean> {
    assert(Number.isSafeInteger(cluster) && Number.isInteger(count) && count >= 1, `bad range ${cluster}+${count}`);
    return this.#exclusive(txn, async () => {
      const parts = this.#split(cluster, count);
      if (!parts) return false;
      for (const p of parts) {
        const bits = await this.#view(txn, p.g);
        if (findBit(bits, p.bit, p.bit + p.len, 1) !== p.bit + p.len) return false;
      }
      const bufs: Uint8Array[] = [];
      for (const p of parts) bufs.push(await this.#writable(txn, p.g));
      parts.forEach((p, k) => this.#mark(p.g, bufs[k]!, p.bit, p.len, true));
      return true;
    });
  }

  /** Frees [cluster, cluster + count). Every cluster must be allocated and none may be group metadata. */
  free(txn: MetaTxn, cluster: number, count: number): Promise<void> {
    assert(Number.isInteger(count) && count >= 1, `bad free count ${count}`);
    return this.#exclusive(txn, async () => {
      const where = { block: cluster * this.#geo.clusterRatio };
      const parts = Number.isSafeInteger(cluster) ? this.#split(cluster, count) : undefined;
      if (!parts) throw corrupt('free-out-of-range', `freeing clusters ${cluster}+${count} outside the filesystem`, where);
      const meta = this.#metaRanges();
      for (const p of parts) {
        for (const [s, e] of meta[p.g]!) {
          if (s < p.bit + p.len && p.bit < e) {
            throw corrupt('free-system-zone', `freeing clusters ${cluster}+${count} that hold group ${p.g} metadata`, { ...where, group: p.g });
          }
        }
        const bits = await this.#view(txn, p.g);
        const hole = findBit(bits, p.bit, p.bit + p.len, 0);
        if (hole !== p.bit + p.len) {
          throw corrupt('bitmap-double-free', `cluster ${this.#firstCluster(p.g) + hole} is already free`, { ...where, group: p.g });
        }
      }
      const bufs: Uint8Array[] = [];
      for (const p of parts) bufs.push(await this.#writable(txn, p.g));
      parts.forEach((p, k) => this.#mark(p.g, bufs[k]!, p.bit, p.len, false));
    });
  }

  /** Whether a cluster is in use. Clusters before the first group (block 0 with 1 KiB blocks) count as in use. */
  async isAllocated(cluster: number, txn?: BlockReader): Promise<boolean> {
    assert(Number.isSafeInteger(cluster) && cluster >= 0 && cluster < this.#geo.clustersCount, `cluster ${cluster} out of range`);
    const at = this.#locate(cluster);
    if (!at) return true;
    return testBit(await this.#view(this.#readerFor(txn), at.g), at.bit);
  }

  /** Free clusters counted from the bitmaps (BLOCK_UNINIT groups as they would be initialised). */
  async countFreeInBitmaps(txn?: BlockReader): Promise<number> {
    const reader = this.#readerFor(txn);
    let n = 0;
    for (let g = 0; g < this.#geo.groupCount; g++) n += countZeroBits(await this.#view(reader, g), this.#groupClusters(g));
    return n;
  }

  // ---- groups and clusters ---------------------------------------------------------------------

  #firstCluster(g: number): number { return Math.floor(groupFirstBlock(this.#geo, g) / this.#geo.clusterRatio); }
  #groupClusters(g: number): number { return ceilDiv(groupBlockCount(this.#geo, g), this.#geo.clusterRatio); }

  /** Group and bit of a cluster; undefined outside every group. */
  #locate(cluster: number): { g: number; bit: number } | undefined {
    const geo = this.#geo;
    if (cluster < 0 || cluster >= geo.clustersCount) return undefined;
    const block = cluster * geo.clusterRatio;
    if (block < geo.firstDataBlock) return undefined;
    const g = Math.floor((block - geo.firstDataBlock) / geo.blocksPerGroup);
    if (g >= geo.groupCount) return undefined;
    const bit = cluster - this.#firstCluster(g);
    return bit < this.#groupClusters(g) ? { g, bit } : undefined;
  }

  /** Splits a cluster range at group boundaries; undefined if any part lies outside every group. */
  #split(cluster: number, count: number): Array<{ g: number; bit: number; len: number }> | undefined {
    const parts = [];
    for (let c = cluster; c < cluster + count;) {
      const at = this.#locate(c);
      if (!at) return undefined;
      const len = Math.min(cluster + count - c, this.#groupClusters(at.g) - at.bit);
      parts.push({ g: at.g, bit: at.bit, len });
      c += len;
    }
    return parts;
  }

  /**
   * Per group, the bitmap ranges that hold metadata: superblock / GDT / reserved-GDT copies at the
   * start of the group, and every group's bitmaps and inode table that lie inside it (with flex_bg
   * they may belong to other groups). Rounded out to whole clusters.
   */
  #metaRanges(): BitRanges[] {
    if (this.#meta) return this.#meta;
    const geo = this.#geo;
    const meta: BitRanges[] = Array.from({ length: geo.groupCount }, () => []);
    const add = (start: number, len: number, owner: number, what: string) => {
      if (!Number.isSafeInteger(start) || start < geo.firstDataBlock || start + len > geo.blocksCount) {
        throw corrupt(`group-desc-${what}`, `group ${owner}: ${what} at block ${start} is outside the filesystem`, { group: owner, block: start });
      }
      for (let b = start; b < start + len;) {
        const g = Math.floor((b - geo.firstDataBlock) / geo.blocksPerGroup);
        const end = Math.min(start + len, groupFirstBlock(geo, g) + groupBlockCount(geo, g));
        const first = this.#firstCluster(g);
        meta[g]!.push([Math.floor(b / geo.clusterRatio) - first, Math.floor((end - 1) / geo.clusterRatio) - first + 1]);
        b = end;
      }
    };
    for (let g = 0; g < geo.groupCount; g++) {
      const { superBlocks, gdtBlocks, reservedGdt } = groupSuperAndGdtBlocks(geo, g);
      const n = superBlocks + gdtBlocks + reservedGdt;
      if (n > 0) add(groupFirstBlock(geo, g), n, g, 'super-gdt');
      const gd = this.#table.desc(g);
      add(gd.blockBitmap, 1, g, 'block-bitmap');
      add(gd.inodeBitmap, 1, g, 'inode-bitmap');
      add(gd.inodeTable, geo.inodeTableBlocks, g, 'inode-table');
    }
    this.#meta = meta;
    return meta;
  }

  /**
   * The bitmap a BLOCK_UNINIT group gets on first use (the kernel's ext4_init_block_bitmap): its
   * metadata clusters set, and the padding bits past the group's last cluster.
   */
  #uninitImage(g: number): Uint8Array {
    const bits = new Uint8Array(this.#geo.blockSize);
    for (const [s, e] of this.#metaRanges()[g]!) setBitRange(bits, s, e);
    markBitmapEnd(bits, this.#groupClusters(g));
    return bits;
  }

  /** The current bitmap of group g, checked against its descriptor on first sight. Do not mutate. */
  async #view(reader: BlockReader, g: number): Promise<Uint8Array> {
    const gd = this.#table.desc(g);
    const uninit = this.#table.blockUninit(g);
    let bits: Uint8Array;
    if (uninit) {
      bits = this.#uninitImage(g);
    } else {
      this.#table.checkBitmapBlock(g, gd.blockBitmap, 'block');
      bits = await reader.read(gd.blockBitmap);
    }
    if (!this.#verified.has(g)) {
      const where = { group: g, block: gd.blockBitmap };
      if (!uninit) {
        if (!this.#table.blockBitmapCsumOk(g, bits)) throw badChecksum('block bitmap', where);
        for (const [s, e] of this.#metaRanges()[g]!) {
          if (findBit(bits, s, e, 0) !== e) throw corrupt('block-bitmap-metadata-free', `group ${g}: metadata cluster marked free in the block bitmap`, where);
        }
      }
      const free = countZeroBits(bits, this.#groupClusters(g));
      if (free !== gd.freeBlocksCount) {
        throw corrupt('group-free-clusters', `group ${g}: ${free} free clusters in the bitmap, ${gd.freeBlocksCount} in the descriptor`, where);
      }
      this.#verified.add(g);
    }
    return bits;
  }

  /** A writable bitmap for group g; a BLOCK_UNINIT group's bitmap is created here (getNew). */
  async #writable(txn: MetaTxn, g: number): Promise<Uint8Array> {
    const gd = this.#table.desc(g);
    if (!this.#table.blockUninit(g)) return txn.getWrite(gd.blockBitmap);
    const image = this.#uninitImage(g);
    const buf = txn.getNew(gd.blockBitmap);
    buf.set(image);
    gd.flags &= ~BG_FLAGS.blockUninit;
    this.#table.setBlockBitmapCsum(g, buf);
    this.#table.markDirty(g);
    return buf;
  }

  async #take(txn: MetaTxn, g: number, bit: number, len: number): Promise<ClusterRun> {
    const buf = await this.#writable(txn, g);
    this.#mark(g, buf, bit, len, true);
    return { cluster: this.#firstCluster(g) + bit, count: len };
  }

  /** Sets or clears bits already known to be in the opposite state, and keeps the counts and checksum. */
  #mark(g: number, buf: Uint8Array, bit: number, len: number, used: boolean): void {
    if (used) setBitRange(buf, bit, bit + len); else clearBitRange(buf, bit, bit + len);
    const gd = this.#table.desc(g);
    const delta = used ? -len : len;
    gd.freeBlocksCount += delta;
    this.#free += delta;
    this.#table.setBlockBitmapCsum(g, buf);
    this.#table.markDirty(g);
  }

  #readerFor(txn: BlockReader | undefined): BlockReader {
    const r = txn ?? this.#reader ?? this.#lastTxn;
    assert(r, 'ClusterAllocator: no reader (pass a transaction, or `reader` at construction)');
    return r;
  }

  /** Serialises mutations: a search and the update it decides never interleave with another. */
  #exclusive<T>(txn: MetaTxn, fn: () => Promise<T>): Promise<T> {
    this.#lastTxn = txn;
    const run = this.#lock.then(fn, fn);
    this.#lock = run.catch(() => undefined);
    return run;
  }
}
