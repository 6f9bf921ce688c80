// THE file-block seam: every question "what backs logical block b of this file?" and every
// change to the answer — delayed reservation at write(), allocation at writeback, unwritten
// allocation for fallocate, removal for truncate/punch — goes through here, so that the es
// tree, the pending set, the on-disk extent tree and the counters change together.
//
// Locking: the caller holds the inode's data lock (i_data_sem) EXCLUSIVELY around every
// function below except lookupRange (shared is enough). Async steps (extent-tree I/O) happen
// before the synchronous accounting step that commits a decision, and every decision is
// re-derived from state read under the lock (delalloc-bigalloc.md §2.1, §5).
import { Ext4Error } from '../errors/ext4-error.ts';
import { type FsBlock, type InodeNo, fileBlock as fb, fsBlock as pb } from '../util/brand.ts';
import type { MetaTxn } from '../journal/transaction.ts';
import type { ClusterAllocator } from '../alloc/cluster-allocator.ts';
import type { SpaceAccounting } from '../alloc/space-accounting.ts';
import {
  completeAllocation, insertDelayed, onPhysicalClusterFreed, removeRange, type DelallocState,
} from './delalloc.ts';
import { clusterOf, logicalCluster } from './extent-status.ts';
import { extentLookup, extentRemoveRange, extentSetUnwritten, type ExtentTreeEnv } from './extent-tree.ts';
import { impliedCluster, mapRun, type MappedRun } from './map-run.ts';

/**
 * Files shorter than this (in blocks, counting the range being written back) are placed like
 * any small allocation, packed near their goal and without a window, even while open; longer
 * ones are streams (mballoc's s_mb_stream_request default is also 16 blocks).
 */
const STREAM_MIN_BLOCKS = 16;

/** Everything mapping needs about one inode, assembled by the filesystem layer. */
export interface FileMap {
  readonly ino: InodeNo;
  readonly uid: number;
  readonly gid: number;
  readonly clusterRatio: number;
  readonly blockSize: number;
  readonly state: DelallocState;
  readonly space: SpaceAccounting;
  /** The data-allocation side of the cluster allocator (serialised by the caller's lock). */
  readonly alloc: Pick<ClusterAllocator, 'allocRun' | 'allocStream' | 'releaseWindow'>;
  /** Builds the extent-tree environment for one handle. */
  treeEnv(txn: MetaTxn): ExtentTreeEnv;
  /** Physical block to start searching from for this file's next allocation. */
  goal(): number;
  /** Whether goal() continues this file's own earlier allocation (rather than a default). */
  hasOwnGoal(): boolean;
  setGoal(block: number): void;
  /** Whether the file is open, so that it may append again: its writeback keeps a preallocation window. */
  streaming(): boolean;
  /** i_blocks changes, in clusters (data and tree nodes). */
  chargeClusters(delta: number): void;
}

export type BlockState = 'hole' | 'delayed' | 'written' | 'unwritten';
export interface Segment { first: number; count: number; state: BlockState; fsBlock?: number }

/** Splits [first, first+count) into runs by what backs them (es tree for delayed, extent tree otherwise). */
export async function lookupRange(f: FileMap, txn: MetaTxn, first: number, count: number): Promise<Segment[]> {
  const out: Segment[] = [];
  const env = f.treeEnv(txn);
  const end = first + count;
  for (let b = first; b < end;) {
    const es = f.state.es.lookup(fb(b));
    if (es && es.status === 'delayed') {
      const n = Math.min(end, es.first + es.countBlocks) - b;
      push(out, { first: b, count: n, state: 'delayed' });
      b += n;
      continue;
    }
    const ext = await extentLookup(env, fb(b));
    if (ext) {
      const n = Math.min(end, ext.fileBlock + ext.countBlocks) - b;
      push(out, { first: b, count: n, state: ext.unwritten ? 'unwritten' : 'written', fsBlock: ext.fsBlock + (b - ext.fileBlock) });
      b += n;
      continue;
    }
    // A hole up to the next delayed or mapped block.
    let n = 1;
    while (b + n < end && !f.state.es.lookup(fb(b + n)) && !(await extentLookup(env, fb(b + n)))) n++;
    push(out, { first: b, count: n, state: 'hole' });
    b += n;
  }
  return out;
}

function push(out: Segment[], s: Segment): void {
  const last = out[out.length - 1];
  if (last && last.state === s.state && last.first + last.count === s.first &&
      (s.fsBlock === undefined || last.fsBlock! + last.count === s.fsBlock)) {
    last.count += s.count;
  } else out.push(s);
}

