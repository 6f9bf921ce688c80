// A mounted image, read-only or writable, behind one interface: inode lookup and the path walk's
// source, the name cache, the one read path, xattrs, directory listings, and writing as a
// capability (`writable()` throws EROFS with the reason when the mount cannot write).
import { type BlockDevice } from '../device/block-device.ts';
import { CoalescingDevice } from '../device/coalescing-device.ts';
import { Ext4Error, corrupt, posixError } from '../errors/ext4-error.ts';
import { isSymlinkMode, type Inode } from '../format/inode.ts';
import { COMPAT } from '../format/features.ts';
import type { XattrEntry } from '../format/xattr.ts';
import { listDirectory, lookupName, type RawDirEntry } from '../dir/dir-read.ts';
import type { Mapping } from '../mapping/read-map.ts';
import { recoverJournal, describeJournal } from '../journal/replay/recover.ts';
import { hasOrphans, releaseOrphansInMemory, replayFastCommits } from './mount-recovery.ts';
import type { JournalReport } from '../journal/replay/report.ts';
import { Volume } from './volume.ts';
import { InodeData } from './readpage.ts';
import { dirSource } from './dir-source.ts';
import { NameCache } from './dcache.ts';
import { readXattrs } from './xattr.ts';
import type { OpenInode } from './inode-cache.ts';
import { dirSourceOf } from './inode-env.ts';
import { lookup as lookupWritable, releaseOrphanList } from './namei.ts';
import { read as readCached, readlink as readlinkCached } from './file.ts';
import { readdirFrom, linearHashVersion, LinearListings, LiveListings, type DirPage } from './readdir.ts';
import type { FsJournal } from './ext4-jbd2.ts';
import type { WalkSource } from './path-walk.ts';
import { Filesystem, writeBlocker } from './filesystem.ts';
import { ROOT_INO } from './names.ts';

/** An inode as the mount hands it out (on a writable mount, the in-memory inode). */
export interface Node { readonly ino: number; readonly inode: Inode }

export interface MountOptions {
  readOnly?: boolean;
  /**
   * The journal for a writable mount (default: the write-back journal, through the jbd2 log
   * when the image has a journal); 'bypass': in-place writes without the log (mkfs -d).
   */
  journal?: FsJournal | 'bypass';
}

export class Mount implements WalkSource<Node> {
  private closed = false;
  /** Read-only mounts: directory blocks whose checksums were verified once (blocks never change). */
  private readonly verified = new Set<number>();
  private readonly roNames = new NameCache();
  /** Read-only mounts: sorted listings of linear directories, for resumed listings. */
  private readonly roListings = new LinearListings();
  /** Sorted listings of large linear directories on a writable mount, changed with them. */
  private readonly liveListings = new LiveListings();

  private constructor(
    readonly vol: Volume,
    readonly fs: Filesystem | undefined,
    /** What journal recovery found and did at open (completed on demand by `describeJournal`). */
    public journalReport: JournalReport | undefined,
  ) {}

  /**
   * The journal: what recovery found and did at open, with the journal's summary and the
   * transactions in its log (read on demand for clean images opened read-only).
   */
  async describeJournal(): Promise<JournalReport | undefined> {
    this.checkOpen();
    if (!this.journalReport?.summary && this.vol.sb.featureCompat & COMPAT.has_journal) {
      const described = await describeJournal(this.vol.device);
      this.journalReport = { ...described, warnings: [...(this.journalReport?.warnings ?? []), ...described.warnings] };
    }
    return this.journalReport;
  }

  /**
   * Opens an image. Without `readOnly` it is mounted writable when ext4kit can write it;
   * otherwise read-only, and `writable()` says why not.
   */
  static async open(device: BlockDevice, opts: MountOptions = {}): Promise<Mount> {
    // Writable mounts coalesce appending device writes (thousands of small files imported one
    // after another become one write per MiB); the wrapper is transparent to reads.
    // Journal replay (journal.md §2): a read-only open gets an in-memory overlay, a writable one
    // replays to the image. `recovered.device` replaces `device` from here on.
    const recovered = await recoverJournal(device, { mode: opts.readOnly || device.readOnly ? 'overlay' : 'write' });
    if (recovered.fastCommit) recovered.device = await replayFastCommits(recovered.device, recovered.fastCommit, recovered.report);
    let vol = await Volume.open(opts.readOnly ? recovered.device : new CoalescingDevice(recovered.device), opts);
    const fs = vol.readOnly || writeBlocker(vol) ? undefined : await Filesystem.mount(vol, opts.journal ? { journal: opts.journal } : {});
    if (!fs && hasOrphans(vol)) {
      // A read-only mount shows what the kernel shows (it releases orphans even on a read-only
      // mount): they are released into an in-memory overlay; the image is not written.
      const view = await releaseOrphansInMemory(recovered.device, recovered.report);
      // The first volume is dropped without closing it: closing would close the image device.
      if (view) vol = await Volume.open(view, { ...opts, readOnly: true });
    }
    if (fs && hasOrphans(vol)) {
      // The orphans a crash left (on the list or in the orphan file) are released as a kernel
      // mount would, then committed: the image is clean again before the first operation.
      try {
        recovered.report.orphansReleased = await releaseOrphanList(fs);
        recovered.report.orphansPending = false;
        await fs.sync();
      } catch (e) {
        // Nothing more is written: released orphans not yet committed stay orphans.
        await vol.close().catch(() => undefined);
        throw e;
      }
    }
    return new Mount(vol, fs, recovered.report);
  }

