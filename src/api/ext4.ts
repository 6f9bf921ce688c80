// The user seam: an fs/promises-like API over a mounted ext4 image, read-only or writable.
// Each method encodes its path once, walks it (fs/path-walk), makes one fs/ call, and gives
// errors Node's context (code, syscall, path).
import { type BlockDevice } from '../device/block-device.ts';
import { Ext4Error, posixError, corrupt } from '../errors/ext4-error.ts';
import { isDirMode, isSymlinkMode } from '../format/inode.ts';
import { decodeUtf8, encodeUtf8 } from '../util/bytes.ts';
import { mkfs as mkfsDevice, type MkfsOptions, type MkfsResult } from '../mkfs/mkfs.ts';
import type { Mapping } from '../mapping/read-map.ts';
import { Mount, type Node } from '../fs/mount.ts';
import type { Filesystem } from '../fs/filesystem.ts';
import type { Volume } from '../fs/volume.ts';
import type { JournalReport } from '../journal/replay/report.ts';
import type { OpenInode } from '../fs/inode-cache.ts';
import type { Credentials } from '../fs/ialloc.ts';
import { walk, walkParent, walkLinkTarget, lookupIn, type ParentOf, type WalkAt } from '../fs/path-walk.ts';
import * as namei from '../fs/namei.ts';
import { setattr, type SetAttr } from '../fs/attr.ts';
import { checkXattrName, checkXattrNameArg, setXattr, XATTR_SIZE_MAX_BYTES } from '../fs/xattr.ts';
import { truncate as truncateFile } from '../fs/file.ts';
import { statfsOf, volumeInfo } from '../fs/statfs.ts';
import { isDotOrDotDot, ROOT_INO } from '../fs/names.ts';
import { makeBigIntStats, makeDirent, makeStats } from './stats.ts';
import type {
  Ext4BigIntStats, Ext4Dirent, Ext4DirPage, Ext4FileHandle, Ext4Info, Ext4StatFs, Ext4Stats, OpenOptions, ReadFileOptions,
} from './types.ts';
import { parseOpenFlags, type OpenFlags, type ParsedFlags } from './open-flags.ts';
import { edgePath, joinBytes, trimSlashes, type EdgePath, type PathLike } from './paths.ts';
import { FileHandle, READ_FILE_LIMIT } from './file-handle.ts';
import { asyncDispose, throwIfAborted, toTs, type TimeLike } from './args.ts';

export type { PathLike } from './paths.ts';

/** readFile reads this much at a time when it has a signal to watch. */
const SIGNAL_CHUNK_BYTES = 8 << 20;

export class Ext4 {
  private nextFd = 3;
  private readonly cred: Credentials;
  /** Bits cleared from the mode of every file and directory created (default 0o022). */
  umask: number;
  /** The writable filesystem (tests look inside), or undefined on a read-only mount. */
  protected readonly fs: Filesystem | undefined;

  protected constructor(protected readonly mount: Mount, opts: OpenOptions) {
    this.cred = { uid: opts.uid ?? 0, gid: opts.gid ?? 0 };
    this.umask = (opts.umask ?? 0o022) & 0o777;
    this.fs = mount.fs;
  }

  /**
   * Opens an image on a block device (browser and Node; Node's entry also accepts a path).
   * Without `readOnly` the image is mounted writable when ext4kit can write it; otherwise it
   * opens read-only and `info().forcedReadOnly` says why (writes then fail with EROFS).
   */
  static async open(device: BlockDevice, opts: OpenOptions = {}): Promise<Ext4> {
    return new Ext4(await Mount.open(device, opts), opts);
  }

  /** Creates an empty filesystem on `device`. */
  static async mkfs(device: BlockDevice, options: MkfsOptions = {}): Promise<MkfsResult> {
    return mkfsDevice(device, options);
  }

  get readOnly(): boolean { return this.mount.readOnly; }

  /** The mounted volume (the FUSE backend looks inside). */
  protected get vol(): Volume { return this.mount.vol; }

  // ---- walking -------------------------------------------------------------------------------

  private async walk(path: PathLike, followLast: boolean, syscall: string): Promise<Node> {
    this.mount.checkOpen();
    const p = edgePath(path, syscall);
    return walk(this.mount, p.bytes, followLast, { syscall, path: p.shown });
  }

