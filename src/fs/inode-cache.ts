// In-memory inodes (the kernel's struct inode + ext4_inode_info) and the inode cache: iget
// loads an inode once, lookup/forget count the references a FUSE kernel holds (FORGET maps
// onto forget), and dirty inodes are encoded into the inode table at commit.
import { INCOMPAT } from '../format/features.ts';
import { encodeInode, type Inode } from '../format/inode.ts';
import { inodeNo } from '../util/brand.ts';
import { RwLock, Mutex } from '../util/rw-lock.ts';
import type { MetaTxn } from '../journal/transaction.ts';
import type { SpaceAccounting } from '../alloc/space-accounting.ts';
import { createDelallocState, type DelallocState } from '../mapping/delalloc.ts';
import { FilePages, type DirtyCounter } from '../pagecache/file-pages.ts';
import type { Volume } from './volume.ts';
import type { LiveListing } from './readdir.ts';

/** What an OpenInode needs to build its per-file state when first used. */
export interface InodeHome {
  readonly blockSize: number;
  readonly space: SpaceAccounting;
  readonly dirtyPages: DirtyCounter;
}

/**
 * One in-memory inode. Locks in the kernel's order: io (i_rwsem) → handle → data (i_data_sem).
 * An inode that is only looked up or listed holds its number, the decoded inode and a few
 * counters; the locks, the page map and the delayed-allocation state are made on first use
 * (an inode the kernel merely remembers costs a few hundred bytes, not a file's machinery).
 */
export class OpenInode {
  #io: Mutex | undefined;
  #data: RwLock | undefined;
  #writeback: Mutex | undefined;
  #pages: FilePages | undefined;
  #state: DelallocState | undefined;
  /** Open file handles. */
  refs = 0;
  /** References a FUSE kernel holds through LOOKUP replies (dropped by FORGET). */
  nlookup = 0;
  goal = 0;
  /** Cached checksum seed (it depends on the generation only). */
  seed: number | undefined;
  seedFor = -1;
  /**
   * The size the inode table gets at commit (the kernel's i_disksize), when it lags the
   * in-memory size: a buffered write past it moves only `inode.sizeBytes`; writeback moves this
   * as the data below it is mapped and written (fs/writeback.ts). undefined: the same as
   * `inode.sizeBytes` (every inode that is not a regular file written through the page cache).
   */
  diskSizeBytes: number | undefined;
  /** A large linear directory's sorted listing, while a paged listing uses it (fs/readdir.ts). */
  listing: LiveListing | undefined;
  constructor(readonly ino: number, public inode: Inode, private readonly home: InodeHome) {}

