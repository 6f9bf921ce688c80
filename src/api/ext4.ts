// The user seam: an fs/promises-like API over a mounted ext4 image (read side).
// Errors carry Node-style codes, syscall and path.
import { type BlockDevice } from '../device/block-device.ts';
import { Ext4Error, posixError, corrupt, type Ext4ErrorCode } from '../errors/ext4-error.ts';
import { CoalescingDevice } from '../device/coalescing-device.ts';
import { Volume } from '../fs/volume.ts';
import { recoverJournal } from '../journal/replay/recover.ts';
import type { JournalReport } from '../journal/replay/report.ts';
import { Filesystem, writeBlocker, type OpenInode, type Credentials } from '../fs/filesystem.ts';
import { InodeData } from '../fs/file-data.ts';
import { checkXattrName, checkXattrNameArg, readXattrs } from '../fs/xattrs.ts';
import { listDirectory, lookupName, type DirSource, type RawDirEntry } from '../dir/dir-read.ts';
import { isDirMode, isSymlinkMode, S_IFMT, S_IFDIR, type Inode } from '../format/inode.ts';
import { INCOMPAT, COMPAT, RO_COMPAT, allFeatureNames } from '../format/features.ts';
import { featureSet } from '../format/superblock.ts';
import { groupSuperAndGdtBlocks } from '../layout/geometry.ts';
import { decodeUtf8, encodeUtf8, uuidToString } from '../util/bytes.ts';
import { mkfs as mkfsDevice, type MkfsOptions, type MkfsResult } from '../mkfs/mkfs.ts';
import { makeDirent, makeStats } from './stats.ts';
import type { Ext4Dirent, Ext4FileHandle, Ext4Info, Ext4StatFs, Ext4Stats, OpenOptions, ReadResult, WriteResult, FallocateMode } from './types.ts';
import { parseOpenFlags, type OpenFlags } from './open-flags.ts';
import type { Mapping } from '../mapping/read-map.ts';

const ROOT_INO = 2;
const MAX_SYMLINK_FOLLOWS = 40;
const READ_FILE_LIMIT = 0x7fffffff;

interface Resolved { ino: number; inode: Inode }

export class Ext4 {
  private nextFd = 3;
  private closed = false;
  /** Read-only mounts: directory listings seen by readdir answer later lookups (dir inode → name key → inode). */
  private readonly listed = new Map<number, Map<string, number>>();
  private listedEntries = 0;
  /** Read-only mounts: directory blocks whose checksums were verified once. */
  private readonly verifiedBlocks = new Set<number>();
  private readonly cred: Credentials;
  /** What journal recovery found and did at open. */
  private journalReport: JournalReport | undefined;
  protected constructor(protected readonly vol: Volume, protected readonly fs: Filesystem | undefined, opts: OpenOptions) {
    this.cred = { uid: opts.uid ?? 0, gid: opts.gid ?? 0 };
  }

  /**
   * Opens an image on a block device (browser and Node; Node's entry also accepts a path).
   * Without `readOnly` the image is mounted writable when ext4kit can write it; otherwise it
   * opens read-only and `info().forcedReadOnly` says why (writes then fail with EROFS).
   */
  static async open(device: BlockDevice, opts: OpenOptions = {}): Promise<Ext4> {
    // Writable mounts coalesce appending device writes (thousands of small files imported one
    // after another become one write per MiB); the wrapper is transparent to reads.
    // Journal replay (journal.md §2): a read-only open gets an in-memory overlay, a writable one
    // replays to the image. `recovered.device` replaces `device` from here on.
    const recovered = await recoverJournal(device, { mode: opts.readOnly || device.readOnly ? 'overlay' : 'write' });
    const vol = await Volume.open(opts.readOnly ? recovered.device : new CoalescingDevice(recovered.device), opts);
    const fs = vol.readOnly || writeBlocker(vol) ? undefined : await Filesystem.mount(vol, opts.journal ? { journal: opts.journal } : {});
    if (fs && recovered.report.orphansPending) {
      // After a replay, the orphans the crash left are released as a kernel mount would.
      recovered.report.orphansReleased = await fs.releaseOrphanList();
      recovered.report.orphansPending = false;
    }
    const ext4 = new Ext4(vol, fs, opts);
    ext4.journalReport = recovered.report;
    return ext4;
  }

  /** Creates an empty filesystem on `device`. */
  static async mkfs(device: BlockDevice, options: MkfsOptions = {}): Promise<MkfsResult> {
    return mkfsDevice(device, options);
  }

  get readOnly(): boolean { return this.fs === undefined; }