  private async parent(path: PathLike, syscall: string): Promise<ParentOf<Node> & { at: WalkAt; p: EdgePath }> {
    this.mount.checkOpen();
    const p = edgePath(path, syscall);
    const at = { syscall, path: p.shown };
    return { ...(await walkParent(this.mount, p.bytes, at)), at, p };
  }

  private rw(syscall: string, path?: PathLike): Filesystem {
    return this.mount.writable(syscall, path === undefined ? undefined : typeof path === 'string' ? path : decodeUtf8(path));
  }

  // ---- metadata ----------------------------------------------------------------------------

  async stat(path: PathLike): Promise<Ext4Stats>;
  async stat(path: PathLike, opts: { bigint: true }): Promise<Ext4BigIntStats>;
  async stat(path: PathLike, opts?: { bigint?: boolean }): Promise<Ext4Stats | Ext4BigIntStats>;
  async stat(path: PathLike, opts: { bigint?: boolean } = {}): Promise<Ext4Stats | Ext4BigIntStats> {
    return this.statOf(await this.walk(path, true, 'stat'), opts.bigint);
  }

  async lstat(path: PathLike): Promise<Ext4Stats>;
  async lstat(path: PathLike, opts: { bigint: true }): Promise<Ext4BigIntStats>;
  async lstat(path: PathLike, opts?: { bigint?: boolean }): Promise<Ext4Stats | Ext4BigIntStats>;
  async lstat(path: PathLike, opts: { bigint?: boolean } = {}): Promise<Ext4Stats | Ext4BigIntStats> {
    return this.statOf(await this.walk(path, false, 'lstat'), opts.bigint);
  }

  /** st_blocks counts delayed (reserved, not yet allocated) clusters as the kernel does. */
  private statOf(node: Node, bigint?: boolean): Ext4Stats | Ext4BigIntStats {
    const bs = this.mount.vol.geo.blockSize;
    const delayed = this.mount.delayedBlocks512(node);
    return bigint ? makeBigIntStats(node.ino, node.inode, bs, delayed) : makeStats(node.ino, node.inode, bs, delayed);
  }

  /**
   * Directory entries without '.' and '..'. `recursive` lists the whole subtree (paths relative
   * to `path`, parents before children, as node:fs does); `withFileTypes` gives Dirents.
   */
  async readdir(path: PathLike, opts?: { withFileTypes?: false; recursive?: boolean }): Promise<string[]>;
  async readdir(path: PathLike, opts: { withFileTypes: true; recursive?: boolean }): Promise<Ext4Dirent[]>;
  async readdir(path: PathLike, opts: { withFileTypes?: boolean; recursive?: boolean } = {}): Promise<string[] | Ext4Dirent[]> {
    const top = await this.walk(path, true, 'scandir');
    const shown = typeof path === 'string' ? path : decodeUtf8(path);
    if (!isDirMode(top.inode.mode)) throw posixError('ENOTDIR', 'scandir', shown);
    const names: string[] = [];
    const dirents: Ext4Dirent[] = [];
    const queue: Array<{ dir: Node; rel: string; parentPath: string }> = [{ dir: top, rel: '', parentPath: shown }];
    for (let q = 0; q < queue.length; q++) {
      const { dir, rel, parentPath } = queue[q]!;
      for (const e of await this.mount.list(dir)) {
        if (isDotOrDotDot(e.name)) continue;
        const name = decodeUtf8(e.name);
        const relName = rel ? `${rel}/${name}` : name;
        let isDir: boolean;
        if (opts.withFileTypes) {
          const d = this.mount.vol.filetype && e.fileType !== 0
            ? makeDirent(name, e.name, parentPath, e.ino, { fileType: e.fileType })
            : makeDirent(name, e.name, parentPath, e.ino, { mode: (await this.mount.iget(e.ino)).inode.mode });
          dirents.push(d);
          isDir = d.isDirectory();
        } else {
          names.push(relName);
          isDir = opts.recursive === true && (this.mount.vol.filetype && e.fileType !== 0 ? e.fileType === 2 : isDirMode((await this.mount.iget(e.ino)).inode.mode));
        }
        if (opts.recursive && isDir) {
          queue.push({ dir: await this.mount.iget(e.ino), rel: relName, parentPath: parentPath.endsWith('/') ? parentPath + name : `${parentPath}/${name}` });
        }
      }
    }
    return opts.withFileTypes ? dirents : names;
  }

