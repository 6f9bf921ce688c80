// Delayed-allocation accounting of one inode: keeps its es tree, pending-cluster set and
// reservation count exact across delayed writes, allocation, and removal. Delalloc-bigalloc
// spec §4.2 (invariants 1, 2, 7) and §4.3 (buffered write steps 3–6, writeback steps 4–5,
// truncate steps 2–3).
//
// Locking contract (§2.1, §5): every function here is synchronous and must be called while the
// caller holds the inode's data lock (i_data_sem) EXCLUSIVELY, after re-checking, under that
// lock, whatever it looked up before taking it. Each function reads the es tree and pending set
// and changes them together with the counters in one step, so no other path can observe or act
// on a half-done decision. Accounting never reads page-cache flags: the 2011 bug was a
// reservation decision taken from a "delayed" flag that writeback cleared later, outside the lock.
// On error (ENOSPC, EDQUOT, or an invariant violation) nothing has been changed.

import type { ClaimOptions, InodeReservation, SpaceAccounting } from '../alloc/space-accounting.ts';
import type { FileBlock, FsBlock, InodeNo } from '../util/brand.ts';
import {
  ExtentStatusTree, PendingClusters, MAX_FILE_BLOCK, clusterBitsOf, clusterFirstBlock, clusterLastBlock, clusterOf,
  type LogicalCluster,
} from './extent-status.ts';

export interface DelallocState {
  readonly ino: InodeNo;
  readonly es: ExtentStatusTree;
  /** Bigalloc pending reservations; always empty when the cluster ratio is 1. */
  readonly pending: PendingClusters;
  readonly reservation: InodeReservation;
  readonly space: SpaceAccounting;
}

export function createDelallocState(space: SpaceAccounting, ino: InodeNo, uid: number, gid: number): DelallocState {
  return { ino, es: new ExtentStatusTree(), pending: new PendingClusters(), reservation: space.createInode(ino, uid, gid), space };
}

/**
 * "Is some block of logical cluster c mapped on disk?" — the on-disk extent tree lookup
 * (`ext4_clu_mapped`); consulted only when the es tree knows of no written/unwritten block there.
 */
export type IsClusterAllocated = (c: LogicalCluster) => boolean;

function rangeLast(first: FileBlock, countBlocks: number): FileBlock {
  if (!Number.isSafeInteger(first) || first < 0) throw new Error(`bad first block ${first}`);
  if (!Number.isSafeInteger(countBlocks) || countBlocks < 1) throw new Error(`bad block count ${countBlocks}`);
  const last = first + countBlocks - 1;
  if (last > MAX_FILE_BLOCK) throw new Error(`block range [${first}, ${last}] beyond the largest file block`);
  return last as FileBlock;
}

function clusterHasDelayed(state: DelallocState, c: LogicalCluster, ratio: number): boolean {
  return state.es.hasDelayedIn(clusterFirstBlock(c, ratio), clusterLastBlock(c, ratio));
}

/** Pending clusters in [cF, cL]; each must still hold a delayed block (invariant 1). */
function pendingIn(state: DelallocState, cF: LogicalCluster, cL: LogicalCluster, ratio: number): LogicalCluster[] {
  const found = state.pending.inRange(cF, cL);
  for (const c of found) {
    if (!clusterHasDelayed(state, c, ratio)) throw new Error(`inode ${state.ino}: pending cluster ${c} has no delayed blocks`);
  }
  return found;
}

export interface InsertDelayedResult {
  /** Clusters (blocks when ratio 1) newly reserved. */
  readonly reservedClusters: number;
  /** End clusters found physically allocated and recorded as pending. */
  readonly pendingAdded: readonly LogicalCluster[];
}

/**
 * Buffered write / page_mkwrite: makes [first, first+countBlocks) delayed (§4.3 write steps
 * 3–6). The caller has re-checked under the exclusive lock that the range is a hole both in the
 * es tree and on disk (trimming it to the hole). Reserves one cluster for each touched logical
 * cluster that has neither a delayed block nor physical space; end clusters that already have
 * physical space become pending. Throws ENOSPC/EDQUOT (nothing changed) when the reservation
 * fails.
 */
