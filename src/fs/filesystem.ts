// The writable filesystem: composes inodes, directories, the page cache, block mapping,
// allocators, quota and the journal seam. The only layer that opens transaction handles across
// modules. Reads of a writable mount go through here too (page cache first, then disk).
//
// Locks, in the kernel's order (delalloc-bigalloc.md §5): `ns` (namespace, one per filesystem)
// → inode `io` (i_rwsem) → journal handle → inode `data` (i_data_sem, an async RW lock). The
// allocator has its own mutex, taken innermost around bitmap search-and-set.
import { Ext4Error, posixError, corrupt, assert } from '../errors/ext4-error.ts';
import { inodeNo, fileBlock, fsBlock } from '../util/brand.ts';
import { RwLock, Mutex } from '../util/rw-lock.ts';
import { encodeUtf8 } from '../util/bytes.ts';
import { COMPAT, INCOMPAT, RO_COMPAT } from '../format/features.ts';
import { encodeSuperblock, SUPERBLOCK_OFFSET, SB_STATE } from '../format/superblock.ts';
import {
  blankInode, encodeInode, EXTENTS_FL, INDEX_FL, INLINE_DATA_FL, S_IFMT, S_IFDIR, S_IFREG, S_IFLNK,
  isDirMode, isRegMode, isSymlinkMode, type Inode, type Timestamp,
} from '../format/inode.ts';
import { FT_DIR, FT_REG, FT_SYMLINK, FT_CHRDEV, FT_BLKDEV, FT_FIFO, FT_SOCK } from '../format/dirent.ts';
import { decodeQuotaFile, encodeQuotaFile, type QuotaUsage as QuotaFileUsage } from '../format/quota.ts';
import {
  decodeInodeXattrs, decodeXattrBlock, encodeInodeXattrs, encodeXattrBlock, splitXattrName, type XattrEntry,
} from '../format/xattr.ts';
import { WriteBackJournal, type Handle, type MetaTxn } from '../journal/transaction.ts';
import { Jbd2Log } from '../journal/jbd2-log.ts';
import { iterateMappings } from '../mapping/read-map.ts';
import { GroupTable } from '../alloc/group-table.ts';
import { ClusterAllocator } from '../alloc/cluster-allocator.ts';
import { InodeAllocator } from '../alloc/inode-allocator.ts';
import { SpaceAccounting, MemoryQuota, noQuota, type QuotaAccounting } from '../alloc/space-accounting.ts';
import { checkInvariants } from '../alloc/invariants.ts';
import { createDelallocState, checkQuiescent, type DelallocState } from '../mapping/delalloc.ts';
import { MAX_FILE_BLOCK, logicalCluster } from '../mapping/extent-status.ts';
import { extentLookup, extentInsert, initExtentRoot, logicalClusterMapped, type ExtentTreeEnv } from '../mapping/extent-tree.ts';
import {
  allocateDelayed, allocateUnwritten, allocateWritten, lookupRange, removeBlocks, reserveDelayed, setUnwritten, type FileMap,
} from '../mapping/map-blocks.ts';
import { dirAddEntry, dirInit, dirIsEmpty, dirRemoveEntry, dirReplaceEntry, dirSetParent, type DirWriteEnv } from '../dir/dir-write.ts';
import { lookupName, type DirSource } from '../dir/dir-read.ts';
import { FilePages, DirtyCounter, RUN_BUFFER_BYTES, type Page, type PageBuffer } from '../pagecache/file-pages.ts';
import { writeChunks } from '../device/block-device.ts';
import { InodeData } from './file-data.ts';
import { checkXattrName, checkXattrNameArg, XATTR_SIZE_MAX_BYTES } from './xattrs.ts';
import type { Volume } from './volume.ts';

const ROOT_INO = 2;
const EXT4_LINK_MAX = 65000;
/**
 * Background writeback starts when this many bytes are dirty in the page cache; writers wait
 * past twice as many. Peak memory is about twice this in live pages plus as much again in pages
 * and write buffers already written but not yet collected (V8 frees such external memory lazily):
 * at 32 MiB eight interleaved writers peaked at 260-290 MiB RSS, at 16 MiB about 210 MiB.
 */
const DIRTY_THRESHOLD_BYTES = 16 << 20;
/** ...and dirty data older than this is written back (the kernel's dirty_expire is 30 s; ours is shorter). */
const DIRTY_EXPIRE_MS = 5000;
/** Largest device write of file data (bytes). */
const WRITEBACK_IO_BYTES = 8 << 20;
/** A handle's default block budget: generous, because extent splits and directory growth can touch many blocks. */
const S_ISGID = 0o2000;
const CREDITS = 512;

/** Features whose on-disk rules the write path keeps; anything else mounts read-only. */
const WRITABLE_INCOMPAT = INCOMPAT.filetype | INCOMPAT.extent | INCOMPAT['64bit'] | INCOMPAT.flex_bg |
  INCOMPAT.metadata_csum_seed | INCOMPAT.large_dir | INCOMPAT.meta_bg;
const WRITABLE_RO_COMPAT = RO_COMPAT.sparse_super | RO_COMPAT.large_file | RO_COMPAT.huge_file | RO_COMPAT.uninit_bg |
  RO_COMPAT.dir_nlink | RO_COMPAT.extra_isize | RO_COMPAT.quota | RO_COMPAT.bigalloc | RO_COMPAT.metadata_csum;
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

export interface Credentials { uid: number; gid: number }

/** What importFile gives a new file besides its contents. */
export interface ImportAttrs {
  /** Permission bits (with set-id and sticky bits). */
  mode: number;
  /** Owner (default: the caller's credentials). */
  uid?: number;
  gid?: number;
  /** Times (default: now). */
  atime?: Timestamp;
  mtime?: Timestamp;
  /** All-zero blocks become holes (as mke2fs -d and cp --sparse do). */
  sparse?: boolean;
}

/**
 * Pages on their way to disk: file blocks [fileBlock, fileBlock + pages.length) go to fsBlock
 * onwards; pages[k] is the page of block fileBlock + k when it was mapped, versions[k] its
 * version then.
 */
interface WbRun { oi: OpenInode; fileBlock: number; fsBlock: number; pages: Page[]; versions: number[] }

/** One in-memory inode (the kernel's struct inode + ext4_inode_info). */
export class OpenInode {
  readonly io = new Mutex();
  readonly data = new RwLock();
  readonly writeback = new Mutex();
  refs = 0;
  goal = 0;
  /** Cached checksum seed (it depends on the generation only). */
  seed: number | undefined;
  seedFor = -1;
  readonly pages: FilePages;
  state: DelallocState;
  constructor(readonly ino: number, public inode: Inode, blockSize: number, space: SpaceAccounting, dirty: DirtyCounter) {
    this.pages = new FilePages(blockSize, dirty);
    this.state = createDelallocState(space, inodeNo(ino), inode.uid, inode.gid);
  }
}

export class Filesystem {
  readonly journal: WriteBackJournal;
  readonly table: GroupTable;
  readonly clusters: ClusterAllocator;
  readonly inodes: InodeAllocator;
  readonly space: SpaceAccounting;
  readonly quota: MemoryQuota | undefined;
  private readonly open = new Map<number, OpenInode>();
  private readonly ns = new Mutex();
  private readonly allocLock = new Mutex();
  private readonly orphans = new Set<number>();
  private readonly dirtyPages = new DirtyCounter();
  private readonly dirtyInodes = new Set<OpenInode>();
  /** Dentry cache: directory inode → name → inode. `complete` directories answer misses too. */
  private readonly dcache = new Map<number, { names: Map<string, number>; complete: boolean }>();
  private dcacheEntries = 0;
  private background: Promise<void> | undefined;
  private ageTimer: ReturnType<typeof setTimeout> | undefined;
  private backgroundError: unknown;
  private closed = false;
  private markedDirty = false;
  /** Where the next imported file's data goes: right after the previous one's. */
  private importGoal = 0;
  private tailScratch: Uint8Array | undefined;

  private constructor(readonly vol: Volume, quota: MemoryQuota | undefined, readonly log: Jbd2Log | undefined) {
    const { geo, sb } = vol;
    this.journal = new WriteBackJournal(vol.cache, log);
    this.journal.preCommit = (h) => this.foldIntoTransaction(h);
    this.table = new GroupTable(geo, vol.groups);
    // A credit-less handle lets the allocators read bitmaps (including uncommitted ones) outside any operation.
    const reader = this.journal.start(0);
    this.clusters = new ClusterAllocator(geo, this.table, { reader });
    this.inodes = new InodeAllocator(geo, this.table, { reader });
    this.quota = quota;
    const R = geo.clusterRatio;
    this.space = new SpaceAccounting({
      clusterRatio: R, blockSizeBytes: geo.blockSize, totalClusters: geo.clustersCount,
      freeClusters: this.clusters.freeClusters, rootReserveClusters: Math.ceil(sb.rBlocksCount / R),
      resvPoolClusters: Math.min(Math.floor(geo.clustersCount / 50), 4096),
      quota: quota ?? noQuota,
    });
  }

  /**
   * `journal: 'bypass'` (image building into a fresh image): metadata is written in place
   * without the log, and the image is marked not clean until close, so an interrupted build
   * is never taken for a clean filesystem.
   */
  static async mount(vol: Volume, opts: { journal?: 'bypass' } = {}): Promise<Filesystem> {
    const why = writeBlocker(vol);
    if (why) throw new Ext4Error('EROFS', `EROFS: read-only file system: ${why}`, { detail: 'write-blocked' });
    let quota: MemoryQuota | undefined;
    if (vol.sb.featureRoCompat & RO_COMPAT.quota) quota = await loadQuota(vol);
    const log = opts.journal === 'bypass' ? undefined : await openLog(vol);
    return new Filesystem(vol, quota, log);
  }

  get blockSize(): number { return this.vol.geo.blockSize; }
  private get R(): number { return this.vol.geo.clusterRatio; }

  // ---- handles and inodes ------------------------------------------------------------------

  private async withHandle<T>(credits: number, fn: (h: Handle) => Promise<T>, opts: { mayCommit?: boolean } = {}): Promise<T> {
    if (this.closed) throw new Ext4Error('EBADF', 'filesystem is closed');
    if (!this.markedDirty) await this.markDirty();
    // Transactions stay within the log: commit first when this one has grown large. Not from
    // inside writeback (it holds ordered-data tokens the commit would wait for) or commit itself.
    if (this.log && opts.mayCommit !== false &&
        this.journal.dirtyBlocks + this.dirtyInodes.size + this.vol.geo.gdtBlocks + 64 > this.log.maxTransactionBlocks) {
      await this.commit();
    }
    const h = await this.journal.begin(credits);
    try { return await fn(h); } finally { h.stop(); }
  }

  /**
   * First write of the mount. With the log: needs_recovery is set (the state stays valid, as
   * a journalled ext4 mount does) and made durable before any commit record. Without it: the
   * "cleanly unmounted" state is cleared.
   */
  private async markDirty(): Promise<void> {
    this.markedDirty = true;
    const { sb } = this.vol;
    if (this.log) sb.featureIncompat |= INCOMPAT.needs_recovery;
    else sb.state &= ~SB_STATE.valid;
    sb.mntCount = (sb.mntCount + 1) & 0xffff;
    sb.mtime = nowSec();
    await this.writeSuperblock();
    if (this.log) {
      await this.log.start();
      await this.vol.device.flush();
    }
  }

