// Which data clusters a removal frees (delalloc-bigalloc.md §4.4, computed instead of carried as
// a tofree/nofree record): a physical cluster is kept while a block outside the removed range is
// still mapped in it, and a cluster shared by several removed runs is freed once.
import { EXT_MAX_LOGICAL_END, type Extent } from '../format/extent.ts';

/** A removed run of one extent: logical start, physical start, length. */
export interface Piece { l: number; p: number; n: number }

/** What the rules read of the tree: mapped extents from a block on, and the nearest on each side. */
export interface MappedExtents {
  from(start: number): AsyncIterable<Extent>;
  atOrBefore(fileBlock: number): Promise<Extent | undefined>;
  firstFrom(fileBlock: number): Promise<Extent | undefined>;
}

const endOf = (e: Extent): number => e.fileBlock + e.countBlocks;
const LAST_FILE_BLOCK = EXT_MAX_LOGICAL_END - 1;

/** Physical clusters of mapped blocks outside [first, last] that may share a cluster with it. */
export async function keptClusters(tree: MappedExtents, r: number, first: number, last: number): Promise<Set<number>> {
  const kept = new Set<number>();
  const addMapped = async (a: number, b: number): Promise<void> => {
    for await (const e of tree.from(a)) {
      if (e.fileBlock > b) break;
      const s = Math.max(a, e.fileBlock);
      const t = Math.min(b, endOf(e) - 1);
      const c0 = Math.floor((e.fsBlock + (s - e.fileBlock)) / r);
      const c1 = Math.floor((e.fsBlock + (t - e.fileBlock)) / r);
      for (let c = c0; c <= c1; c++) kept.add(c);
    }
  };
  const clusterStart = first - (first % r);
  if (clusterStart < first) await addMapped(clusterStart, first - 1);
  const clusterEnd = last - (last % r) + r - 1;
  if (clusterEnd > last) await addMapped(last + 1, clusterEnd);
  if (first > 0) {
    const left = await tree.atOrBefore(first - 1);
    if (left) {
      const blk = Math.min(endOf(left) - 1, first - 1);
      kept.add(Math.floor((left.fsBlock + (blk - left.fileBlock)) / r));
    }
  }
  if (last < LAST_FILE_BLOCK) {
    const right = await tree.firstFrom(last + 1);
    if (right) {
      const blk = Math.max(right.fileBlock, last + 1);
      kept.add(Math.floor((right.fsBlock + (blk - right.fileBlock)) / r));
    }
  }
  return kept;
}

/** Frees the clusters of removed runs, skipping kept ones and freeing shared edge clusters once. */
export async function freePieces(
  pieces: readonly Piece[], kept: ReadonlySet<number>, r: number,
  freeDataClusters: (cluster: number, count: number, logicalCluster: number) => Promise<void>,
): Promise<void> {
  // Only a run's first and last cluster can hold blocks of another run (its middle clusters are
  // covered by its own blocks), so only those are remembered.
  const done = new Set<number>();
  for (const pc of pieces) {
    const cA = Math.floor(pc.p / r);
    const cB = Math.floor((pc.p + pc.n - 1) / r);
    const skip = new Set<number>();
    for (const c of [cA, cB]) if (kept.has(c) || done.has(c)) skip.add(c);
    for (const c of kept) if (c > cA && c < cB) skip.add(c);
    const emit = async (c: number, count: number): Promise<void> => {
      const lb = pc.l + (Math.max(pc.p, c * r) - pc.p);
      await freeDataClusters(c, count, Math.floor(lb / r));
    };
    let runStart = cA;
    for (const s of [...skip].sort((x, y) => x - y)) {
      if (s > runStart) await emit(runStart, s - runStart);
      runStart = s + 1;
    }
    if (runStart <= cB) await emit(runStart, cB - runStart + 1);
    if (r > 1) { done.add(cA); done.add(cB); }
  }
}