export function insertDelayed(
  state: DelallocState,
  first: FileBlock,
  countBlocks: number,
  clusterRatio: number,
  isClusterAllocated: IsClusterAllocated,
  opts: ClaimOptions = {},
): InsertDelayedResult {
  const last = rangeLast(first, countBlocks);
  clusterBitsOf(clusterRatio);
  if (clusterRatio !== state.space.clusterRatio) {
    throw new Error(`inode ${state.ino}: cluster ratio ${clusterRatio} differs from the filesystem's ${state.space.clusterRatio}`);
  }
  const occupied = state.es.findFirst(first, last, ['written', 'unwritten', 'delayed']);
  if (occupied !== undefined) {
    throw new Error(`inode ${state.ino}: delayed insert of [${first}, ${last}] over ${occupied.status} block ${Math.max(first, occupied.first)}`);
  }

  let need: number;
  const pendingAdded: LogicalCluster[] = [];
  if (clusterRatio === 1) {
    need = countBlocks;
  } else {
    const cF = clusterOf(first, clusterRatio);
    const cL = clusterOf(last, clusterRatio);
    need = Math.max(0, cL - cF - 1);
    for (const c of cF === cL ? [cF] : [cF, cL]) {
      if (clusterHasDelayed(state, c, clusterRatio)) continue;
      const allocated = state.es.hasMappedIn(clusterFirstBlock(c, clusterRatio), clusterLastBlock(c, clusterRatio)) ||
        isClusterAllocated(c);
      if (allocated) pendingAdded.push(c);
      else need++;
    }
  }

  state.space.reserve(state.reservation, need, opts);
  state.es.insert(first, countBlocks, 'delayed');
  for (const c of pendingAdded) state.pending.add(c);
  return { reservedClusters: need, pendingAdded };
}

export interface CompleteAllocationResult {
  /** Reservations consumed: clusters that held one and are now physically allocated. */
  readonly consumedClusters: number;
  /** True on the delalloc path (range was delayed): the reservation became quota usage. */
  readonly claimedQuota: boolean;
}

/**
 * [first, first+countBlocks) has just been mapped on disk at fsBlock (the on-disk extent is
 * already inserted): record it written/unwritten in the es tree and settle reservations
 * (§4.3 writeback steps 4–5). The range is either all delayed (writeback, fallocate over delayed
 * blocks: the reservations become quota usage) or holds no delayed block (fallocate/DIO over a
 * hole, unwritten→written conversion: the allocator charged quota itself). Every touched
 * logical cluster that had delayed blocks and no physical space gives up exactly one
 * reservation; end clusters keeping delayed blocks outside the range become pending, all other
 * touched clusters stop being pending.
 */
export function completeAllocation(
  state: DelallocState,
  first: FileBlock,
  countBlocks: number,
  fsBlock: FsBlock,
  unwritten: boolean,
): CompleteAllocationResult {
  const last = rangeLast(first, countBlocks);
  const ratio = state.space.clusterRatio;
  if (!Number.isSafeInteger(fsBlock) || fsBlock < 0) throw new Error(`inode ${state.ino}: bad physical block ${fsBlock}`);
  if (fsBlock % ratio !== first % ratio) {
    throw new Error(`inode ${state.ino}: logical block ${first} violates cluster allocation rules (physical block ${fsBlock})`);
  }
  const delayedBlocks = state.es.countDelayedBlocks(first, last);
  if (delayedBlocks !== 0 && delayedBlocks !== countBlocks) {
    throw new Error(`inode ${state.ino}: allocation of [${first}, ${last}] covers ${delayedBlocks} delayed blocks of ${countBlocks}`);
  }
  const claimQuota = delayedBlocks !== 0;

  const cF = clusterOf(first, ratio);
  const cL = clusterOf(last, ratio);
  const touched = ratio === 1 ? [] : pendingIn(state, cF, cL, ratio);
  const consumed = state.es.countDelayedClusters(clusterFirstBlock(cF, ratio), clusterLastBlock(cL, ratio), ratio) - touched.length;

  state.space.consume(state.reservation, consumed, claimQuota);
  state.es.insert(first, countBlocks, unwritten ? 'unwritten' : 'written', fsBlock);
  if (ratio !== 1) {
    for (const c of touched) state.pending.delete(c);
    for (const c of cF === cL ? [cF] : [cF, cL]) {
      if (clusterHasDelayed(state, c, ratio)) state.pending.add(c);
    }
  }
  return { consumedClusters: consumed, claimedQuota: claimQuota };
}