  async getInode(ino: number): Promise<OpenInode> {
    let oi = this.open.get(ino);
    if (!oi) {
      const inode = await this.vol.readInode(ino);
      oi = this.open.get(ino);
      if (!oi) {
        oi = new OpenInode(ino, inode, this.blockSize, this.space, this.dirtyPages);
        this.open.set(ino, oi);
      }
    }
    return oi;
  }

  /**
   * Records that an inode changed. Like the kernel's dirty-inode list, the on-disk copy is
   * encoded at commit (writeInode); readers of a writable mount use the in-memory inode.
   */
  markInodeDirty(oi: OpenInode): void {
    this.dirtyInodes.add(oi);
  }

  /** Encodes the in-memory inode into its inode-table block (through the handle). */
  private async writeInode(txn: MetaTxn, oi: OpenInode): Promise<void> {
    const { geo } = this.vol;
    const g = Math.floor((oi.ino - 1) / geo.inodesPerGroup);
    const idx = (oi.ino - 1) % geo.inodesPerGroup;
    const blk = this.vol.groups[g]!.inodeTable + Math.floor(idx / geo.inodesPerBlock);
    const block = await txn.getWrite(blk);
    const off = (idx % geo.inodesPerBlock) * geo.inodeSize;
    encodeInode(oi.inode, block.subarray(off, off + geo.inodeSize), {
      ino: oi.ino, inodeSize: geo.inodeSize, fsCsumSeed: geo.metadataCsum ? geo.csumSeed : undefined,
      hugeFile: this.vol.hugeFile, blockSize: geo.blockSize, has64bit: this.vol.has('incompat', INCOMPAT['64bit']),
    });
  }

  private inodeSeed(oi: OpenInode): number | undefined {
    if (oi.seedFor !== oi.inode.generation) { oi.seed = this.vol.inodeSeed(oi.ino, oi.inode); oi.seedFor = oi.inode.generation; }
    return oi.seed;
  }

  /** Allocates one cluster for metadata (tree nodes, directory and xattr blocks). */
  private async allocMetaCluster(txn: MetaTxn, oi: OpenInode, goalBlock: number, mustSucceed: boolean): Promise<number> {
    const opts = mustSucceed ? { useResvPool: true } : { useRootReserve: oi.inode.uid === 0 };
    this.space.claim(1, opts);
    try {
      this.space.quota.addUsage(oi.inode.uid, oi.inode.gid, this.R * this.blockSize, { force: mustSucceed });
    } catch (e) {
      this.space.releaseClaim(1);
      throw e;
    }
    const run = await this.allocLock.withLock(() => this.clusters.allocRun(txn, Math.floor(goalBlock / this.R), 1, 1));
    this.space.releaseClaim(1);
    if (!run) {
      this.space.quota.freeUsage(oi.inode.uid, oi.inode.gid, this.R * this.blockSize);
      throw new Ext4Error('ENOSPC', 'no free cluster for metadata', { detail: 'meta-enospc' });
    }
    this.space.markAllocated(1);
    this.charge(oi, 1);
    return run.cluster * this.R;
  }

  private async freeMetaCluster(txn: MetaTxn, oi: OpenInode, block: number): Promise<void> {
    txn.forget(block);
    await this.allocLock.withLock(() => this.clusters.free(txn, Math.floor(block / this.R), 1));
    this.space.markFreed(1);
    this.space.quota.freeUsage(oi.inode.uid, oi.inode.gid, this.R * this.blockSize);
    this.charge(oi, -1);
  }

  private charge(oi: OpenInode, clusters: number): void {
    oi.inode.blocks512 += clusters * this.R * (this.blockSize / 512);
    assert(oi.inode.blocks512 >= 0, `inode ${oi.ino}: i_blocks went negative`);
  }

  treeEnv(txn: MetaTxn, oi: OpenInode): ExtentTreeEnv {
    return {
      txn, blockSize: this.blockSize, clusterRatio: this.R, ino: oi.ino, inodeSeed: this.inodeSeed(oi),
      blocksCount: this.vol.geo.blocksCount, root: oi.inode.iBlock,
      allocNodeBlock: (goal) => this.allocMetaCluster(txn, oi, goal || oi.goal, true),
      freeNodeBlock: (b) => this.freeMetaCluster(txn, oi, b),
      freeDataClusters: async (cluster, count) => {
        for (let i = 0; i < count; i++) for (let k = 0; k < this.R; k++) txn.forget((cluster + i) * this.R + k);
        await this.allocLock.withLock(() => this.clusters.free(txn, cluster, count));
      },
    };
  }

  fileMap(oi: OpenInode): FileMap {
    const fs = this;
    const clusters = this.clusters;
    const lockedAlloc: FileMap['alloc'] = {
      allocRun: (txn, goal, want, min, opts) => fs.allocLock.withLock(() => clusters.allocRun(txn, goal, want, min, opts)),
      allocStream: (txn, owner, goal, want, opts) => fs.allocLock.withLock(() => clusters.allocStream(txn, owner, goal, want, opts)),
      releaseWindow: (owner) => clusters.releaseWindow(owner),
    };
    return {
      ino: inodeNo(oi.ino), uid: oi.inode.uid, gid: oi.inode.gid, clusterRatio: this.R, blockSize: this.blockSize,
      state: oi.state, space: this.space, alloc: lockedAlloc,
      treeEnv: (txn) => fs.treeEnv(txn, oi),
      goal: () => oi.goal || fs.defaultGoal(oi.ino),
      hasOwnGoal: () => oi.goal !== 0,
      setGoal: (b) => { oi.goal = b; },
      streaming: () => oi.refs > 0,
      chargeClusters: (n) => fs.charge(oi, n),
    };
  }

  private defaultGoal(ino: number): number {
    const { geo } = this.vol;
    const g = Math.floor((ino - 1) / geo.inodesPerGroup);
    return geo.firstDataBlock + g * geo.blocksPerGroup;
  }

  private dirEnv(txn: MetaTxn, oi: OpenInode): DirWriteEnv {
    const { vol } = this;
    const bs = this.blockSize;
    return {
      ino: oi.ino, blockSize: bs, filetype: vol.filetype, metadataCsum: vol.geo.metadataCsum,
      inodeSeed: this.inodeSeed(oi), dirIndex: (vol.sb.featureCompat & COMPAT.dir_index) !== 0,
      largeDir: vol.has('incompat', INCOMPAT.large_dir), hashSeed: vol.sb.hashSeed, sbFlags: vol.sb.flags,
      defHashVersion: vol.sb.defHashVersion, txn,
      blockCount: () => Math.ceil(oi.inode.sizeBytes / bs),
      mapBlock: async (fileBlockNo) => {
        const e = await extentLookup(this.treeEnv(txn, oi), fileBlock(fileBlockNo));
        return e && !e.unwritten ? e.fsBlock + (fileBlockNo - e.fileBlock) : undefined;
      },
      appendBlock: async () => {
        const next = Math.ceil(oi.inode.sizeBytes / bs);
        const env = this.treeEnv(txn, oi);
        const implied = this.R > 1 ? await logicalClusterMapped(env, logicalCluster(Math.floor(next / this.R))) : undefined;
        const physical = implied ? implied.physicalCluster * this.R + (next % this.R)
          : (await this.allocMetaCluster(txn, oi, oi.goal || this.defaultGoal(oi.ino), false)) + (next % this.R);
        await extentInsert(env, { fileBlock: fileBlock(next), fsBlock: fsBlock(physical), countBlocks: 1, unwritten: false });
        oi.goal = physical + 1;
        oi.inode.sizeBytes += bs;
        return physical;
      },
      getFlags: () => oi.inode.flags,
      setFlags: (f) => { oi.inode.flags = f; },
    };
  }

  dirSource(oi: OpenInode): DirSource {
    return this.vol.dirSource(oi.ino, oi.inode, { isDirty: (b) => this.journal.isDirty(b) });
  }

  // ---- paths -------------------------------------------------------------------------------

  /** Resolves a path to an inode; `followLast` follows a final symlink. */
  async resolve(path: string, followLast: boolean, syscall: string): Promise<OpenInode> {
    return this.resolveParts(splitPath(path, syscall), followLast, syscall, path);
  }

  /** resolve() of a path already split into components (`path` is for error messages). */
  private async resolveParts(parts: readonly string[], followLast: boolean, syscall: string, path: string): Promise<OpenInode> {
    let cur = await this.getInode(ROOT_INO);
    const stack = [...parts].reverse();
    let follows = 0;
    while (stack.length) {
      const name = stack.pop()!;
      if (!isDirMode(cur.inode.mode)) throw posixError('ENOTDIR', syscall, path);
      const childIno = await this.lookupEntry(cur, name);
      if (childIno === undefined) throw posixError('ENOENT', syscall, path);
      const next = await this.getInode(childIno);
      if (next.inode.linksCount === 0 && next.inode.mode === 0) throw corrupt('dirent-unused-inode', `entry '${name}' points to unused inode ${childIno}`, { inode: childIno });
      if (isSymlinkMode(next.inode.mode) && (stack.length > 0 || followLast)) {
        if (++follows > 40) throw posixError('ELOOP', syscall, path);
        const target = utf8Decoder.decode(await this.readlinkOf(next));
        for (const c of target.split('/').filter((x) => x !== '' && x !== '.').reverse()) stack.push(c);
        if (target.startsWith('/')) cur = await this.getInode(ROOT_INO);
        continue;
      }
      cur = next;
    }
    return cur;
  }

  /** The parent directory of `path` and the final name (not resolved). */
  async resolveParent(path: string, syscall: string): Promise<{ dir: OpenInode; name: string; nameBytes: Uint8Array }> {
    const parts = splitPath(path, syscall);
    if (parts.length === 0) throw posixError('EBUSY', syscall, path);
    const name = parts[parts.length - 1]!;
    if (name === '..') throw posixError('EINVAL', syscall, path);
    const dir = await this.resolveParts(parts.slice(0, -1), true, syscall, path);
    if (!isDirMode(dir.inode.mode)) throw posixError('ENOTDIR', syscall, path);
    return { dir, name, nameBytes: encodeUtf8(name) };
  }

  async lookupIn(dir: OpenInode, nameBytes: Uint8Array, name = utf8Decoder.decode(nameBytes)): Promise<OpenInode | undefined> {
    const ino = await this.lookupEntry(dir, name, nameBytes);
    return ino === undefined ? undefined : this.getInode(ino);
  }

  /** Name lookup through the dentry cache. */
  private async lookupEntry(dir: OpenInode, name: string, nameBytes?: Uint8Array): Promise<number | undefined> {
    const cached = this.dcache.get(dir.ino);
    const hit = cached?.names.get(name);
    if (hit !== undefined) return hit;
    if (cached?.complete) return undefined;
    const e = await lookupName(this.dirSource(dir), nameBytes ?? encodeUtf8(name));
    if (e) this.dcachePut(dir.ino, name, e.ino, false);
    return e?.ino;
  }

  private dcachePut(dirIno: number, name: string, ino: number, complete: boolean): void {
    if (this.dcacheEntries > 200_000) { this.dcache.clear(); this.dcacheEntries = 0; }
    let d = this.dcache.get(dirIno);
    if (!d) { d = { names: new Map(), complete }; this.dcache.set(dirIno, d); }
    if (!d.names.has(name)) this.dcacheEntries++;
    d.names.set(name, ino);
  }

  private dcacheDelete(dirIno: number, name: string): void {
    const d = this.dcache.get(dirIno);
    if (d?.names.delete(name)) this.dcacheEntries--;
  }

