// The writable side of a mount: builds the allocators, accounting, inode cache, journal
// adapter and writeback state once, and hands each fs/ module the narrow context it needs
// (this object satisfies every module's context interface). Operations live in their modules:
// namei (names), file (data), attr, xattr, import, fsync, writeback, invariants.
//
// Locks, in the kernel's order (delalloc-bigalloc.md §5): `ns` (namespace, one per filesystem)
// → inode `io` (i_rwsem) → journal handle → inode `data` (i_data_sem, an async RW lock). The
// allocator has its own mutex, taken innermost around bitmap search-and-set.
import { Ext4Error } from '../errors/ext4-error.ts';
import { Mutex } from '../util/rw-lock.ts';
import { COMPAT, INCOMPAT, RO_COMPAT } from '../format/features.ts';
import { SB_STATE } from '../format/superblock.ts';
import { WriteBackJournal } from '../journal/transaction.ts';
import { GroupTable } from '../alloc/group-table.ts';
import { ClusterAllocator } from '../alloc/cluster-allocator.ts';
import { InodeAllocator } from '../alloc/inode-allocator.ts';
import { SpaceAccounting, noQuota, type MemoryQuota } from '../alloc/space-accounting.ts';
import { checkQuiescent } from '../mapping/delalloc.ts';
import { DirtyCounter } from '../pagecache/file-pages.ts';
import type { Volume } from './volume.ts';
import { InodeCache, type OpenInode } from './inode-cache.ts';
import { Jbd2, openLog, type FsJournal } from './ext4-jbd2.ts';
import type { Jbd2Log } from '../journal/jbd2-log.ts';
import { NameCache } from './dcache.ts';
import { Orphans } from './orphan.ts';
import { Writeback } from './writeback.ts';
import { Importer } from './import.ts';
import { loadQuota, setQuotaLimits } from './quota.ts';
import { releaseOrphan } from './namei.ts';
import { sync, foldIntoTransaction } from './fsync.ts';
import { checkInvariants } from './invariants.ts';

/** Features whose on-disk rules the write path keeps; anything else mounts read-only. */
const WRITABLE_INCOMPAT = INCOMPAT.filetype | INCOMPAT.extent | INCOMPAT['64bit'] | INCOMPAT.flex_bg |
  INCOMPAT.metadata_csum_seed | INCOMPAT.large_dir | INCOMPAT.meta_bg;
const WRITABLE_RO_COMPAT = RO_COMPAT.sparse_super | RO_COMPAT.large_file | RO_COMPAT.huge_file | RO_COMPAT.uninit_bg |
  RO_COMPAT.dir_nlink | RO_COMPAT.extra_isize | RO_COMPAT.quota | RO_COMPAT.bigalloc | RO_COMPAT.metadata_csum |
  // Orphan-file entries left by a crash: Mount.open releases them (and clears the flag) at once.
  RO_COMPAT.orphan_present;
const WRITABLE_COMPAT = COMPAT.has_journal | COMPAT.ext_attr | COMPAT.resize_inode | COMPAT.dir_index |
  COMPAT.orphan_file | COMPAT.sparse_super2 | COMPAT.fast_commit | COMPAT.stable_inodes | COMPAT.dir_prealloc;

/** Why this image cannot be written by ext4kit, or undefined. */
export function writeBlocker(vol: Volume): string | undefined {
  const { sb } = vol;
  if (vol.forcedReadOnly) return vol.forcedReadOnly;
  if (sb.featureIncompat & INCOMPAT.needs_recovery) return 'journal needs recovery';
  if (!(sb.featureIncompat & INCOMPAT.extent)) return 'block-mapped (ext2/ext3) filesystems are read-only for now';
  if (sb.featureIncompat & ~WRITABLE_INCOMPAT) return 'incompat features the write path does not support yet';
  if (sb.featureRoCompat & ~WRITABLE_RO_COMPAT) return 'ro_compat features the write path does not support yet';
  if (sb.featureCompat & ~WRITABLE_COMPAT) return 'compat features the write path does not support yet';
  if (sb.state & SB_STATE.errors) return 'filesystem has errors (run e2fsck)';
  return undefined;
}

export interface MountWritableOptions {
  /**
   * The journal (default: the write-back journal over the volume's block cache, committing
   * through the jbd2 log when the image has a journal). 'bypass' (building a fresh image, mkfs
   * -d): metadata is written in place without the log, and the image is marked not clean until
   * close, so an interrupted build is never taken for a clean filesystem.
   */
  journal?: FsJournal | 'bypass';
}

export class Filesystem {
  readonly journal: FsJournal;
  readonly jbd: Jbd2;
  readonly table: GroupTable;
  readonly clusters: ClusterAllocator;
  readonly inodes: InodeAllocator;
  readonly space: SpaceAccounting;
  readonly icache: InodeCache;
  readonly names = new NameCache();
  readonly orphans = new Orphans();
  readonly writeback: Writeback;
  readonly importer: Importer;
  readonly ns = new Mutex();
  readonly allocLock = new Mutex();

