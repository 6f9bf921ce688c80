// FuseBackend over the engine: inode-level reads, data operations and namespace changes go
// straight to Filesystem and namei. Lookup counts are kept here (a number per inode the kernel
// remembers, nothing more); an inode whose last name goes
// while the kernel still knows it is pinned (refs) first, so it lives on as an orphan until
// FORGET (and the release of its handles). Inodes merely looked up are not pinned: the engine
// may drop them from memory, so memory stays bounded by what is open, not by what was seen.
import { Ext4Error, posixError } from '../errors/ext4-error.ts';
import type { Ext4 } from '../api/ext4.ts';
import type { Filesystem } from '../fs/filesystem.ts';
import type { OpenInode } from '../fs/inode-cache.ts';
import type { Credentials } from '../fs/ialloc.ts';
import * as namei from '../fs/namei.ts';
import { read as readFile, write as writeFile, truncate as truncateFile, fallocate as fallocateFile, readlink as readlinkOf } from '../fs/file.ts';
import { fsync } from '../fs/fsync.ts';
import { setattr as setAttrs, type SetAttr } from '../fs/attr.ts';
import { readXattrs, setXattr } from '../fs/xattr.ts';
import { fileMap } from '../fs/inode-env.ts';
import { InodeData } from '../fs/readpage.ts';
import type { Volume } from '../fs/volume.ts';
import type { Mount } from '../fs/mount.ts';
import { lookupRange } from '../mapping/map-blocks.ts';
import { deviceNumber } from '../api/stats.ts';
import { isDirMode, isSymlinkMode, S_IFMT, S_IFREG, S_IFDIR, S_IFCHR, S_IFBLK, S_ISGID, type Inode } from '../format/inode.ts';
import type { NodeAttr } from './attr.ts';
import type { AttrChanges, Caller, DirListing, FallocateFlags, FuseBackend } from './backend.ts';
import type { StatfsOut } from './xattr.ts';
import { FuseErrno } from './errno.ts';
import { XATTR_MAGIC } from '../format/xattr.ts';
import { SEEK_DATA, SEEK_HOLE, RENAME_NOREPLACE, RENAME_EXCHANGE, XATTR_CREATE, XATTR_REPLACE } from './protocol.ts';

const ROOT_INO = 2;
const NO_NAMES: readonly string[] = Object.freeze([]);
const O_ACCMODE = 3;
const O_EXCL = 0o200;
/** ext4 dirent file type → DT_*. */
export const DT_OF_FT: readonly number[] = [0, 8, 4, 2, 6, 1, 12, 10];

/** Owner and permission mask shown for every inode (mount options uid=, gid=, umask=). */
export interface ShownOwner { uid?: number | undefined; gid?: number | undefined; umask?: number | undefined }

/** The attributes the kernel is given for an inode; `extra512` adds delayed allocations to st_blocks. */
export function inodeAttr(ino: number, inode: Inode, blockSize: number, extra512: number, shown: ShownOwner): NodeAttr {
  const t = (x: { sec: number; nsec: number } | undefined) => x ?? { sec: 0, nsec: 0 };
  const fmt = inode.mode & S_IFMT;
  return {
    ino, sizeBytes: inode.sizeBytes, blocks512: inode.blocks512 + extra512,
    atimeSec: t(inode.atime).sec, atimeNsec: t(inode.atime).nsec,
    mtimeSec: t(inode.mtime).sec, mtimeNsec: t(inode.mtime).nsec,
    ctimeSec: t(inode.ctime).sec, ctimeNsec: t(inode.ctime).nsec,
    mode: shown.umask === undefined ? inode.mode : inode.mode & ~shown.umask,
    nlink: inode.linksCount, uid: shown.uid ?? inode.uid, gid: shown.gid ?? inode.gid,
    rdev: fmt === S_IFCHR || fmt === S_IFBLK ? deviceNumber(inode) : 0, blksizeBytes: blockSize,
  };
}