  /** The writable filesystem, or EROFS naming why there is none. */
  private rw(syscall: string, path?: string): Filesystem {
    if (this.closed) throw new Ext4Error('EBADF', 'filesystem is closed');
    if (!this.fs) {
      const e = posixError('EROFS', syscall, path);
      const why = this.vol.readOnly && !this.vol.forcedReadOnly ? 'opened read-only' : (writeBlocker(this.vol) ?? 'opened read-only');
      e.message = `${e.message} (${why})`;
      throw e;
    }
    return this.fs;
  }

  // ---- path resolution ------------------------------------------------------------------

  private dirSource(ino: number, inode: Inode): DirSource {
    return this.vol.dirSource(ino, inode, this.fs
      ? { isDirty: (b: number) => this.fs!.journal.isDirty(b) }
      : { verified: this.verifiedBlocks });
  }

  private async loadInode(ino: number, where: string): Promise<Inode> {
    // A writable mount's in-memory inodes are newer than the inode table until commit.
    const inode = this.fs ? (await this.fs.getInode(ino)).inode : await this.vol.readInode(ino);
    if (inode.linksCount === 0 && inode.mode === 0) {
      throw corrupt('dirent-unused-inode', `directory entry '${where}' points to unused inode ${ino}`, { inode: ino });
    }
    return inode;
  }

  /**
   * Path lookup. Paths are strings (UTF-8) or raw bytes (Uint8Array), as in node:fs: names on
   * disk need not be UTF-8, and byte paths reach every entry readdir's `nameBytes` shows.
   */
  private async resolve(pathIn: PathLike, followLast: boolean, syscall: string): Promise<Resolved> {
    this.checkOpen();
    const bytes = pathBytes(pathIn, syscall);
    const path = typeof pathIn === 'string' ? pathIn : decodeUtf8(bytes);
    const fail = (code: Ext4ErrorCode) => posixError(code, syscall, path);
    const stack = splitBytes(bytes).reverse();
    let cur: Resolved = { ino: ROOT_INO, inode: await this.loadInode(ROOT_INO, '/') };
    let follows = 0;
    while (stack.length) {
      const nameBytes = stack.pop()!;
      if (!isDirMode(cur.inode.mode)) throw fail('ENOTDIR');
      if (nameBytes.length > 255) throw fail('ENAMETOOLONG');
      const childIno = await this.lookupChild(cur, nameBytes);
      if (childIno === undefined) throw fail('ENOENT');
      const next: Resolved = { ino: childIno, inode: await this.loadInode(childIno, decodeUtf8(nameBytes)) };
      if (isSymlinkMode(next.inode.mode) && (stack.length > 0 || followLast)) {
        if (++follows > MAX_SYMLINK_FOLLOWS) throw fail('ELOOP');
        const target = await this.symlinkTargetOf(next);
        for (const c of splitBytes(target).reverse()) stack.push(c);
        if (target[0] === 0x2f) cur = { ino: ROOT_INO, inode: await this.loadInode(ROOT_INO, '/') };
        continue;
      }
      cur = next;
    }
    return cur;
  }

  private async lookupChild(dir: Resolved, nameBytes: Uint8Array): Promise<number | undefined> {
    const listing = this.fs ? undefined : this.listed.get(dir.ino);
    if (listing) return listing.get(nameKey(nameBytes));
    return (await lookupName(this.dirSource(dir.ino, dir.inode), nameBytes))?.ino;
  }

  private remember(dirIno: number, entries: readonly RawDirEntry[]): void {
    if (this.fs) return;
    if (this.listedEntries > 1 << 20) { this.listed.clear(); this.listedEntries = 0; }
    const m = new Map<string, number>();
    for (const e of entries) m.set(nameKey(e.name), e.ino);
    this.listed.set(dirIno, m);
    this.listedEntries += m.size;
  }

  private async symlinkTargetOf(r: Resolved): Promise<Uint8Array> {
    return new InodeData(this.vol, r.ino, r.inode).symlinkTarget();
  }

  private checkOpen(): void {
    if (this.closed) throw new Ext4Error('EBADF', 'filesystem is closed');
  }

  // ---- metadata ---------------------------------------------------------------------------

  async stat(path: PathLike): Promise<Ext4Stats> {
    return this.statOf(await this.resolve(path, true, 'stat'));
  }

  async lstat(path: PathLike): Promise<Ext4Stats> {
    return this.statOf(await this.resolve(path, false, 'lstat'));
  }

  /** st_blocks counts delayed (reserved, not yet allocated) clusters as the kernel does. */
  private async statOf(r: Resolved): Promise<Ext4Stats> {
    if (!this.fs) return makeStats(r.ino, r.inode, this.vol.geo.blockSize);
    const oi = await this.fs.getInode(r.ino);
    const delayed512 = oi.state.reservation.reservedClusters * this.vol.geo.clusterSize / 512;
    return makeStats(r.ino, oi.inode, this.vol.geo.blockSize, delayed512);
  }