  async readlinkOf(oi: OpenInode): Promise<Uint8Array> {
    if (oi.pages.size > 0 && oi.inode.sizeBytes >= 60) return (await this.read(oi, 0, oi.inode.sizeBytes));
    return new InodeData(this.vol, oi.ino, oi.inode).symlinkTarget();
  }

  // ---- inode creation and removal ----------------------------------------------------------

  private newInodeFields(mode: number, cred: Credentials, flags: number): Inode {
    const inode = blankInode(this.vol.geo.inodeSize, this.vol.geo.inodeSize > 128 ? 32 : 0);
    const t = nowTs();
    Object.assign(inode, { mode, uid: cred.uid, gid: cred.gid, atime: t, ctime: { ...t }, mtime: { ...t }, linksCount: 1, flags });
    if (inode.crtime) inode.crtime = { ...t };
    inode.generation = (Math.random() * 0x1_0000_0000) >>> 0;
    return inode;
  }

  private async createInode(txn: MetaTxn, parent: OpenInode, mode: number, cred: Credentials): Promise<OpenInode> {
    const isDir = (mode & S_IFMT) === S_IFDIR;
    // A set-group-ID directory gives new entries its group, and new directories its S_ISGID.
    if (parent.inode.mode & S_ISGID) {
      cred = { uid: cred.uid, gid: parent.inode.gid };
      if (isDir) mode |= S_ISGID;
    }
    this.space.quota === noQuota || this.quota?.addInodes(cred.uid, cred.gid, 1);
    const ino = await this.allocLock.withLock(() => this.inodes.alloc(txn, parent.ino, isDir));
    const usesExtents = (mode & S_IFMT) === S_IFREG || isDir || (mode & S_IFMT) === S_IFLNK;
    const inode = this.newInodeFields(mode, cred, usesExtents ? EXTENTS_FL : 0);
    if (usesExtents) initExtentRoot(inode.iBlock);
    const oi = new OpenInode(ino, inode, this.blockSize, this.space, this.dirtyPages);
    this.open.set(ino, oi);
    return oi;
  }

  /** Frees an inode whose link count reached zero and that nobody has open. */
  private async evictInode(txn: Handle, oi: OpenInode): Promise<void> {
    const { inode } = oi;
    if (isRegMode(inode.mode) || isDirMode(inode.mode) || (isSymlinkMode(inode.mode) && inode.flags & EXTENTS_FL)) {
      if (inode.flags & EXTENTS_FL) {
        await oi.data.withWrite(() => removeBlocks(this.fileMap(oi), txn, 0, MAX_FILE_BLOCK));
      }
    }
    oi.pages.drop(0);
    checkQuiescent(oi.state);
    if (inode.fileAcl) {
      await this.freeMetaCluster(txn, oi, inode.fileAcl);
      inode.fileAcl = 0;
    }
    this.quota?.addInodes(inode.uid, inode.gid, -1);
    inode.dtime = nowSec();
    inode.linksCount = 0;
    this.markInodeDirty(oi);
    await this.allocLock.withLock(() => this.inodes.free(txn, oi.ino, isDirMode(inode.mode)));
    this.open.delete(oi.ino);
  }

  /** Drops a link; frees the inode now, or when its last handle closes (orphan). */
  private async dropLink(txn: Handle, oi: OpenInode, dirLinks = false): Promise<void> {
    const { inode } = oi;
    inode.linksCount = dirLinks ? 0 : Math.max(0, inode.linksCount - 1);
    inode.ctime = nowTs();
    if (inode.linksCount > 0) { this.markInodeDirty(oi); return; }
    if (oi.refs > 0) {
      await this.addOrphan(txn, oi);
      return;
    }
    await this.evictInode(txn, oi);
  }

  private async addOrphan(txn: Handle, oi: OpenInode): Promise<void> {
    const { sb } = this.vol;
    oi.inode.dtime = sb.lastOrphan;
    sb.lastOrphan = oi.ino;
    this.orphans.add(oi.ino);
    this.markInodeDirty(oi);
  }

  private async removeOrphan(txn: Handle, oi: OpenInode): Promise<void> {
    const { sb } = this.vol;
    if (sb.lastOrphan === oi.ino) {
      sb.lastOrphan = oi.inode.dtime;
    } else {
      for (const ino of this.orphans) {
        const o = await this.getInode(ino);
        if (o.inode.dtime === oi.ino) { o.inode.dtime = oi.inode.dtime; this.markInodeDirty(o); break; }
      }
    }
    this.orphans.delete(oi.ino);
    oi.inode.dtime = 0;
  }

  /**
   * Releases the orphans a crash left on the superblock's list (s_last_orphan, next = i_dtime),
   * after journal replay: an unlinked inode is freed, a linked one loses its blocks past i_size
   * (journal.md §2.7). Returns how many were released. A list leaving the valid inode range or
   * looping is EUCLEAN.
   */
  async releaseOrphanList(): Promise<number> {
    const { sb, geo } = this.vol;
    let count = 0;
    const seen = new Set<number>();
    while (sb.lastOrphan !== 0) {
      const ino = sb.lastOrphan;
      if (ino < sb.firstIno || ino > geo.inodesCount || seen.has(ino)) {
        throw corrupt('orphan-list', `orphan list reaches inode ${ino} (outside ${sb.firstIno}..${geo.inodesCount} or a loop)`, { inode: ino });
      }
      seen.add(ino);
      const oi = await this.getInode(ino);
      await this.ns.withLock(() => this.withHandle(CREDITS, async (h) => {
        sb.lastOrphan = oi.inode.dtime;
        if (oi.inode.linksCount === 0) {
          await this.evictInode(h, oi);
        } else {
          const firstGone = Math.ceil(oi.inode.sizeBytes / this.blockSize);
          if (oi.inode.flags & EXTENTS_FL && firstGone <= MAX_FILE_BLOCK) {
            await oi.data.withWrite(() => removeBlocks(this.fileMap(oi), h, firstGone, MAX_FILE_BLOCK));
          }
          oi.inode.dtime = 0;
          this.markInodeDirty(oi);
        }
      }));
      count++;
    }
    return count;
  }

  /** A file handle closed. */
  async release(oi: OpenInode): Promise<void> {
    oi.refs--;
    // The last close ends the file's preallocation window; with data still to write back, the
    // window lasts until that writeback (mapDirtyPages) so the data continues the file's run.
    if (oi.refs === 0 && oi.pages.dirtyCount === 0) this.clusters.releaseWindow(oi.ino);
    if (oi.refs === 0 && oi.inode.linksCount === 0 && this.orphans.has(oi.ino)) {
      await this.ns.withLock(() => this.withHandle(CREDITS, async (h) => {
        await this.removeOrphan(h, oi);
        await this.evictInode(h, oi);
      }));
    }
  }

  // ---- namespace operations ---------------------------------------------------------------

  async create(path: string, mode: number, cred: Credentials, opts: { exclusive: boolean }): Promise<OpenInode> {
    return this.ns.withLock(async () => {
      const { dir, nameBytes } = await this.resolveParent(path, 'open');
      checkName(nameBytes, 'open', path);
      const existing = await this.lookupIn(dir, nameBytes);
      if (existing) {
        if (opts.exclusive) throw posixError('EEXIST', 'open', path);
        if (isSymlinkMode(existing.inode.mode)) return this.resolve(path, true, 'open');
        return existing;
      }
      return this.withHandle(CREDITS, async (h) => {
        const oi = await this.createInode(h, dir, S_IFREG | (mode & 0o7777), cred);
        this.markInodeDirty(oi);
        await this.addEntry(h, dir, nameBytes, oi.ino, FT_REG);
        return oi;
      });
    });
  }

  /**
   * Creates file `path` (which must not exist) with its whole contents, owner, mode and times in
   * one operation: the bulk-import path of mkfs -d and put. Contents known in full gain nothing
   * from delayed allocation, so the blocks are allocated at once (ENOSPC/EDQUOT surface here,
   * quota charged to the new owner) and written straight to the device under the data lock;
   * files imported one after another lie one after another on disk. On failure the new file is
   * left empty.
   */
  async importFile(path: string, data: Uint8Array, attrs: ImportAttrs, cred: Credentials): Promise<void> {
    // One namespace-lock hold and one handle: nobody can unlink the file before it is complete,
    // and readers who find it wait on its data lock until its blocks hold the data.
    await this.ns.withLock(() => this.withHandle(CREDITS, async (h) => {
      const oi = await this.createImported(h, path, attrs, cred);
      await oi.data.withWrite(async () => {
        try {
          await this.importBlocks(oi, h, data, 0, attrs, cred);
        } catch (e) {
          await removeBlocks(this.fileMap(oi), h, 0, MAX_FILE_BLOCK);
          throw e;
        }
        oi.inode.sizeBytes = data.length;
        setImportTimes(oi.inode, attrs);
      });
    }));
  }

  /**
   * importFile for contents that arrive in pieces (a large host file read chunk by chunk): each
   * piece is allocated and written straight to the device as it comes, with no page cache and
   * no copy, continuing the previous piece's run. The file holds what has arrived so far; on
   * failure it is left empty. Returns the size.
   */
  async importStream(path: string, chunks: AsyncIterable<Uint8Array>, attrs: ImportAttrs, cred: Credentials): Promise<number> {
    const bs = this.blockSize;
    const oi = await this.ns.withLock(() => this.withHandle(CREDITS, async (h) => {
      const created = await this.createImported(h, path, attrs, cred);
      created.refs++; // held like an open file until the last piece
      return created;
    }));
    let size = 0;
    const put = (data: Uint8Array) => oi.io.withLock(() => this.withHandle(CREDITS, (h) => oi.data.withWrite(async () => {
      await this.importBlocks(oi, h, data, size / bs, attrs, cred);
      size += data.length;
      oi.inode.sizeBytes = size;
      this.markInodeDirty(oi);
    })));
    try {
      // Pieces go in whole blocks: a partial block waits for the next piece (or is the last).
      let carry: Uint8Array | undefined;
      for await (const chunk of chunks) {
        let data = chunk;
        if (carry) {
          data = new Uint8Array(carry.length + chunk.length);
          data.set(carry);
          data.set(chunk, carry.length);
          carry = undefined;
        }
        const whole = data.length - (data.length % bs);
        if (whole < data.length) {
          carry = data.slice(whole);
          data = data.subarray(0, whole);
        }
        if (data.length) await put(data);
      }
      if (carry) await put(carry);
      setImportTimes(oi.inode, attrs);
      this.markInodeDirty(oi);
    } catch (e) {
      await this.truncate(oi, 0).catch(() => undefined);
      throw e;
    } finally {
      await this.release(oi);
    }
    return size;
  }

  /** A new regular file at `path` (EEXIST when the name is taken) with the owner and mode of `attrs`; under the namespace lock. */
  private async createImported(h: Handle, path: string, attrs: ImportAttrs, cred: Credentials): Promise<OpenInode> {
    const { dir, name, nameBytes } = await this.resolveParent(path, 'open');
    checkName(nameBytes, 'open', path);
    if (await this.lookupIn(dir, nameBytes, name)) throw posixError('EEXIST', 'open', path);
    const owner = { uid: attrs.uid ?? cred.uid, gid: attrs.gid ?? cred.gid };
    const oi = await this.createInode(h, dir, S_IFREG | (attrs.mode & 0o7777), owner);
    this.markInodeDirty(oi);
    await this.addEntry(h, dir, nameBytes, oi.ino, FT_REG);
    return oi;
  }

