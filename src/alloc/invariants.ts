// Debug checker for the delayed-allocation / bigalloc accounting invariants of delalloc-bigalloc
// spec §4.2 (1–8): recomputes everything from the es trees, pending sets, on-disk mapping and
// bitmaps supplied by the caller and compares with the running counters. Throws an Error in the
// style of the kernel's warnings; meant for tests and debug builds, after every exclusive
// section and at unmount.
//
// The views are structural so that this module does not depend on mapping/ (dependencies point
// down): an ExtentStatusTree and a PendingClusters satisfy them.

import type { InodeNo } from '../util/brand.ts';
import type { QuotaKind, QuotaUsage } from './space-accounting.ts';

export interface EsEntryView {
  readonly first: number;
  readonly countBlocks: number;
  readonly status: 'written' | 'unwritten' | 'delayed' | 'hole';
  readonly fsBlock?: number | undefined;
}

export interface InodeAccountingView {
  readonly ino: InodeNo;
  readonly uid?: number;
  readonly gid?: number;
  /** The es tree, entries in ascending order. */
  readonly es: Iterable<EsEntryView>;
  /** Pending logical clusters. */
  readonly pending: Iterable<number>;
  /** i_reserved_data_blocks: clusters (blocks when the ratio is 1). */
  readonly reservedClusters: number;
  /** A(c): some block of logical cluster c is mapped in the on-disk extent tree. */
  clusterMapped(c: number): boolean;
  /** Some block of [first, last] is mapped on disk (invariant 7); A(c) is used when absent. */
  blocksMapped?(first: number, last: number): boolean;
  /** Clusters charged to this inode (data + metadata, i.e. i_blocks); checks quota usage. */
  readonly allocatedClusters?: number;
}

export interface QuotaUsageView {
  usage(kind: QuotaKind, id: number): QuotaUsage;
}

export interface AccountingView {
  readonly clusterRatio: number;
  readonly blockSizeBytes: number;
  readonly totalClusters: number;
  /** Clusters never available for data (group metadata). */
  readonly overheadClusters?: number;
  /** Running counters. */
  readonly freeClusters: number;
  readonly dirtyClusters: number;
  /** Free clusters counted from the bitmaps (invariant 6), when the caller has them. */
  readonly bitmapFreeClusters?: number;
  /** Claims of in-flight non-delalloc allocations included in dirtyClusters. */
  readonly transientClaimClusters?: number;
  /** Every inode with delayed state (all of them, for invariants 3 and 4). */
  readonly inodes: Iterable<InodeAccountingView>;
  /** Quota, when enabled and charged only through these inodes (invariant 3). */
  readonly quota?: QuotaUsageView;
}

/** Throws on the first violated invariant. */
export function checkInvariants(view: AccountingView): void {
  const ratio = view.clusterRatio;
  if (!Number.isInteger(ratio) || ratio < 1 || (ratio & (ratio - 1)) !== 0) throw new Error(`cluster ratio ${ratio} is not a power of two`);
  const clusterBytes = ratio * view.blockSizeBytes;
  let reservedSum = 0;
  const quotaExpected = new Map<string, { kind: QuotaKind; id: number; reservedBytes: number; usedBytes: number | undefined }>();

  for (const inode of view.inodes) {
    const reserved = checkInode(inode, ratio);
    reservedSum += reserved;
    for (const [kind, id] of [['user', inode.uid], ['group', inode.gid]] as const) {
      if (id === undefined) continue;
      const key = `${kind}:${id}`;
      const q = quotaExpected.get(key) ?? { kind, id, reservedBytes: 0, usedBytes: 0 };
      q.reservedBytes += reserved * clusterBytes;
      q.usedBytes = q.usedBytes === undefined || inode.allocatedClusters === undefined
        ? undefined : q.usedBytes + inode.allocatedClusters * clusterBytes;
      quotaExpected.set(key, q);
    }
  }

  // 3. quota reserved bytes = reserved × cluster size; used bytes = allocated clusters × cluster size.
  if (view.quota !== undefined) {
    for (const q of quotaExpected.values()) {
      const got = view.quota.usage(q.kind, q.id);
      if (got.reservedBytes !== q.reservedBytes) {
        throw new Error(`${q.kind} ${q.id}: quota reserved ${got.reservedBytes} bytes, expected ${q.reservedBytes} (${q.reservedBytes / clusterBytes} reserved clusters)`);
      }
      if (q.usedBytes !== undefined && got.usedBytes !== q.usedBytes) {
        throw new Error(`${q.kind} ${q.id}: quota used ${got.usedBytes} bytes, expected ${q.usedBytes} (${q.usedBytes / clusterBytes} allocated clusters)`);
      }
    }
  }

  // 4. dirty = Σ reserved + transient claims.
  const transient = view.transientClaimClusters ?? 0;
  if (view.dirtyClusters !== reservedSum + transient) {
    throw new Error(`dirty clusters ${view.dirtyClusters}, expected ${reservedSum + transient} (${reservedSum} reserved by inodes + ${transient} transient)`);
  }

  // 5. 0 ≤ dirty ≤ free ≤ total − overhead.
  const usable = view.totalClusters - (view.overheadClusters ?? 0);
  if (view.dirtyClusters < 0) throw new Error(`dirty clusters ${view.dirtyClusters} negative`);
  if (view.dirtyClusters > view.freeClusters) throw new Error(`dirty clusters ${view.dirtyClusters} exceed free clusters ${view.freeClusters}`);
  if (view.freeClusters > usable) throw new Error(`free clusters ${view.freeClusters} exceed usable clusters ${usable}`);

  // 6. counter = bitmaps.
  if (view.bitmapFreeClusters !== undefined && view.bitmapFreeClusters !== view.freeClusters) {
    throw new Error(`free clusters counter ${view.freeClusters}, bitmaps count ${view.bitmapFreeClusters}`);
  }
}