interface FileHandle { oi: OpenInode; flags: number }
interface DirHandle { ino: number }

/** The engine objects behind a public Ext4 instance (until the inode-level API is public). */
function engineOf(ext4: Ext4): { fs: Filesystem | undefined; vol: Volume; mount: Mount } {
  return ext4 as unknown as { fs: Filesystem | undefined; vol: Volume; mount: Mount };
}

export class Ext4Backend implements FuseBackend {
  readonly rootIno = ROOT_INO;
  /** Seconds an inode can hold: 32-bit signed, or 34 bits (epoch bits) with large inodes; the kernel clamps to these. */
  private readonly timeMinSec = -(2 ** 31);
  private readonly timeMaxSec: number;
  readonly readOnly: boolean;
  private readonly fs: Filesystem;
  /** Kernel lookup counts by inode. */
  private readonly known = new Map<number, number>();
  /** Inodes pinned because they lost their last name while the kernel knew them. */
  private readonly pins = new Map<number, OpenInode>();
  private readonly files = new Map<number, FileHandle>();
  private readonly dirs = new Map<number, DirHandle>();
  private nextFh = 1;

  private readonly shown: ShownOwner;

  constructor(private readonly ext4: Ext4, opts: { readOnly?: boolean; uid?: number | undefined; gid?: number | undefined; umask?: number | undefined } = {}) {
    this.shown = { uid: opts.uid, gid: opts.gid, umask: opts.umask };
    const { fs, vol } = engineOf(ext4);
    if (!fs) {
      const why = vol.forcedReadOnly ?? 'opened read-only';
      throw new Ext4Error('ENOTSUP', `ENOTSUP: Ext4Backend needs an image ext4kit can write (${why}); mount() serves such images with ReadOnlyBackend`);
    }
    this.fs = fs;
    this.readOnly = opts.readOnly ?? false;
    this.timeMaxSec = vol.geo.inodeSize > 128 ? 2 ** 34 - 2 ** 31 - 1 : 2 ** 31 - 1;
  }

  // ---- helpers -------------------------------------------------------------------------

  /** The inode, without a promise when it is in memory. */
  private inode(ino: number): OpenInode | Promise<OpenInode> {
    return this.inodeNow(ino) ?? this.inodeLoaded(ino);
  }

  /** The inode if it is in memory now (undefined: it must be read). */
  private inodeNow(ino: number): OpenInode | undefined {
    const oi = this.fs.icache.getCached(ino);
    if (oi && oi.inode.mode === 0) throw new FuseErrno('ESTALE', 'stale inode');
    return oi;
  }

  private async inodeLoaded(ino: number): Promise<OpenInode> {
    const oi = await this.fs.getInode(ino);
    if (oi.inode.mode === 0) throw new FuseErrno('ESTALE', 'stale inode');
    return oi;
  }

  attrOf(oi: OpenInode): NodeAttr {
    const geo = engineOf(this.ext4).vol.geo;
    return inodeAttr(oi.ino, oi.inode, geo.blockSize, oi.reservedClusters * geo.clusterSize / 512, this.shown);
  }

  /** Counts one kernel lookup of `oi`. */
  private remember(oi: OpenInode): void {
    this.known.set(oi.ino, (this.known.get(oi.ino) ?? 0) + 1);
  }

  /**
   * Before an operation that may drop the last link of `parent/name`: pins that inode when the
   * kernel knows it, so that the engine keeps it as an orphan instead of freeing it.
   */
  private async pinVictim(parentIno: number, nameBytes: Uint8Array): Promise<OpenInode | undefined> {
    const dir = await this.inode(parentIno);
    const victim = await namei.lookup(this.fs, dir, nameBytes);
    if (!victim || !this.known.has(victim.ino) || this.pins.has(victim.ino)) return undefined;
    this.fs.icache.hold(victim);
    this.pins.set(victim.ino, victim);
    return victim;
  }

