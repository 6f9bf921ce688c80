// FuseBackend for images served read-only: everything goes through the mount's read interface
// (inode lookup, the one read path, xattrs, resumable listings), so every image ext4kit can
// open is served, including those it cannot write (ext2/ext3 block-mapped files, inline-data
// directories, features the writer refuses). Every change is EROFS. Nothing is pinned: inodes
// are read when asked, and an open handle keeps the inode it opened.
import { posixError } from '../errors/ext4-error.ts';
import type { Ext4 } from '../api/ext4.ts';
import type { Mount, Node } from '../fs/mount.ts';
import { isDirMode, isSymlinkMode } from '../format/inode.ts';
import type { NodeAttr } from './attr.ts';
import type { AttrChanges, Caller, DirListing, FallocateFlags, FuseBackend } from './backend.ts';
import type { StatfsOut } from './xattr.ts';
import { FuseErrno } from './errno.ts';
import { SEEK_DATA, SEEK_HOLE } from './protocol.ts';
import { DT_OF_FT, inodeAttr, type ShownOwner } from './ext4-backend.ts';

const ROOT_INO = 2;
const O_ACCMODE = 3;
const INLINE_DATA_XATTR = 'system.data';

export class ReadOnlyBackend implements FuseBackend {
  readonly rootIno = ROOT_INO;
  readonly readOnly = true;
  private readonly mount: Mount;
  private readonly files = new Map<number, Node>();
  private readonly dirs = new Map<number, number>();
  private nextFh = 1;

  constructor(private readonly ext4: Ext4, private readonly shown: ShownOwner = {}) {
    this.mount = (ext4 as unknown as { mount: Mount }).mount;
  }

  private async node(ino: number): Promise<Node> {
    const n = await this.mount.iget(ino);
    if (n.inode.mode === 0) throw new FuseErrno('ESTALE', 'stale inode');
    return n;
  }

  private attr(n: Node): NodeAttr { return inodeAttr(n.ino, n.inode, this.mount.vol.geo.blockSize, 0, this.shown); }

  private entry(n: Node): { attr: NodeAttr; generation: number } { return { attr: this.attr(n), generation: n.inode.generation }; }

  private refuse(syscall: string): never {
    const e = posixError('EROFS', syscall);
    e.message = `${e.message} (${this.mount.readOnlyReason ?? 'mounted read-only'})`;
    throw e;
  }

  async lookup(parentIno: number, nameBytes: Uint8Array): Promise<{ attr: NodeAttr; generation: number } | undefined> {
    if (nameBytes.length > 255) throw posixError('ENAMETOOLONG', 'lookup');
    const dir = await this.node(parentIno);
    if (!isDirMode(dir.inode.mode)) throw posixError('ENOTDIR', 'lookup');
    const n = await this.mount.lookup(dir, nameBytes);
    return n ? this.entry(n) : undefined;
  }

  async forget(): Promise<void> { /* nothing pinned */ }
  async getattr(ino: number): Promise<NodeAttr> { return this.attr(await this.node(ino)); }
  async setattr(_ino: number, _ch: AttrChanges, _caller: Caller): Promise<NodeAttr> { return this.refuse('setattr'); }

  async readlink(ino: number): Promise<Uint8Array> {
    const n = await this.node(ino);
    if (!isSymlinkMode(n.inode.mode)) throw posixError('EINVAL', 'readlink');
    return this.mount.readlink(n);
  }

  async opendir(ino: number): Promise<number> {
    const n = await this.node(ino);
    if (!isDirMode(n.inode.mode)) throw posixError('ENOTDIR', 'opendir');
    const fh = this.nextFh++;
    this.dirs.set(fh, ino);
    return fh;
  }

  async readdir(fh: number, cookie: number, maxEntries: number): Promise<readonly DirListing[]> {
    const ino = this.dirs.get(fh);
    if (ino === undefined) throw posixError('EBADF', 'readdir');
    const page = await this.mount.readdirFrom(await this.node(ino), cookie, maxEntries);
    return page.entries.map((e) => ({ ino: e.ino, nameBytes: e.name, type: DT_OF_FT[e.fileType] ?? 0, cookie: e.cookie }));
  }

  async releasedir(fh: number): Promise<void> { this.dirs.delete(fh); }

