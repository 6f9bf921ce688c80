// Test support: a tiny simulated filesystem around the delalloc core — an on-disk mapping per
// inode, a cluster bitmap, an allocator obeying the bigalloc layout rules (§1: offset
// congruence, one physical cluster per logical cluster), and the critical sections of write,
// writeback, fallocate, conversion and punch, each run as one synchronous step.

import { Ext4Error } from '../errors/ext4-error.ts';
import { MemoryQuota, SpaceAccounting } from '../alloc/space-accounting.ts';
import { checkInvariants, type InodeAccountingView } from '../alloc/invariants.ts';
import { fileBlock, fsBlock, inodeNo, type FileBlock } from '../util/brand.ts';
import {
  completeAllocation, createDelallocState, insertDelayed, onPhysicalClusterFreed, removeRange, type DelallocState,
} from './delalloc.ts';
import { clusterOf, entryLast, logicalCluster, MAX_FILE_BLOCK, type LogicalCluster } from './extent-status.ts';

export interface SimOptions {
  ratio: number;
  totalClusters: number;
  overheadClusters?: number;
  rootReserveClusters?: number;
  resvPoolClusters?: number;
  blockSizeBytes?: number;
}

export class SimInode {
  /** On-disk extent tree, block by block: logical → physical. */
  readonly disk = new Map<number, number>();
  /** Physical cluster backing each logical cluster that has a mapped block, and how many. */
  readonly physOf = new Map<number, number>();
  readonly mappedCount = new Map<number, number>();
  constructor(readonly state: DelallocState, readonly uid: number, readonly gid: number) {}
  isAllocated = (c: LogicalCluster): boolean => this.physOf.has(c);
}

/** Something an operation may legitimately refuse with. */
export const isSpaceError = (e: unknown): boolean => e instanceof Ext4Error && (e.code === 'ENOSPC' || e.code === 'EDQUOT');

export class SimFs {
  readonly ratio: number;
  readonly blockSizeBytes: number;
  readonly totalClusters: number;
  readonly overheadClusters: number;
  readonly quota = new MemoryQuota({ now: () => 0 });
  readonly space: SpaceAccounting;
  /** Physical cluster → owner inode number (bitmap bit set). */
  readonly bitmap = new Map<number, number>();
  readonly inodes = new Map<number, SimInode>();

  constructor(opts: SimOptions) {
    this.ratio = opts.ratio;
    this.blockSizeBytes = opts.blockSizeBytes ?? 1024;
    this.totalClusters = opts.totalClusters;
    this.overheadClusters = opts.overheadClusters ?? 0;
    for (let p = 0; p < this.overheadClusters; p++) this.bitmap.set(p, 0);
    this.space = new SpaceAccounting({
      clusterRatio: this.ratio, blockSizeBytes: this.blockSizeBytes, totalClusters: this.totalClusters,
      freeClusters: this.totalClusters - this.overheadClusters,
      rootReserveClusters: opts.rootReserveClusters ?? 0, resvPoolClusters: opts.resvPoolClusters ?? 0, quota: this.quota,
    });
  }

  addInode(ino: number, uid = 0, gid = 0): SimInode {
    const i = new SimInode(createDelallocState(this.space, inodeNo(ino), uid, gid), uid, gid);
    this.inodes.set(ino, i);
    return i;
  }

  inode(ino: number): SimInode {
    const i = this.inodes.get(ino);
    if (i === undefined) throw new Error(`no inode ${ino}`);
    return i;
  }

  get clusterBytes(): number { return this.ratio * this.blockSizeBytes; }

  /** Unmapped, non-delayed runs of [first, first+countBlocks): where a write or fallocate would act. */
  holeRuns(ino: number, first: number, countBlocks: number): [number, number][] {
    const i = this.inode(ino);
    const runs: [number, number][] = [];
    for (let b = first; b < first + countBlocks; b++) {
      const e = i.state.es.lookup(fileBlock(b));
      const hole = !i.disk.has(b) && (e === undefined || e.status === 'hole');
      if (!hole) continue;
      const lastRun = runs[runs.length - 1];
      if (lastRun !== undefined && lastRun[0] + lastRun[1] === b) lastRun[1]++;
      else runs.push([b, 1]);
    }
    return runs;
  }

  /** A lookup that found nothing on disk caches the holes of the range. */
  cacheHoles(ino: number, first: number, countBlocks: number): void {
    const i = this.inode(ino);
    for (const [f, n] of this.holeRuns(ino, first, countBlocks)) i.state.es.insert(fileBlock(f), n, 'hole');
  }