  /** After the operation: a victim that still has a name (or failed to go) needs no pin. */
  private async unpinIfLinked(victim: OpenInode | undefined): Promise<void> {
    if (!victim || victim.inode.linksCount === 0) return;
    this.pins.delete(victim.ino);
    await this.fs.release(victim);
  }

  private entry(oi: OpenInode): { attr: NodeAttr; generation: number } {
    this.remember(oi);
    return { attr: this.attrOf(oi), generation: oi.inode.generation };
  }

  private writable(): void {
    if (this.readOnly) throw posixError('EROFS', 'write');
  }

  /** A time clamped to what the inode format holds (as the kernel's timestamp_truncate does). */
  private storable(t: { sec: number; nsec: number }): { sec: number; nsec: number } {
    if (t.sec <= this.timeMinSec) return { sec: this.timeMinSec, nsec: 0 };
    if (t.sec >= this.timeMaxSec) return { sec: this.timeMaxSec, nsec: 0 };
    return { sec: t.sec, nsec: t.nsec };
  }

  private cred(caller: Caller): Credentials { return { uid: caller.uid, gid: caller.gid }; }

  /** Owner of a new inode: a setgid directory passes its group on (and its setgid bit to subdirectories). */
  private newOwner(parent: OpenInode, caller: Caller, mode: number): { cred: Credentials; mode: number } {
    if (!isDirMode(parent.inode.mode)) throw posixError('ENOTDIR', 'open');
    if (parent.inode.mode & S_ISGID) {
      return { cred: { uid: caller.uid, gid: parent.inode.gid }, mode: isDirMode(mode) ? mode | S_ISGID : mode };
    }
    return { cred: this.cred(caller), mode };
  }

  /** Runs `fn` with the inode pinned, so that a concurrent sync cannot drop it from the inode table. */
  private async pinned<T>(ino: number, fn: (oi: OpenInode) => Promise<T>): Promise<T> {
    const oi = await this.inode(ino);
    this.fs.icache.hold(oi);
    try { return await fn(oi); } finally { await this.fs.release(oi); }
  }

  private file(fh: number): FileHandle {
    const h = this.files.get(fh);
    if (!h) throw posixError('EBADF', 'read');
    return h;
  }

  // ---- attributes and lookups ------------------------------------------------------------

  async lookup(parentIno: number, nameBytes: Uint8Array): Promise<{ attr: NodeAttr; generation: number } | undefined> {
    if (nameBytes.length > 255) throw posixError('ENAMETOOLONG', 'lookup');
    const dir = await this.inode(parentIno);
    if (!isDirMode(dir.inode.mode)) throw posixError('ENOTDIR', 'lookup');
    const oi = await namei.lookup(this.fs, dir, nameBytes);
    if (!oi) return undefined;
    if (oi.inode.mode === 0) throw new Ext4Error('EUCLEAN', `directory entry points to unused inode ${oi.ino}`, { detail: 'dirent-unused-inode', where: { inode: oi.ino } });
    return this.entry(oi);
  }

  async forget(ino: number, count: number): Promise<void> {
    const left = (this.known.get(ino) ?? 0) - count;
    if (left > 0) { this.known.set(ino, left); return; }
    this.known.delete(ino);
    if (ino === ROOT_INO) return;
    const pinned = this.pins.get(ino);
    if (pinned) {
      this.pins.delete(ino);
      await this.fs.release(pinned);
    }
  }

  getattr(ino: number): NodeAttr | Promise<NodeAttr> {
    const oi = this.inodeNow(ino);
    return oi ? this.attrOf(oi) : this.getattrLoaded(ino);
  }

  private async getattrLoaded(ino: number): Promise<NodeAttr> { return this.attrOf(await this.inodeLoaded(ino)); }

