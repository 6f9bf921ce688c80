// The cluster allocator: block bitmaps (one bit per cluster), goal-directed search for contiguous
// free runs, exact allocation and freeing, lazy initialisation of BLOCK_UNINIT groups, and the
// group descriptors' free counts and bitmap checksums. The bitmap side of SpaceAccounting's `free`.
// Also the placement policy for file data: per-file preallocation windows (prealloc-windows.ts).
// On-disk rules: kernel Documentation/filesystems/ext4/blockgroup.rst ("Lazy Block Group
// Initialization"), bigalloc.rst; delalloc-bigalloc spec §1.
import { assert, corrupt, badChecksum } from '../errors/ext4-error.ts';
import { BG_FLAGS } from '../format/group-desc.ts';
import { groupBlockCount, groupFirstBlock, groupSuperAndGdtBlocks, type Geometry } from '../layout/geometry.ts';
import { type MetaTxn } from '../journal/transaction.ts';
import { ceilDiv } from '../util/checked-math.ts';
import { EXT_INIT_MAX_LEN } from '../format/extent.ts';
import { PreallocWindows, firstEndingAfter, type ClusterRange, type PreallocWindow } from './prealloc-windows.ts';
import {
  type BlockReader, type GroupTable, clearBitRange, countZeroBits, findBit, markBitmapEnd, setBitRange, testBit,
} from './group-table.ts';

export interface ClusterRun {
  cluster: number;
  count: number;
}