  /**
   * Up to `maxEntries` entries of a directory after `cookie` (0 starts; '.' and '..' included,
   * as READDIR returns them). Each entry's cookie resumes after it, even after entries were
   * added or removed meanwhile: every entry present throughout is returned exactly once.
   */
  async readdirFrom(path: PathLike, cookie = 0, maxEntries = 1024): Promise<Ext4DirPage> {
    const dir = await this.walk(path, true, 'scandir');
    if (!isDirMode(dir.inode.mode)) throw posixError('ENOTDIR', 'scandir', typeof path === 'string' ? path : decodeUtf8(path));
    const page = await this.mount.readdirFrom(dir, cookie, maxEntries);
    return { entries: page.entries.map((e) => ({ name: decodeUtf8(e.name), nameBytes: e.name, ino: e.ino, fileType: e.fileType, cookie: e.cookie })), done: page.done };
  }

  async readlink(path: PathLike): Promise<string> {
    return decodeUtf8(await this.readlinkBytes(path));
  }

  async readlinkBytes(path: PathLike): Promise<Uint8Array> {
    const node = await this.walk(path, false, 'readlink');
    if (!isSymlinkMode(node.inode.mode)) throw posixError('EINVAL', 'readlink', typeof path === 'string' ? path : decodeUtf8(path));
    return this.mount.readlink(node);
  }

  /** The canonical absolute path, with every symlink resolved. */
  async realpath(path: string): Promise<string> {
    const target = await this.walk(path, true, 'realpath');
    if (!isDirMode(target.inode.mode)) {
      const trimmed = trimSlashes(path);
      const slash = trimmed.lastIndexOf('/');
      const parentReal = await this.realpath(slash <= 0 ? '/' : trimmed.slice(0, slash));
      const base = trimmed.slice(slash + 1);
      // The last component may itself have been a symlink to a file elsewhere.
      const direct = await this.walk(`${parentReal}/${base}`, false, 'realpath');
      if (direct.ino === target.ino) return parentReal === '/' ? `/${base}` : `${parentReal}/${base}`;
      const linkTarget = await this.readlink(`${parentReal}/${base}`);
      return this.realpath(linkTarget.startsWith('/') ? linkTarget : `${parentReal}/${linkTarget}`);
    }
    const parts: string[] = [];
    let cur = target;
    for (let depth = 0; cur.ino !== ROOT_INO; depth++) {
      if (depth > 4096) throw corrupt('dir-cycle', 'directory parent chain does not reach the root', { inode: cur.ino });
      const parent = await this.mount.lookup(cur, encodeUtf8('..'));
      if (!parent) throw corrupt('dir-no-dotdot', "directory has no '..' entry", { inode: cur.ino });
      const entry = (await this.mount.list(parent)).find((e) => e.ino === cur.ino && !isDotOrDotDot(e.name));
      if (!entry) throw corrupt('dir-orphan', `directory ${cur.ino} is not named in its parent`, { inode: cur.ino });
      parts.push(decodeUtf8(entry.name));
      cur = parent;
    }
    return '/' + parts.reverse().join('/');
  }

  async listxattr(path: PathLike): Promise<string[]> {
    const entries = await this.mount.xattrs(await this.walk(path, false, 'listxattr'));
    return entries.filter((e) => !(e.nameIndex === 7 && e.name === 'data')).map((e) => e.fullName);
  }

  async getxattr(path: PathLike, name: string): Promise<Uint8Array> {
    const shown = typeof path === 'string' ? path : decodeUtf8(path);
    checkXattrNameArg(name, 'getxattr', shown);
    const node = await this.walk(path, false, 'getxattr');
    checkXattrName(name, node.inode.mode, false, 'getxattr', shown);
    const e = (await this.mount.xattrs(node)).find((x) => x.fullName === name);
    if (!e) throw posixError('ENODATA', 'getxattr', typeof path === 'string' ? path : decodeUtf8(path));
    return e.value.slice();
  }

  // ---- file data --------------------------------------------------------------------------