  async readdir(path: PathLike): Promise<string[]>;
  async readdir(path: PathLike, opts: { withFileTypes: true }): Promise<Ext4Dirent[]>;
  async readdir(pathIn: PathLike, opts: { withFileTypes?: boolean } = {}): Promise<string[] | Ext4Dirent[]> {
    const r = await this.resolve(pathIn, true, 'scandir');
    const path = typeof pathIn === 'string' ? pathIn : decodeUtf8(pathIn);
    if (!isDirMode(r.inode.mode)) throw posixError('ENOTDIR', 'scandir', path);
    const all: RawDirEntry[] = [];
    for await (const e of listDirectory(this.dirSource(r.ino, r.inode))) all.push(e);
    this.remember(r.ino, all);
    const raw = all.filter((e) => !isDotOrDotDot(e.name));
    if (!opts.withFileTypes) return raw.map((e) => decodeUtf8(e.name));
    const out: Ext4Dirent[] = [];
    for (const e of raw) {
      const name = decodeUtf8(e.name);
      if (this.vol.filetype && e.fileType !== 0) out.push(makeDirent(name, e.name, path, e.ino, { fileType: e.fileType }));
      else out.push(makeDirent(name, e.name, path, e.ino, { mode: (await this.loadInode(e.ino, name)).mode }));
    }
    return out;
  }

  async readlink(path: PathLike): Promise<string> {
    return decodeUtf8(await this.readlinkBytes(path));
  }

  async readlinkBytes(path: PathLike): Promise<Uint8Array> {
    const r = await this.resolve(path, false, 'readlink');
    if (!isSymlinkMode(r.inode.mode)) throw posixError('EINVAL', 'readlink', showPath(path));
    return new InodeData(this.vol, r.ino, r.inode).symlinkTarget();
  }

  /** The canonical absolute path, with every symlink resolved. */
  async realpath(path: string): Promise<string> {
    const target = await this.resolve(path, true, 'realpath');
    // Walk up through '..' entries naming each directory in its parent.
    if (!isDirMode(target.inode.mode)) {
      const slash = path.replace(/\/+$/, '').lastIndexOf('/');
      const parentReal = await this.realpath(slash <= 0 ? '/' : path.slice(0, slash));
      const base = path.replace(/\/+$/, '').slice(slash + 1);
      // The last component may itself have been a symlink to a file elsewhere.
      const direct = await this.resolve(`${parentReal}/${base}`, false, 'realpath');
      if (direct.ino === target.ino) return parentReal === '/' ? `/${base}` : `${parentReal}/${base}`;
      const linkTarget = await this.readlink(`${parentReal}/${base}`);
      return this.realpath(linkTarget.startsWith('/') ? linkTarget : `${parentReal}/${linkTarget}`);
    }
    const parts: string[] = [];
    let cur = target;
    for (let depth = 0; cur.ino !== ROOT_INO; depth++) {
      if (depth > 4096) throw corrupt('dir-cycle', 'directory parent chain does not reach the root', { inode: cur.ino });
      const parentEntry = await lookupName(this.dirSource(cur.ino, cur.inode), encodeUtf8('..'));
      if (!parentEntry) throw corrupt('dir-no-dotdot', "directory has no '..' entry", { inode: cur.ino });
      const parent = { ino: parentEntry.ino, inode: await this.loadInode(parentEntry.ino, '..') };
      let name: string | undefined;
      for await (const e of listDirectory(this.dirSource(parent.ino, parent.inode))) {
        if (e.ino === cur.ino && !isDotOrDotDot(e.name)) { name = decodeUtf8(e.name); break; }
      }
      if (name === undefined) throw corrupt('dir-orphan', `directory ${cur.ino} is not named in its parent`, { inode: cur.ino });
      parts.push(name);
      cur = parent;
    }
    return '/' + parts.reverse().join('/');
  }

  async listxattr(path: PathLike): Promise<string[]> {
    const r = await this.resolve(path, false, 'listxattr');
    const entries = await readXattrs(this.vol, r.ino, r.inode, this.readInodeBytes);
    return entries.filter((e) => !(e.nameIndex === 7 && e.name === 'data')).map((e) => e.fullName);
  }

  async getxattr(path: PathLike, name: string): Promise<Uint8Array> {
    checkXattrNameArg(name, 'getxattr', showPath(path));
    const r = await this.resolve(path, false, 'getxattr');
    checkXattrName(name, r.inode.mode, false, 'getxattr', showPath(path));
    const e = (await readXattrs(this.vol, r.ino, r.inode, this.readInodeBytes)).find((x) => x.fullName === name);
    if (!e) throw posixError('ENODATA', 'getxattr', showPath(path));
    return e.value.slice();
  }

  private readInodeBytes = async (ino: number, inode: Inode, maxBytes: number): Promise<Uint8Array> =>
    new InodeData(this.vol, ino, inode).read(0, Math.min(maxBytes, inode.sizeBytes));