  /**
   * tar sends three SETATTRs per file (owner, mode, times): with the inode in memory and no
   * truncate, the change is applied and answered without a promise when the engine needs no
   * wait (see fs/attr.ts), and the inode is pinned only if it does wait.
   */
  setattr(ino: number, ch: AttrChanges, _caller: Caller): NodeAttr | Promise<NodeAttr> {
    this.writable();
    const oi = ch.sizeBytes === undefined ? this.inodeNow(ino) : undefined;
    if (!oi) return this.setattrPinned(ino, ch);
    const attr = this.setAttrOf(ch);
    // Nothing awaits between the change's synchronous part and hold(): no sync can drop the inode in between.
    const pending = attr ? setAttrs(this.fs, oi, attr) : undefined;
    return pending ? this.attrAfter(oi, pending) : this.attrOf(oi);
  }

  /** The attributes once `pending` (a change to `oi` in progress) is done; `oi` pinned meanwhile. */
  private async attrAfter(oi: OpenInode, pending: Promise<void>): Promise<NodeAttr> {
    this.fs.icache.hold(oi);
    try {
      await pending;
      return this.attrOf(oi);
    } finally {
      await this.fs.release(oi);
    }
  }

  private async setattrPinned(ino: number, ch: AttrChanges): Promise<NodeAttr> {
    // Pinned like pinned() does, without a closure.
    const oi = await this.inode(ino);
    this.fs.icache.hold(oi);
    try {
      if (ch.sizeBytes !== undefined) {
        if (isDirMode(oi.inode.mode)) throw posixError('EISDIR', 'truncate');
        await truncateFile(this.fs, oi, ch.sizeBytes);
      }
      const attr = this.setAttrOf(ch);
      if (attr) await setAttrs(this.fs, oi, attr);
      return this.attrOf(oi);
    } finally {
      await this.fs.release(oi);
    }
  }

  /** The engine's change set for everything but the size (undefined: nothing else changes), built field by field. */
  private setAttrOf(ch: AttrChanges): SetAttr | undefined {
    const attr: SetAttr = {};
    let other = false;
    if (ch.mode !== undefined) { attr.mode = ch.mode; other = true; }
    if (ch.uid !== undefined || ch.gid !== undefined) {
      const owner: { uid?: number; gid?: number } = {};
      if (ch.uid !== undefined) owner.uid = ch.uid;
      if (ch.gid !== undefined) owner.gid = ch.gid;
      attr.owner = owner;
      other = true;
    }
    if (ch.atime !== undefined || ch.mtime !== undefined || ch.ctime !== undefined) {
      const now = ch.atime === 'now' || ch.mtime === 'now' ? nowTimestamp() : undefined;
      if (ch.atime !== undefined) attr.atime = this.storable(ch.atime === 'now' ? now! : ch.atime);
      if (ch.mtime !== undefined) attr.mtime = this.storable(ch.mtime === 'now' ? now! : ch.mtime);
      other = true;
    }
    return other ? attr : undefined;
  }

  async readlink(ino: number): Promise<Uint8Array> {
    const oi = await this.inode(ino);
    if (!isSymlinkMode(oi.inode.mode)) throw posixError('EINVAL', 'readlink');
    return readlinkOf(this.fs, oi);
  }

  // ---- directories -----------------------------------------------------------------------

  async opendir(ino: number): Promise<number> {
    const oi = await this.inode(ino);
    if (!isDirMode(oi.inode.mode)) throw posixError('ENOTDIR', 'opendir');
    const fh = this.nextFh++;
    this.dirs.set(fh, { ino });
    return fh;
  }

  async readdir(fh: number, cookie: number, maxEntries: number): Promise<readonly DirListing[]> {
    const h = this.dirs.get(fh);
    if (!h) throw posixError('EBADF', 'readdir');
    const page = await engineOf(this.ext4).mount.readdirFrom(await this.inode(h.ino), cookie, maxEntries);
    return page.entries.map((e) => ({ ino: e.ino, nameBytes: e.name, type: DT_OF_FT[e.fileType] ?? 0, cookie: e.cookie }));
  }

  async releasedir(fh: number): Promise<void> {
    this.dirs.delete(fh);
  }