/** The signature of reserveDelayed (what a test hook receives as the real implementation). */
export type ReserveDelayedFn = (f: FileMap, txn: MetaTxn, first: number, count: number,
  opts?: { useRootReserve?: boolean }) => Promise<number>;

/**
 * TEST-ONLY injection point — production code never sets it. When `reserveDelayed` is set, the
 * exported reserveDelayed() calls it with the real implementation instead of calling that
 * directly; when unset (always, outside tests) the cost is one property read per write().
 * test/schedule-explorer.test.ts installs a deliberately broken variant (the 2011 mistake:
 * "cluster already reserved" decided from state the data lock does not protect) to prove that
 * its schedule explorer finds the race. Never set it from src/.
 */
export const mapBlocksTestHooks: { reserveDelayed?: (real: ReserveDelayedFn, ...args: Parameters<ReserveDelayedFn>) => Promise<number> } = {};

/**
 * write(): makes every hole in [first, first+count) delayed, reserving quota and clusters.
 * ENOSPC/EDQUOT leave nothing reserved. Returns the number of clusters reserved.
 */
export function reserveDelayed(f: FileMap, txn: MetaTxn, first: number, count: number,
  opts: { useRootReserve?: boolean } = {}): Promise<number> {
  const hook = mapBlocksTestHooks.reserveDelayed;
  return hook ? hook(realReserveDelayed, f, txn, first, count, opts) : realReserveDelayed(f, txn, first, count, opts);
}

async function realReserveDelayed(f: FileMap, txn: MetaTxn, first: number, count: number,
  opts: { useRootReserve?: boolean } = {}): Promise<number> {
  const holes = (await lookupRange(f, txn, first, count)).filter((s) => s.state === 'hole');
  const env = f.treeEnv(txn);
  const R = f.clusterRatio;
  // Answers for the end clusters of each hole, looked up now (async) and used synchronously below.
  const allocated = new Map<number, boolean>();
  for (const h of holes) {
    for (const c of new Set([clusterOf(fb(h.first), R), clusterOf(fb(h.first + h.count - 1), R)])) {
      if (!allocated.has(c)) allocated.set(c, (await impliedCluster(env, c)) !== undefined);
    }
  }
  const done: Segment[] = [];
  let reserved = 0;
  try {
    for (const h of holes) {
      reserved += insertDelayed(f.state, fb(h.first), h.count, R, (c) => allocated.get(c) ?? false, opts).reservedClusters;
      done.push(h);
    }
  } catch (e) {
    for (const h of done) removeRange(f.state, fb(h.first), fb(h.first + h.count - 1));
    throw e;
  }
  return reserved;
}

/**
 * Writeback: gives the delayed run [first, first+count) physical blocks, inserts the extents
 * and settles the reservations. Returns the mapped pieces so the caller can write the data.
 * Must not fail for lack of space (the clusters were reserved at write time).
 */
export async function allocateDelayed(f: FileMap, txn: MetaTxn, first: number, count: number): Promise<Array<{ first: number; count: number; fsBlock: number }>> {
  return allocateRange(f, txn, first, count, 'delayed');
}

/**
 * fallocate over holes: allocates unwritten extents, charging quota and free space now
 * (EDQUOT/ENOSPC here, never later). Delayed blocks in the range must have been written back first.
 */
export async function allocateUnwritten(f: FileMap, txn: MetaTxn, first: number, count: number,
  opts: { useRootReserve?: boolean } = {}): Promise<number> {
  const holes = (await lookupRange(f, txn, first, count)).filter((s) => s.state === 'hole');
  let mapped = 0;
  for (const h of holes) mapped += (await allocateRange(f, txn, h.first, h.count, 'unwritten', opts)).reduce((n, p) => n + p.count, 0);
  return mapped;
}

/**
 * Immediate allocation of written extents over the hole [first, first+count) (a file imported
 * whole, the nodelalloc path): charges quota and free space now, like fallocate, and returns the
 * pieces. The caller writes their data before the handle stops and before anyone can read them
 * (it holds the data lock exclusively throughout). The range must hold no delayed or mapped block.
 */
export async function allocateWritten(f: FileMap, txn: MetaTxn, first: number, count: number,
  opts: { useRootReserve?: boolean } = {}): Promise<Array<{ first: number; count: number; fsBlock: number }>> {
  return allocateRange(f, txn, first, count, 'written', opts);
}