  // ---- file data --------------------------------------------------------------------------

  private async openData(path: PathLike, syscall: string): Promise<InodeData> {
    const r = await this.resolve(path, true, syscall);
    if ((r.inode.mode & S_IFMT) === S_IFDIR) throw posixError('EISDIR', syscall, typeof path === 'string' ? path : decodeUtf8(path));
    return new InodeData(this.vol, r.ino, r.inode);
  }

  async readFile(path: PathLike): Promise<Uint8Array>;
  async readFile(path: PathLike, encoding: 'utf8' | 'utf-8' | { encoding: 'utf8' | 'utf-8' }): Promise<string>;
  async readFile(path: PathLike, encoding?: 'utf8' | 'utf-8' | { encoding: 'utf8' | 'utf-8' }): Promise<Uint8Array | string> {
    if (this.fs && typeof path === 'string') {
      const oi = await this.fs.resolve(path, true, 'open');
      if (isDirMode(oi.inode.mode)) throw posixError('EISDIR', 'read', path);
      if (oi.inode.sizeBytes > READ_FILE_LIMIT) throw posixError('EFBIG', 'read', path);
      const bytes = await this.fs.read(oi, 0, oi.inode.sizeBytes);
      return encoding === undefined ? bytes : decodeUtf8(bytes);
    }
    const data = await this.openData(path, 'open');
    if (data.sizeBytes > READ_FILE_LIMIT) throw posixError('EFBIG', 'read', typeof path === 'string' ? path : decodeUtf8(path));
    const bytes = await data.read(0, data.sizeBytes);
    return encoding === undefined ? bytes : decodeUtf8(bytes);
  }

  async open(path: string, flags: OpenFlags = 'r', mode = 0o666): Promise<Ext4FileHandle> {
    const f = parseOpenFlags(flags);
    if (this.fs) return this.openWritable(path, f, mode);
    if (f.write || f.create || f.truncate) throw this.rw('open', path);
    const data = await this.openData(path, 'open');
    const fd = this.nextFd++;
    let position = 0;
    let open = true;
    const statOf = () => makeStats(data.ino, data.inode, this.vol.geo.blockSize);
    const check = () => { if (!open || this.closed) throw posixError('EBADF', 'read', path); };
    return {
      fd,
      read: async (buffer: Uint8Array, offset = 0, length = buffer.length - offset, pos: number | null = null): Promise<ReadResult> => {
        check();
        if (offset < 0 || length < 0 || offset + length > buffer.length) throw posixError('EINVAL', 'read', path);
        const at = pos ?? position;
        const bytes = await data.read(at, length);
        buffer.set(bytes, offset);
        if (pos === null || pos === undefined) position += bytes.length;
        return { bytesRead: bytes.length, buffer };
      },
      readFile: async () => {
        check();
        if (data.sizeBytes > READ_FILE_LIMIT) throw posixError('EFBIG', 'read', path);
        return data.read(0, data.sizeBytes);
      },
      stat: async () => { check(); return statOf(); },
      close: async () => { open = false; },
      write: async () => { check(); throw posixError('EBADF', 'write', path); },
      truncate: async () => { check(); throw posixError('EBADF', 'ftruncate', path); },
      sync: async () => { check(); },
      datasync: async () => { check(); },
      fallocate: async () => { check(); throw posixError('EBADF', 'fallocate', path); },
    };
  }