  async readFile(path: PathLike, opts?: { signal?: AbortSignal; encoding?: null }): Promise<Uint8Array>;
  async readFile(path: PathLike, encoding: 'utf8' | 'utf-8' | { encoding: 'utf8' | 'utf-8'; signal?: AbortSignal }): Promise<string>;
  async readFile(path: PathLike, opts?: ReadFileOptions): Promise<Uint8Array | string> {
    const o = typeof opts === 'string' ? { encoding: opts } : opts ?? {};
    throwIfAborted(o.signal);
    const shown = typeof path === 'string' ? path : decodeUtf8(path);
    const node = await this.walk(path, true, 'open');
    if (isDirMode(node.inode.mode)) throw posixError('EISDIR', 'read', shown);
    const size = node.inode.sizeBytes;
    if (size > READ_FILE_LIMIT) throw posixError('EFBIG', 'read', shown);
    let bytes: Uint8Array;
    if (!o.signal || size <= SIGNAL_CHUNK_BYTES) bytes = await this.mount.read(node, 0, size);
    else {
      bytes = new Uint8Array(size);
      let got = 0;
      while (got < size) {
        throwIfAborted(o.signal);
        const piece = await this.mount.read(node, got, Math.min(SIGNAL_CHUNK_BYTES, size - got));
        if (piece.length === 0) break;
        bytes.set(piece, got);
        got += piece.length;
      }
      bytes = bytes.subarray(0, got);
    }
    throwIfAborted(o.signal);
    return o.encoding ? decodeUtf8(bytes) : bytes;
  }

  async open(path: PathLike, flags: OpenFlags = 'r', mode = 0o666): Promise<Ext4FileHandle> {
    const f = parseOpenFlags(flags);
    const shown = typeof path === 'string' ? path : decodeUtf8(path);
    if ((f.write || f.create || f.truncate) && this.mount.readOnly) throw this.rw('open', path);
    const node = await this.openNode(path, f, mode);
    if (isDirMode(node.inode.mode) && (f.write || f.truncate)) throw posixError('EISDIR', 'open', shown);
    // O_TRUNC frees blocks preallocated past EOF even when the size is already 0.
    if (f.truncate && f.write && (node.inode.sizeBytes > 0 || node.inode.blocks512 > 0)) await truncateFile(this.rw('open', path), node as OpenInode, 0);
    return new FileHandle(this.mount, node, f, this.nextFd++, shown, this.cred, (n) => this.statOf(n) as Ext4Stats);
  }

  /** The inode open() opens: created with O_CREAT (through a dangling symlink: its target), as open(2). */
  private async openNode(path: PathLike, f: ParsedFlags, mode: number): Promise<Node> {
    if (!f.create) return this.walk(path, true, 'open');
    const fs = this.rw('open', path);
    const { dir, name, trailingSlash, at } = await this.parent(path, 'open');
    let target = { dir, name, existing: await lookupIn(this.mount, dir, name) };
    if (target.existing && f.exclusive) throw posixError('EEXIST', 'open', at.path);
    if (target.existing && isSymlinkMode(target.existing.inode.mode)) target = await walkLinkTarget(this.mount, dir, target.existing, at);
    if (target.existing) {
      if (trailingSlash && !isDirMode(target.existing.inode.mode)) throw posixError('ENOTDIR', 'open', at.path);
      return target.existing;
    }
    if (trailingSlash) throw posixError('EISDIR', 'open', at.path);
    return namei.create(fs, target.dir as OpenInode, target.name, mode & ~this.umask, this.cred, { exclusive: f.exclusive }, at);
  }