  /** Buffered write critical section (§4.3 steps 3–6): delayed insert over each hole run. */
  write(ino: number, first: number, countBlocks: number): { reserved: number; refused: number } {
    const i = this.inode(ino);
    let reserved = 0;
    let refused = 0;
    for (const [f, n] of this.holeRuns(ino, first, countBlocks)) {
      const before = this.snapshot();
      try {
        reserved += insertDelayed(i.state, fileBlock(f), n, this.ratio, i.isAllocated).reservedClusters;
      } catch (e) {
        if (!isSpaceError(e)) throw e;
        if (this.snapshot() !== before) throw new Error(`sim: refused write changed state: ${String(e)}`);
        refused++;
      }
    }
    return { reserved, refused };
  }

  /** Free physical clusters, ascending. */
  freePhysical(): number[] {
    const out: number[] = [];
    for (let p = 0; p < this.totalClusters; p++) if (!this.bitmap.has(p)) out.push(p);
    return out;
  }

  /**
   * Maps [first, last] of `ino` on disk: blocks of a logical cluster that already has a
   * physical cluster go there (implied allocation); the others get fresh clusters, taken from
   * the free list starting at index `pick` (so consecutive logical clusters are often
   * physically contiguous). Returns physically contiguous runs [first, count, fsBlock].
   */
  mapOnDisk(ino: number, first: number, last: number, pick: number): { runs: [number, number, number][]; freshClusters: number } {
    const i = this.inode(ino);
    const R = this.ratio;
    const free = this.freePhysical();
    let idx = free.length === 0 ? 0 : pick % free.length;
    let fresh = 0;
    const runs: [number, number, number][] = [];
    for (let b = first; b <= last; b++) {
      if (i.disk.has(b)) throw new Error(`sim: block ${b} already mapped`);
      const c = clusterOf(fileBlock(b), R);
      let pc = i.physOf.get(c);
      if (pc === undefined) {
        if (free.length === 0) throw new Error('sim: allocator found no free cluster (reservation accounting is wrong)');
        if (idx >= free.length) idx = 0;
        pc = free.splice(idx, 1)[0]!;
        this.bitmap.set(pc, ino);
        i.physOf.set(c, pc);
        fresh++;
      }
      const pb = pc * R + (b % R);
      i.disk.set(b, pb);
      i.mappedCount.set(c, (i.mappedCount.get(c) ?? 0) + 1);
      const run = runs[runs.length - 1];
      if (run !== undefined && run[0] + run[1] === b && run[2] + run[1] === pb) run[1]++;
      else runs.push([b, 1, pb]);
    }
    return { runs, freshClusters: fresh };
  }

  /** Writeback / fsync mapping critical section (§4.3 writeback steps 2–5) of delayed [first, last]. */
  writeback(ino: number, first: number, last: number, opts: { pick?: number; unwritten?: boolean } = {}): number {
    const i = this.inode(ino);
    const { runs, freshClusters } = this.mapOnDisk(ino, first, last, opts.pick ?? 0);
    this.space.markAllocated(freshClusters); // delalloc-reserved: no claim, no quota charge
    let consumed = 0;
    for (const [f, n, p] of runs) {
      consumed += completeAllocation(i.state, fileBlock(f), n, fsBlock(p), opts.unwritten ?? false).consumedClusters;
    }
    return consumed;
  }

  /** Writes back every delayed range of `ino` (or of all inodes). */
  flush(ino?: number): void {
    for (const [n, i] of this.inodes) {
      if (ino !== undefined && n !== ino) continue;
      for (;;) {
        const e = i.state.es.findFirst(fileBlock(0), MAX_FILE_BLOCK, ['delayed']);
        if (e === undefined) break;
        this.writeback(n, e.first, entryLast(e));
      }
    }
  }

  /**
   * fallocate over the holes of [first, first+countBlocks): ordinary allocation — claim the fresh
   * clusters (ENOSPC), charge quota (EDQUOT), allocate, drop the transient claim — then record
   * the unwritten extents.
   */
  fallocate(ino: number, first: number, countBlocks: number, pick = 0): { refused: number } {
    const i = this.inode(ino);
    const R = this.ratio;
    let refused = 0;
    for (const [f, n] of this.holeRuns(ino, first, countBlocks)) {
      const needed = new Set<number>();
      for (let b = f; b < f + n; b++) {
        const c = clusterOf(fileBlock(b), R);
        if (!i.physOf.has(c)) needed.add(c);
      }
      try {
        this.space.claim(needed.size);
      } catch (e) {
        if (!isSpaceError(e)) throw e;
        refused++;
        continue;
      }
      try {
        this.quota.addUsage(i.uid, i.gid, needed.size * this.clusterBytes);
      } catch (e) {
        this.space.releaseClaim(needed.size);
        if (!isSpaceError(e)) throw e;
        refused++;
        continue;
      }
      const { runs, freshClusters } = this.mapOnDisk(ino, f, f + n - 1, pick);
      if (freshClusters !== needed.size) throw new Error('sim: fresh cluster count mismatch');
      this.space.markAllocated(freshClusters);
      this.space.releaseClaim(needed.size);
      for (const [rf, rn, p] of runs) {
        const r = completeAllocation(i.state, fileBlock(rf), rn, fsBlock(p), true);
        if (r.claimedQuota) throw new Error('sim: fallocate over a hole claimed quota');
      }
    }
    return { refused };
  }

