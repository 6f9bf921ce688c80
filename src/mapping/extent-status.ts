// Per-inode extent-status tree (written / unwritten / delayed / hole ranges of file blocks) and
// the bigalloc pending-cluster set. Delalloc-bigalloc spec §4.1; the es tree is the only source
// of truth for "delayed" (§8). Pure data structures: no accounting happens here.
//
// Representation: a sorted array of disjoint, immutable entries. Lookup is a binary search
// (O(log n)); insert/remove splice the array (O(log n) search + a memmove of the tail).

import type { FileBlock, FsBlock } from '../util/brand.ts';

/** Logical cluster number inside a file: FileBlock >> clusterBits. */
declare const logicalClusterBrand: unique symbol;
export type LogicalCluster = number & { readonly [logicalClusterBrand]: 'LogicalCluster' };
export const logicalCluster = (n: number): LogicalCluster => n as LogicalCluster;

/** Largest file block ext4 can address (32-bit ee_block). */
export const MAX_FILE_BLOCK = 0xffff_ffff as FileBlock;

export type MappedStatus = 'written' | 'unwritten';
export type UnmappedStatus = 'delayed' | 'hole';
export type ExtentStatus = MappedStatus | UnmappedStatus;

export type EsEntry =
  | { readonly first: FileBlock; readonly countBlocks: number; readonly status: MappedStatus; readonly fsBlock: FsBlock }
  | { readonly first: FileBlock; readonly countBlocks: number; readonly status: UnmappedStatus; readonly fsBlock?: undefined };

/** Last block of an entry (inclusive). */
export const entryLast = (e: EsEntry): FileBlock => (e.first + e.countBlocks - 1) as FileBlock;

function checkBlock(b: number, what: string): void {
  if (!Number.isSafeInteger(b) || b < 0 || b > MAX_FILE_BLOCK) throw new Error(`es tree: ${what} ${b} out of range`);
}

function checkRange(first: number, last: number): void {
  checkBlock(first, 'first block');
  checkBlock(last, 'last block');
  if (last < first) throw new Error(`es tree: empty range [${first}, ${last}]`);
}

export function clusterBitsOf(clusterRatio: number): number {
  if (!Number.isInteger(clusterRatio) || clusterRatio < 1 || (clusterRatio & (clusterRatio - 1)) !== 0 || clusterRatio > 2 ** 16) {
    throw new Error(`cluster ratio ${clusterRatio} is not a power of two`);
  }
  return Math.round(Math.log2(clusterRatio));
}

/** Logical cluster of a file block. */
export const clusterOf = (block: FileBlock, clusterRatio: number): LogicalCluster =>
  Math.floor(block / clusterRatio) as LogicalCluster;
/** First file block of a logical cluster. */
export const clusterFirstBlock = (c: LogicalCluster, clusterRatio: number): FileBlock => (c * clusterRatio) as FileBlock;
/** Last file block of a logical cluster. */
export const clusterLastBlock = (c: LogicalCluster, clusterRatio: number): FileBlock =>
  (c * clusterRatio + clusterRatio - 1) as FileBlock;

function makeEntry(first: number, countBlocks: number, status: ExtentStatus, fsBlock: number | undefined): EsEntry {
  if (status === 'written' || status === 'unwritten') {
    return Object.freeze({ first: first as FileBlock, countBlocks, status, fsBlock: fsBlock as FsBlock });
  }
  return Object.freeze({ first: first as FileBlock, countBlocks, status });
}

/** Same status, adjacent, and for mapped entries physically contiguous. */
function canMerge(a: EsEntry, b: EsEntry): boolean {
  if (a.status !== b.status || a.first + a.countBlocks !== b.first) return false;
  if (a.status === 'written' || a.status === 'unwritten') return a.fsBlock + a.countBlocks === b.fsBlock;
  return true;
}

export class ExtentStatusTree {
  #entries: EsEntry[] = [];