  private constructor(readonly vol: Volume, readonly quota: MemoryQuota | undefined, journal: FsJournal, log: Jbd2Log | undefined) {
    const { geo, sb } = vol;
    this.journal = journal;
    this.table = new GroupTable(geo, vol.groups);
    this.jbd = new Jbd2(journal, vol, () => ({ freeClusters: this.clusters.freeClusters, freeInodes: this.table.freeInodes() }),
      log, () => this.icache.dirty.size + geo.gdtBlocks);
    journal.preCommit = (h) => foldIntoTransaction(this, h);
    // A credit-less handle lets the allocators read bitmaps (including uncommitted ones) outside any operation.
    const reader = journal.start(0);
    this.clusters = new ClusterAllocator(geo, this.table, { reader });
    this.inodes = new InodeAllocator(geo, this.table, { reader });
    const R = geo.clusterRatio;
    this.space = new SpaceAccounting({
      clusterRatio: R, blockSizeBytes: geo.blockSize, totalClusters: geo.clustersCount,
      freeClusters: this.clusters.freeClusters, rootReserveClusters: Math.ceil(sb.rBlocksCount / R),
      resvPoolClusters: Math.min(Math.floor(geo.clustersCount / 50), 4096),
      quota: quota ?? noQuota,
    });
    const dirtyPages = new DirtyCounter();
    this.icache = new InodeCache(vol, this.space, dirtyPages);
    this.writeback = new Writeback(this, dirtyPages);
    this.importer = new Importer(this);
  }

  static async mount(vol: Volume, opts: MountWritableOptions = {}): Promise<Filesystem> {
    const why = writeBlocker(vol);
    if (why) throw new Ext4Error('EROFS', `EROFS: read-only file system: ${why}`, { detail: 'write-blocked' });
    let quota: MemoryQuota | undefined;
    if (vol.sb.featureRoCompat & RO_COMPAT.quota) quota = await loadQuota(vol);
    if (typeof opts.journal === 'object') return new Filesystem(vol, quota, opts.journal, undefined);
    const log = opts.journal === 'bypass' ? undefined : await openLog(vol);
    return new Filesystem(vol, quota, new WriteBackJournal(vol.cache, log), log);
  }

  /** The jbd2 log commits go through (tests look inside), or undefined. */
  get log(): Jbd2Log | undefined { return this.jbd.log; }

  /** The in-memory inodes (tests look inside). */
  get open(): Map<number, OpenInode> { return this.icache.open; }

  getInode(ino: number): Promise<OpenInode> { return this.icache.get(ino); }

  /** A file handle closed. */
  async release(oi: OpenInode): Promise<void> { await this.releaseNow(oi); }

  /** release() that returns a promise only when an orphan's last reference went (its blocks are freed then). */
  releaseNow(oi: OpenInode): Promise<void> | undefined {
    oi.refs--;
    // The last close ends the file's preallocation window; with data still to write back, the
    // window lasts until that writeback (mapDirtyPages) so the data continues the file's run.
    if (oi.refs === 0 && oi.dirtyPageCount === 0) this.clusters.releaseWindow(oi.ino);
    if (oi.refs === 0 && oi.inode.linksCount === 0 && this.orphans.has(oi.ino)) return releaseOrphan(this, oi);
    return undefined;
  }

  /** Sets block limits for one user or group (kept in the quota files at the next commit). */
  async setQuotaLimits(kind: 'user' | 'group', id: number, limits: { softBytes: number; hardBytes: number }): Promise<void> {
    await this.jbd.withHandle(0, async () => setQuotaLimits(this.quota, kind, id, limits));
  }

  sync(opts: { durable?: boolean } = {}): Promise<void> { return sync(this, opts); }

  /** Runs one background writeback pass now (tests and the founding scenario drive it). */
  backgroundWritebackPass(): Promise<void> { return this.writeback.all(); }

  checkInvariants(): Promise<void> { return checkInvariants(this); }

  async close(): Promise<void> {
    if (this.jbd.closed) return;
    this.writeback.stopTimer();
    for (const oi of [...this.icache.open.values()]) {
      if (oi.refs > 0 && this.orphans.has(oi.ino)) { oi.refs = 1; await this.release(oi); }
    }
    await this.sync();
    for (const oi of this.icache.open.values()) checkQuiescent(oi.state);
    if (this.space.dirtyClusters !== 0) throw new Error(`unmount with ${this.space.dirtyClusters} dirty clusters`);
    if (this.jbd.markedDirty) {
      await this.jbd.markClean();
      await this.vol.device.flush();
    }
    this.jbd.closed = true;
  }
}
export type { OpenInode } from './inode-cache.ts';
