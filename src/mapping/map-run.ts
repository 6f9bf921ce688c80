// The one step that maps a run of file blocks onto disk: with bigalloc, blocks of a logical
// cluster that is already partly mapped must go to the same physical cluster (the "implied
// cluster", delalloc-bigalloc.md §1); otherwise new clusters come from the caller's allocator;
// then the extent goes into the tree. Writeback, fallocate, directory growth and quota files
// all map blocks through it.
import { assert } from '../errors/ext4-error.ts';
import { fileBlock as toFileBlock, fsBlock as toFsBlock } from '../util/brand.ts';
import { EXT_INIT_MAX_LEN, EXT_UNWRITTEN_MAX_LEN } from '../format/extent.ts';
import { extentInsert, logicalClusterMapped, type ExtentTreeEnv } from './extent-tree.ts';

/** What the caller's allocator returned: `countClusters` clusters starting at `cluster`. */
export interface AllocatedClusters {
  cluster: number;
  countClusters: number;
}

/**
 * Allocates between 1 and `wantClusters` new clusters for logical cluster `firstLogical` and the
 * ones after it. Whatever accounting goes with it (claims, quota, i_blocks) is the caller's.
 */
export type AllocateClusters = (wantClusters: number, firstLogical: number) => Promise<AllocatedClusters>;

export interface MappedRun {
  fileBlock: number;
  fsBlock: number;
  countBlocks: number;
  /** The blocks went into a physical cluster that already backed their logical cluster. */
  implied: boolean;
}

/** bigalloc: physical cluster already backing logical cluster `c` on disk, if any. */
export async function impliedCluster(env: ExtentTreeEnv, c: number): Promise<number | undefined> {
  if (env.clusterRatio === 1) return undefined;
  return (await logicalClusterMapped(env, c))?.physicalCluster;
}

/**
 * Maps blocks from `first` (a hole) towards `end` (exclusive) and inserts them as one extent
 * (`unwritten` or written). When first's logical cluster is already backed the run stops at that
 * cluster's end and nothing is allocated; otherwise `allocate` is asked for the logical clusters
 * up to the run's end, stopping before a last cluster that is itself backed, and no more than
 * one on-disk extent can hold. Returns what was mapped (at least one block); the caller loops
 * for the rest. The allocation is the caller's to undo if the insert throws.
 */
export async function mapRun(
  env: ExtentTreeEnv, first: number, end: number, unwritten: boolean, allocate: AllocateClusters,
): Promise<MappedRun> {
  const R = env.clusterRatio;
  assert(Number.isSafeInteger(first) && first >= 0 && end > first, `map run ${first}..${end}`);
  const c = Math.floor(first / R);
  const clusterEnd = (c + 1) * R;
  const implied = await impliedCluster(env, c);
  let fsStart: number;
  let n: number;
  if (implied !== undefined) {
    n = Math.min(end, clusterEnd) - first;
    fsStart = implied * R + (first % R);
  } else {
    let lastC = Math.floor((end - 1) / R);
    if (R > 1 && lastC > c && (await impliedCluster(env, lastC)) !== undefined) lastC--;
    const maxBlocks = unwritten ? EXT_UNWRITTEN_MAX_LEN : EXT_INIT_MAX_LEN;
    // No more than one on-disk extent can hold (counted from first's offset in its cluster).
    const want = Math.min(lastC - c + 1, Math.max(1, Math.floor((maxBlocks + (first % R)) / R)));
    const run = await allocate(want, c);
    assert(Number.isSafeInteger(run.cluster) && run.countClusters >= 1 && run.countClusters <= want,
      `allocator returned ${run.countClusters} clusters for ${want}`);
    fsStart = run.cluster * R + (first % R);
    n = Math.min(end, (c + run.countClusters) * R) - first;
  }
  await extentInsert(env, { fileBlock: toFileBlock(first), fsBlock: toFsBlock(fsStart), countBlocks: n, unwritten });
  return { fileBlock: first, fsBlock: fsStart, countBlocks: n, implied: implied !== undefined };
}

/**
 * One block `fileBlock` (a hole) mapped and inserted as written: into its implied cluster, else
 * into one cluster from `allocateOne` (which returns the cluster's first block). Returns the
 * physical block. Directory growth and quota files use it.
 */
export async function mapOneBlock(
  env: ExtentTreeEnv, fileBlock: number, allocateOne: () => Promise<number>,
): Promise<number> {
  const R = env.clusterRatio;
  const run = await mapRun(env, fileBlock, fileBlock + 1, false, async () => {
    const block = await allocateOne();
    assert(block % R === 0, `metadata cluster at block ${block} is not cluster-aligned`);
    return { cluster: block / R, countClusters: 1 };
  });
  return run.fsBlock;
}
