// Filesystem space accounting in clusters (free / dirty / root reserve / reserved pool), the
// per-inode delayed-allocation reservation counts and the quota hooks. ENOSPC and EDQUOT are
// decided here and nowhere else. Delalloc-bigalloc spec §4.1, §4.2 rule 5, §4.3 (verbs).
//
// Every method is synchronous: a check and the update it justifies never straddle an await
// (the kernel does them under a spinlock, §5).

import { Ext4Error } from '../errors/ext4-error.ts';
import type { InodeNo } from '../util/brand.ts';

export type QuotaKind = 'user' | 'group';

/**
 * Quota charging, in bytes, for one (uid, gid) pair. Mirrors the kernel's dquot block calls:
 * reservations are made for delayed writes and turned into usage when the blocks are allocated.
 */
export interface QuotaAccounting {
  /** Reserves space for delayed blocks; throws EDQUOT (and changes nothing) over a limit. */
  reserve(uid: number, gid: number, bytes: number): void;
  /** Drops a reservation (delayed blocks removed). */
  release(uid: number, gid: number, bytes: number): void;
  /** Turns a reservation into usage (delayed blocks allocated). Never fails. */
  claim(uid: number, gid: number, bytes: number): void;
  /** Turns usage back into a reservation (freed cluster re-reserved for its delayed blocks). */
  reclaim(uid: number, gid: number, bytes: number): void;
  /** Charges allocated space directly; throws EDQUOT over a limit unless `force`. */
  addUsage(uid: number, gid: number, bytes: number, opts?: { force?: boolean }): void;
  /** Uncharges freed space. */
  freeUsage(uid: number, gid: number, bytes: number): void;
}

/** Quota disabled. */
export const noQuota: QuotaAccounting = {
  reserve() {}, release() {}, claim() {}, reclaim() {}, addUsage() {}, freeUsage() {},
};

export interface QuotaLimits {
  /** 0 = no limit. Over the soft limit a grace timer starts; after it expires, EDQUOT. */
  softBytes: number;
  /** 0 = no limit. Never exceeded except by forced charges. */
  hardBytes: number;
}

export interface QuotaUsage {
  readonly usedBytes: number;
  readonly reservedBytes: number;
}

interface QuotaRecord {
  usedBytes: number;
  reservedBytes: number;
  inodes: number;
  limits: QuotaLimits;
  /** Seconds since the epoch when the soft-limit grace ends; 0 = not over the soft limit. */
  graceEnds: number;
}

/** Seven days, the kernel's default block grace period. */
export const DEFAULT_GRACE_SECONDS = 7 * 24 * 3600;

/** In-memory quota with per-id soft/hard block limits (reservations count against limits). */
export class MemoryQuota implements QuotaAccounting {
  readonly #records = new Map<string, QuotaRecord>();
  readonly #now: () => number;
  readonly #graceSeconds: number;

  constructor(opts: { now?: () => number; graceSeconds?: number } = {}) {
    this.#now = opts.now ?? (() => Math.floor(Date.now() / 1000));
    this.#graceSeconds = opts.graceSeconds ?? DEFAULT_GRACE_SECONDS;
  }

  setLimits(kind: QuotaKind, id: number, limits: QuotaLimits): void {
    this.#record(kind, id).limits = { ...limits };
  }

  usage(kind: QuotaKind, id: number): QuotaUsage {
    const r = this.#records.get(`${kind}:${id}`);
    return { usedBytes: r?.usedBytes ?? 0, reservedBytes: r?.reservedBytes ?? 0 };
  }

  /** Ids with a record, for checkers. */
  *ids(kind: QuotaKind): IterableIterator<number> {
    for (const key of this.#records.keys()) {
      const [k, id] = key.split(':');
      if (k === kind) yield Number(id);
    }
  }

  reserve(uid: number, gid: number, bytes: number): void {
    this.#charge(uid, gid, bytes, false, 'reservedBytes');
  }

  /** Seeds one id's usage and limits from a quota file at mount. */
  load(kind: QuotaKind, id: number, usedBytes: number, inodes: number, limits: QuotaLimits): void {
    const r = this.#record(kind, id);
    r.usedBytes = usedBytes;
    r.inodes = inodes;
    r.limits = { ...limits };
  }