  /**
   * Allocates written extents for `data` at file block `firstBlock` of a file being imported,
   * right after the previous import, and writes the data there (all-zero blocks stay holes with
   * `sparse`). The caller holds the data lock exclusively.
   */
  private async importBlocks(oi: OpenInode, h: Handle, data: Uint8Array, firstBlock: number, attrs: ImportAttrs, cred: Credentials): Promise<void> {
    const bs = this.blockSize;
    const runs = attrs.sparse ? nonZeroBlockRuns(data, bs) : data.length ? [{ first: 0, count: Math.ceil(data.length / bs) }] : [];
    if (!oi.goal) oi.goal = this.importGoal;
    for (const run of runs) {
      h.extend(CREDITS);
      for (const p of await allocateWritten(this.fileMap(oi), h, firstBlock + run.first, run.count, { useRootReserve: cred.uid === 0 })) {
        await this.writeBlocksOf(data, p.first - firstBlock, p.count, p.fsBlock);
      }
    }
    this.importGoal = oi.goal;
  }

  /** Writes `count` blocks of `data` from file block `first` at `fsBlock`, the last one zero-padded. */
  private async writeBlocksOf(data: Uint8Array, first: number, count: number, fsBlockNo: number): Promise<void> {
    const bs = this.blockSize;
    const from = first * bs;
    const whole = Math.min(count, Math.floor((data.length - from) / bs));
    if (whole > 0) await this.vol.device.write(fsBlockNo * bs, data.subarray(from, from + whole * bs));
    if (whole < count) {
      // A device write has completed (or copied its data) when it resolves: one scratch block serves every tail.
      const tail = this.tailScratch ??= new Uint8Array(bs);
      tail.set(data.subarray(from + whole * bs, from + count * bs));
      tail.fill(0, data.length - (from + whole * bs));
      await this.vol.device.write((fsBlockNo + whole) * bs, tail);
    }
  }


  private async addEntry(h: Handle, dir: OpenInode, nameBytes: Uint8Array, ino: number, fileType: number): Promise<void> {
    if (dir.inode.flags & INLINE_DATA_FL) throw new Ext4Error('ENOTSUP', 'ENOTSUP: writing inline-data directories is not supported yet');
    await dir.data.withWrite(() => dirAddEntry(this.dirEnv(h, dir), nameBytes, ino, this.vol.filetype ? fileType : 0));
    if (this.dcache.has(dir.ino)) this.dcachePut(dir.ino, utf8Decoder.decode(nameBytes), ino, false);
    const t = nowTs();
    dir.inode.mtime = t; dir.inode.ctime = { ...t };
    this.markInodeDirty(dir);
  }

  private async removeEntry(h: Handle, dir: OpenInode, nameBytes: Uint8Array): Promise<void> {
    if (dir.inode.flags & INLINE_DATA_FL) throw new Ext4Error('ENOTSUP', 'ENOTSUP: writing inline-data directories is not supported yet');
    this.dcacheDelete(dir.ino, utf8Decoder.decode(nameBytes));
    await dir.data.withWrite(() => dirRemoveEntry(this.dirEnv(h, dir), nameBytes));
    const t = nowTs();
    dir.inode.mtime = t; dir.inode.ctime = { ...t };
    this.markInodeDirty(dir);
  }

  async mkdir(path: string, mode: number, cred: Credentials): Promise<void> {
    await this.ns.withLock(async () => {
      const { dir, nameBytes } = await this.resolveParent(path, 'mkdir');
      checkName(nameBytes, 'mkdir', path);
      if (await this.lookupIn(dir, nameBytes)) throw posixError('EEXIST', 'mkdir', path);
      const dirNlink = this.vol.has('roCompat', RO_COMPAT.dir_nlink);
      if (dir.inode.linksCount >= EXT4_LINK_MAX && !dirNlink) throw posixError('EMLINK', 'mkdir', path);
      await this.withHandle(CREDITS, async (h) => {
        // mkdir(2) ignores the set-ID bits of its mode (S_ISGID comes from the parent only).
        const oi = await this.createInode(h, dir, S_IFDIR | (mode & 0o1777), cred);
        oi.inode.linksCount = 2;
        await oi.data.withWrite(() => dirInit(this.dirEnv(h, oi), oi.ino, dir.ino));
        this.dcachePut(oi.ino, '..', dir.ino, true);
        this.markInodeDirty(oi);
        await this.addEntry(h, dir, nameBytes, oi.ino, FT_DIR);
        this.incDirLinks(dir);
        this.markInodeDirty(dir);
      });
    });
  }

  private incDirLinks(dir: OpenInode): void {
    // dir_nlink: past the limit a directory's link count is pinned at 1 ("many").
    if (dir.inode.linksCount === 1) return;
    dir.inode.linksCount = dir.inode.linksCount + 1 >= EXT4_LINK_MAX ? 1 : dir.inode.linksCount + 1;
  }

  private decDirLinks(dir: OpenInode): void {
    if (dir.inode.linksCount === 1) return;
    dir.inode.linksCount = Math.max(2, dir.inode.linksCount - 1);
  }

  async symlink(target: string, path: string, cred: Credentials): Promise<void> {
    const targetBytes = encodeUtf8(target);
    if (targetBytes.length === 0 || targetBytes.length >= this.blockSize) throw posixError('ENAMETOOLONG', 'symlink', target, path);
    await this.ns.withLock(async () => {
      const { dir, nameBytes } = await this.resolveParent(path, 'symlink');
      checkName(nameBytes, 'symlink', path);
      if (await this.lookupIn(dir, nameBytes)) throw posixError('EEXIST', 'symlink', target, path);
      await this.withHandle(CREDITS, async (h) => {
        const oi = await this.createInode(h, dir, S_IFLNK | 0o777, cred);
        oi.inode.sizeBytes = targetBytes.length;
        if (targetBytes.length < 60) {
          oi.inode.flags &= ~EXTENTS_FL;
          oi.inode.iBlock.fill(0);
          oi.inode.iBlock.set(targetBytes);
        } else {
          const block = await this.allocMetaCluster(h, oi, this.defaultGoal(oi.ino), false);
          await extentInsert(this.treeEnv(h, oi), { fileBlock: fileBlock(0), fsBlock: fsBlock(block), countBlocks: 1, unwritten: false });
          // The target is file data: it goes straight to the device (before the metadata commit).
          const data = new Uint8Array(this.blockSize);
          data.set(targetBytes);
          await this.vol.device.write(block * this.blockSize, data);
        }
        this.markInodeDirty(oi);
        await this.addEntry(h, dir, nameBytes, oi.ino, FT_SYMLINK);
      });
    });
  }

  async link(existing: string, path: string): Promise<void> {
    await this.ns.withLock(async () => {
      const src = await this.resolve(existing, false, 'link');
      // The new name is looked up first (ENOENT, ENOTDIR, EEXIST), then the source judged (EPERM), as the kernel does.
      const { dir, nameBytes } = await this.resolveParent(path, 'link');
      checkName(nameBytes, 'link', path);
      if (await this.lookupIn(dir, nameBytes)) throw posixError('EEXIST', 'link', existing, path);
      if (isDirMode(src.inode.mode)) throw posixError('EPERM', 'link', existing, path);
      if (src.inode.linksCount >= EXT4_LINK_MAX) throw posixError('EMLINK', 'link', existing, path);
      await this.withHandle(CREDITS, async (h) => {
        await this.addEntry(h, dir, nameBytes, src.ino, fileTypeOf(src.inode.mode));
        src.inode.linksCount++;
        src.inode.ctime = nowTs();
        this.markInodeDirty(src);
      });
    });
  }

  async unlink(path: string): Promise<void> {
    await this.ns.withLock(async () => {
      const { dir, nameBytes } = await this.resolveParent(path, 'unlink');
      const oi = await this.lookupIn(dir, nameBytes);
      if (!oi) throw posixError('ENOENT', 'unlink', path);
      if (isDirMode(oi.inode.mode)) throw posixError('EISDIR', 'unlink', path);
      await this.withHandle(CREDITS, async (h) => {
        await this.removeEntry(h, dir, nameBytes);
        await this.dropLink(h, oi);
      });
    });
  }

  async rmdir(path: string): Promise<void> {
    await this.ns.withLock(async () => {
      const { dir, nameBytes, name } = await this.resolveParent(path, 'rmdir');
      if (name === '.') throw posixError('EINVAL', 'rmdir', path);
      const oi = await this.lookupIn(dir, nameBytes);
      if (!oi) throw posixError('ENOENT', 'rmdir', path);
      if (!isDirMode(oi.inode.mode)) throw posixError('ENOTDIR', 'rmdir', path);
      if (oi.ino === ROOT_INO) throw posixError('EBUSY', 'rmdir', path);
      await this.withHandle(CREDITS, async (h) => {
        if (!(await dirIsEmpty(this.dirEnv(h, oi)))) throw posixError('ENOTEMPTY', 'rmdir', path);
        await this.removeEntry(h, dir, nameBytes);
        this.decDirLinks(dir);
        this.markInodeDirty(dir);
        await this.dropLink(h, oi, true);
        if (this.dcache.delete(oi.ino)) this.dcacheEntries = [...this.dcache.values()].reduce((n, d) => n + d.names.size, 0);
      });
    });
  }

  /** Whether directory `ino` is `dir` or one of its ancestors. */
  private async isAncestor(ino: number, dir: OpenInode): Promise<boolean> {
    for (let d = dir, hops = 0; ; hops++) {
      if (d.ino === ino) return true;
      if (d.ino === ROOT_INO) return false;
      if (hops > 65536) throw corrupt('dir-cycle', 'directory parent chain does not reach the root', { inode: d.ino });
      const up = await lookupName(this.dirSource(d), encodeUtf8('..'));
      if (!up) throw corrupt('dir-no-dotdot', "directory has no '..'", { inode: d.ino });
      d = await this.getInode(up.ino);
    }
  }

  async rename(from: string, to: string): Promise<void> {
    await this.ns.withLock(async () => {
      const src = await this.resolveParent(from, 'rename');
      const dst = await this.resolveParent(to, 'rename');
      checkName(dst.nameBytes, 'rename', to);
      const moving = await this.lookupIn(src.dir, src.nameBytes);
      if (!moving) throw posixError('ENOENT', 'rename', from, to);
      const target = await this.lookupIn(dst.dir, dst.nameBytes);
      if (target && target.ino === moving.ino) return;
      const movingDir = isDirMode(moving.inode.mode);
      // A directory may not move into its own subtree; nothing may replace one of its own ancestors (the kernel's order).
      if (movingDir && await this.isAncestor(moving.ino, dst.dir)) throw posixError('EINVAL', 'rename', from, to);
      if (target && isDirMode(target.inode.mode) && await this.isAncestor(target.ino, src.dir)) throw posixError('ENOTEMPTY', 'rename', from, to);
      if (target) {
        if (movingDir && !isDirMode(target.inode.mode)) throw posixError('ENOTDIR', 'rename', from, to);
        if (!movingDir && isDirMode(target.inode.mode)) throw posixError('EISDIR', 'rename', from, to);
      }
      await this.withHandle(CREDITS, async (h) => {
        if (target && isDirMode(target.inode.mode) && !(await dirIsEmpty(this.dirEnv(h, target)))) {
          throw posixError('ENOTEMPTY', 'rename', from, to);
        }
        if (target) {
          await dst.dir.data.withWrite(() => dirReplaceEntry(this.dirEnv(h, dst.dir), dst.nameBytes, moving.ino, fileTypeOf(moving.inode.mode)));
          if (this.dcache.has(dst.dir.ino)) this.dcachePut(dst.dir.ino, dst.name, moving.ino, false);
          dst.dir.inode.mtime = nowTs(); dst.dir.inode.ctime = nowTs();
          this.markInodeDirty(dst.dir);
          if (isDirMode(target.inode.mode)) { this.decDirLinks(dst.dir); this.markInodeDirty(dst.dir); }
          await this.dropLink(h, target, isDirMode(target.inode.mode));
        } else {
          await this.addEntry(h, dst.dir, dst.nameBytes, moving.ino, fileTypeOf(moving.inode.mode));
        }
        // Re-resolve the source directory's entry: dst.dir may be the same directory.
        await this.removeEntry(h, src.dir, src.nameBytes);
        if (movingDir && src.dir.ino !== dst.dir.ino) {
          await moving.data.withWrite(() => dirSetParent(this.dirEnv(h, moving), dst.dir.ino));
          if (this.dcache.has(moving.ino)) this.dcachePut(moving.ino, '..', dst.dir.ino, false);
          this.decDirLinks(src.dir);
          // The new parent gains the moved directory's '..' (a replaced directory's was dropped above).
          this.incDirLinks(dst.dir);
          this.markInodeDirty(src.dir);
          this.markInodeDirty(dst.dir);
        }
        moving.inode.ctime = nowTs();
        this.markInodeDirty(moving);
      });
    });
  }