export interface StreamOptions {
  /** The goal is the end of the owner's own earlier allocation (not a default). */
  continuing: boolean;
  /** The owner is still open for appends: keep a window after the run. */
  keepWindow: boolean;
  /** Free clusters not promised to delayed writes (free − dirty): windows shrink as it runs short. */
  spareClusters?: number;
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
  #ignoreBusy = false;
  /** Groups where this allocator has cleared bits (only their older bitmap versions can hold more). */
  readonly #freedGroups = new Set<number>();
  /** Groups whose on-disk bitmap (or BLOCK_UNINIT image) has been checked against its descriptor. */
  readonly #verified = new Set<number>();
  #meta: BitRanges[] | undefined;
  #lock: Promise<unknown> = Promise.resolve();
  /** Per-file preallocation windows (policy only: never counted as used). */
  readonly #windows = new PreallocWindows();

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
   * Preallocation windows of owners other than `opts.owner` are kept out of while any run of
   * `minClusters` exists outside them; only then do they give way.
   */
  allocRun(txn: MetaTxn, goalCluster: number, wantClusters: number, minClusters = 1, opts: { owner?: number } = {}): Promise<ClusterRun | undefined> {
    assert(Number.isSafeInteger(goalCluster), `bad goal ${goalCluster}`);
    assert(Number.isInteger(minClusters) && minClusters >= 1 && Number.isInteger(wantClusters) && wantClusters >= minClusters,
      `bad run request want=${wantClusters} min=${minClusters}`);
    return this.#exclusive(txn, async () => {
      const blocked = this.#windows.blockedFor(opts.owner);
      const found = await this.#search(txn, goalCluster, wantClusters, minClusters, blocked) ??
        (blocked.length ? await this.#search(txn, goalCluster, wantClusters, minClusters, []) : undefined) ??
        await this.#withoutBusy(() => this.#search(txn, goalCluster, wantClusters, minClusters, []));
      return found ? this.#take(txn, found.g, found.bit, found.len) : undefined;
    });
  }

  /**
   * Writeback allocation of a file's data (delayed blocks), up to `wantClusters`, with per-file
   * preallocation windows:
   * - a file continuing its own earlier allocation (goal = the end of its last run, usually the
   *   start of its window) takes the free run at the goal, as far as it reaches;
   * - otherwise a file that is still open starts a new run at the first free region, from the
   *   goal on, that can hold a whole maximum-length extent without entering another file's
   *   window (with sparse_super and flex_bg that is a region clear of superblock backups and
   *   group metadata); without one, the larger of the largest free region and the second half
   *   of the largest window;
   * - a closed file (`keepWindow` false) takes the first run near the goal, as allocRun does.
   * Afterwards an open file holds a window over the free clusters after its run, up to the end
   * of the maximum-length extent the run can grow into, capped at half of `spareClusters` (free
   * clusters not promised to delayed writes) minus the other windows; a closed file's window is
   * dropped. Windows never make this fail: undefined only when no cluster is free at all.
   */
  allocStream(txn: MetaTxn, owner: number, goalCluster: number, wantClusters: number, opts: StreamOptions): Promise<ClusterRun | undefined> {
    assert(Number.isSafeInteger(goalCluster) && Number.isInteger(wantClusters) && wantClusters >= 1,
      `bad stream request goal=${goalCluster} want=${wantClusters}`);
    return this.#exclusive(txn, async () => {
      const total = this.#geo.clustersCount;
      const slot = this.#slotClusters();
      const blocked = this.#windows.blockedFor(owner);
      const own = this.#windows.get(owner);
      const atWindow = own !== undefined && own.cluster === goalCluster;
      let start: number | undefined;
      let len = 0;
      let runStart = 0;
      if (opts.continuing || atWindow) {
        len = await this.#runFrom(txn, goalCluster, wantClusters, blocked);
        if (len > 0) { start = goalCluster; runStart = atWindow ? own.runStart : goalCluster; }
      }
      if (start === undefined && opts.keepWindow) {
        const goal = Math.min(Math.max(goalCluster, 0), total);
        let fit: { start: number; len: number } | undefined;
        let largest: { start: number; len: number } | undefined;
        const visit = (s: number, l: number): boolean => {
          if (l >= slot) { fit = { start: s, len: l }; return true; }
          if (!largest || l > largest.len) largest = { start: s, len: l };
          return false;
        };
        if (!(await this.#eachFreeRun(txn, goal, total, blocked, visit))) await this.#eachFreeRun(txn, 0, goal, blocked, visit);
        const region = fit ?? this.#splitLargestWindow(owner, largest?.len ?? 0) ?? largest;
        if (region) {
          start = region.start;
          runStart = start;
          const without = blocked.filter((r) => r.end <= start! || r.start > start!);
          len = await this.#runFrom(txn, start, wantClusters, without);
          assert(len > 0, `stream placement at cluster ${start} is not free`);
        }
      }
      if (start === undefined) {
        // A closed file packs near its goal like any other allocation; so does an open one when
        // no free cluster is left outside windows.
        const found = await this.#search(txn, goalCluster, wantClusters, 1, blocked) ??
          (blocked.length ? await this.#search(txn, goalCluster, wantClusters, 1, []) : undefined) ??
          await this.#withoutBusy(() => this.#search(txn, goalCluster, wantClusters, 1, []));
        if (!found) return undefined;
        start = this.#firstCluster(found.g) + found.bit;
        len = found.len;
        runStart = start;
      }
      await this.#takeRange(txn, start, len);
      this.#windows.delete(owner);
      if (opts.keepWindow) {
        const end = start + len;
        const remainder = slot - ((end - runStart) % slot);
        const spare = opts.spareClusters ?? Number.MAX_SAFE_INTEGER;
        const cap = Math.min(remainder, Math.max(0, Math.floor((spare - this.#windows.totalClusters) / 2)));
        const count = cap > 0 ? await this.#runFrom(txn, end, cap, this.#windows.blockedFor(owner)) : 0;
        this.#windows.set(owner, end, count, runStart);
      }
      return { cluster: start, count: len };
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
      parts.forEach((p, k) => { this.#mark(p.g, bufs[k]!, p.bit, p.len, true); });
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
      parts.forEach((p, k) => { this.#mark(p.g, bufs[k]!, p.bit, p.len, false); });
    });
  }

  // ---- preallocation windows ------------------------------------------------------------------

  /** The window `owner` holds, if any. */
  windowOf(owner: number): PreallocWindow | undefined { return this.#windows.get(owner); }

  /** Clusters held in windows (free clusters: windows never change any count). */
  get windowClusters(): number { return this.#windows.totalClusters; }

  /** Drops `owner`'s window (file closed, truncated, evicted). */
  releaseWindow(owner: number): void { this.#windows.delete(owner); }

  /** Drops every window (space is short). */
  releaseAllWindows(): void { this.#windows.clear(); }

  /** Throws unless every window lies on free clusters inside the filesystem and no two overlap. */
  async checkWindows(txn?: BlockReader): Promise<void> {
    const reader = this.#readerFor(txn);
    const all = [...this.#windows].filter((w) => w.count > 0).sort((a, b) => a.cluster - b.cluster);
    let sum = 0;
    for (const w of this.#windows) sum += w.count;
    if (sum !== this.#windows.totalClusters) throw new Error(`prealloc windows hold ${sum} clusters, counted ${this.#windows.totalClusters}`);
    for (let i = 0; i < all.length; i++) {
      const w = all[i]!;
      if (i > 0 && all[i - 1]!.cluster + all[i - 1]!.count > w.cluster) {
        throw new Error(`prealloc windows of ${all[i - 1]!.owner} and ${w.owner} overlap at cluster ${w.cluster}`);
      }
      if ((await this.#runFrom(reader, w.cluster, w.count, [])) !== w.count) {
        throw new Error(`prealloc window ${w.cluster}+${w.count} of ${w.owner} covers an allocated cluster`);
      }
    }
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

  // ---- searches -------------------------------------------------------------------------------

  /** Longest run extents may use, in clusters: ext4's longest initialized extent. */
  #slotClusters(): number { return Math.max(1, Math.floor(EXT_INIT_MAX_LEN / this.#geo.clusterRatio)); }

  /**
   * allocRun's search (nothing taken): the first free run of `want` (capped to a group) from the
   * goal, else the longest of at least `min`, never inside a `blocked` range.
   */
  async #search(reader: BlockReader, goalCluster: number, wantClusters: number, minClusters: number,
    blocked: readonly ClusterRange[]): Promise<{ g: number; bit: number; len: number } | undefined> {
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
      const first = this.#firstCluster(g);
      const from = i === 0 ? at.bit : 0;
      const startLimit = i === G ? at.bit : n;
      const bits = await this.#searchView(reader, g);
      for (let s = findBit(bits, from, startLimit, 0); s < startLimit; s = findBit(bits, s, startLimit, 0)) {
        // A run stops at the next blocked range; one that starts inside a blocked range moves past it.
        let limit = Math.min(n, s + want);
        const k = firstEndingAfter(blocked, first + s);
        if (k < blocked.length) {
          const r = blocked[k]!;
          if (r.start <= first + s) { s = Math.min(n, r.end - first); continue; }
          limit = Math.min(limit, r.start - first);
        }
        // Only `want` clusters matter: stop scanning the free run there.
        const e = findBit(bits, s, limit, 1);
        const len = e - s;
        if (len >= want) return { g, bit: s, len: want };
        if (len >= minClusters && (!best || len > best.len)) best = { g, bit: s, len };
        s = e;
      }
    }
    return best;
  }

  /**
   * Length of the free run starting at `start` (0 when that cluster is used or blocked), at most
   * `limit`, across group boundaries, ending at the first blocked range.
   */
  async #runFrom(reader: BlockReader, start: number, limit: number, blocked: readonly ClusterRange[]): Promise<number> {
    const k = firstEndingAfter(blocked, start);
    let cap = limit;
    if (k < blocked.length) {
      if (blocked[k]!.start <= start) return 0;
      cap = Math.min(cap, blocked[k]!.start - start);
    }
    let len = 0;
    while (len < cap) {
      const at = this.#locate(start + len);
      if (!at) break;
      const n = this.#groupClusters(at.g);
      const bits = await this.#searchView(reader, at.g);
      const e = findBit(bits, at.bit, Math.min(n, at.bit + (cap - len)), 1);
      len += e - at.bit;
      if (e < n) break;
    }
    return len;
  }

  /**
   * Calls `visit` with every maximal free run in [lo, hi) in cluster order (runs continue across
   * group boundaries; blocked ranges cut them) until it returns true; returns whether it did.
   */
  async #eachFreeRun(reader: BlockReader, lo: number, hi: number, blocked: readonly ClusterRange[],
    visit: (start: number, len: number) => boolean): Promise<boolean> {
    let runStart = 0;
    let runEnd = 0;
    const flush = (): boolean => {
      let s = runStart;
      for (let k = firstEndingAfter(blocked, s); s < runEnd; k++) {
        const r = blocked[k];
        const e = r && r.start < runEnd ? Math.max(s, r.start) : runEnd;
        if (e > s && visit(s, e - s)) return true;
        if (!r || r.start >= runEnd) break;
        s = r.end;
      }
      runStart = runEnd = 0;
      return false;
    };
    const add = (s: number, e: number): boolean => {
      if (runEnd === s && runEnd > runStart) { runEnd = e; return false; }
      const stop = flush();
      runStart = s;
      runEnd = e;
      return stop;
    };
    const first = this.#locate(lo);
    for (let g = first ? first.g : 0; g < this.#geo.groupCount; g++) {
      const base = this.#firstCluster(g);
      if (base >= hi) break;
      const n = this.#groupClusters(g);
      const from = Math.max(lo, base) - base;
      const to = Math.min(hi, base + n) - base;
      if (from >= to) continue;
      const free = this.#table.desc(g).freeBlocksCount;
      if (free === 0) {
        if (flush()) return true;
        continue;
      }
      if (free === n) {
        if (add(base + from, base + to)) return true;
        continue;
      }
      const bits = await this.#searchView(reader, g);
      for (let s = findBit(bits, from, to, 0); s < to;) {
        const e = findBit(bits, s, to, 1);
        if (add(base + s, base + e)) return true;
        s = findBit(bits, e, to, 0);
      }
    }
    return flush();
  }

  /**
   * Room for a new stream when no free region outside windows can hold a whole extent: the
   * second half of the largest other window, if that is larger than `largestFree`.
   */
  #splitLargestWindow(owner: number, largestFree: number): { start: number; len: number } | undefined {
    let w: PreallocWindow | undefined;
    for (const x of this.#windows) if (x.owner !== owner && (!w || x.count > w.count)) w = x;
    if (!w || w.count - Math.floor(w.count / 2) <= largestFree) return undefined;
    const half = Math.floor(w.count / 2);
    return { start: w.cluster + half, len: w.count - half };
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

  /**
   * The bitmap allocation searches see: the current one, with clusters still used in a version
   * that is not yet durably replaced (freed by an uncommitted transaction) counted as used —
   * unless #ignoreBusy (a retry when nothing else is free).
   */
  async #searchView(reader: BlockReader, g: number): Promise<Uint8Array> {
    const bits = await this.#view(reader, g);
    // Until a cluster of g is freed, its bitmap only ever gained bits: every older version is a
    // subset of this one and the merge below would change nothing (an import never frees).
    if (this.#ignoreBusy || !reader.busyViews || this.#table.blockUninit(g) || !this.#freedGroups.has(g)) return bits;
    const views = reader.busyViews(this.#table.desc(g).blockBitmap);
    if (views.length === 0) return bits;
    const out = bits.slice();
    for (const v of views) for (let i = 0; i < out.length; i++) out[i]! |= v[i]!;
    return out;
  }

  /**
   * Last resort when only clusters freed by uncommitted transactions are left: reuse them (the
   * kernel would commit and retry; ext4kit cannot commit from inside an allocation).
   */
  async #withoutBusy<T>(fn: () => Promise<T>): Promise<T> {
    this.#ignoreBusy = true;
    try { return await fn(); } finally { this.#ignoreBusy = false; }
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

  /** Takes [cluster, cluster + count), which must be free; it may span groups. */
  async #takeRange(txn: MetaTxn, cluster: number, count: number): Promise<void> {
    const parts = this.#split(cluster, count);
    assert(parts, `clusters ${cluster}+${count} outside every group`);
    const bufs: Uint8Array[] = [];
    for (const p of parts) bufs.push(await this.#writable(txn, p.g));
    parts.forEach((p, k) => {
      assert(findBit(bufs[k]!, p.bit, p.bit + p.len, 1) === p.bit + p.len, `clusters ${cluster}+${count} are not free`);
      this.#mark(p.g, bufs[k]!, p.bit, p.len, true);
    });
  }

  async #take(txn: MetaTxn, g: number, bit: number, len: number): Promise<ClusterRun> {
    const buf = await this.#writable(txn, g);
    this.#mark(g, buf, bit, len, true);
    return { cluster: this.#firstCluster(g) + bit, count: len };
  }

  /** Sets or clears bits already known to be in the opposite state, and keeps the counts and checksum. */
  #mark(g: number, buf: Uint8Array, bit: number, len: number, used: boolean): void {
    if (used) setBitRange(buf, bit, bit + len);
    else {
      clearBitRange(buf, bit, bit + len);
      this.#freedGroups.add(g);
    }
    if (used) this.#windows.carve(this.#firstCluster(g) + bit, len);
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