async function allocateRange(f: FileMap, txn: MetaTxn, first: number, count: number, kind: 'delayed' | 'unwritten' | 'written',
  opts: { useRootReserve?: boolean } = {}): Promise<Array<{ first: number; count: number; fsBlock: number }>> {
  const R = f.clusterRatio;
  const env = f.treeEnv(txn);
  const pieces: Array<{ first: number; count: number; fsBlock: number }> = [];
  const delalloc = kind === 'delayed';
  const unwritten = kind === 'unwritten';
  let b = first;
  const end = first + count;
  while (b < end) {
    let allocatedNow = 0;
    let mapped: MappedRun;
    try {
      mapped = await mapRun(env, b, end, unwritten, async (want) => {
        if (!delalloc) {
          f.space.claim(want, opts);
          try {
            f.space.quota.addUsage(f.uid, f.gid, want * R * f.blockSize);
          } catch (e) {
            f.space.releaseClaim(want);
            throw e;
          }
        }
        // Writeback places data through the per-file preallocation windows, so that files written
        // at the same time do not interleave; fallocate takes the first run near the goal (its own
        // window included, other files' windows avoided while anything else is free).
        const goalCluster = Math.floor(f.goal() / R);
        const run = delalloc
          ? await f.alloc.allocStream(txn, f.ino, goalCluster, want, {
            continuing: f.hasOwnGoal(), keepWindow: f.streaming() && end >= STREAM_MIN_BLOCKS,
            spareClusters: f.space.freeClusters - f.space.dirtyClusters,
          })
          : await f.alloc.allocRun(txn, goalCluster, want, 1, { owner: f.ino });
        if (!run) {
          if (!delalloc) { f.space.releaseClaim(want); f.space.quota.freeUsage(f.uid, f.gid, want * R * f.blockSize); }
          throw new Ext4Error('ENOSPC', `inode ${f.ino}: no free clusters at writeback (reservation accounting is off)`, { detail: 'writeback-enospc' });
        }
        if (!delalloc) {
          f.space.markAllocated(run.count);
          f.space.releaseClaim(want);
          if (run.count < want) f.space.quota.freeUsage(f.uid, f.gid, (want - run.count) * R * f.blockSize);
        } else {
          // Delayed clusters leave `free` in the same step as their reservations leave `dirty`
          // (below), as mballoc does: in between, tree blocks the insert needs are checked against
          // free − dirty, which must not dip by the run being placed.
          allocatedNow = run.count;
        }
        f.chargeClusters(run.count);
        return { cluster: run.cluster, countClusters: run.count };
      });
    } finally {
      // The bitmap has the run whatever happened: the counter follows it.
      if (allocatedNow) f.space.markAllocated(allocatedNow);
    }
    const fsStart = mapped.fsBlock;
    const n = mapped.countBlocks;
    completeAllocation(f.state, fb(b), n, pb(fsStart) as FsBlock, unwritten);
    f.setGoal(fsStart + n);
    pieces.push({ first: b, count: n, fsBlock: fsStart });
    b += n;
  }
  return pieces;
}

/** Converts a written range back to unwritten or the reverse (zero-range, writeback of unwritten). */
export async function setUnwritten(f: FileMap, txn: MetaTxn, first: number, count: number, unwritten: boolean): Promise<void> {
  await extentSetUnwritten(f.treeEnv(txn), fb(first), count, unwritten);
  const es = f.state.es.lookup(fb(first));
  if (es && (es.status === 'written' || es.status === 'unwritten')) f.state.es.remove(fb(first), fb(first + count - 1));
}

/**
 * Truncate / punch: forgets delayed blocks in [first, last] (releasing their reservations), then
 * removes the on-disk mappings, freeing clusters by the partial-cluster rules; a freed cluster
 * whose logical cluster still has delayed blocks is re-reserved instead of returned.
 */
export async function removeBlocks(f: FileMap, txn: MetaTxn, first: number, last: number): Promise<void> {
  // The file's next allocation no longer continues where its window starts.
  f.alloc.releaseWindow(f.ino);
  removeRange(f.state, fb(first), fb(last));
  const env = f.treeEnv(txn);
  const R = f.clusterRatio;
  const free = env.freeDataClusters;
  await extentRemoveRange({
    ...env,
    freeDataClusters: async (clusterNo, count, lclu) => {
      await free(clusterNo, count, lclu);
      for (let i = 0; i < count; i++) {
        f.chargeClusters(-1);
        if (!onPhysicalClusterFreed(f.state, logicalCluster(lclu + i))) {
          f.space.markFreed(1);
          f.space.quota.freeUsage(f.uid, f.gid, R * f.blockSize);
        }
      }
    },
  }, fb(first), fb(last));
}