  async setAttr(path: string, follow: boolean, f: (inode: Inode) => void, syscall: string): Promise<void> {
    const oi = await this.resolve(path, follow, syscall);
    await this.setAttrOf(oi, f);
  }

  async setAttrOf(oi: OpenInode, f: (inode: Inode) => void): Promise<void> {
    const probe = { ...oi.inode };
    f(probe);
    const ownerChanges = probe.uid !== oi.inode.uid || probe.gid !== oi.inode.gid;
    // Quota moves whole allocations between owners: delayed blocks are allocated first.
    if (this.quota && ownerChanges && oi.state.reservation.reservedClusters > 0) await this.writebackInode(oi);
    await this.withHandle(CREDITS, async (h) => {
      const before = { uid: oi.inode.uid, gid: oi.inode.gid };
      f(oi.inode);
      if (this.quota && (before.uid !== oi.inode.uid || before.gid !== oi.inode.gid)) {
        const bytes = oi.inode.blocks512 * 512;
        const reserved = oi.state.reservation.reservedClusters * this.R * this.blockSize;
        if (reserved) throw new Ext4Error('EBUSY', 'chown raced with a write of delayed data; retry');
        this.quota.freeUsage(before.uid, before.gid, bytes);
        this.quota.addInodes(before.uid, before.gid, -1);
        this.quota.addUsage(oi.inode.uid, oi.inode.gid, bytes, { force: true });
        this.quota.addInodes(oi.inode.uid, oi.inode.gid, 1);
        oi.state = createDelallocState(this.space, inodeNo(oi.ino), oi.inode.uid, oi.inode.gid);
      }
      oi.inode.ctime = nowTs();
      this.markInodeDirty(oi);
    });
  }