  /** A web ReadableStream of the file's bytes (`end` inclusive, as in Node). */
  createReadStream(path: string, opts: { start?: number; end?: number; highWaterMark?: number } = {}): ReadableStream<Uint8Array> {
    const chunk = opts.highWaterMark ?? 1 << 20;
    let data: InodeData | undefined;
    let pos = opts.start ?? 0;
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        if (this.fs) {
          const oi = await this.fs.resolve(path, true, 'open');
          const end = Math.min(oi.inode.sizeBytes, opts.end === undefined ? Infinity : opts.end + 1);
          if (pos >= end) { controller.close(); return; }
          const bytes = await this.fs.read(oi, pos, Math.min(chunk, end - pos));
          pos += bytes.length;
          controller.enqueue(bytes);
          return;
        }
        data ??= await this.openData(path, 'open');
        const end = Math.min(data.sizeBytes, opts.end === undefined ? Infinity : opts.end + 1);
        if (pos >= end) { controller.close(); return; }
        const bytes = await data.read(pos, Math.min(chunk, end - pos));
        pos += bytes.length;
        controller.enqueue(bytes);
      },
    }, { highWaterMark: 1 });
  }

  /** Block mappings of a file (for sparse copies and inspection). */
  async *mappings(path: PathLike): AsyncGenerator<Mapping> {
    const data = await this.openData(path, 'open');
    yield* await data.mappings();
  }

  // ---- filesystem -------------------------------------------------------------------------

  async statfs(): Promise<Ext4StatFs> {
    this.checkOpen();
    const { geo, groups, sb } = this.vol;
    const R = geo.clusterRatio;
    const freeClusters = groups.reduce((n, g) => n + g.freeBlocksCount, 0);
    const freeInodes = groups.reduce((n, g) => n + g.freeInodesCount, 0);
    let overheadBlocks = 0;
    for (let g = 0; g < geo.groupCount; g++) {
      const { superBlocks, gdtBlocks, reservedGdt } = groupSuperAndGdtBlocks(geo, g);
      overheadBlocks += superBlocks + gdtBlocks + reservedGdt + 2 + geo.inodeTableBlocks;
    }
    if (sb.featureCompat & COMPAT.has_journal && sb.journalInum) {
      overheadBlocks += Math.floor((sb.jnlBlocks[15]! * 2 ** 32 + sb.jnlBlocks[16]!) / geo.blockSize);
    }
    const dirty = this.fs ? this.fs.space.dirtyClusters : 0;
    const bfree = (freeClusters - dirty) * R;
    // As the kernel: the reserved pool kept for metadata (2 % of clusters, at most 4096) is not available either.
    const resvPoolBlocks = (this.fs ? this.fs.space.resvPoolClusters : Math.min(Math.floor(geo.clustersCount / 50), 4096)) * R;
    return {
      type: 0xef53, bsize: geo.blockSize, blocks: geo.blocksCount - geo.firstDataBlock - overheadBlocks,
      bfree, bavail: Math.max(0, bfree - sb.rBlocksCount - resvPoolBlocks), files: geo.inodesCount, ffree: freeInodes,
    };
  }

  info(): Ext4Info {
    this.checkOpen();
    const { sb, geo, groups } = this.vol;
    const date = (s: number) => new Date(s * 1000);
    const hashNames = ['legacy', 'half_md4', 'tea', 'legacy_unsigned', 'half_md4_unsigned', 'tea_unsigned', 'siphash'];
    const seedBytes = new Uint8Array(16);
    sb.hashSeed.forEach((w, i) => { seedBytes[4 * i] = w & 0xff; seedBytes[4 * i + 1] = (w >>> 8) & 0xff; seedBytes[4 * i + 2] = (w >>> 16) & 0xff; seedBytes[4 * i + 3] = w >>> 24; });
    return {
      label: sb.volumeName, uuid: uuidToString(sb.uuid),
      state: sb.state & 2 ? 'with errors' : sb.state & 1 ? 'clean' : 'not clean',
      features: allFeatureNames(featureSet(sb)),
      blockSize: geo.blockSize, clusterSize: geo.clusterSize, blocksCount: geo.blocksCount,
      freeBlocks: groups.reduce((n, g) => n + g.freeBlocksCount, 0) * geo.clusterRatio,
      reservedBlocks: sb.rBlocksCount, inodesCount: geo.inodesCount,
      freeInodes: groups.reduce((n, g) => n + g.freeInodesCount, 0), inodeSize: geo.inodeSize,
      groupCount: geo.groupCount, blocksPerGroup: geo.blocksPerGroup, clustersPerGroup: geo.clustersPerGroup,
      inodesPerGroup: geo.inodesPerGroup, firstDataBlock: geo.firstDataBlock, reservedGdtBlocks: geo.reservedGdtBlocks,
      flexBgSize: geo.flexBgSize, descSize: geo.descSize, hashSeed: uuidToString(seedBytes),
      defaultHashVersion: hashNames[sb.defHashVersion] ?? `unknown (${sb.defHashVersion})`,
      checksumType: sb.featureRoCompat & RO_COMPAT.metadata_csum ? 'crc32c' : undefined,
      checksumSeed: sb.featureRoCompat & RO_COMPAT.metadata_csum ? geo.csumSeed : undefined,
      journalInode: sb.featureCompat & COMPAT.has_journal ? sb.journalInum : 0,
      orphanFileInode: sb.featureCompat & COMPAT.orphan_file ? sb.orphanFileInum : 0,
      created: date(sb.mkfsTime), lastWritten: date(sb.wtime), lastMounted: sb.mtime ? date(sb.mtime) : undefined,
      mountCount: sb.mntCount, forcedReadOnly: this.vol.forcedReadOnly, readOnly: this.vol.readOnly,
      journal: this.journalReport,
    };
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

  // ---- writing ----------------------------------------------------------------------------

  private async openWritable(path: string, f: ReturnType<typeof parseOpenFlags>, mode: number): Promise<Ext4FileHandle> {
    const fs = this.rw('open', path);
    let oi: OpenInode;
    if (f.create) oi = await fs.create(path, mode, this.cred, { exclusive: f.exclusive });
    else oi = await fs.resolve(path, true, 'open');
    if (isDirMode(oi.inode.mode) && (f.write || f.truncate)) throw posixError('EISDIR', 'open', path);
    if (f.truncate && f.write && oi.inode.sizeBytes > 0) await fs.truncate(oi, 0);
    oi.refs++;
    const fd = this.nextFd++;
    // O_APPEND starts at 0 like any open: only writes go to the end ('a+' reads from the start).
    let position = 0;
    let open = true;
    const check = (syscall: string) => { if (!open || this.closed) throw posixError('EBADF', syscall, path); };
    const handle: Ext4WritableHandle = {
      fd,
      read: async (buffer: Uint8Array, offset = 0, length = buffer.length - offset, pos: number | null = null): Promise<ReadResult> => {
        check('read');
        if (!f.read) throw posixError('EBADF', 'read', path);
        if (offset < 0 || length < 0 || offset + length > buffer.length) throw posixError('EINVAL', 'read', path);
        const at = pos ?? position;
        const bytes = await fs.read(oi, at, length);
        buffer.set(bytes, offset);
        if (pos === null || pos === undefined) position += bytes.length;
        return { bytesRead: bytes.length, buffer };
      },
      readFile: async () => { check('read'); return fs.read(oi, 0, oi.inode.sizeBytes); },
      write: async (data: Uint8Array | string, offset?: number, length?: number, pos: number | null = null): Promise<WriteResult> => {
        check('write');
        if (!f.write) throw posixError('EBADF', 'write', path);
        const bytes = typeof data === 'string' ? encodeUtf8(data) : data.subarray(offset ?? 0, (offset ?? 0) + (length ?? data.length - (offset ?? 0)));
        // pwrite never moves the position, even with O_APPEND (it then writes at the end).
        const moves = pos === null || pos === undefined;
        // The offset is chosen under the inode lock when the write runs (O_APPEND: the size then).
        const n = await fs.write(oi, (size) => {
          const at = f.append ? size : pos ?? position;
          if (moves) position = at + bytes.length;
          return at;
        }, bytes, this.cred);
        return { bytesWritten: n, buffer: bytes };
      },
      truncate: async (len = 0) => { check('ftruncate'); if (!f.write) throw posixError('EINVAL', 'ftruncate', path); await fs.truncate(oi, len); },
      sync: async () => { check('fsync'); await fs.fsync(oi); },
      datasync: async () => { check('fdatasync'); await fs.fsync(oi); },
      stat: async () => { check('fstat'); return this.statOf({ ino: oi.ino, inode: oi.inode }); },
      fallocate: async (m: FallocateMode | number, off: number, len: number) => {
        check('fallocate');
        if (!f.write) throw posixError('EBADF', 'fallocate', path);
        await fs.fallocate(oi, fallocateMode(m), off, len, this.cred);
      },
      close: async () => {
        if (!open) return;
        open = false;
        await fs.release(oi);
      },
    };
    return handle;
  }

  async writeFile(path: string, data: Uint8Array | string, opts: { mode?: number; flag?: OpenFlags } = {}): Promise<void> {
    const fh = await this.open(path, opts.flag ?? 'w', opts.mode ?? 0o666) as Ext4WritableHandle;
    try { await fh.write(typeof data === 'string' ? encodeUtf8(data) : data, 0, undefined, 0); } finally { await fh.close(); }
  }

  /**
   * Creates `path` (EEXIST if it exists) with all of `data`, and its owner, mode and times, in
   * one call: the fast path for building images (mkfs -d and put use it). Unlike writeFile, the
   * blocks are allocated at once rather than delayed, one file after the other, and written
   * straight to the device. `data` may also arrive in pieces (an async iterable of chunks, for
   * files too large to hold in memory); each piece may be reused once the next is asked for.
   */
  async importFile(path: string, data: Uint8Array | AsyncIterable<Uint8Array>,
    opts: { mode?: number; uid?: number; gid?: number; atime?: TimeLike; mtime?: TimeLike; sparse?: boolean } = {}): Promise<void> {
    const fs = this.rw('open', path);
    const attrs = {
      mode: opts.mode ?? 0o644, uid: opts.uid, gid: opts.gid, sparse: opts.sparse,
      atime: opts.atime === undefined ? undefined : toTs(opts.atime),
      mtime: opts.mtime === undefined ? undefined : toTs(opts.mtime),
    };
    if (data instanceof Uint8Array) await fs.importFile(path, data, attrs, this.cred);
    else await fs.importStream(path, data, attrs, this.cred);
  }

  async appendFile(path: string, data: Uint8Array | string, opts: { mode?: number } = {}): Promise<void> {
    const fh = await this.open(path, 'a', opts.mode ?? 0o666) as Ext4WritableHandle;
    try { await fh.write(typeof data === 'string' ? encodeUtf8(data) : data); } finally { await fh.close(); }
  }

  async mkdir(path: string, opts: { recursive?: boolean; mode?: number } = {}): Promise<string | undefined> {
    const fs = this.rw('mkdir', path);
    const mode = opts.mode ?? 0o777;
    if (!opts.recursive) { await fs.mkdir(path, mode, this.cred); return undefined; }
    const parts = path.split('/').filter((c) => c && c !== '.');
    let cur = '';
    let first: string | undefined;
    for (const p of parts) {
      cur += '/' + p;
      try {
        await fs.mkdir(cur, mode, this.cred);
        first ??= cur;
      } catch (e) {
        if (!(e instanceof Ext4Error && e.code === 'EEXIST')) throw e;
        if (!(await this.stat(cur)).isDirectory()) throw posixError('ENOTDIR', 'mkdir', path);
      }
    }
    return first;
  }

  async rmdir(path: string): Promise<void> { await this.rw('rmdir', path).rmdir(path); }
  async unlink(path: string): Promise<void> { await this.rw('unlink', path).unlink(path); }

  async rm(path: string, opts: { recursive?: boolean; force?: boolean } = {}): Promise<void> {
    const fs = this.rw('rm', path);
    let st: Ext4Stats;
    try { st = await this.lstat(path); } catch (e) {
      if (opts.force && e instanceof Ext4Error && e.code === 'ENOENT') return;
      throw e;
    }
    if (!st.isDirectory()) { await fs.unlink(path); return; }
    if (!opts.recursive) throw posixError('EISDIR', 'rm', path);
    for (const name of await this.readdir(path)) await this.rm(`${path.replace(/\/+$/, '')}/${name}`, opts);
    await fs.rmdir(path);
  }

  async rename(from: string, to: string): Promise<void> { await this.rw('rename', from).rename(from, to); }
  async link(existing: string, path: string): Promise<void> { await this.rw('link', path).link(existing, path); }
  async symlink(target: string, path: string): Promise<void> { await this.rw('symlink', path).symlink(target, path, this.cred); }

  async chmod(path: string, mode: number): Promise<void> {
    await this.rw('chmod', path).setAttr(path, true, (i) => { i.mode = (i.mode & S_IFMT) | (mode & 0o7777); }, 'chmod');
  }
  async chown(path: string, uid: number, gid: number): Promise<void> {
    await this.rw('chown', path).setAttr(path, true, (i) => setOwner(i, uid, gid), 'chown');
  }
  async lchown(path: string, uid: number, gid: number): Promise<void> {
    await this.rw('lchown', path).setAttr(path, false, (i) => setOwner(i, uid, gid), 'lchown');
  }
  async utimes(path: string, atime: TimeLike, mtime: TimeLike): Promise<void> {
    const inodeSize = this.vol.geo.inodeSize;
    await this.rw('utime', path).setAttr(path, true, (i) => { i.atime = storableTs(toTs(atime), i, inodeSize); i.mtime = storableTs(toTs(mtime), i, inodeSize); }, 'utime');
  }
  async lutimes(path: string, atime: TimeLike, mtime: TimeLike): Promise<void> {
    const inodeSize = this.vol.geo.inodeSize;
    await this.rw('lutime', path).setAttr(path, false, (i) => { i.atime = storableTs(toTs(atime), i, inodeSize); i.mtime = storableTs(toTs(mtime), i, inodeSize); }, 'lutime');
  }

  async truncate(path: string, len = 0): Promise<void> {
    const fs = this.rw('truncate', path);
    await fs.truncate(await fs.resolve(path, true, 'truncate'), len);
  }

  async setxattr(path: string, name: string, value: Uint8Array | string, flags: { create?: boolean; replace?: boolean } = {}): Promise<void> {
    await this.rw('setxattr', path).setXattr(path, name, typeof value === 'string' ? encodeUtf8(value) : value, flags);
  }
  async removexattr(path: string, name: string): Promise<void> {
    await this.rw('removexattr', path).setXattr(path, name, undefined);
  }

  /** Linux fallocate(2) on an open handle: mode flags KEEP_SIZE (1), PUNCH_HOLE (2), ZERO_RANGE (0x10). */
  async fallocate(fh: Ext4FileHandle, mode: FallocateMode | number, offset: number, length: number): Promise<void> {
    const w = fh as Ext4WritableHandle;
    if (typeof w.fallocate !== 'function') throw posixError('EBADF', 'fallocate');
    await w.fallocate(mode, offset, length);
  }

  /**
   * Sets quota block limits (bytes; 0 = none) for a user or group on a `quota` filesystem.
   * Writes past the hard limit, or past the soft limit after the grace period, fail with EDQUOT.
   */
  async setQuotaLimits(kind: 'user' | 'group', id: number, limits: { softBytes?: number; hardBytes?: number }): Promise<void> {
    await this.rw('quotactl').setQuotaLimits(kind, id, { softBytes: limits.softBytes ?? 0, hardBytes: limits.hardBytes ?? 0 });
  }

  /** Writes every cached change to the image. */
  /** Writes everything back and flushes the device; `durable: false` skips the flush (see Filesystem.sync). */
  async sync(opts: { durable?: boolean } = {}): Promise<void> { if (this.fs) await this.fs.sync(opts); }

  /** Runs one background writeback pass (what the flusher thread would do). */
  async writebackPass(): Promise<void> { if (this.fs) await this.fs.backgroundWritebackPass(); }

  /** Recomputes free/dirty/reserved clusters and quota from scratch; throws on any mismatch. */
  async checkInvariants(): Promise<void> { if (this.fs) await this.fs.checkInvariants(); }
}