  /** Unwritten → written conversion at writeback of [first, last] (all unwritten). */
  convert(ino: number, first: number, last: number): void {
    const i = this.inode(ino);
    let b = first;
    while (b <= last) {
      const p = i.disk.get(b)!;
      let n = 1;
      while (b + n <= last && i.disk.get(b + n) === p + n) n++;
      const r = completeAllocation(i.state, fileBlock(b), n, fsBlock(p), false);
      if (r.consumedClusters !== 0) throw new Error('sim: conversion consumed reservations');
      b += n;
    }
  }

  /** Truncate / punch critical section: es removal + release, then on-disk removal with re-reserve. */
  punch(ino: number, first: number, last: number): { released: number; rereserved: number; freed: number } {
    const i = this.inode(ino);
    const R = this.ratio;
    const { releasedClusters } = removeRange(i.state, fileBlock(first), fileBlock(last));
    let rereserved = 0;
    let freed = 0;
    const blocks = [...i.disk.keys()].filter((b) => b >= first && b <= last).sort((a, b) => b - a);
    for (const b of blocks) {
      i.disk.delete(b);
      const c = clusterOf(fileBlock(b), R);
      const left = i.mappedCount.get(c)! - 1;
      if (left > 0) { i.mappedCount.set(c, left); continue; }
      i.mappedCount.delete(c);
      const pc = i.physOf.get(c)!;
      i.physOf.delete(c);
      this.bitmap.delete(pc);
      if (onPhysicalClusterFreed(i.state, logicalCluster(c))) {
        rereserved++;
      } else {
        this.space.markFreed(1);
        this.quota.freeUsage(i.uid, i.gid, this.clusterBytes);
        freed++;
      }
    }
    return { released: releasedClusters, rereserved, freed };
  }

  /** Everything the checker needs, recomputed from the simulated disk. */
  check(): void {
    const views: InodeAccountingView[] = [];
    for (const i of this.inodes.values()) {
      // The simulated es tree must agree with the simulated disk on mapped blocks.
      let esMapped = 0;
      for (const e of i.state.es) {
        if (e.status !== 'written' && e.status !== 'unwritten') continue;
        for (let k = 0; k < e.countBlocks; k++) {
          if (i.disk.get(e.first + k) !== e.fsBlock + k) throw new Error(`sim: es and disk disagree at block ${e.first + k}`);
        }
        esMapped += e.countBlocks;
      }
      if (esMapped > i.disk.size) throw new Error(`sim: es knows ${esMapped} mapped blocks, disk has ${i.disk.size}`);
      views.push({
        ino: i.state.ino, uid: i.uid, gid: i.gid, es: i.state.es, pending: i.state.pending,
        reservedClusters: i.state.reservation.reservedClusters,
        clusterMapped: (c) => i.physOf.has(c),
        blocksMapped: (f, l) => { for (let b = f; b <= l; b++) if (i.disk.has(b)) return true; return false; },
        allocatedClusters: i.physOf.size,
      });
    }
    checkInvariants({
      clusterRatio: this.ratio, blockSizeBytes: this.blockSizeBytes, totalClusters: this.totalClusters,
      overheadClusters: this.overheadClusters, freeClusters: this.space.freeClusters, dirtyClusters: this.space.dirtyClusters,
      bitmapFreeClusters: this.totalClusters - this.bitmap.size, inodes: views, quota: this.quota,
    });
  }

  /** A comparable picture of all accounting state (to show a refused operation changed nothing). */
  snapshot(): string {
    const inodes = [...this.inodes.entries()].map(([n, i]) => ({
      n, es: [...i.state.es], pending: [...i.state.pending], reserved: i.state.reservation.reservedClusters,
      disk: [...i.disk.entries()].sort((a, b) => a[0] - b[0]),
    }));
    const quota = [...this.inodes.values()].flatMap((i) => [this.quota.usage('user', i.uid), this.quota.usage('group', i.gid)]);
    return JSON.stringify({ inodes, free: this.space.freeClusters, dirty: this.space.dirtyClusters, bitmap: [...this.bitmap.keys()].sort(), quota });
  }
}

export type { FileBlock };