  /** Sets block limits for one user or group (kept in the quota files at the next commit). */
  async setQuotaLimits(kind: 'user' | 'group', id: number, limits: { softBytes: number; hardBytes: number }): Promise<void> {
    if (!this.quota) throw new Ext4Error('ENOTSUP', 'ENOTSUP: the filesystem has no quota feature');
    if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) throw posixError('EINVAL', 'quotactl');
    await this.withHandle(0, async () => { this.quota!.setLimits(kind, id, limits); });
  }

  // ---- xattrs ------------------------------------------------------------------------------

  async xattrsOf(oi: OpenInode): Promise<XattrEntry[]> {
    const { geo } = this.vol;
    const out: XattrEntry[] = geo.inodeSize > 128 && oi.inode.extraIsize > 0
      ? decodeInodeXattrs(oi.inode.raw, geo.inodeSize, oi.inode.extraIsize, { inode: oi.ino }) : [];
    if (oi.inode.fileAcl) {
      const block = await this.vol.readBlock(oi.inode.fileAcl);
      out.push(...decodeXattrBlock(block, { blockNo: oi.inode.fileAcl, where: { inode: oi.ino }, ...(geo.metadataCsum ? { csumSeed: geo.csumSeed } : {}) }).entries);
    }
    return out;
  }

  async setXattr(path: string, name: string, value: Uint8Array | undefined, opts: { create?: boolean; replace?: boolean } = {}): Promise<void> {
    const syscall = value ? 'setxattr' : 'removexattr';
    checkXattrNameArg(name, syscall, path);
    if (value && value.length > XATTR_SIZE_MAX_BYTES) throw posixError('E2BIG', syscall, path);
    await this.ns.withLock(async () => {
      const oi = await this.resolve(path, false, syscall);
      checkXattrName(name, oi.inode.mode, true, syscall, path);
      if (oi.inode.flags & INLINE_DATA_FL) throw new Ext4Error('ENOTSUP', 'ENOTSUP: xattrs on inline-data inodes are not supported yet');
      const { nameIndex, name: suffix } = splitXattrName(name);
      const entries = (await this.xattrsOf(oi)).filter((e) => e.valueInum === 0 || true);
      if (entries.some((e) => e.valueInum !== 0)) throw new Ext4Error('ENOTSUP', 'ENOTSUP: xattrs stored in EA inodes are not supported yet');
      const at = entries.findIndex((e) => e.nameIndex === nameIndex && e.name === suffix);
      if (value === undefined) {
        if (at < 0) throw posixError('ENODATA', syscall, path);
        entries.splice(at, 1);
      } else {
        if (at >= 0 && opts.create) throw posixError('EEXIST', syscall, path);
        if (at < 0 && opts.replace) throw posixError('ENODATA', syscall, path);
        if (value.length > this.blockSize - 64) throw posixError('ENOSPC', syscall, path);
        const entry = { nameIndex, name: suffix, fullName: name, value, valueInum: 0, valueSize: value.length, hash: 0 };
        if (at >= 0) entries[at] = entry; else entries.push(entry);
      }
      await this.withHandle(CREDITS, (h) => this.storeXattrs(h, oi, entries, path));
    });
  }

  /**
   * Places entries in the inode body first, the rest in one xattr block. Everything is encoded
   * into scratch buffers before anything changes, so a set that does not fit (ENOSPC) leaves the
   * inode, its block and the allocator as they were.
   */
  private async storeXattrs(h: Handle, oi: OpenInode, entries: XattrEntry[], path: string): Promise<void> {
    const { geo } = this.vol;
    const csum = geo.metadataCsum ? { csumSeed: geo.csumSeed } : {};
    const hasBody = geo.inodeSize > 128 && oi.inode.extraIsize > 0;
    const inBody: XattrEntry[] = [];
    const inBlock: XattrEntry[] = [];
    const sorted = [...entries].sort((a, b) => a.value.length - b.value.length);
    for (const e of sorted) {
      if (hasBody) {
        try {
          encodeInodeXattrs([...inBody, e], oi.inode.raw.slice(), geo.inodeSize, oi.inode.extraIsize);
          inBody.push(e);
          continue;
        } catch (err) {
          if (!(err instanceof Ext4Error)) throw err;
        }
      }
      inBlock.push(e);
    }
    const raw = oi.inode.raw.slice();
    if (hasBody) encodeInodeXattrs(inBody, raw, geo.inodeSize, oi.inode.extraIsize);
    let blk = oi.inode.fileAcl;
    if (inBlock.length > 0) {
      // Does it fit? Encoded into scratch first (the block number only changes the checksum).
      try {
        encodeXattrBlock(inBlock, new Uint8Array(this.blockSize), { blockNo: blk, ...csum });
      } catch (e) {
        if (e instanceof Ext4Error && e.code === 'ENOSPC') throw posixError('ENOSPC', 'setxattr', path);
        throw e;
      }
      const shared = blk !== 0 && decodeXattrBlock(await h.read(blk), { blockNo: blk }).refcount > 1;
      if (!blk || shared) blk = await this.allocMetaCluster(h, oi, oi.goal || this.defaultGoal(oi.ino), false);
      if (shared) await this.releaseXattrBlock(h, oi);
      encodeXattrBlock(inBlock, await h.getWrite(blk), { blockNo: blk, ...csum });
    } else if (blk) {
      await this.releaseXattrBlock(h, oi);
      blk = 0;
    }
    oi.inode.raw.set(raw);
    oi.inode.fileAcl = blk;
    oi.inode.ctime = nowTs();
    this.markInodeDirty(oi);
  }

  private async releaseXattrBlock(h: Handle, oi: OpenInode): Promise<void> {
    const blk = oi.inode.fileAcl;
    const cur = decodeXattrBlock(await h.read(blk), { blockNo: blk });
    if (cur.refcount > 1) {
      const bytes = await h.getWrite(blk);
      const entries = cur.entries;
      encodeXattrBlock(entries, bytes, { blockNo: blk, refcount: cur.refcount - 1, ...(this.vol.geo.metadataCsum ? { csumSeed: this.vol.geo.csumSeed } : {}) });
      this.charge(oi, -1);
    } else {
      await this.freeMetaCluster(h, oi, blk);
    }
    oi.inode.fileAcl = 0;
  }

  // ---- file data ---------------------------------------------------------------------------

  /** Reads file bytes from the page cache, falling back to disk. */
  async read(oi: OpenInode, pos: number, len: number): Promise<Uint8Array> {
    const size = oi.inode.sizeBytes;
    if (pos >= size || len <= 0) return new Uint8Array(0);
    const end = Math.min(size, pos + len);
    const out = new Uint8Array(end - pos);
    if (oi.inode.flags & INLINE_DATA_FL || !(oi.inode.flags & EXTENTS_FL)) {
      return new InodeData(this.vol, oi.ino, oi.inode).read(pos, len);
    }
    const bs = this.blockSize;
    const first = Math.floor(pos / bs);
    const last = Math.floor((end - 1) / bs);
    await oi.data.withRead(async () => {
      const h = this.journal.start(0);
      try {
        for (const seg of await lookupRange(this.fileMap(oi), h, first, last - first + 1)) {
          for (let b = seg.first; b < seg.first + seg.count; b++) {
            const page = oi.pages.get(b);
            let src: Uint8Array | undefined = page?.data;
            if (!src && seg.state === 'written') {
              // Read the rest of this written run in one device request.
              let n = 1;
              while (b + n < seg.first + seg.count && !oi.pages.get(b + n) && n < 2048) n++;
              const data = await this.vol.cache.readRange(seg.fsBlock! + (b - seg.first), n);
              for (let k = 0; k < n; k++) copyBlock(out, pos, end, (b + k) * bs, data.subarray(k * bs, (k + 1) * bs));
              b += n - 1;
              continue;
            }
            if (src) copyBlock(out, pos, end, b * bs, src);
          }
        }
      } finally { h.stop(); }
    });
    return out;
  }

  /** Loads the page of block b for a partial write (contents from disk when written there). */
  private async loadPage(oi: OpenInode, b: number): Promise<void> {
    if (oi.pages.get(b)) return;
    const bs = this.blockSize;
    let data = new Uint8Array(bs);
    if (b * bs < oi.inode.sizeBytes) {
      const h = this.journal.start(0);
      try {
        const [seg] = await lookupRange(this.fileMap(oi), h, b, 1);
        if (seg && seg.state === 'written') data = (await this.vol.cache.readRange(seg.fsBlock!, 1)).slice();
      } finally { h.stop(); }
    }
    if (!oi.pages.get(b)) oi.pages.install(b, data);
  }

  /**
   * Buffered write: reserves space for new blocks (ENOSPC/EDQUOT here), then copies into pages.
   * `at` is the offset, or a function choosing it under the inode lock from the current size
   * (O_APPEND and a handle's own position: concurrent writers never pick the same offset).
   */
  async write(oi: OpenInode, at: number | ((sizeBytes: number) => number), src: Uint8Array, cred: Credentials): Promise<number> {
    if (!isRegMode(oi.inode.mode)) throw posixError('EINVAL', 'write');
    if (!(oi.inode.flags & EXTENTS_FL) || oi.inode.flags & INLINE_DATA_FL) {
      throw new Ext4Error('ENOTSUP', 'ENOTSUP: writing block-mapped or inline-data files is not supported yet');
    }
    if (src.length === 0) return 0;
    const bs = this.blockSize;
    await oi.io.withLock(async () => {
      const pos = typeof at === 'number' ? at : at(oi.inode.sizeBytes);
      const end = pos + src.length;
      if (end > MAX_FILE_BLOCK * bs) throw posixError('EFBIG', 'write');
      const first = Math.floor(pos / bs);
      const last = Math.floor((end - 1) / bs);
      await this.withHandle(CREDITS, async (h) => {
        await oi.data.withWrite(() => reserveDelayed(this.fileMap(oi), h, first, last - first + 1, { useRootReserve: cred.uid === 0 }));
      });
      // Pages are prepared and filled under the data lock: writeback drops written pages only
      // under it (exclusive), so a page loaded here cannot vanish before the copy.
      await oi.data.withRead(async () => {
        if (pos % bs) await this.loadPage(oi, first);
        if (end % bs && end < oi.inode.sizeBytes) await this.loadPage(oi, last);
        for (let b = first; b <= last;) {
          if (oi.pages.get(b)) {
            const from = Math.max(pos, b * bs);
            const to = Math.min(end, (b + 1) * bs);
            oi.pages.write(b, from - b * bs, src.subarray(from - pos, to - pos));
            b++;
            continue;
          }
          // A run of blocks without pages gets one buffer (a recycled one when full-size) and one copy.
          let e = b + 1;
          while (e <= last && e - b < RUN_BUFFER_BYTES / bs && !oi.pages.get(e)) e++;
          const from = Math.max(pos, b * bs);
          const to = Math.min(end, e * bs);
          oi.pages.installDirty(b, e - b, from - b * bs, to - b * bs, (buf) => buf.set(src.subarray(from - pos, to - pos), from - b * bs));
          b = e;
        }
      });
      const t = nowTs();
      oi.inode.mtime = t; oi.inode.ctime = { ...t };
      if (end > oi.inode.sizeBytes) oi.inode.sizeBytes = end;
      this.markInodeDirty(oi);
    });
    this.maybeStartBackgroundWriteback();
    // Throttle writers (the kernel's balance_dirty_pages): past twice the threshold a writer
    // waits for writeback, so dirty memory stays bounded whatever the write rate.
    while (this.background && this.dirtyBytes() >= 2 * DIRTY_THRESHOLD_BYTES) await this.background;
    return src.length;
  }

  /** Zeroes [from, to) inside block b's page (loading it first), marking it dirty. */
  private async zeroInPage(oi: OpenInode, b: number, from: number, to: number): Promise<void> {
    const bs = this.blockSize;
    await oi.data.withRead(async () => {
      await this.loadPage(oi, b);
      const h = this.journal.start(0);
      let backed = false;
      try {
        const [seg] = await lookupRange(this.fileMap(oi), h, b, 1);
        backed = !!seg && seg.state !== 'hole';
      } finally { h.stop(); }
      if (backed) oi.pages.write(b, from - b * bs, new Uint8Array(to - from));
      else oi.pages.get(b)?.data.fill(0, from - b * bs, to - b * bs);
    });
  }

  async truncate(oi: OpenInode, newSize: number): Promise<void> {
    if (isDirMode(oi.inode.mode)) throw posixError('EISDIR', 'ftruncate');
    if (!isRegMode(oi.inode.mode)) throw posixError('EINVAL', 'ftruncate');
    if (!(oi.inode.flags & EXTENTS_FL) || oi.inode.flags & INLINE_DATA_FL) {
      throw new Ext4Error('ENOTSUP', 'ENOTSUP: truncating block-mapped or inline-data files is not supported yet');
    }
    if (newSize < 0 || !Number.isSafeInteger(newSize)) throw posixError('EINVAL', 'ftruncate');
    if (newSize > MAX_FILE_BLOCK * this.blockSize) throw posixError('EFBIG', 'ftruncate');
    const bs = this.blockSize;
    await oi.io.withLock(async () => {
      const old = oi.inode.sizeBytes;
      if (newSize < old) {
        if (newSize % bs) await this.zeroInPage(oi, Math.floor(newSize / bs), newSize, Math.floor(newSize / bs) * bs + bs);
        const firstGone = Math.ceil(newSize / bs);
        oi.pages.drop(firstGone);
        await this.withHandle(CREDITS, async (h) => {
          if (firstGone <= MAX_FILE_BLOCK) await oi.data.withWrite(() => removeBlocks(this.fileMap(oi), h, firstGone, MAX_FILE_BLOCK));
        });
      }
      oi.inode.sizeBytes = newSize;
      const t = nowTs();
      oi.inode.mtime = t; oi.inode.ctime = { ...t };
      this.markInodeDirty(oi);
    });
  }

  /** fallocate: mode 0 / keep-size allocate unwritten extents; punch-hole and zero-range as Linux. */
  async fallocate(oi: OpenInode, mode: { keepSize?: boolean; punchHole?: boolean; zeroRange?: boolean }, offset: number, length: number, cred: Credentials): Promise<void> {
    if (offset < 0 || length <= 0) throw posixError('EINVAL', 'fallocate');
    if (!isRegMode(oi.inode.mode)) throw posixError('ENODEV', 'fallocate');
    if (!(oi.inode.flags & EXTENTS_FL)) throw new Ext4Error('ENOTSUP', 'ENOTSUP: fallocate needs an extent-mapped file');
    if (offset + length > MAX_FILE_BLOCK * this.blockSize) throw posixError('EFBIG', 'fallocate');
    const bs = this.blockSize;
    const end = offset + length;
    if (mode.punchHole || mode.zeroRange) {
      // Zero-range allocates: delayed blocks in the range go to disk first, as for allocation.
      if (mode.zeroRange) await this.writebackInode(oi);
      await oi.io.withLock(async () => {
        const size = oi.inode.sizeBytes;
        const stop = mode.punchHole ? Math.min(end, size) : end;
        if (offset < stop) {
          const firstFull = Math.ceil(offset / bs);
          const lastFull = Math.floor(stop / bs) - 1;
          if (offset % bs) await this.zeroInPage(oi, Math.floor(offset / bs), offset, Math.min(stop, Math.floor(offset / bs) * bs + bs));
          if (stop % bs && Math.floor(stop / bs) >= firstFull) await this.zeroInPage(oi, Math.floor(stop / bs), Math.floor(stop / bs) * bs, stop);
          if (firstFull <= lastFull) {
            oi.pages.drop(firstFull, lastFull);
            await this.withHandle(CREDITS, (h) => oi.data.withWrite(() => removeBlocks(this.fileMap(oi), h, firstFull, lastFull)));
          }
          if (mode.zeroRange) {
            // Like the kernel, every block the range touches (partial ones too) ends up allocated:
            // holes become unwritten extents.
            const first = Math.floor(offset / bs);
            const last = Math.ceil(stop / bs) - 1;
            await this.withHandle(CREDITS, (h) => oi.data.withWrite(() => allocateUnwritten(this.fileMap(oi), h, first, last - first + 1, { useRootReserve: cred.uid === 0 })));
          }
        }
        if (mode.zeroRange && !mode.keepSize && end > oi.inode.sizeBytes) oi.inode.sizeBytes = end;
        oi.inode.mtime = nowTs(); oi.inode.ctime = nowTs();
        this.markInodeDirty(oi);
      });
      return;
    }
    // Allocation: delayed blocks in the range go to disk first, then holes become unwritten.
    await this.writebackInode(oi);
    await oi.io.withLock(async () => {
      const first = Math.floor(offset / bs);
      const last = Math.floor((end - 1) / bs);
      await this.withHandle(CREDITS, (h) => oi.data.withWrite(() => allocateUnwritten(this.fileMap(oi), h, first, last - first + 1, { useRootReserve: cred.uid === 0 })));
      if (!mode.keepSize && end > oi.inode.sizeBytes) { oi.inode.sizeBytes = end; oi.inode.mtime = nowTs(); }
      oi.inode.ctime = nowTs();
      this.markInodeDirty(oi);
    });
  }

  // ---- writeback ---------------------------------------------------------------------------

  /** Writes an inode's dirty pages: allocates delayed blocks, writes data, converts unwritten. */
  async writebackInode(oi: OpenInode): Promise<void> {
    await this.writebackInodes([oi]);
  }

  /**
   * Writeback of several inodes as one batch: each inode's dirty pages are mapped to disk
   * blocks (delayed ones allocated, under that inode's data lock), then all the data is
   * written in block order with adjacent ranges coalesced (ordered mode: data before the
   * metadata commit), then pages are marked clean and unwritten ranges converted.
   */
  private async writebackInodes(inodes: OpenInode[]): Promise<void> {
    const sorted = [...new Set(inodes)].sort((a, b) => a.ino - b.ino);
    const releases = [];
    for (const oi of sorted) releases.push(await oi.writeback.acquire());
    // Ordered mode: a commit that may make this batch's new blocks reachable waits for their data.
    const orderedDone = this.journal.orderedData();
    try {
      const blocks: WbRun[] = [];
      const converts: Array<{ oi: OpenInode; first: number; count: number; fsBlock: number }> = [];
      for (const oi of sorted) await this.mapDirtyPages(oi, blocks, converts);
      await this.writeBlocks(blocks);
      orderedDone();
      for (const c of converts) {
        await this.withHandle(CREDITS, (h) => c.oi.data.withWrite(async () => {
          // A truncate, punch or zero-range since the mapping may have removed or replaced part
          // of the range: convert only what is still the unwritten extent whose data was written.
          for (const seg of await lookupRange(this.fileMap(c.oi), h, c.first, c.count)) {
            if (seg.state !== 'unwritten' || seg.fsBlock !== c.fsBlock + (seg.first - c.first)) continue;
            await setUnwritten(this.fileMap(c.oi), h, seg.first, seg.count, false);
          }
          this.markInodeDirty(c.oi);
        }), { mayCommit: false });
      }
    } finally {
      orderedDone();
      for (const r of releases) r();
    }
  }

  /** Finds what backs each dirty page (allocating delayed blocks) and records page versions. */
  private async mapDirtyPages(oi: OpenInode, blocks: WbRun[], converts: Array<{ oi: OpenInode; first: number; count: number; fsBlock: number }>): Promise<void> {
    const dirty = oi.pages.dirtyBlocks();
    for (let i = 0; i < dirty.length;) {
      let j = i + 1;
      while (j < dirty.length && dirty[j] === dirty[j - 1]! + 1 && j - i < 4096) j++;
      const first = dirty[i]!;
      const count = j - i;
      i = j;
      await this.withHandle(CREDITS + count, (h) => oi.data.withWrite(async () => {
        for (const seg of await lookupRange(this.fileMap(oi), h, first, count)) {
          const pieces = seg.state === 'delayed' ? await allocateDelayed(this.fileMap(oi), h, seg.first, seg.count)
            : seg.state === 'written' || seg.state === 'unwritten' ? [{ first: seg.first, count: seg.count, fsBlock: seg.fsBlock! }]
            : []; // a dirty page over a hole was truncated away after it was dirtied: nothing to write
          for (const p of pieces) pushWbRuns(blocks, oi, p.first, p.count, p.fsBlock);
          if (seg.state === 'unwritten') converts.push({ oi, first: seg.first, count: seg.count, fsBlock: seg.fsBlock! });
        }
        this.markInodeDirty(oi);
      }), { mayCommit: false });
    }
    if (oi.refs === 0) this.clusters.releaseWindow(oi.ino);
  }

  /**
   * Writes page contents to their blocks in block order, coalesced into device writes of up to
   * WRITEBACK_IO_BYTES. Pages are handed to the device as they are (adjacent pages of one
   * buffer as one range), without gathering them into a new buffer.
   *
   * All pages are looked up and all device writes issued in one synchronous step: a page that
   * was dropped or replaced since it was mapped (truncate, punch, eviction) is skipped, because
   * its block is being freed and may belong to another file by the time a later write would be
   * issued; a write issued now is ordered by the device before any later write to that block.
   */
  private async writeBlocks(runs: WbRun[]): Promise<void> {
    const bs = this.blockSize;
    runs.sort((a, b) => a.fsBlock - b.fsBlock);
    const maxBlocks = Math.max(1, WRITEBACK_IO_BYTES / bs);
    const ios: Array<{ start: number; chunks: Uint8Array[] }> = [];
    // Buffers the device writes read: held, so that one whose pages are dropped meanwhile is
    // not recycled under the write.
    const held: PageBuffer[] = [];
    let chunks: Uint8Array[] = [];
    let ioStart = -1;
    let ioBlocks = 0;
    // The range of one backing buffer not yet added to `chunks`.
    let pend: PageBuffer | undefined;
    let pendFrom = 0;
    let pendTo = 0;
    const closePending = (): void => {
      if (pend) chunks.push(pendFrom === 0 && pendTo === pend.bytes.length ? pend.bytes : pend.bytes.subarray(pendFrom, pendTo));
      pend = undefined;
    };
    const endIo = (): void => {
      closePending();
      if (ioBlocks > 0) ios.push({ start: ioStart, chunks });
      chunks = [];
      ioBlocks = 0;
    };
    for (const run of runs) {
      const n = run.pages.length;
      for (let k = 0; k < n; k++) {
        const page = run.pages[k]!;
        if (run.oi.pages.get(run.fileBlock + k) !== page) { endIo(); continue; }
        const fsb = run.fsBlock + k;
        if (ioBlocks > 0 && (fsb !== ioStart + ioBlocks || ioBlocks >= maxBlocks)) endIo();
        if (ioBlocks === 0) ioStart = fsb;
        ioBlocks++;
        const store = page.store;
        if (held[held.length - 1] !== store) {
          this.dirtyPages.hold(store);
          held.push(store);
        }
        if (pend === store && pendTo === page.offset) { pendTo += bs; continue; }
        closePending();
        pend = store; pendFrom = page.offset; pendTo = page.offset + bs;
      }
    }
    endIo();
    const dev = this.vol.device;
    const results = await Promise.allSettled(ios.map((io) => writeChunks(dev, io.start * bs, io.chunks)));
    for (const store of held) this.dirtyPages.release(store);
    for (const r of results) if (r.status === 'rejected') throw r.reason;
    // Written pages leave the cache under each inode's data lock: a reader holds it (shared)
    // from looking a block up as delayed until it has copied the page.
    const byInode = new Map<OpenInode, WbRun[]>();
    for (const r of runs) {
      const list = byInode.get(r.oi);
      if (list) list.push(r); else byInode.set(r.oi, [r]);
    }
    for (const [oi, list] of byInode) {
      await oi.data.withWrite(async () => {
        for (const r of list) for (let k = 0; k < r.versions.length; k++) oi.pages.cleaned(r.fileBlock + k, r.versions[k]!);
      });
    }
  }

  private dirtyBytes(): number {
    return this.dirtyPages.pages * this.blockSize;
  }

  private maybeStartBackgroundWriteback(): void {
    // Age: dirty data is written back at most DIRTY_EXPIRE_MS after it was first dirtied.
    if (!this.ageTimer && !this.closed) {
      const t = setTimeout(() => {
        this.ageTimer = undefined;
        if (!this.closed && !this.background) this.startBackground();
      }, DIRTY_EXPIRE_MS);
      (t as { unref?: () => void }).unref?.();
      this.ageTimer = t;
    }
    if (this.background || this.dirtyBytes() < DIRTY_THRESHOLD_BYTES) return;
    this.startBackground();
  }

  private startBackground(): void {
    this.background = (async () => {
      try {
        await this.writebackAll();
      } catch (e) {
        // Reported by the next sync/fsync, as the kernel reports writeback errors (errseq).
        this.backgroundError ??= e;
      } finally {
        this.background = undefined;
      }
    })();
  }

  /** Throws (once) an error that background writeback met. */
  private takeBackgroundError(): void {
    const e = this.backgroundError;
    if (e === undefined) return;
    this.backgroundError = undefined;
    throw e;
  }

  /** Runs one background writeback pass now (tests and the founding scenario drive it). */
  async backgroundWritebackPass(): Promise<void> {
    await this.writebackAll();
  }

  /** Writes back every dirty inode, in batches bounded by dirty bytes. */
  private async writebackAll(): Promise<void> {
    let batch: OpenInode[] = [];
    let pages = 0;
    const limit = Math.max(1, (64 << 20) / this.blockSize);
    for (const oi of [...this.open.values()]) {
      if (!oi.pages.dirtyCount) continue;
      batch.push(oi);
      pages += oi.pages.dirtyCount;
      if (pages >= limit || batch.length >= 4096) { await this.writebackInodes(batch); batch = []; pages = 0; }
    }
    if (batch.length) await this.writebackInodes(batch);
  }

  /** fsync: the inode's data, then every pending metadata change. */
  async fsync(oi: OpenInode): Promise<void> {
    await this.writebackInode(oi);
    this.takeBackgroundError();
    await this.commit();
  }

  /**
   * Writes everything: data, inodes, group descriptors, quota files, superblock, then flushes
   * the device. `durable: false` skips the flush: everything is handed to the device and memory
   * is released, but nothing waits for the medium (bulk copies sync now and then for memory,
   * and leave durability to the final close).
   */
  async sync(opts: { durable?: boolean } = {}): Promise<void> {
    if (this.background) await this.background;
    this.takeBackgroundError();
    if (!this.markedDirty) {
      if (this.dirtyInodes.size === 0 && this.dirtyPages.pages === 0) return;
      await this.markDirty();
    }
    // Preallocation windows give way when they hold more than the free space not promised to
    // delayed writes: that writeback should not be steered around them.
    if (this.clusters.windowClusters > this.space.freeClusters - this.space.dirtyClusters) this.clusters.releaseAllWindows();
    await this.writebackAll();
    await this.commit(opts.durable !== false);
    for (const [ino, oi] of this.open) {
      if (oi.refs === 0 && oi.pages.dirtyCount === 0 && !this.orphans.has(ino)) { oi.pages.shrink(); this.open.delete(ino); }
    }
  }

  /**
   * One transaction: dirty inodes, group descriptors, quota files (and with the log the
   * superblock) join the running transaction, which the journal commits. Returns when it and
   * every earlier commit are durable.
   */
  private async commit(durable = true): Promise<void> {
    if (this.closed) throw new Ext4Error('EBADF', 'filesystem is closed');
    if (!this.markedDirty) await this.markDirty();
    await this.journal.commit();
    if (this.log) return; // the log flushed; the superblock went through it
    await this.writeSuperblock();
    if (durable) await this.vol.device.flush();
  }

  /** Inside the commit gate: the deferred in-memory state joins the transaction (one consistent cut). */
  private async foldIntoTransaction(h: Handle): Promise<void> {
    if (this.quota) await this.writeQuotaFiles(h);
    for (const oi of this.dirtyInodes) await this.writeInode(h, oi);
    this.dirtyInodes.clear();
    await this.table.flush(h);
    if (this.log) await this.superblockInto(h);
  }

  /** The superblock as part of the transaction (journaled, never written in place meanwhile). */
  private async superblockInto(h: Handle): Promise<void> {
    const { sb, geo } = this.vol;
    sb.freeBlocksCount = this.clusters.freeClusters * geo.clusterRatio;
    sb.freeInodesCount = this.table.freeInodes();
    sb.wtime = nowSec();
    const bs = geo.blockSize;
    const block = await h.getWrite(Math.floor(SUPERBLOCK_OFFSET / bs));
    encodeSuperblock(sb, block.subarray(SUPERBLOCK_OFFSET % bs, (SUPERBLOCK_OFFSET % bs) + 1024));
  }

  private async writeSuperblock(): Promise<void> {
    const { sb, geo } = this.vol;
    sb.freeBlocksCount = this.clusters.freeClusters * geo.clusterRatio;
    sb.freeInodesCount = this.table.freeInodes();
    sb.wtime = nowSec();
    await this.vol.device.write(SUPERBLOCK_OFFSET, encodeSuperblock(sb));
  }

  private async writeQuotaFiles(h: Handle): Promise<void> {
    const { sb } = this.vol;
    for (const [kind, ino] of [['user', sb.usrQuotaInum], ['group', sb.grpQuotaInum]] as const) {
      if (!ino) continue;
      const usage = new Map<number, QuotaFileUsage>();
      for (const e of this.quota!.entries(kind)) {
        usage.set(e.id, { spaceBytes: e.usedBytes, inodes: e.inodes, softBytes: e.limits.softBytes, hardBytes: e.limits.hardBytes });
      }
      const bytes = encodeQuotaFile(kind, usage);
      const oi = await this.getInode(ino);
      const bs = this.blockSize;
      const blocks = Math.ceil(bytes.length / bs);
      const have = Math.ceil(oi.inode.sizeBytes / bs);
      const env = this.treeEnv(h, oi);
      for (let b = have; b < blocks; b++) {
        const implied = this.R > 1 ? await logicalClusterMapped(env, logicalCluster(Math.floor(b / this.R))) : undefined;
        const phys = implied ? implied.physicalCluster * this.R + (b % this.R)
          : (await this.allocMetaClusterUncharged(h, oi)) + (b % this.R);
        await extentInsert(env, { fileBlock: fileBlock(b), fsBlock: fsBlock(phys), countBlocks: 1, unwritten: false });
      }
      for (let b = 0; b < blocks; b++) {
        const e = await extentLookup(env, fileBlock(b));
        assert(e, `quota file block ${b} unmapped`);
        const target = await h.getWrite(e.fsBlock + (b - e.fileBlock));
        target.fill(0);
        target.set(bytes.subarray(b * bs, Math.min(bytes.length, (b + 1) * bs)));
      }
      oi.inode.sizeBytes = Math.max(oi.inode.sizeBytes, bytes.length);
      this.markInodeDirty(oi);
    }
  }

  /** Quota files are not charged to any quota. */
  private async allocMetaClusterUncharged(h: Handle, oi: OpenInode): Promise<number> {
    this.space.claim(1, { useResvPool: true });
    const run = await this.allocLock.withLock(() => this.clusters.allocRun(h, Math.floor((oi.goal || this.defaultGoal(oi.ino)) / this.R), 1, 1));
    this.space.releaseClaim(1);
    if (!run) throw new Ext4Error('ENOSPC', 'no space for the quota file', { detail: 'quota-enospc' });
    this.space.markAllocated(1);
    this.charge(oi, 1);
    return run.cluster * this.R;
  }

  /**
   * Recomputes the accounting from scratch and compares it with the running counters
   * (delalloc-bigalloc.md §4.2): free clusters from the bitmaps, reserved clusters from the
   * extent-status trees and pending sets, dirty = Σ reserved, and quota usage from every
   * inode's i_blocks. Throws an Error worded like the kernel's warnings.
   */
  async checkInvariants(): Promise<void> {
    // A consistent view: no namespace change, no mapping change on any open inode, no
    // allocation in flight (same lock order as writers: ns → data → allocator).
    await this.ns.withLock(async () => {
      const inodes = [...this.open.values()].sort((a, b) => a.ino - b.ino);
      const releases = [];
      try {
        for (const oi of inodes) releases.push(await oi.data.acquireRead());
        await this.allocLock.withLock(() => this.checkInvariantsLocked());
      } finally {
        for (const r of releases) r();
      }
    });
  }

  private async checkInvariantsLocked(): Promise<void> {
    const h = this.journal.start(0);
    try {
      const views = [];
      for (const oi of this.open.values()) {
        const env = this.treeEnv(h, oi);
        const mapped = new Map<number, boolean>();
        const extents = (oi.inode.flags & EXTENTS_FL) !== 0 && !(oi.inode.flags & INLINE_DATA_FL);
        for (const c of [...oi.state.es.delayedClusters(this.R), ...oi.state.pending]) {
          if (!mapped.has(c)) mapped.set(c, extents && (await logicalClusterMapped(env, logicalCluster(c))) !== undefined);
        }
        views.push({
          ino: inodeNo(oi.ino), uid: oi.inode.uid, gid: oi.inode.gid, es: oi.state.es, pending: oi.state.pending,
          reservedClusters: oi.state.reservation.reservedClusters, clusterMapped: (c: number) => mapped.get(c) ?? false,
        });
      }
      checkInvariants({
        clusterRatio: this.R, blockSizeBytes: this.blockSize, totalClusters: this.vol.geo.clustersCount,
        freeClusters: this.space.freeClusters, dirtyClusters: this.space.dirtyClusters,
        bitmapFreeClusters: await this.clusters.countFreeInBitmaps(h), inodes: views,
        ...(this.quota ? { quota: this.quota } : {}),
      });
      if (this.space.freeClusters !== this.clusters.freeClusters) {
        throw new Error(`free clusters counter ${this.space.freeClusters}, allocator ${this.clusters.freeClusters}`);
      }
      await this.clusters.checkWindows(h);
      if (this.quota) await this.checkQuotaUsage();
    } finally { h.stop(); }
  }

  /** Quota usage must equal Σ i_blocks and the inode count per owner (what e2fsck recomputes). */
  private async checkQuotaUsage(): Promise<void> {
    const { geo, sb } = this.vol;
    const expected = new Map<string, { bytes: number; inodes: number }>();
    const skip = new Set([sb.usrQuotaInum, sb.grpQuotaInum, sb.prjQuotaInum, sb.orphanFileInum, sb.journalInum]);
    for (let ino = 1; ino <= geo.inodesCount; ino++) {
      if ((ino < sb.firstIno && ino !== ROOT_INO) || skip.has(ino)) continue;
      if (!(await this.inodes.isAllocated(ino))) continue;
      const inode = this.open.get(ino)?.inode ?? await this.vol.readInode(ino);
      if (inode.linksCount === 0 && !this.orphans.has(ino)) continue;
      for (const key of [`user:${inode.uid}`, `group:${inode.gid}`]) {
        const e = expected.get(key) ?? { bytes: 0, inodes: 0 };
        e.bytes += inode.blocks512 * 512;
        e.inodes++;
        expected.set(key, e);
      }
    }
    for (const kind of ['user', 'group'] as const) {
      for (const e of this.quota!.entries(kind)) {
        const want = expected.get(`${kind}:${e.id}`) ?? { bytes: 0, inodes: 0 };
        if (want.bytes !== e.usedBytes || want.inodes !== e.inodes) {
          throw new Error(`${kind} quota ${e.id}: usage (${e.usedBytes} bytes, ${e.inodes} inodes) but inodes hold (${want.bytes} bytes, ${want.inodes} inodes)`);
        }
        expected.delete(`${kind}:${e.id}`);
      }
    }
    for (const [key, want] of expected) {
      if (want.bytes || want.inodes) throw new Error(`quota ${key}: no record for (${want.bytes} bytes, ${want.inodes} inodes)`);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    if (this.ageTimer) { clearTimeout(this.ageTimer); this.ageTimer = undefined; }
    for (const oi of [...this.open.values()]) {
      if (oi.refs > 0 && this.orphans.has(oi.ino)) { oi.refs = 1; await this.release(oi); }
    }
    await this.sync();
    for (const oi of this.open.values()) checkQuiescent(oi.state);
    if (this.space.dirtyClusters !== 0) throw new Error(`unmount with ${this.space.dirtyClusters} dirty clusters`);
    if (this.markedDirty) {
      // Everything is checkpointed: the log is marked empty first, then needs_recovery cleared.
      if (this.log) await this.log.close();
      this.vol.sb.featureIncompat &= ~INCOMPAT.needs_recovery;
      this.vol.sb.state |= SB_STATE.valid;
      await this.writeSuperblock();
      await this.vol.device.flush();
    }
    this.closed = true;
  }
}