  /** Number of entries. */
  get size(): number { return this.#entries.length; }

  [Symbol.iterator](): IterableIterator<EsEntry> { return this.#entries.values(); }

  /** Index of the first entry whose last block is ≥ block (entries.length if none). */
  #indexFrom(block: number): number {
    let lo = 0;
    let hi = this.#entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const e = this.#entries[mid]!;
      if (e.first + e.countBlocks - 1 < block) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The entry containing `block`, if any. */
  lookup(block: FileBlock): EsEntry | undefined {
    checkBlock(block, 'block');
    const e = this.#entries[this.#indexFrom(block)];
    return e !== undefined && e.first <= block ? e : undefined;
  }

  /** Entries overlapping [first, last], in order, unclipped. */
  *overlapping(first: FileBlock, last: FileBlock): IterableIterator<EsEntry> {
    checkRange(first, last);
    for (let i = this.#indexFrom(first); i < this.#entries.length; i++) {
      const e = this.#entries[i]!;
      if (e.first > last) return;
      yield e;
    }
  }

  /** First entry overlapping [first, last] whose status is one of `statuses`. */
  findFirst(first: FileBlock, last: FileBlock, statuses: readonly ExtentStatus[]): EsEntry | undefined {
    for (const e of this.overlapping(first, last)) if (statuses.includes(e.status)) return e;
    return undefined;
  }

  hasDelayedIn(first: FileBlock, last: FileBlock): boolean {
    return this.findFirst(first, last, ['delayed']) !== undefined;
  }

  /** Some block in [first, last] is known written or unwritten. */
  hasMappedIn(first: FileBlock, last: FileBlock): boolean {
    return this.findFirst(first, last, ['written', 'unwritten']) !== undefined;
  }

  /** Delayed blocks inside [first, last] (whole tree when omitted). */
  countDelayedBlocks(first: FileBlock = 0 as FileBlock, last: FileBlock = MAX_FILE_BLOCK): number {
    let n = 0;
    for (const e of this.overlapping(first, last)) {
      if (e.status !== 'delayed') continue;
      n += Math.min(last, entryLast(e)) - Math.max(first, e.first) + 1;
    }
    return n;
  }

  /** Distinct logical clusters that hold a delayed block inside [first, last]. */
  countDelayedClusters(first: FileBlock, last: FileBlock, clusterRatio: number): number {
    let n = 0;
    let lastCounted = -1;
    for (const [a, b] of this.#delayedPieces(first, last)) {
      const ca = Math.max(clusterOf(a, clusterRatio), lastCounted + 1);
      const cb = clusterOf(b, clusterRatio);
      if (cb >= ca) {
        n += cb - ca + 1;
        lastCounted = cb;
      }
    }
    return n;
  }

  /** Logical clusters holding a delayed block, ascending, each once. */
  *delayedClusters(clusterRatio: number, first: FileBlock = 0 as FileBlock, last: FileBlock = MAX_FILE_BLOCK): IterableIterator<LogicalCluster> {
    let lastYielded = -1;
    for (const [a, b] of this.#delayedPieces(first, last)) {
      for (let c = Math.max(clusterOf(a, clusterRatio), lastYielded + 1); c <= clusterOf(b, clusterRatio); c++) {
        lastYielded = c;
        yield c as LogicalCluster;
      }
    }
  }

  *#delayedPieces(first: FileBlock, last: FileBlock): IterableIterator<[FileBlock, FileBlock]> {
    for (const e of this.overlapping(first, last)) {
      if (e.status !== 'delayed') continue;
      yield [Math.max(first, e.first) as FileBlock, Math.min(last, entryLast(e)) as FileBlock];
    }
  }

  /**
   * Records [first, first + countBlocks) with one status, replacing whatever was there
   * (neighbours are split) and merging with equal, contiguous neighbours.
   */
  insert(first: FileBlock, countBlocks: number, status: UnmappedStatus): void;
  insert(first: FileBlock, countBlocks: number, status: MappedStatus, fsBlock: FsBlock): void;
  insert(first: FileBlock, countBlocks: number, status: ExtentStatus, fsBlock?: FsBlock): void {
    if (!Number.isSafeInteger(countBlocks) || countBlocks < 1) throw new Error(`es tree: bad length ${countBlocks}`);
    const last = first + countBlocks - 1;
    checkRange(first, last);
    const mapped = status === 'written' || status === 'unwritten';
    if (mapped !== (fsBlock !== undefined)) throw new Error(`es tree: ${status} entry ${mapped ? 'needs' : 'takes no'} physical block`);
    if (mapped && (!Number.isSafeInteger(fsBlock) || fsBlock! < 0)) throw new Error(`es tree: bad physical block ${fsBlock}`);
    // One splice: entries [lo, hi) (those overlapping the range, then the neighbours merged
    // in) give way to what is left of them around the new entry.
    const entries = this.#entries;
    let lo = this.#indexFrom(first);
    let hi = lo;
    while (hi < entries.length && entries[hi]!.first <= last) hi++;
    const cutHead = hi > lo && entries[lo]!.first < first ? entries[lo]! : undefined;
    const cutTail = hi > lo && entryLast(entries[hi - 1]!) > last ? entries[hi - 1]! : undefined;
    let entry = makeEntry(first, countBlocks, status, fsBlock);
    const out: EsEntry[] = [];
    const left = cutHead !== undefined
      ? makeEntry(cutHead.first, first - cutHead.first, cutHead.status, cutHead.fsBlock)
      : entries[lo - 1];
    if (left !== undefined && canMerge(left, entry)) {
      entry = makeEntry(left.first, left.countBlocks + entry.countBlocks, status, left.fsBlock);
      if (cutHead === undefined) lo--;
    } else if (cutHead !== undefined) out.push(left!);
    const right = cutTail !== undefined
      ? makeEntry(last + 1, entryLast(cutTail) - last, cutTail.status,
        cutTail.fsBlock === undefined ? undefined : cutTail.fsBlock + (last + 1 - cutTail.first))
      : entries[hi];
    out.push(entry);
    if (right !== undefined && canMerge(entry, right)) {
      out[out.length - 1] = makeEntry(entry.first, entry.countBlocks + right.countBlocks, status, entry.fsBlock);
      if (cutTail === undefined) hi++;
    } else if (cutTail !== undefined) out.push(right!);
    entries.splice(lo, hi - lo, ...out);
  }

  /** Forgets [first, last]; entries straddling an end are trimmed. */
  remove(first: FileBlock, last: FileBlock): void {
    checkRange(first, last);
    this.#removeRange(first, last);
  }

  /** Removes [first, last] and returns the index where a range starting at `first` belongs. */
  #removeRange(first: FileBlock, last: FileBlock): number {
    const start = this.#indexFrom(first);
    let end = start;
    while (end < this.#entries.length && this.#entries[end]!.first <= last) end++;
    if (end === start) return start;
    const keep: EsEntry[] = [];
    const head = this.#entries[start]!;
    if (head.first < first) keep.push(makeEntry(head.first, first - head.first, head.status, head.fsBlock));
    const tail = this.#entries[end - 1]!;
    const tailLast = entryLast(tail);
    if (tailLast > last) {
      const cut = last + 1 - tail.first;
      keep.push(makeEntry(last + 1, tailLast - last, tail.status, tail.fsBlock === undefined ? undefined : tail.fsBlock + cut));
    }
    this.#entries.splice(start, end - start, ...keep);
    return head.first < first ? start + 1 : start;
  }

  /**
   * The shrinker: forgets every written, unwritten and hole entry (they can be looked up on disk
   * again). Delayed entries are the only record of delayed blocks and are never reclaimed.
   * Returns the number of entries dropped.
   */
  reclaim(): number {
    const before = this.#entries.length;
    this.#entries = this.#entries.filter((e) => e.status === 'delayed');
    return before - this.#entries.length;
  }

  /** Throws unless entries are valid, sorted and disjoint (debug check). */
  checkStructure(): void {
    let prevLast = -1;
    for (const e of this.#entries) {
      checkRange(e.first, entryLast(e));
      if (e.first <= prevLast) throw new Error(`es tree: entry at ${e.first} overlaps or is out of order`);
      prevLast = entryLast(e);
    }
  }
}

/**
 * Bigalloc pending reservations: logical clusters that hold a delayed block and are physically
 * allocated (invariant 1 of §4.2). Such a cluster's delayed blocks hold no reservation.
 */
export class PendingClusters {
  readonly #set = new Set<number>();

  get size(): number { return this.#set.size; }
  has(c: LogicalCluster): boolean { return this.#set.has(c); }
  add(c: LogicalCluster): void { this.#set.add(c); }
  delete(c: LogicalCluster): boolean { return this.#set.delete(c); }

  /** Ascending. */
  [Symbol.iterator](): IterableIterator<LogicalCluster> {
    return ([...this.#set].sort((a, b) => a - b) as LogicalCluster[]).values();
  }

  /** Pending clusters in [firstCluster, lastCluster], ascending. */
  inRange(firstCluster: LogicalCluster, lastCluster: LogicalCluster): LogicalCluster[] {
    const out: number[] = [];
    if (lastCluster - firstCluster + 1 <= this.#set.size) {
      for (let c = firstCluster; c <= lastCluster; c++) if (this.#set.has(c)) out.push(c);
    } else {
      for (const c of this.#set) if (c >= firstCluster && c <= lastCluster) out.push(c);
      out.sort((a, b) => a - b);
    }
    return out as LogicalCluster[];
  }
}