type TimeLike = Date | number | { sec: number; nsec: number };

function toTs(t: TimeLike): { sec: number; nsec: number } {
  if (t instanceof Date) t = t.getTime() / 1000;
  if (typeof t === 'number') {
    const sec = Math.floor(t);
    return { sec, nsec: Math.min(999_999_999, Math.round((t - sec) * 1e9)) };
  }
  return t;
}

/**
 * chown(2) on ext4 (even with -1, -1): a non-directory loses S_ISUID, and S_ISGID when it is
 * group-executable (S_ISGID without group-exec means mandatory locking and stays).
 */
function setOwner(i: Inode, uid: number, gid: number): void {
  if (uid >= 0) i.uid = uid;
  if (gid >= 0) i.gid = gid;
  if (isDirMode(i.mode)) return;
  i.mode &= ~0o4000;
  if (i.mode & 0o010) i.mode &= ~0o2000;
}

/**
 * A time as ext4 stores it in this inode (what stat shows after a remount): signed 32-bit
 * seconds, widened by two epoch bits and given nanoseconds when the inode's extra fields hold
 * the time's `_extra` word (the kernel clamps the same way, to s_time_min/s_time_max).
 */
function storableTs(t: { sec: number; nsec: number }, inode: Inode, inodeSize: number): { sec: number; nsec: number } {
  // i_mtime_extra and i_atime_extra end 12 and 16 bytes past the 128-byte base inode.
  const wide = inodeSize > 128 && inode.extraIsize >= 16;
  const min = -0x8000_0000;
  const max = wide ? 0x3_7fff_ffff : 0x7fff_ffff;
  // At or past either end the kernel stores the limit with zero nanoseconds.
  if (t.sec <= min || t.sec >= max) return { sec: t.sec <= min ? min : max, nsec: 0 };
  return { sec: Math.trunc(t.sec), nsec: wide ? Math.min(Math.max(Math.trunc(t.nsec), 0), 999_999_999) : 0 };
}

