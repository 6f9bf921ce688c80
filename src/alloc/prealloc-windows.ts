// Preallocation windows: per-owner (inode) ranges of free clusters held back, in memory only, for
// a file's future appends, so that files written at the same time do not interleave on disk
// (what mballoc's per-inode preallocation achieves). A window never touches a bitmap, a free
// count or a reservation: it only steers allocation policy, and gives way when space is short.

/** A window: clusters [cluster, cluster + count) right after the owner's last allocated run. */
export interface PreallocWindow {
  readonly owner: number;
  readonly cluster: number;
  /** May be 0: the record then only remembers where the owner's current run started. */
  readonly count: number;
  /** First cluster of the owner's current physically contiguous run (the window's run). */
  readonly runStart: number;
}

/** A blocked range [start, end) of clusters, for searches. */
export interface ClusterRange { readonly start: number; readonly end: number }

export class PreallocWindows {
  readonly #byOwner = new Map<number, PreallocWindow>();
  #total = 0;

  get(owner: number): PreallocWindow | undefined { return this.#byOwner.get(owner); }

  /** Clusters held in all windows. */
  get totalClusters(): number { return this.#total; }

  get size(): number { return this.#byOwner.size; }

  *[Symbol.iterator](): IterableIterator<PreallocWindow> { yield* this.#byOwner.values(); }

  set(owner: number, cluster: number, count: number, runStart: number): void {
    if (!Number.isSafeInteger(cluster) || cluster < 0 || !Number.isSafeInteger(count) || count < 0 ||
        !Number.isSafeInteger(runStart) || runStart > cluster) {
      throw new Error(`prealloc window ${cluster}+${count} (run from ${runStart}) for ${owner} is malformed`);
    }
    this.delete(owner);
    this.#byOwner.set(owner, { owner, cluster, count, runStart });
    this.#total += count;
  }

  delete(owner: number): void {
    const w = this.#byOwner.get(owner);
    if (!w) return;
    this.#total -= w.count;
    this.#byOwner.delete(owner);
  }

  clear(): void {
    this.#byOwner.clear();
    this.#total = 0;
  }

  /**
   * [cluster, cluster + count) was just allocated: cut it out of every window. A window keeps
   * only the part before the cut (its owner continues from the window's start); one whose start
   * was taken has lost its point and is dropped.
   */
  carve(cluster: number, count: number): void {
    if (this.#total === 0) return;
    const end = cluster + count;
    for (const w of [...this.#byOwner.values()]) {
      if (w.count === 0 || end <= w.cluster || cluster >= w.cluster + w.count) continue;
      if (cluster <= w.cluster) this.delete(w.owner);
      else this.set(w.owner, w.cluster, cluster - w.cluster, w.runStart);
    }
  }

  /** Non-empty windows of every owner but `except`, sorted: what other allocations keep out of. */
  blockedFor(except: number | undefined): ClusterRange[] {
    const out: ClusterRange[] = [];
    for (const w of this.#byOwner.values()) {
      if (w.owner !== except && w.count > 0) out.push({ start: w.cluster, end: w.cluster + w.count });
    }
    return out.sort((a, b) => a.start - b.start);
  }
}

/** Index of the first range in `sorted` that ends after `cluster` (sorted.length if none). */
export function firstEndingAfter(sorted: readonly ClusterRange[], cluster: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid]!.end <= cluster) lo = mid + 1; else hi = mid;
  }
  return lo;
}