/** The jbd2 log of an internal journal, or undefined without has_journal. */
async function openLog(vol: Volume): Promise<Jbd2Log | undefined> {
  const { sb, geo } = vol;
  if (!(sb.featureCompat & COMPAT.has_journal)) return undefined;
  if (!sb.journalInum) throw new Ext4Error('ENOTSUP', 'external journal devices are not supported', { detail: 'jbd2-external' });
  const inode = await vol.readInode(sb.journalInum);
  const bs = geo.blockSize;
  const lengthBlocks = Math.floor(inode.sizeBytes / bs);
  const where = { structure: 'journal inode', inode: sb.journalInum };
  if (lengthBlocks < 1024 || lengthBlocks > 1 << 24) throw corrupt('jbd2-inode', `journal inode has ${lengthBlocks} blocks`, where);
  const map = new Float64Array(lengthBlocks).fill(-1);
  for await (const m of iterateMappings(inode, vol.mapContext(sb.journalInum, inode))) {
    for (let i = 0; i < m.countBlocks && m.fileBlock + i < lengthBlocks; i++) map[m.fileBlock + i] = m.fsBlock + i;
  }
  for (let i = 0; i < lengthBlocks; i++) {
    if (!(map[i]! > 0 && map[i]! < geo.blocksCount)) throw corrupt('jbd2-inode', `journal block ${i} is not mapped inside the filesystem`, where);
  }
  return Jbd2Log.open(vol.device, {
    blockSize: bs, lengthBlocks, map, uuid: sb.uuid, metadataCsum: geo.metadataCsum, bit64: vol.has('incompat', INCOMPAT['64bit']),
  });
}