  /** A web ReadableStream of the file's bytes (`end` inclusive, as in Node). */
  createReadStream(path: PathLike, opts: { start?: number; end?: number; highWaterMark?: number; signal?: AbortSignal } = {}): ReadableStream<Uint8Array> {
    const chunk = opts.highWaterMark ?? 1 << 20;
    let node: Node | undefined;
    let pos = opts.start ?? 0;
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        throwIfAborted(opts.signal);
        node ??= await this.walk(path, true, 'open');
        if (isDirMode(node.inode.mode)) throw posixError('EISDIR', 'read', typeof path === 'string' ? path : decodeUtf8(path));
        const end = Math.min(node.inode.sizeBytes, opts.end === undefined ? Infinity : opts.end + 1);
        if (pos >= end) { controller.close(); return; }
        const bytes = await this.mount.read(node, pos, Math.min(chunk, end - pos));
        pos += bytes.length;
        controller.enqueue(bytes);
      },
    }, { highWaterMark: 1 });
  }

  /** Block mappings of a file (for sparse copies and inspection). */
  async *mappings(path: PathLike): AsyncGenerator<Mapping> {
    const node = await this.walk(path, true, 'open');
    if (isDirMode(node.inode.mode)) throw posixError('EISDIR', 'open', typeof path === 'string' ? path : decodeUtf8(path));
    yield* await this.mount.mappings(node);
  }

  // ---- filesystem -------------------------------------------------------------------------

  async statfs(): Promise<Ext4StatFs> {
    this.mount.checkOpen();
    return statfsOf(this.mount.vol, this.fs ? this.fs.space.dirtyClusters : 0, this.fs?.space.resvPoolClusters);
  }

  info(): Ext4Info {
    this.mount.checkOpen();
    return { ...volumeInfo(this.mount.vol), journal: this.mount.journalReport };
  }

  /**
   * The journal: what recovery found and did at open, with the journal's summary and the
   * transactions in its log (read on demand for clean images opened read-only).
   */
  async journalInfo(): Promise<JournalReport | undefined> { return this.mount.describeJournal(); }

  async close(): Promise<void> { await this.mount.close(); }

  /** `await using fs = await Ext4.open(…)` closes the filesystem at the end of the scope. */
  async [asyncDispose](): Promise<void> { await this.close(); }

  // ---- writing ----------------------------------------------------------------------------

  async writeFile(path: PathLike, data: Uint8Array | string, opts: { mode?: number; flag?: OpenFlags; signal?: AbortSignal } = {}): Promise<void> {
    throwIfAborted(opts.signal);
    const fh = await this.open(path, opts.flag ?? 'w', opts.mode ?? 0o666);
    try { await fh.write(typeof data === 'string' ? encodeUtf8(data) : data, 0, undefined, parseOpenFlags(opts.flag ?? 'w').append ? null : 0); } finally { await fh.close(); }
  }

  /**
   * Creates `path` (EEXIST if it exists) with all of `data`, and its owner, mode and times, in
   * one call: the fast path for building images (mkfs -d and put use it). Unlike writeFile, the
   * blocks are allocated at once rather than delayed, one file after the other, and written
   * straight to the device. `data` may also arrive in pieces (an async iterable of chunks, for
   * files too large to hold in memory); each piece may be reused once the next is asked for.
   * The mode is taken as given (no umask), as a copy keeps its source's mode.
   */
  async importFile(path: PathLike, data: Uint8Array | AsyncIterable<Uint8Array>,
    opts: { mode?: number; uid?: number; gid?: number; atime?: TimeLike; mtime?: TimeLike; sparse?: boolean } = {}): Promise<void> {
    const fs = this.rw('open', path);
    const { dir, name, at } = await this.parent(path, 'open');
    const attrs = {
      mode: opts.mode ?? 0o644, uid: opts.uid, gid: opts.gid, sparse: opts.sparse,
      atime: opts.atime === undefined ? undefined : toTs(opts.atime),
      mtime: opts.mtime === undefined ? undefined : toTs(opts.mtime),
    };
    if (data instanceof Uint8Array) await fs.importer.file(dir as OpenInode, name, data, attrs, this.cred, at);
    else await fs.importer.stream(dir as OpenInode, name, data, attrs, this.cred, at, (oi) => fs.release(oi));
  }

  async appendFile(path: PathLike, data: Uint8Array | string, opts: { mode?: number } = {}): Promise<void> {
    const fh = await this.open(path, 'a', opts.mode ?? 0o666);
    try { await fh.write(typeof data === 'string' ? encodeUtf8(data) : data); } finally { await fh.close(); }
  }

  async mkdir(path: PathLike, opts: { recursive?: boolean; mode?: number } = {}): Promise<string | undefined> {
    const fs = this.rw('mkdir', path);
    const mode = (opts.mode ?? 0o777) & ~this.umask;
    if (!opts.recursive) {
      const { dir, name, at } = await this.parent(path, 'mkdir');
      await namei.mkdir(fs, dir as OpenInode, name, mode, this.cred, at);
      return undefined;
    }
    const p = edgePath(path, 'mkdir');
    const parts = p.shown.split('/').filter((c) => c && c !== '.');
    let cur = '';
    let first: string | undefined;
    for (const part of parts) {
      cur += '/' + part;
      try {
        const { dir, name, at } = await this.parent(cur, 'mkdir');
        await namei.mkdir(fs, dir as OpenInode, name, mode, this.cred, { ...at, path: p.shown });
        first ??= cur;
      } catch (e) {
        if (!(e instanceof Ext4Error && e.code === 'EEXIST')) throw e;
        if (!(await this.stat(cur)).isDirectory()) throw posixError('ENOTDIR', 'mkdir', p.shown);
      }
    }
    return first;
  }

  async rmdir(path: PathLike): Promise<void> {
    const fs = this.rw('rmdir', path);
    const { dir, name, at } = await this.parent(path, 'rmdir');
    if (dir.ino === ROOT_INO && name.length === 1 && name[0] === 0x2e && trimSlashes(at.path) === '/') throw posixError('EBUSY', 'rmdir', at.path);
    await namei.rmdir(fs, dir as OpenInode, name, at);
  }

  async unlink(path: PathLike): Promise<void> {
    const fs = this.rw('unlink', path);
    const { dir, name, trailingSlash, at } = await this.parent(path, 'unlink');
    if (trailingSlash) {
      const node = await lookupIn(this.mount, dir, name);
      if (node && !isDirMode(node.inode.mode)) throw posixError('ENOTDIR', 'unlink', at.path);
    }
    if (name.length === 1 && name[0] === 0x2e) throw posixError('EISDIR', 'unlink', at.path);
    await namei.unlink(fs, dir as OpenInode, name, at);
  }

  async rm(path: PathLike, opts: { recursive?: boolean; force?: boolean } = {}): Promise<void> {
    this.rw('rm', path);
    const p = edgePath(path, 'rm');
    let st: Ext4Stats;
    try { st = await this.lstat(p.bytes); } catch (e) {
      if (opts.force && e instanceof Ext4Error && e.code === 'ENOENT') return;
      throw e;
    }
    if (!st.isDirectory()) { await this.unlink(path); return; }
    if (!opts.recursive) throw posixError('EISDIR', 'rm', p.shown);
    for (const d of await this.readdir(p.bytes, { withFileTypes: true })) await this.rm(joinBytes(p.bytes, d.nameBytes), opts);
    await this.rmdir(path);
  }

  /** rename(2); `noReplace` and `exchange` are renameat2's RENAME_NOREPLACE and RENAME_EXCHANGE. */
  async rename(from: PathLike, to: PathLike, flags: namei.RenameFlags = {}): Promise<void> {
    const fs = this.rw('rename', from);
    const src = await this.parent(from, 'rename');
    const dst = await this.parent(to, 'rename');
    const at = { syscall: 'rename', path: src.at.path, dest: dst.at.path };
    if ((src.dir.ino === ROOT_INO && trimSlashes(src.at.path) === '/') || (dst.dir.ino === ROOT_INO && trimSlashes(dst.at.path) === '/')) throw posixError('EBUSY', 'rename', at.path, at.dest);
    await namei.rename(fs, src.dir as OpenInode, src.name, dst.dir as OpenInode, dst.name, flags, at);
  }

  async link(existing: PathLike, path: PathLike): Promise<void> {
    const fs = this.rw('link', path);
    const from = edgePath(existing, 'link');
    const to = edgePath(path, 'link');
    const at = { syscall: 'link', path: from.shown, dest: to.shown };
    // The source is looked up first, then the new name's directory, as the kernel's linkat.
    const src = await walk(this.mount, from.bytes, false, at);
    const { dir, name } = await walkParent(this.mount, to.bytes, at);
    await namei.link(fs, src as OpenInode, dir as OpenInode, name, at);
  }

  /**
   * mknod(2): `mode` holds the type (S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK, or S_IFREG for an empty
   * file) and permission bits (less the umask); `rdev` is the device number of a device, in
   * Linux's dev_t form as stat().rdev reports it (major << 8 | minor for small numbers).
   */
  async mknod(path: PathLike, mode: number, rdev = 0): Promise<void> {
    const fs = this.rw('mknod', path);
    if (!Number.isInteger(mode) || mode < 0 || mode > 0xffff) throw posixError('EINVAL', 'mknod', edgePath(path, 'mknod').shown);
    if (!Number.isInteger(rdev) || rdev < 0 || rdev > 0xffffffff) throw posixError('EINVAL', 'mknod', edgePath(path, 'mknod').shown);
    const { dir, name, at } = await this.parent(path, 'mknod');
    await namei.mknod(fs, dir as OpenInode, name, (mode & 0xf000) | (mode & 0o7777 & ~this.umask), rdev, this.cred, at);
  }

  async symlink(target: PathLike, path: PathLike): Promise<void> {
    const fs = this.rw('symlink', path);
    const t = edgePath(target, 'symlink');
    const { dir, name, p } = await this.parent(path, 'symlink');
    await namei.symlink(fs, dir as OpenInode, name, t.bytes, this.cred, { syscall: 'symlink', path: t.shown, dest: p.shown });
  }

  private async setattr(path: PathLike, follow: boolean, syscall: string, attr: SetAttr): Promise<void> {
    const fs = this.rw(syscall, path);
    await setattr(fs, await this.walk(path, follow, syscall) as OpenInode, attr);
  }

  async chmod(path: PathLike, mode: number): Promise<void> { await this.setattr(path, true, 'chmod', { mode }); }
  async chown(path: PathLike, uid: number, gid: number): Promise<void> { await this.setattr(path, true, 'chown', owner(uid, gid)); }
  async lchown(path: PathLike, uid: number, gid: number): Promise<void> { await this.setattr(path, false, 'lchown', owner(uid, gid)); }
  async utimes(path: PathLike, atime: TimeLike, mtime: TimeLike): Promise<void> {
    await this.setattr(path, true, 'utime', { atime: toTs(atime), mtime: toTs(mtime) });
  }
  async lutimes(path: PathLike, atime: TimeLike, mtime: TimeLike): Promise<void> {
    await this.setattr(path, false, 'lutime', { atime: toTs(atime), mtime: toTs(mtime) });
  }

  async truncate(path: PathLike, len = 0): Promise<void> {
    const fs = this.rw('truncate', path);
    await truncateFile(fs, await this.walk(path, true, 'truncate') as OpenInode, len);
  }

  async setxattr(path: PathLike, name: string, value: Uint8Array | string, flags: { create?: boolean; replace?: boolean } = {}): Promise<void> {
    await this.changeXattr(path, 'setxattr', name, typeof value === 'string' ? encodeUtf8(value) : value, flags);
  }
  async removexattr(path: PathLike, name: string): Promise<void> {
    await this.changeXattr(path, 'removexattr', name, undefined, {});
  }

  private async changeXattr(path: PathLike, syscall: string, name: string, value: Uint8Array | undefined, flags: { create?: boolean; replace?: boolean }): Promise<void> {
    const at = { syscall, path: typeof path === 'string' ? path : decodeUtf8(path) };
    // Argument checks come before the lookup, as the kernel's.
    checkXattrNameArg(name, syscall, at.path);
    if (value && value.length > XATTR_SIZE_MAX_BYTES) throw posixError('E2BIG', syscall, at.path);
    const fs = this.rw(syscall, path);
    const node = await this.walk(path, false, syscall);
    await setXattr(fs, node as OpenInode, () => this.mount.xattrs(node), name, value, flags, at);
  }

  /** Linux fallocate(2) on an open handle: mode flags KEEP_SIZE (1), PUNCH_HOLE (2), ZERO_RANGE (0x10). */
  async fallocate(fh: Ext4FileHandle, mode: Parameters<Ext4FileHandle['fallocate']>[0], offset: number, length: number): Promise<void> {
    if (typeof fh.fallocate !== 'function') throw posixError('EBADF', 'fallocate');
    await fh.fallocate(mode, offset, length);
  }

  /**
   * Sets quota block limits (bytes; 0 = none) for a user or group on a `quota` filesystem.
   * Writes past the hard limit, or past the soft limit after the grace period, fail with EDQUOT.
   */
  async setQuotaLimits(kind: 'user' | 'group', id: number, limits: { softBytes?: number; hardBytes?: number }): Promise<void> {
    await this.rw('quotactl').setQuotaLimits(kind, id, { softBytes: limits.softBytes ?? 0, hardBytes: limits.hardBytes ?? 0 });
  }

  /** Writes everything back and flushes the device; `durable: false` skips the flush (see fs/fsync). */
  async sync(opts: { durable?: boolean } = {}): Promise<void> { if (this.fs) await this.fs.sync(opts); }

  /** Runs one background writeback pass (what the flusher thread would do). */
  async writebackPass(): Promise<void> { if (this.fs) await this.fs.backgroundWritebackPass(); }

  /** Recomputes free/dirty/reserved clusters and quota from scratch; throws on any mismatch. */
  async checkInvariants(): Promise<void> { if (this.fs) await this.fs.checkInvariants(); }
}

function owner(uid: number, gid: number): SetAttr {
  return { owner: { ...(uid >= 0 ? { uid } : {}), ...(gid >= 0 ? { gid } : {}) } };
}

/** Kept for callers written before Ext4FileHandle carried the writing methods. */
export type Ext4WritableHandle = Ext4FileHandle;