  async lookupListed(_dirIno: number, e: DirListing): Promise<{ attr: NodeAttr; generation: number }> {
    return this.entry(await this.node(e.ino));
  }

  async open(ino: number, flags: number, _caller: Caller): Promise<number> {
    const n = await this.node(ino);
    if (isDirMode(n.inode.mode)) throw posixError('EISDIR', 'open');
    if ((flags & O_ACCMODE) !== 0) this.refuse('open');
    const fh = this.nextFh++;
    this.files.set(fh, n);
    return fh;
  }

  async create(): Promise<{ fh: number; attr: NodeAttr; generation: number }> { return this.refuse('open'); }

  private file(fh: number): Node {
    const n = this.files.get(fh);
    if (!n) throw posixError('EBADF', 'read');
    return n;
  }

  async read(fh: number, offset: number, lenBytes: number): Promise<Uint8Array> { return this.mount.read(this.file(fh), offset, lenBytes); }
  async write(): Promise<number> { return this.refuse('write'); }
  async flush(fh: number): Promise<void> { this.file(fh); }
  async release(fh: number): Promise<void> { this.files.delete(fh); }
  async fsync(): Promise<void> { /* nothing to write */ }
  async fallocate(_fh: number, _o: number, _l: number, _f: FallocateFlags, _c: Caller): Promise<void> { this.refuse('fallocate'); }

  async lseek(fh: number, offset: number, whence: number): Promise<number> {
    const n = this.file(fh);
    const size = n.inode.sizeBytes;
    if (whence !== SEEK_DATA && whence !== SEEK_HOLE) throw posixError('EINVAL', 'lseek');
    if (offset < 0 || offset >= size) throw new FuseErrno('ENXIO', 'offset beyond the end of the file');
    const bs = this.mount.vol.geo.blockSize;
    // Written extents are data; holes and unwritten extents read as zeros (holes).
    let pos = offset;
    for (const m of await this.mount.mappings(n)) {
      if (m.unwritten) continue;
      const start = m.fileBlock * bs;
      const end = (m.fileBlock + m.countBlocks) * bs;
      if (end <= pos) continue;
      if (whence === SEEK_DATA) return Math.max(pos, start);
      if (start > pos) return pos;
      pos = end;
      if (pos >= size) return size;
    }
    if (whence === SEEK_HOLE) return Math.min(pos, size);
    throw new FuseErrno('ENXIO', 'no data after offset');
  }

  async mkdir(): Promise<{ attr: NodeAttr; generation: number }> { return this.refuse('mkdir'); }
  async mknod(): Promise<{ attr: NodeAttr; generation: number }> { return this.refuse('mknod'); }
  async symlink(): Promise<{ attr: NodeAttr; generation: number }> { return this.refuse('symlink'); }
  async link(): Promise<{ attr: NodeAttr; generation: number }> { return this.refuse('link'); }
  async unlink(): Promise<void> { this.refuse('unlink'); }
  async rmdir(): Promise<void> { this.refuse('rmdir'); }
  async rename(): Promise<void> { this.refuse('rename'); }

  async statfs(): Promise<StatfsOut> {
    const s = await this.ext4.statfs();
    return { blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree, bsize: s.bsize, namelen: 255, frsize: s.bsize };
  }

  private async xattrNames(n: Node) {
    return (await this.mount.xattrs(n)).filter((x) => !(x.nameIndex === 7 && x.name === 'data'));
  }

  async getxattr(ino: number, name: string): Promise<Uint8Array> {
    if (name === INLINE_DATA_XATTR) throw posixError('ENODATA', 'getxattr');
    const e = (await this.xattrNames(await this.node(ino))).find((x) => x.fullName === name);
    if (!e) throw posixError('ENODATA', 'getxattr');
    return e.value;
  }

  async listxattr(ino: number): Promise<string[]> { return (await this.xattrNames(await this.node(ino))).map((x) => x.fullName); }
  async setxattr(): Promise<void> { this.refuse('setxattr'); }
  async removexattr(): Promise<void> { this.refuse('removexattr'); }

  async close(): Promise<void> {
    this.files.clear();
    this.dirs.clear();
    await this.ext4.close();
  }

  /** Nothing changes, so there is no accounting to check (tests call it on every mount). */
  async checkInvariants(): Promise<void> { /* read-only */ }
}