/** Invariants 1, 2, 7, 8 (es part) for one inode; returns its reserved count. */
function checkInode(inode: InodeAccountingView, ratio: number): number {
  const ino = inode.ino;
  const reserved = inode.reservedClusters;
  if (!Number.isSafeInteger(reserved) || reserved < 0) throw new Error(`inode ${ino}: reserved clusters ${reserved} invalid`);

  // Structure, 7 (one status per range; delayed never mapped) and 8 (layout, as far as the es tree shows).
  let prevLast = -1;
  let delayedBlocks = 0;
  const delayedClusters = new Set<number>();
  const physOfCluster = new Map<number, number>();
  for (const e of inode.es) {
    const last = e.first + e.countBlocks - 1;
    if (!Number.isSafeInteger(e.first) || e.first < 0 || !Number.isSafeInteger(e.countBlocks) || e.countBlocks < 1) {
      throw new Error(`inode ${ino}: es entry [${e.first}, +${e.countBlocks}] invalid`);
    }
    if (e.first <= prevLast) throw new Error(`inode ${ino}: es entry at ${e.first} overlaps the previous one`);
    prevLast = last;
    const mapped = e.status === 'written' || e.status === 'unwritten';
    if (mapped !== (e.fsBlock !== undefined)) throw new Error(`inode ${ino}: ${e.status} es entry at ${e.first} ${mapped ? 'without' : 'with'} a physical block`);
    if (mapped) {
      const p = e.fsBlock!;
      if (p % ratio !== e.first % ratio) throw new Error(`inode ${ino}: logical block ${e.first} violates cluster allocation rules`);
      for (let c = Math.floor(e.first / ratio); c <= Math.floor(last / ratio); c++) {
        const lb = Math.max(e.first, c * ratio);
        const pc = Math.floor((p + lb - e.first) / ratio);
        const seen = physOfCluster.get(c);
        if (seen !== undefined && seen !== pc) throw new Error(`inode ${ino}: logical block ${lb} violates cluster allocation rules`);
        physOfCluster.set(c, pc);
      }
    }
    if (e.status === 'delayed') {
      delayedBlocks += e.countBlocks;
      for (let c = Math.floor(e.first / ratio); c <= Math.floor(last / ratio); c++) delayedClusters.add(c);
      const onDisk = inode.blocksMapped !== undefined
        ? inode.blocksMapped(e.first, last)
        : ratio === 1 && rangeAnyCluster(e.first, last, (c) => inode.clusterMapped(c));
      if (onDisk) throw new Error(`inode ${ino}: delayed range [${e.first}, ${last}] is mapped on disk`);
    }
  }

  if (ratio === 1) {
    for (const c of inode.pending) throw new Error(`inode ${ino}: pending cluster ${c} without bigalloc`);
    // 2, no bigalloc: one reservation per delayed block.
    if (reserved !== delayedBlocks) throw new Error(`inode ${ino}: reserved ${reserved} blocks, but ${delayedBlocks} blocks are delayed`);
    return reserved;
  }

  // 1. pending(c) ⇔ D(c) ∧ A(c).
  const pending = new Set<number>();
  for (const c of inode.pending) {
    pending.add(c);
    if (!delayedClusters.has(c)) throw new Error(`inode ${ino}: pending cluster ${c} has no delayed blocks`);
    if (!inode.clusterMapped(c)) throw new Error(`inode ${ino}: pending cluster ${c} is not allocated`);
  }
  for (const c of delayedClusters) {
    if (!pending.has(c) && inode.clusterMapped(c)) throw new Error(`inode ${ino}: cluster ${c} is allocated and has delayed blocks but is not pending`);
  }
  // 2. reserved = |D| − |pending|.
  const expected = delayedClusters.size - pending.size;
  if (reserved !== expected) {
    throw new Error(`inode ${ino}: reserved ${reserved} clusters, but ${expected} delayed clusters are unallocated (${delayedClusters.size} delayed, ${pending.size} pending)`);
  }
  return reserved;
}

function rangeAnyCluster(first: number, last: number, f: (c: number) => boolean): boolean {
  for (let c = first; c <= last; c++) if (f(c)) return true;
  return false;
}