function fallocateMode(m: FallocateMode | number): { keepSize?: boolean; punchHole?: boolean; zeroRange?: boolean } {
  if (typeof m !== 'number') return m;
  const known = 0x1 | 0x2 | 0x10;
  if (m & ~known) throw posixError('ENOTSUP', 'fallocate');
  if (m & 0x2 && !(m & 0x1)) throw posixError('ENOTSUP', 'fallocate');
  return { keepSize: (m & 0x1) !== 0, punchHole: (m & 0x2) !== 0, zeroRange: (m & 0x10) !== 0 };
}

/** Kept for callers written before Ext4FileHandle carried the writing methods. */
export type Ext4WritableHandle = Ext4FileHandle;

/** A path as node:fs takes it: a string, or raw bytes for names that are not UTF-8. */
export type PathLike = string | Uint8Array;

/** A Map key holding name bytes exactly (one char per byte). */
function nameKey(b: Uint8Array): string {
  let k = '';
  for (let i = 0; i < b.length; i++) k += String.fromCharCode(b[i]!);
  return k;
}

const showPath = (p: PathLike): string => (typeof p === 'string' ? p : decodeUtf8(p));

function pathBytes(p: PathLike, syscall: string): Uint8Array {
  if (typeof p === 'string') {
    if (p.includes('\0')) throw posixError('EINVAL', syscall, p);
    return encodeUtf8(p);
  }
  if (!(p instanceof Uint8Array) || p.includes(0)) throw posixError('EINVAL', syscall, String(p));
  return p;
}

/** Path components as bytes, without empty ones and '.'. */
function splitBytes(b: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i <= b.length; i++) {
    if (i === b.length || b[i] === 0x2f) {
      if (i > start && !(i - start === 1 && b[start] === 0x2e)) out.push(b.subarray(start, i));
      start = i + 1;
    }
  }
  return out;
}

function isDotOrDotDot(name: Uint8Array): boolean {
  return (name.length === 1 && name[0] === 0x2e) || (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e);
}