  /** Inode usage (dqb_curinodes); not limited by ext4kit. */
  addInodes(uid: number, gid: number, delta: number): void {
    for (const [kind, id] of [['user', uid], ['group', gid]] as const) {
      const r = this.#record(kind, id);
      if (r.inodes + delta < 0) throw new Error(`quota ${kind} ${id}: inode count would go negative`);
      r.inodes += delta;
    }
  }

  /** Every id's usage, for writing quota files. */
  *entries(kind: QuotaKind): IterableIterator<{ id: number; usedBytes: number; reservedBytes: number; inodes: number; limits: QuotaLimits }> {
    for (const [key, r] of this.#records) {
      const [k, id] = key.split(':');
      if (k === kind) yield { id: Number(id), usedBytes: r.usedBytes, reservedBytes: r.reservedBytes, inodes: r.inodes, limits: r.limits };
    }
  }

  addUsage(uid: number, gid: number, bytes: number, opts: { force?: boolean } = {}): void {
    this.#charge(uid, gid, bytes, opts.force ?? false, 'usedBytes');
  }

  release(uid: number, gid: number, bytes: number): void {
    this.#move(uid, gid, bytes, 'reservedBytes', undefined);
  }

  claim(uid: number, gid: number, bytes: number): void {
    this.#move(uid, gid, bytes, 'reservedBytes', 'usedBytes');
  }

  reclaim(uid: number, gid: number, bytes: number): void {
    this.#move(uid, gid, bytes, 'usedBytes', 'reservedBytes');
  }

  freeUsage(uid: number, gid: number, bytes: number): void {
    this.#move(uid, gid, bytes, 'usedBytes', undefined);
  }

  #record(kind: QuotaKind, id: number): QuotaRecord {
    const key = `${kind}:${id}`;
    let r = this.#records.get(key);
    if (r === undefined) {
      r = { usedBytes: 0, reservedBytes: 0, inodes: 0, limits: { softBytes: 0, hardBytes: 0 }, graceEnds: 0 };
      this.#records.set(key, r);
    }
    return r;
  }

  /** Checks both ids first, then charges both: a refusal changes nothing. */
  #charge(uid: number, gid: number, bytes: number, force: boolean, field: 'usedBytes' | 'reservedBytes'): void {
    checkBytes(bytes);
    if (bytes === 0) return;
    const records: [QuotaKind, number, QuotaRecord][] = [['user', uid, this.#record('user', uid)], ['group', gid, this.#record('group', gid)]];
    const now = this.#now();
    if (!force) {
      for (const [kind, id, r] of records) {
        const after = r.usedBytes + r.reservedBytes + bytes;
        if (r.limits.hardBytes > 0 && after > r.limits.hardBytes) {
          throw new Ext4Error('EDQUOT', `${kind} ${id}: block hard limit of ${r.limits.hardBytes} bytes reached`);
        }
        if (r.limits.softBytes > 0 && after > r.limits.softBytes && r.graceEnds !== 0 && now >= r.graceEnds) {
          throw new Ext4Error('EDQUOT', `${kind} ${id}: block soft limit of ${r.limits.softBytes} bytes exceeded for too long`);
        }
      }
    }
    for (const [, , r] of records) {
      r[field] += bytes;
      const total = r.usedBytes + r.reservedBytes;
      if (r.limits.softBytes > 0 && total > r.limits.softBytes && r.graceEnds === 0) r.graceEnds = now + this.#graceSeconds;
    }
  }

  #move(uid: number, gid: number, bytes: number, from: 'usedBytes' | 'reservedBytes', to: 'usedBytes' | 'reservedBytes' | undefined): void {
    checkBytes(bytes);
    if (bytes === 0) return;
    const records: [QuotaKind, number, QuotaRecord][] = [['user', uid, this.#record('user', uid)], ['group', gid, this.#record('group', gid)]];
    for (const [kind, id, r] of records) {
      if (r[from] < bytes) {
        throw new Error(`quota ${kind} ${id}: moving ${bytes} bytes out of ${from === 'usedBytes' ? 'usage' : 'reservation'} with only ${r[from]}`);
      }
    }
    for (const [, , r] of records) {
      r[from] -= bytes;
      if (to !== undefined) r[to] += bytes;
      if (r.usedBytes + r.reservedBytes <= r.limits.softBytes) r.graceEnds = 0;
    }
  }
}

function checkBytes(bytes: number): void {
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new Error(`quota: bad byte count ${bytes}`);
}

function checkCount(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`space accounting: bad ${what} ${n}`);
}