  get io(): Mutex {
    if (!this.#io) this.#io = new Mutex();
    return this.#io;
  }
  get data(): RwLock {
    if (!this.#data) this.#data = new RwLock();
    return this.#data;
  }
  get writeback(): Mutex {
    if (!this.#writeback) this.#writeback = new Mutex();
    return this.#writeback;
  }
  get pages(): FilePages {
    if (!this.#pages) this.#pages = new FilePages(this.home.blockSize, this.home.dirtyPages);
    return this.#pages;
  }
  get state(): DelallocState {
    if (!this.#state) this.#state = createDelallocState(this.home.space, inodeNo(this.ino), this.inode.uid, this.inode.gid);
    return this.#state;
  }
  set state(s: DelallocState) { this.#state = s; }

  /** Dirty pages, without making a page map for an inode that has none. */
  get dirtyPageCount(): number { return this.#pages?.dirtyCount ?? 0; }
  /** Clusters reserved for delayed writes, without making the state of an inode that has none. */
  get reservedClusters(): number { return this.#state?.reservation.reservedClusters ?? 0; }
  /** Whether the locks, page map or delayed-allocation state were made (tests count these). */
  get materialized(): boolean {
    return this.#io !== undefined || this.#data !== undefined || this.#writeback !== undefined || this.#pages !== undefined || this.#state !== undefined;
  }

  /** No lock held or awaited, no dirty page, no delayed allocation (clean pages and cached extents may go). */
  get idle(): boolean {
    const mutexIdle = (l: Mutex | undefined) => l === undefined || (!l.locked && l.waiting === 0);
    const rwIdle = (l: RwLock | undefined) => l === undefined || (!l.writing && l.readers === 0 && l.waiting === 0);
    return mutexIdle(this.#io) && rwIdle(this.#data) && mutexIdle(this.#writeback) && this.dirtyPageCount === 0
      && (this.#state === undefined || (this.#state.reservation.reservedClusters === 0 && this.#state.pending.size === 0));
  }

  /** Nothing in memory depends on this inode staying cached. */
  get evictable(): boolean { return this.refs === 0 && this.nlookup === 0 && this.dirtyPageCount === 0; }

  /** Releases the clean pages (the inode stays cached). */
  shrinkPages(): void { this.#pages?.shrink(); }

  /**
   * Leaving the cache (idle: no lock in use, nothing dirty or delayed): clean pages, locks,
   * page map and delayed-allocation state go, so an evicted inode that comes back is as small
   * as one read anew.
   */
  dematerialize(): void {
    this.#pages?.shrink();
    if (this.#pages?.size === 0) this.#pages = undefined;
    this.#io = undefined;
    this.#data = undefined;
    this.#writeback = undefined;
    this.#state = undefined;
  }
}

/** Clean, unreferenced inodes kept in memory at most (least recently used go first). */
export const DEFAULT_MAX_CACHED_INODES = 16_384;

export class InodeCache {
  /** Cached inodes, least recently used first. */
  readonly open = new Map<number, OpenInode>();
  readonly dirty = new Set<OpenInode>();
  /**
   * Inodes evicted while something may still hold them: an operation between its lookup and
   * its reference (an open, a FUSE request) or a caller keeping an inode across awaits. Until
   * the garbage collector takes them, get(), hold() and markDirty() bring back the same
   * object, so an inode never has two live copies (writes to the evicted one would be lost).
   */
  private readonly evicted = new Map<number, WeakRef<OpenInode>>();
  /** Test hook (crash harness broken variant): the inode table gets the in-memory size, as before i_disksize. */
  sizeAheadForTest = false;
  /** Test hook (broken variant of the memory test): never evict on insertion. */
  unboundedForTest = false;
  /** Test hook (broken variant of test/cache-races): eviction forgets the object, as before. */
  forgetEvictedForTest = false;
  private readonly home: InodeHome;
  /** The cache size at which the next eviction pass runs (raised when a pass found too few to evict). */
  private nextPassAt: number;
  constructor(private readonly vol: Volume, space: SpaceAccounting, dirtyPages: DirtyCounter, private maxCached = DEFAULT_MAX_CACHED_INODES) {
    this.home = { blockSize: vol.geo.blockSize, space, dirtyPages };
    this.nextPassAt = this.passAt(0);
  }

  /** How many clean, unreferenced inodes stay in memory (an embedder's or a test's choice). */
  setMaxCached(count: number): void {
    if (!Number.isSafeInteger(count) || count < 1) throw new RangeError(`bad inode cache size ${count}`);
    this.maxCached = count;
    this.nextPassAt = this.passAt(this.open.size);
  }

  private passAt(size: number): number { return Math.max(size, this.maxCached) + Math.max(16, this.maxCached >> 3); }

  /** get() of an inode that is in memory now, without a promise (undefined: get() must load it). */
  getCached(ino: number): OpenInode | undefined {
    const oi = this.open.get(ino);
    if (oi) {
      // Most recently used last.
      this.open.delete(ino);
      this.open.set(ino, oi);
      return oi;
    }
    // Evicted, but still held somewhere: the same object comes back.
    const back = this.takeEvicted(ino);
    return back ? this.insert(back) : undefined;
  }

  /** The in-memory inode, loaded from the inode table on first use (iget). */
  async get(ino: number): Promise<OpenInode> {
    let oi = this.getCached(ino);
    if (oi) return oi;
    const inode = await this.vol.readInode(ino);
    oi = this.open.get(ino) ?? this.takeEvicted(ino);
    if (!oi) return this.insert(new OpenInode(ino, inode, this.home));
    if (this.open.get(ino) !== oi) this.insert(oi);
    return oi;
  }

  /** Test hook: forgets every evicted inode, as if the garbage collector had taken them all. */
  collectEvictedForTest(): void { this.evicted.clear(); }

  private takeEvicted(ino: number): OpenInode | undefined {
    const ref = this.evicted.get(ino);
    if (!ref) return undefined;
    this.evicted.delete(ino);
    return ref.deref();
  }

  /** Brings an evicted inode back (a no-op for a cached one; never for one freed since). */
  revive(oi: OpenInode): void {
    if (this.open.get(oi.ino) === oi) return;
    if (!this.open.has(oi.ino) && this.evicted.get(oi.ino)?.deref() === oi) {
      this.evicted.delete(oi.ino);
      this.insert(oi);
    }
  }

  /** An open file handle takes its reference (brought back first if evicted since its lookup). */
  hold(oi: OpenInode): void {
    this.revive(oi);
    oi.refs++;
  }

  /** A new inode enters the cache. */
  add(ino: number, inode: Inode): OpenInode {
    return this.insert(new OpenInode(ino, inode, this.home));
  }

  private insert(oi: OpenInode): OpenInode {
    this.open.set(oi.ino, oi);
    if (this.open.size >= this.nextPassAt && !this.unboundedForTest) this.evictLru(oi);
    return oi;
  }

  /**
   * Whether an inode can leave memory now: nobody holds it (handles, kernel lookups through
   * `lookup`), its changes are in the inode table's next commit (not dirty), it has no dirty
   * page, delayed allocation or lock in use, it is not an orphan (link count 0) and its
   * on-disk size does not lag. It is read again from the inode table when next needed.
   */
  private canEvict(oi: OpenInode): boolean {
    return oi.evictable && !this.dirty.has(oi) && oi.idle && oi.inode.linksCount !== 0 && oi.diskSizeBytes === undefined;
  }

  /** Evicts least recently used inodes down to maxCached (never `keep`, the one just inserted). */
  private evictLru(keep: OpenInode): void {
    for (const oi of this.open.values()) {
      if (this.open.size <= this.maxCached) break;
      if (oi === keep || !this.canEvict(oi)) continue;
      this.evict(oi);
    }
    this.sweepEvicted();
    this.nextPassAt = this.passAt(this.open.size);
  }

  private evict(oi: OpenInode): void {
    oi.dematerialize();
    this.open.delete(oi.ino);
    if (!this.forgetEvictedForTest) this.evicted.set(oi.ino, new WeakRef(oi));
  }

  /** Forgets evicted inodes the garbage collector has taken (their map entries would pile up). */
  private sweepEvicted(): void {
    if (this.evicted.size < 2 * this.maxCached) return;
    for (const [ino, ref] of this.evicted) if (!ref.deref()) this.evicted.delete(ino);
  }

  /** Inodes whose locks, page map or delayed-allocation state exist (tests bound this). */
  materializedCount(): number {
    let n = 0;
    for (const oi of this.open.values()) if (oi.materialized) n++;
    return n;
  }

  /** The inode was freed: it leaves the cache for good. */
  drop(ino: number): void { this.open.delete(ino); this.evicted.delete(ino); }

  /** A LOOKUP reply handed the inode to the kernel (FUSE): it stays cached until forget. */
  async lookup(ino: number, count = 1): Promise<OpenInode> {
    const oi = await this.get(ino);
    oi.nlookup += count;
    return oi;
  }

  /** FUSE FORGET: the kernel dropped `count` references. Returns the inode when it became evictable. */
  forget(ino: number, count: number): OpenInode | undefined {
    const oi = this.open.get(ino);
    if (!oi) return undefined;
    oi.nlookup = Math.max(0, oi.nlookup - count);
    return oi.evictable ? oi : undefined;
  }

  /**
   * Records that an inode changed. Like the kernel's dirty-inode list, the on-disk copy is
   * encoded at commit (writeInode); readers of a writable mount use the in-memory inode.
   */
  markDirty(oi: OpenInode): void {
    if (this.open.get(oi.ino) !== oi) this.revive(oi);
    this.dirty.add(oi);
  }

  /** Encodes the in-memory inode into its inode-table block (through the handle). */
  async writeInode(txn: MetaTxn, oi: OpenInode): Promise<void> {
    const { geo } = this.vol;
    const g = Math.floor((oi.ino - 1) / geo.inodesPerGroup);
    const idx = (oi.ino - 1) % geo.inodesPerGroup;
    const blk = this.vol.groups[g]!.inodeTable + Math.floor(idx / geo.inodesPerBlock);
    const block = await txn.getWrite(blk);
    const off = (idx % geo.inodesPerBlock) * geo.inodeSize;
    const disk = oi.diskSizeBytes;
    const inode = disk === undefined || disk === oi.inode.sizeBytes || this.sizeAheadForTest ? oi.inode : { ...oi.inode, sizeBytes: disk };
    encodeInode(inode, block.subarray(off, off + geo.inodeSize), {
      ino: oi.ino, inodeSize: geo.inodeSize, fsCsumSeed: geo.metadataCsum ? geo.csumSeed : undefined,
      hugeFile: this.vol.hugeFile, blockSize: geo.blockSize, has64bit: this.vol.has('incompat', INCOMPAT['64bit']),
    });
  }

  /** Releases cached inodes nobody holds (after a commit). */
  shrink(keep: (oi: OpenInode) => boolean): void {
    for (const oi of this.open.values()) {
      // A dirty inode stays: dropping it would let the next iget read the stale on-disk copy.
      if (oi.evictable && !this.dirty.has(oi) && oi.idle && !keep(oi)) this.evict(oi);
    }
    this.sweepEvicted();
    this.nextPassAt = this.passAt(this.open.size);
  }
}