  /** READDIRPLUS: the lookup of one listed entry (counted like LOOKUP). */
  async lookupListed(_dirIno: number, e: DirListing): Promise<{ attr: NodeAttr; generation: number }> {
    const oi = await this.inode(e.ino);
    return this.entry(oi);
  }

  // ---- files -----------------------------------------------------------------------------

  async open(ino: number, flags: number, _caller: Caller): Promise<number> {
    const oi = await this.inode(ino);
    if (isDirMode(oi.inode.mode)) throw posixError('EISDIR', 'open');
    if ((flags & O_ACCMODE) !== 0) this.writable();
    this.fs.icache.hold(oi);
    const fh = this.nextFh++;
    this.files.set(fh, { oi, flags });
    return fh;
  }

  async create(parentIno: number, nameBytes: Uint8Array, mode: number, flags: number, caller: Caller): Promise<{ fh: number; attr: NodeAttr; generation: number }> {
    this.writable();
    const parent = await this.inode(parentIno);
    const owner = this.newOwner(parent, caller, S_IFREG | (mode & 0o7777));
    const oi = await namei.create(this.fs, parent, nameBytes, owner.mode & 0o7777, owner.cred, { exclusive: (flags & O_EXCL) !== 0 }, { syscall: 'open' });
    if (isDirMode(oi.inode.mode)) throw posixError('EISDIR', 'open');
    this.fs.icache.hold(oi);
    const fh = this.nextFh++;
    this.files.set(fh, { oi, flags });
    return { fh, ...this.entry(oi) };
  }

  async read(fh: number, offset: number, lenBytes: number): Promise<Uint8Array> {
    return readFile(this.fs, this.file(fh).oi, offset, lenBytes);
  }

  async write(fh: number, offset: number, data: Uint8Array, caller: Caller): Promise<number> {
    this.writable();
    await writeFile(this.fs, this.file(fh).oi, offset, data, this.cred(caller));
    return data.length;
  }

  async flush(fh: number): Promise<void> {
    this.file(fh);
  }

  release(fh: number): undefined | Promise<void> {
    const h = this.files.get(fh);
    if (!h) return undefined;
    this.files.delete(fh);
    return this.fs.releaseNow(h.oi);
  }

  async fsync(ino: number, fh: number | undefined): Promise<void> {
    if (this.readOnly) return;
    if (fh !== undefined && this.files.has(fh)) { await fsync(this.fs, this.file(fh).oi); return; }
    await this.pinned(ino, (oi) => fsync(this.fs, oi));
  }

  async fallocate(fh: number, offset: number, lenBytes: number, flags: FallocateFlags, caller: Caller): Promise<void> {
    this.writable();
    await fallocateFile(this.fs, this.file(fh).oi, flags, offset, lenBytes, this.cred(caller));
  }

  async lseek(fh: number, offset: number, whence: number): Promise<number> {
    const { oi } = this.file(fh);
    const size = oi.inode.sizeBytes;
    if (whence !== SEEK_DATA && whence !== SEEK_HOLE) throw posixError('EINVAL', 'lseek');
    if (offset < 0 || offset >= size) throw new FuseErrno('ENXIO', 'offset beyond the end of the file');
    const bs = this.fs.vol.geo.blockSize;
    const first = Math.floor(offset / bs);
    const last = Math.floor((size - 1) / bs);
    const h = this.fs.journal.start(0);
    let segs: Awaited<ReturnType<typeof lookupRange>>;
    try {
      segs = await oi.data.withRead(() => lookupRange(fileMap(this.fs, oi), h, first, last - first + 1));
    } finally { h.stop(); }
    // Written and delayed blocks are data; unwritten blocks are data only where the page cache holds them.
    const wantData = whence === SEEK_DATA;
    for (const s of segs) {
      if (s.state === 'unwritten') {
        for (let b = s.first; b < s.first + s.count; b++) {
          if ((oi.pages.get(b) !== undefined) === wantData) return Math.max(offset, b * bs);
        }
      } else if ((s.state === 'written' || s.state === 'delayed') === wantData) {
        return Math.max(offset, s.first * bs);
      }
    }
    if (whence === SEEK_HOLE) return size;
    throw new FuseErrno('ENXIO', 'no data after offset');
  }