async function loadQuota(vol: Volume): Promise<MemoryQuota> {
  const quota = new MemoryQuota();
  const { sb } = vol;
  for (const [kind, ino] of [['user', sb.usrQuotaInum], ['group', sb.grpQuotaInum]] as const) {
    if (!ino) continue;
    const inode = await vol.readInode(ino);
    const bytes = await new InodeData(vol, ino, inode).read(0, Math.min(inode.sizeBytes, 64 << 20));
    for (const [id, u] of decodeQuotaFile(bytes, kind, { inode: ino })) {
      quota.load(kind, id, u.spaceBytes, u.inodes, { softBytes: u.softBytes ?? 0, hardBytes: u.hardBytes ?? 0 });
    }
  }
  return quota;
}

function setImportTimes(inode: Inode, attrs: ImportAttrs): void {
  const now = nowTs();
  inode.atime = attrs.atime ? { ...attrs.atime } : now;
  inode.mtime = attrs.mtime ? { ...attrs.mtime } : { ...now };
}

/** Runs of blocks of `data` holding a non-zero byte (the last block may be partial). */
function nonZeroBlockRuns(data: Uint8Array, blockSize: number): Array<{ first: number; count: number }> {
  const runs: Array<{ first: number; count: number }> = [];
  const blocks = Math.ceil(data.length / blockSize);
  for (let b = 0; b < blocks; b++) {
    if (isZero(data, b * blockSize, Math.min(data.length, (b + 1) * blockSize))) continue;
    const last = runs[runs.length - 1];
    if (last && last.first + last.count === b) last.count++;
    else runs.push({ first: b, count: 1 });
  }
  return runs;
}

function isZero(data: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (data[i] !== 0) return false;
  return true;
}

/** Records the pages of file blocks [first, first + count) → fsBlock…, split where a page is missing. */
function pushWbRuns(runs: WbRun[], oi: OpenInode, first: number, count: number, fsBlock: number): void {
  let run: WbRun | undefined;
  for (let k = 0; k < count; k++) {
    const page = oi.pages.get(first + k);
    if (!page) { run = undefined; continue; }
    if (!run) { run = { oi, fileBlock: first + k, fsBlock: fsBlock + k, pages: [], versions: [] }; runs.push(run); }
    run.pages.push(page);
    run.versions.push(page.version);
  }
}

function copyBlock(out: Uint8Array, pos: number, end: number, blockStart: number, src: Uint8Array): void {
  const s = Math.max(pos, blockStart);
  const e = Math.min(end, blockStart + src.length);
  if (e > s) out.set(src.subarray(s - blockStart, e - blockStart), s - pos);
}

function splitPath(path: string, syscall: string): string[] {
  if (typeof path !== 'string' || path.includes('\0')) throw posixError('EINVAL', syscall, String(path));
  return path.split('/').filter((c) => c !== '' && c !== '.');
}

function checkName(nameBytes: Uint8Array, syscall: string, path: string): void {
  if (nameBytes.length > 255) throw posixError('ENAMETOOLONG', syscall, path);
  if (nameBytes.length === 0 || (nameBytes.length === 1 && nameBytes[0] === 0x2e) ||
      (nameBytes.length === 2 && nameBytes[0] === 0x2e && nameBytes[1] === 0x2e)) throw posixError('EEXIST', syscall, path);
}

function fileTypeOf(mode: number): number {
  switch (mode & S_IFMT) {
    case S_IFREG: return FT_REG;
    case S_IFDIR: return FT_DIR;
    case S_IFLNK: return FT_SYMLINK;
    case 0x2000: return FT_CHRDEV;
    case 0x6000: return FT_BLKDEV;
    case 0x1000: return FT_FIFO;
    case 0xc000: return FT_SOCK;
    default: return 0;
  }
}

const utf8Decoder = new TextDecoder();

function nowSec(): number { return Math.floor(Date.now() / 1000); }
function nowTs(): { sec: number; nsec: number } {
  const ms = Date.now();
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1_000_000 };
}

export { fileTypeOf, INDEX_FL };
export type { QuotaAccounting };
