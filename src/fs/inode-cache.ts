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

/** One in-memory inode. Locks in the kernel's order: io (i_rwsem) → handle → data (i_data_sem). */
export class OpenInode {
  readonly io = new Mutex();
  readonly data = new RwLock();
  readonly writeback = new Mutex();
  /** Open file handles. */
  refs = 0;
  /** References a FUSE kernel holds through LOOKUP replies (dropped by FORGET). */
  nlookup = 0;
  goal = 0;
  /** Cached checksum seed (it depends on the generation only). */
  seed: number | undefined;
  seedFor = -1;
  readonly pages: FilePages;
  state: DelallocState;
  /**
   * The size the inode table gets at commit (the kernel's i_disksize), when it lags the
   * in-memory size: a buffered write past it moves only `inode.sizeBytes`; writeback moves this
   * as the data below it is mapped and written (fs/writeback.ts). undefined: the same as
   * `inode.sizeBytes` (every inode that is not a regular file written through the page cache).
   */
  diskSizeBytes: number | undefined;
  constructor(readonly ino: number, public inode: Inode, blockSize: number, space: SpaceAccounting, dirty: DirtyCounter) {
    this.pages = new FilePages(blockSize, dirty);
    this.state = createDelallocState(space, inodeNo(ino), inode.uid, inode.gid);
  }

  /** Nothing in memory depends on this inode staying cached. */
  get evictable(): boolean { return this.refs === 0 && this.nlookup === 0 && this.pages.dirtyCount === 0; }
}

export class InodeCache {
  readonly open = new Map<number, OpenInode>();
  readonly dirty = new Set<OpenInode>();
  /** Test hook (crash harness broken variant): the inode table gets the in-memory size, as before i_disksize. */
  sizeAheadForTest = false;
  constructor(private readonly vol: Volume, private readonly space: SpaceAccounting, private readonly dirtyPages: DirtyCounter) {}

  /** The in-memory inode, loaded from the inode table on first use (iget). */
  async get(ino: number): Promise<OpenInode> {
    let oi = this.open.get(ino);
    if (!oi) {
      const inode = await this.vol.readInode(ino);
      oi = this.open.get(ino);
      if (!oi) {
        oi = new OpenInode(ino, inode, this.vol.geo.blockSize, this.space, this.dirtyPages);
        this.open.set(ino, oi);
      }
    }
    return oi;
  }

  /** A new inode enters the cache. */
  add(ino: number, inode: Inode): OpenInode {
    const oi = new OpenInode(ino, inode, this.vol.geo.blockSize, this.space, this.dirtyPages);
    this.open.set(ino, oi);
    return oi;
  }

  drop(ino: number): void { this.open.delete(ino); }

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
  markDirty(oi: OpenInode): void { this.dirty.add(oi); }

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
    for (const [ino, oi] of this.open) {
      // A dirty inode (changed by a request that ran during the commit) is not on disk yet.
      if (oi.refs === 0 && oi.nlookup === 0 && oi.pages.dirtyCount === 0 && !this.dirty.has(oi) && !keep(oi)) { oi.pages.shrink(); this.open.delete(ino); }
    }
  }
}