  // ---- namespace -------------------------------------------------------------------------

  async mkdir(parentIno: number, nameBytes: Uint8Array, mode: number, caller: Caller): Promise<{ attr: NodeAttr; generation: number }> {
    this.writable();
    const parent = await this.inode(parentIno);
    const owner = this.newOwner(parent, caller, S_IFDIR | (mode & 0o7777));
    await namei.mkdir(this.fs, parent, nameBytes, owner.mode & 0o7777, owner.cred, { syscall: 'mkdir' });
    return this.lookedUpNew(parentIno, nameBytes);
  }

  private async lookedUpNew(parentIno: number, nameBytes: Uint8Array): Promise<{ attr: NodeAttr; generation: number }> {
    const e = await this.lookup(parentIno, nameBytes);
    if (!e) throw new Ext4Error('EIO', 'EIO: a new entry vanished');
    return e;
  }

  async mknod(parentIno: number, nameBytes: Uint8Array, mode: number, rdev: number, caller: Caller): Promise<{ attr: NodeAttr; generation: number }> {
    this.writable();
    const parent = await this.inode(parentIno);
    const owner = this.newOwner(parent, caller, mode);
    await namei.mknod(this.fs, parent, nameBytes, owner.mode, rdev, owner.cred, { syscall: 'mknod' });
    return this.lookedUpNew(parentIno, nameBytes);
  }

  async symlink(parentIno: number, nameBytes: Uint8Array, target: Uint8Array, caller: Caller): Promise<{ attr: NodeAttr; generation: number }> {
    this.writable();
    const parent = await this.inode(parentIno);
    const owner = this.newOwner(parent, caller, 0);
    await namei.symlink(this.fs, parent, nameBytes, target, owner.cred, { syscall: 'symlink' });
    return this.lookedUpNew(parentIno, nameBytes);
  }

  async link(ino: number, newParentIno: number, nameBytes: Uint8Array): Promise<{ attr: NodeAttr; generation: number }> {
    this.writable();
    await namei.link(this.fs, await this.inode(ino), await this.inode(newParentIno), nameBytes, { syscall: 'link' });
    return this.lookedUpNew(newParentIno, nameBytes);
  }

  async unlink(parentIno: number, nameBytes: Uint8Array): Promise<void> {
    this.writable();
    const victim = await this.pinVictim(parentIno, nameBytes);
    try { await namei.unlink(this.fs, await this.inode(parentIno), nameBytes, { syscall: 'unlink' }); } finally { await this.unpinIfLinked(victim); }
  }

  async rmdir(parentIno: number, nameBytes: Uint8Array): Promise<void> {
    this.writable();
    const victim = await this.pinVictim(parentIno, nameBytes);
    try { await namei.rmdir(this.fs, await this.inode(parentIno), nameBytes, { syscall: 'rmdir' }); } finally { await this.unpinIfLinked(victim); }
  }