export interface RemoveRangeResult {
  /** Reservations released. */
  readonly releasedClusters: number;
}

/**
 * Truncate / punch / zero-range / invalidation: forgets [first, last] in the es tree and
 * releases the reservations of delayed clusters that lose their last delayed block and had no
 * physical space (§4.3 truncate step 2). Pending records of clusters left without delayed
 * blocks are deleted. The caller then removes the range from the on-disk tree and reports each
 * freed physical cluster to onPhysicalClusterFreed.
 */
export function removeRange(state: DelallocState, first: FileBlock, last: FileBlock): RemoveRangeResult {
  if (!Number.isSafeInteger(last) || last < first) throw new Error(`inode ${state.ino}: bad range [${first}, ${last}]`);
  rangeLast(first, last - first + 1);
  const ratio = state.space.clusterRatio;
  let released: number;
  const dropPending: LogicalCluster[] = [];
  if (ratio === 1) {
    released = state.es.countDelayedBlocks(first, last);
  } else {
    const cF = clusterOf(first, ratio);
    const cL = clusterOf(last, ratio);
    const pend = pendingIn(state, cF, cL, ratio);
    const delayedClusters = state.es.countDelayedClusters(clusterFirstBlock(cF, ratio), clusterLastBlock(cL, ratio), ratio);
    const keepsDelayed = new Set<number>();
    const headFirst = clusterFirstBlock(cF, ratio);
    if (headFirst < first && state.es.hasDelayedIn(headFirst, (first - 1) as FileBlock)) keepsDelayed.add(cF);
    const tailLast = clusterLastBlock(cL, ratio);
    if (tailLast > last && state.es.hasDelayedIn((last + 1) as FileBlock, tailLast)) keepsDelayed.add(cL);
    let keptUnpaid = 0;
    for (const c of keepsDelayed) if (!state.pending.has(c as LogicalCluster)) keptUnpaid++;
    released = delayedClusters - pend.length - keptUnpaid;
    for (const c of pend) if (!keepsDelayed.has(c)) dropPending.push(c);
  }

  state.space.release(state.reservation, released);
  state.es.remove(first, last);
  for (const c of dropPending) state.pending.delete(c);
  return { releasedClusters: released };
}

/**
 * The freeing path is about to clear the bitmap bit of the physical cluster that backed logical
 * cluster c (no block of c is mapped any more). If c is pending, its delayed blocks need a fresh
 * cluster at writeback: re-reserve it (quota usage → reservation, reserved/dirty/free += 1) and
 * drop the pending record, and return true — the caller must then NOT count the cluster as
 * freed or uncharge quota for it. Returns false when the caller frees it normally.
 */
export function onPhysicalClusterFreed(state: DelallocState, c: LogicalCluster): boolean {
  const ratio = state.space.clusterRatio;
  if (ratio === 1 || !state.pending.has(c)) return false;
  if (state.es.hasMappedIn(clusterFirstBlock(c, ratio), clusterLastBlock(c, ratio))) {
    throw new Error(`inode ${state.ino}: freeing cluster ${c} that still has mapped blocks in the es tree`);
  }
  if (!clusterHasDelayed(state, c, ratio)) throw new Error(`inode ${state.ino}: pending cluster ${c} has no delayed blocks`);
  state.space.rereserve(state.reservation);
  state.pending.delete(c);
  return true;
}

/** Invariant 9 at eviction / after full writeback: nothing delayed, nothing reserved. */
export function checkQuiescent(state: DelallocState): void {
  if (state.reservation.reservedClusters !== 0) {
    throw new Error(`inode ${state.ino}: i_reserved_data_blocks (${state.reservation.reservedClusters}) not cleared!`);
  }
  const d = state.es.findFirst(0 as FileBlock, MAX_FILE_BLOCK, ['delayed']);
  if (d !== undefined) throw new Error(`inode ${state.ino}: delayed block ${d.first} left after writeback`);
  if (state.pending.size !== 0) throw new Error(`inode ${state.ino}: ${state.pending.size} pending clusters left after writeback`);
}
