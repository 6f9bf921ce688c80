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
import { clusterOf, entryLast, logicalCluster, type EsEntry } from './extent-status.ts';
import { extentLookup, extentNextBound, extentRemoveRange, extentSetUnwritten, type ExtentTreeEnv } from './extent-tree.ts';
import { impliedCluster, mapRun, type MappedRun } from './map-run.ts';
import type { Extent } from '../format/extent.ts';

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
  // Built at the first miss: most lookups are answered by the es tree.
  let envOnce: ExtentTreeEnv | undefined;
  const env = (): ExtentTreeEnv => (envOnce ??= f.treeEnv(txn));
  const end = first + count;
  for (let b = first; b < end;) {
    const es = f.state.es.lookup(fb(b));
    if (es && es.status === 'delayed') {
      const n = Math.min(end, es.first + es.countBlocks) - b;
      push(out, { first: b, count: n, state: 'delayed' });
      b += n;
      continue;
    }
    if (es && (es.status === 'written' || es.status === 'unwritten')) {
      // Known from an earlier lookup or allocation: no tree walk (see rememberExtent).
      const n = Math.min(end, es.first + es.countBlocks) - b;
      push(out, { first: b, count: n, state: es.status, fsBlock: es.fsBlock + (b - es.first) });
      b += n;
      continue;
    }
    const ext = await extentLookup(env(), fb(b));
    if (ext) {
      rememberExtent(f.state.es, ext);
      const n = Math.min(end, ext.fileBlock + ext.countBlocks) - b;
      push(out, { first: b, count: n, state: ext.unwritten ? 'unwritten' : 'written', fsBlock: ext.fsBlock + (b - ext.fileBlock) });
      b += n;
      continue;
    }
    // A hole up to the next delayed or mapped block (one tree walk bounds the mapped side).
    const bound = await extentNextBound(env(), b);
    const limit = bound === undefined ? end : Math.min(end, bound);
    let n = 1;
    while (b + n < limit && !f.state.es.lookup(fb(b + n))) n++;
    push(out, { first: b, count: n, state: 'hole' });
    b += n;
  }
  return out;
}

/**
 * The es tree caches written and unwritten mappings (as the kernel's extent-status tree does), so
 * that the lookups of one write — reservation, writeback, conversion — walk the on-disk tree once.
 * Coherence: every change of an inode's data mapping goes through this file (allocation records
 * its result, setUnwritten its conversion, removeBlocks forgets the range first); the extent
 * inserts outside it (directories, symlinks, fast-commit replay) only map holes, which are never
 * cached. An extent overlapping any entry is not cached (delayed blocks never lie over a mapping,
 * so that only happens to a range cached in part).
 */
function rememberExtent(es: DelallocState['es'], ext: Extent): void {
  if (es.size >= ES_CACHE_MAX_ENTRIES) return;
  const last = fb(ext.fileBlock + ext.countBlocks - 1);
  if (es.findFirst(ext.fileBlock, last, ALL_STATUSES) !== undefined) return;
  es.insert(ext.fileBlock, ext.countBlocks, ext.unwritten ? 'unwritten' : 'written', ext.fsBlock);
}

const ALL_STATUSES = ['written', 'unwritten', 'delayed', 'hole'] as const;
const isMapped = (e: EsEntry): e is EsEntry & { status: 'written' | 'unwritten'; fsBlock: FsBlock } =>
  e.status === 'written' || e.status === 'unwritten';
/**
 * Lookups stop adding entries to an es tree this large (a file with that many extents read at
 * random); allocation and conversion still record theirs, and the shrinker drops mapped entries.
 */
const ES_CACHE_MAX_ENTRIES = 16384;

/**
 * Debug check: every written/unwritten entry of the es tree agrees, block range for block
 * range, with the on-disk extent tree. Throws an Error naming the first disagreement.
 */
export async function checkMappingCache(f: FileMap, txn: MetaTxn): Promise<void> {
  const env = f.treeEnv(txn);
  for (const e of [...f.state.es]) {
    if (e.status !== 'written' && e.status !== 'unwritten') continue;
    for (let b: number = e.first; b < e.first + e.countBlocks;) {
      const ext = await extentLookup(env, fb(b));
      const want = e.fsBlock + (b - e.first);
      if (!ext || ext.unwritten !== (e.status === 'unwritten') || ext.fsBlock + (b - ext.fileBlock) !== want) {
        const disk = ext ? `${ext.unwritten ? 'unwritten' : 'written'} at ${ext.fsBlock + (b - ext.fileBlock)}` : 'a hole';
        throw new Error(`inode ${f.ino}: es tree has block ${b} ${e.status} at ${want}, the extent tree has ${disk}`);
      }
      b = Math.min(e.first + e.countBlocks, ext.fileBlock + ext.countBlocks);
    }
  }
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
export const mapBlocksTestHooks: {
  reserveDelayed?: (real: ReserveDelayedFn, ...args: Parameters<ReserveDelayedFn>) => Promise<number>;
  /** Broken variant for test/es-mapping-cache.test.ts: a conversion leaves the es tree's old state. */
  staleConversionCache?: boolean;
} = {};

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
  const last = first + count - 1;
  const known = [...f.state.es.overlapping(fb(first), fb(last))].filter(isMapped);
  try {
    await extentSetUnwritten(f.treeEnv(txn), fb(first), count, unwritten);
  } catch (e) {
    // Part of the range may be converted: forget what the es tree knew of it.
    for (const k of known) f.state.es.remove(fb(Math.max(first, k.first)), fb(Math.min(last, entryLast(k))));
    throw e;
  }
  if (mapBlocksTestHooks.staleConversionCache) return;
  // The cached blocks keep their physical place and take the new state.
  for (const k of known) {
    const a = Math.max(first, k.first);
    f.state.es.insert(fb(a), Math.min(last, entryLast(k)) - a + 1, unwritten ? 'unwritten' : 'written', pb(k.fsBlock + (a - k.first)));
  }
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