  get readOnly(): boolean { return this.fs === undefined; }

  /** Why this mount cannot write, or undefined. */
  get readOnlyReason(): string | undefined {
    if (this.fs) return undefined;
    return this.vol.readOnly && !this.vol.forcedReadOnly ? 'opened read-only' : (writeBlocker(this.vol) ?? 'opened read-only');
  }

  checkOpen(): void {
    if (this.closed) throw new Ext4Error('EBADF', 'filesystem is closed');
  }

  /** The writable filesystem, or EROFS naming why there is none. */
  writable(syscall: string, path?: string): Filesystem {
    this.checkOpen();
    if (this.fs) return this.fs;
    const e = posixError('EROFS', syscall, path);
    e.message = `${e.message} (${this.readOnlyReason})`;
    throw e;
  }

  // ---- inodes and names --------------------------------------------------------------------

  async iget(ino: number): Promise<Node> {
    this.checkOpen();
    if (this.fs) return this.fs.icache.get(ino);
    return { ino, inode: await this.vol.readInode(ino) };
  }

  root(): Promise<Node> { return this.iget(ROOT_INO); }

  async lookup(dir: Node, name: Uint8Array): Promise<Node | undefined> {
    if (this.fs) return lookupWritable(this.fs, dir as OpenInode, name);
    const cached = this.roNames.get(dir.ino, name);
    let ino: number | undefined;
    if (cached === null) return undefined;
    if (cached === undefined) {
      ino = (await lookupName(dirSource(this.vol, dir.ino, dir.inode, { verified: this.verified }), name))?.ino;
      if (ino === undefined) return undefined;
      this.roNames.put(dir.ino, name, ino);
    } else ino = cached;
    const node = await this.iget(ino);
    if (node.inode.linksCount === 0 && node.inode.mode === 0) {
      throw corrupt('dirent-unused-inode', `directory entry points to unused inode ${ino}`, { inode: ino });
    }
    return node;
  }

  async readlink(link: Node): Promise<Uint8Array> {
    if (this.fs && isSymlinkMode(link.inode.mode)) return readlinkCached(this.fs, link as OpenInode);
    return new InodeData(this.vol, link.ino, link.inode).symlinkTarget();
  }

  // ---- data ----------------------------------------------------------------------------------

  /** File bytes [pos, pos + len) clipped to the size: the one read path (page cache first on a writable mount). */
  async read(node: Node, pos: number, len: number): Promise<Uint8Array> {
    this.checkOpen();
    if (this.fs) return readCached(this.fs, node as OpenInode, pos, len);
    return new InodeData(this.vol, node.ino, node.inode).read(pos, len);
  }

  async mappings(node: Node): Promise<readonly Mapping[]> {
    return new InodeData(this.vol, node.ino, node.inode).mappings();
  }

  async xattrs(node: Node): Promise<XattrEntry[]> {
    this.checkOpen();
    return readXattrs(this.vol, node.ino, node.inode,
      async (ino, inode, maxBytes) => new InodeData(this.vol, ino, inode).read(0, Math.min(maxBytes, inode.sizeBytes)));
  }

  /** Every entry of a directory, '.' and '..' included, in on-disk order. */
  async list(dir: Node): Promise<RawDirEntry[]> {
    this.checkOpen();
    const src = this.fs ? dirSourceOf(this.fs, dir as OpenInode) : dirSource(this.vol, dir.ino, dir.inode, { verified: this.verified });
    const all: RawDirEntry[] = [];
    const read = async () => { for await (const e of listDirectory(src)) all.push(e); };
    if (this.fs) await (dir as OpenInode).data.withRead(read);
    else {
      await read();
      this.roNames.putComplete(dir.ino, all);
    }
    return all;
  }

  /** Up to `maxEntries` entries after `cookie` (0: from the start), resumable across changes. */
  async readdirFrom(dir: Node, cookie: number, maxEntries: number): Promise<DirPage> {
    this.checkOpen();
    const version = linearHashVersion(this.vol.sb.defHashVersion, this.vol.sb.flags);
    if (!this.fs) return readdirFrom(dirSource(this.vol, dir.ino, dir.inode, { verified: this.verified }), cookie, maxEntries, version, this.roListings);
    const oi = dir as OpenInode;
    return oi.data.withRead(() => readdirFrom(dirSourceOf(this.fs!, oi), cookie, maxEntries, version, undefined, { listings: this.liveListings, holder: oi }));
  }

  /** Delayed (reserved, not yet allocated) 512-byte units, which st_blocks counts as the kernel does. */
  delayedBlocks512(node: Node): number {
    if (!this.fs) return 0;
    return (node as OpenInode).reservedClusters * this.vol.geo.clusterSize / 512;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      if (this.fs) await this.fs.close();
    } finally {
      this.closed = true;
      await this.vol.close();
    }
  }
}