/** Who may eat into which reserve (§4.2 rule 5). */
export interface ClaimOptions {
  /** root / s_resuid / s_resgid / CAP_SYS_RESOURCE: may use the root reserve. */
  useRootReserve?: boolean;
  /** Writeback metadata and other must-not-fail allocations: may use everything free. */
  useResvPool?: boolean;
}

/**
 * One inode's delayed-allocation reservation (`i_reserved_data_blocks`): clusters on bigalloc,
 * blocks otherwise. Only SpaceAccounting changes `reservedClusters`.
 */
export class InodeReservation {
  reservedClusters = 0;
  constructor(readonly ino: InodeNo, readonly uid: number, readonly gid: number) {}
}

export interface SpaceAccountingInit {
  clusterRatio: number;
  blockSizeBytes: number;
  totalClusters: number;
  freeClusters: number;
  rootReserveClusters: number;
  resvPoolClusters: number;
  quota?: QuotaAccounting;
}

export class SpaceAccounting {
  readonly clusterRatio: number;
  readonly blockSizeBytes: number;
  readonly clusterSizeBytes: number;
  readonly totalClusters: number;
  readonly rootReserveClusters: number;
  readonly resvPoolClusters: number;
  readonly quota: QuotaAccounting;
  #free: number;
  #dirty = 0;

  constructor(init: SpaceAccountingInit) {
    const r = init.clusterRatio;
    if (!Number.isInteger(r) || r < 1 || (r & (r - 1)) !== 0) throw new Error(`space accounting: cluster ratio ${r} is not a power of two`);
    checkCount(init.blockSizeBytes, 'block size');
    checkCount(init.totalClusters, 'total clusters');
    checkCount(init.freeClusters, 'free clusters');
    checkCount(init.rootReserveClusters, 'root reserve');
    checkCount(init.resvPoolClusters, 'reserved pool');
    if (init.freeClusters > init.totalClusters) throw new Error(`space accounting: ${init.freeClusters} free of ${init.totalClusters} clusters`);
    this.clusterRatio = r;
    this.blockSizeBytes = init.blockSizeBytes;
    this.clusterSizeBytes = r * init.blockSizeBytes;
    this.totalClusters = init.totalClusters;
    this.rootReserveClusters = init.rootReserveClusters;
    this.resvPoolClusters = init.resvPoolClusters;
    this.quota = init.quota ?? noQuota;
    this.#free = init.freeClusters;
  }