  async rename(parentIno: number, nameBytes: Uint8Array, newParentIno: number, newNameBytes: Uint8Array, flags: number): Promise<void> {
    this.writable();
    if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) throw new Ext4Error('EINVAL', 'EINVAL: RENAME_WHITEOUT is not supported');
    const dir = await this.inode(parentIno);
    const newDir = await this.inode(newParentIno);
    const moving = await namei.lookup(this.fs, dir, nameBytes);
    if (!moving) throw posixError('ENOENT', 'rename');
    const exchange = (flags & RENAME_EXCHANGE) !== 0;
    const victim = exchange ? undefined : await this.pinVictim(newParentIno, newNameBytes);
    try {
      await namei.rename(this.fs, dir, nameBytes, newDir, newNameBytes, { noReplace: (flags & RENAME_NOREPLACE) !== 0, exchange }, { syscall: 'rename' });
    } finally { if (victim !== undefined) await this.unpinIfLinked(victim); }
  }

  // ---- filesystem and xattrs -------------------------------------------------------------

  async statfs(): Promise<StatfsOut> {
    const s = await this.ext4.statfs();
    return { blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree, bsize: s.bsize, namelen: 255, frsize: s.bsize };
  }

  async getxattr(ino: number, name: string): Promise<Uint8Array> {
    const oi = await this.inode(ino);
    const e = (await this.xattrsOf(oi)).find((x) => x.fullName === name && !(x.nameIndex === 7 && x.name === 'data'));
    if (!e) throw posixError('ENODATA', 'getxattr');
    return e.value;
  }

  listxattr(ino: number): readonly string[] | Promise<readonly string[]> {
    // The kernel asks for security.capability before each new file's first write and chown:
    // an inode in memory with no xattr area and no xattr block answers without reading.
    const oi = this.inodeNow(ino);
    if (oi && this.hasNoXattrs(oi.inode)) return NO_NAMES;
    return this.listxattrRead(ino);
  }

  private async listxattrRead(ino: number): Promise<string[]> {
    const oi = await this.inode(ino);
    return (await this.xattrsOf(oi)).filter((x) => !(x.nameIndex === 7 && x.name === 'data')).map((x) => x.fullName);
  }

  /**
   * No xattr block and no in-inode xattr area (its magic word right after i_extra_isize):
   * exactly the inodes for which readXattrs finds nothing, read from the same fields.
   */
  private hasNoXattrs(inode: Inode): boolean {
    if (inode.fileAcl !== 0) return false;
    const { inodeSize } = this.fs.vol.geo;
    if (inodeSize <= 128 || inode.extraIsize === 0) return true;
    // An i_extra_isize readXattrs rejects as corrupt takes the reading path (which reports it).
    const at = 128 + inode.extraIsize;
    if ((inode.extraIsize & 3) !== 0 || at > inodeSize) return false;
    const raw = inode.raw;
    if (at + 4 > Math.min(inodeSize, raw.length)) return true;
    return (raw[at]! | raw[at + 1]! << 8 | raw[at + 2]! << 16 | raw[at + 3]! << 24) >>> 0 !== XATTR_MAGIC;
  }

  async setxattr(ino: number, name: string, value: Uint8Array, flags: number): Promise<void> {
    this.writable();
    const oi = await this.inode(ino);
    await setXattr(this.fs, oi, () => this.xattrsOf(oi), name, value.slice(), { create: (flags & XATTR_CREATE) !== 0, replace: (flags & XATTR_REPLACE) !== 0 }, { syscall: 'setxattr' });
  }

  async removexattr(ino: number, name: string): Promise<void> {
    this.writable();
    const oi = await this.inode(ino);
    await setXattr(this.fs, oi, () => this.xattrsOf(oi), name, undefined, {}, { syscall: 'removexattr' });
  }

  private xattrsOf(oi: OpenInode) {
    const { vol } = this.fs;
    return readXattrs(vol, oi.ino, oi.inode, (ino, inode, maxBytes) => new InodeData(vol, ino, inode).read(0, Math.min(maxBytes, inode.sizeBytes)));
  }

  async close(): Promise<void> {
    for (const h of this.files.values()) await this.fs.release(h.oi);
    this.files.clear();
    for (const oi of this.pins.values()) await this.fs.release(oi);
    this.pins.clear();
    this.known.clear();
    await this.ext4.close();
  }

  /** Consistency check of the engine's accounting (tests). */
  async checkInvariants(): Promise<void> { await this.ext4.checkInvariants(); }

}

function nowTimestamp(): { sec: number; nsec: number } {
  const ms = Date.now();
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1_000_000 };
}