  /** Free clusters (s_freeclusters_counter); dirty ones included. */
  get freeClusters(): number { return this.#free; }
  /** Clusters promised to delayed writes plus transient claims (s_dirtyclusters_counter). */
  get dirtyClusters(): number { return this.#dirty; }

  /** §4.2 rule 5: may `n` more clusters be promised? */
  hasFreeClusters(n: number, opts: ClaimOptions = {}): boolean {
    checkCount(n, 'cluster count');
    const avail = this.#free - this.#dirty;
    if (avail >= n + this.resvPoolClusters + this.rootReserveClusters) return true;
    if (opts.useRootReserve && avail >= n + this.resvPoolClusters) return true;
    if (opts.useResvPool && avail >= n) return true;
    return false;
  }

  /** Check rule 5 and promise `n` clusters (dirty += n); ENOSPC changes nothing. */
  claim(n: number, opts: ClaimOptions = {}): void {
    if (!this.hasFreeClusters(n, opts)) {
      throw new Ext4Error('ENOSPC', `no space for ${n} clusters: ${this.#free} free, ${this.#dirty} dirty, ` +
        `${this.rootReserveClusters} root reserve, ${this.resvPoolClusters} reserved pool`);
    }
    this.#dirty += n;
  }

  /** Drops a claim that was not (or no longer) needed. */
  releaseClaim(n: number): void {
    checkCount(n, 'cluster count');
    if (n > this.#dirty) throw new Error(`dirty clusters would go negative: releasing ${n} of ${this.#dirty}`);
    this.#dirty -= n;
  }

  /** Bitmap clusters were set (allocator). Delalloc-reserved allocations need no claim. */
  markAllocated(n: number): void {
    checkCount(n, 'cluster count');
    if (n > this.#free) throw new Error(`free clusters would go negative: allocating ${n} of ${this.#free}`);
    this.#free -= n;
  }

  /** Bitmap clusters were cleared (freeing path, except re-reserved clusters: see rereserve). */
  markFreed(n: number): void {
    checkCount(n, 'cluster count');
    if (this.#free + n > this.totalClusters) throw new Error(`free clusters would exceed total: freeing ${n} with ${this.#free} of ${this.totalClusters} free`);
    this.#free += n;
  }

  /** A new per-inode reservation record. */
  createInode(ino: InodeNo, uid: number, gid: number): InodeReservation {
    return new InodeReservation(ino, uid, gid);
  }

  /** Delayed write needs `n` clusters: quota first, then claim; EDQUOT/ENOSPC change nothing. */
  reserve(inode: InodeReservation, n: number, opts: ClaimOptions = {}): void {
    checkCount(n, 'cluster count');
    if (n === 0) return;
    const bytes = n * this.clusterSizeBytes;
    this.quota.reserve(inode.uid, inode.gid, bytes);
    try {
      this.claim(n, opts);
    } catch (e) {
      this.quota.release(inode.uid, inode.gid, bytes);
      throw e;
    }
    inode.reservedClusters += n;
  }

  /** Delayed blocks went away without allocation (truncate, punch, invalidate). */
  release(inode: InodeReservation, n: number): void {
    checkCount(n, 'cluster count');
    if (n === 0) return;
    if (n > inode.reservedClusters) {
      throw new Error(`inode ${inode.ino}: to_free ${n} with only ${inode.reservedClusters} reserved clusters`);
    }
    this.#dropReservation(inode, n);
    this.quota.release(inode.uid, inode.gid, n * this.clusterSizeBytes);
  }

  /**
   * `n` reserved clusters were allocated. `claimQuota`: the allocation ran on the delalloc path
   * (allocator charged no quota), so the reservation becomes usage; otherwise the allocator
   * already charged quota and the reservation is just dropped.
   */
  consume(inode: InodeReservation, n: number, claimQuota: boolean): void {
    checkCount(n, 'cluster count');
    if (n === 0) return;
    if (n > inode.reservedClusters) {
      throw new Error(`inode ${inode.ino}: used ${n} with only ${inode.reservedClusters} reserved clusters`);
    }
    this.#dropReservation(inode, n);
    const bytes = n * this.clusterSizeBytes;
    if (claimQuota) this.quota.claim(inode.uid, inode.gid, bytes);
    else this.quota.release(inode.uid, inode.gid, bytes);
  }

  /**
   * A physical cluster was freed whose logical cluster still has delayed blocks (it was
   * pending): instead of returning it to free space and quota, keep it promised to those blocks.
   * The freeing path must not count this cluster as freed itself.
   */
  rereserve(inode: InodeReservation): void {
    if (this.#free + 1 > this.totalClusters) throw new Error(`free clusters would exceed total: re-reserving with ${this.#free} of ${this.totalClusters} free`);
    this.quota.reclaim(inode.uid, inode.gid, this.clusterSizeBytes);
    inode.reservedClusters += 1;
    this.#dirty += 1;
    this.#free += 1;
  }

  #dropReservation(inode: InodeReservation, n: number): void {
    if (n > this.#dirty) throw new Error(`inode ${inode.ino}: dirty clusters would go negative: dropping ${n} of ${this.#dirty}`);
    inode.reservedClusters -= n;
    this.#dirty -= n;
  }
}
