// The user seam: an fs/promises-like API over a mounted ext4 image (read side).
// Errors carry Node-style codes, syscall and path.
import { type BlockDevice } from '../device/block-device.ts';
import { Ext4Error, posixError, corrupt, type Ext4ErrorCode } from '../errors/ext4-error.ts';
import { Volume } from '../fs/volume.ts';
import { InodeData } from '../fs/file-data.ts';
import { readXattrs, inlineDataXattr } from '../fs/xattrs.ts';
import { listDirectory, lookupName, type DirSource, type RawDirEntry } from '../dir/dir-read.ts';
import { isDirMode, isSymlinkMode, S_IFMT, S_IFDIR, type Inode } from '../format/inode.ts';
import { INCOMPAT, COMPAT, RO_COMPAT, allFeatureNames } from '../format/features.ts';
import { featureSet } from '../format/superblock.ts';
import { groupSuperAndGdtBlocks } from '../layout/geometry.ts';
import { decodeUtf8, encodeUtf8, uuidToString } from '../util/bytes.ts';
import { mkfs as mkfsDevice, type MkfsOptions, type MkfsResult } from '../mkfs/mkfs.ts';
import { makeDirent, makeStats } from './stats.ts';
import type { Ext4Dirent, Ext4FileHandle, Ext4Info, Ext4StatFs, Ext4Stats, OpenOptions, ReadResult } from './types.ts';
import type { Mapping } from '../mapping/read-map.ts';

const ROOT_INO = 2;
const MAX_SYMLINK_FOLLOWS = 40;
const READ_FILE_LIMIT = 0x7fffffff;

interface Resolved { ino: number; inode: Inode }

export class Ext4 {
  private nextFd = 3;
  private closed = false;
  protected constructor(protected readonly vol: Volume) {}

  /** Opens an image on a block device (browser and Node). Node's entry also accepts a path. */
  static async open(device: BlockDevice, opts: OpenOptions = {}): Promise<Ext4> {
    return new Ext4(await Volume.open(device, opts));
  }

  /** Creates an empty filesystem on `device`. */
  static async mkfs(device: BlockDevice, options: MkfsOptions = {}): Promise<MkfsResult> {
    return mkfsDevice(device, options);
  }

  get readOnly(): boolean { return this.vol.readOnly; }

  // ---- path resolution ------------------------------------------------------------------

  private dirSource(ino: number, inode: Inode): DirSource {
    const vol = this.vol;
    const data = new InodeData(vol, ino, inode);
    return {
      ino, inode, blockSize: vol.geo.blockSize, filetype: vol.filetype, metadataCsum: vol.geo.metadataCsum,
      inodesCount: vol.geo.inodesCount, inodeSeed: vol.inodeSeed(ino, inode),
      dirIndex: (vol.sb.featureCompat & COMPAT.dir_index) !== 0, largeDir: vol.has('incompat', INCOMPAT.large_dir),
      hashSeed: vol.sb.hashSeed, sbFlags: vol.sb.flags,
      mappings: () => data.mappings(), readBlock: (b) => vol.readBlock(b),
      inlineData: async () => inlineDataXattr(vol, ino, inode),
    };
  }

  private async loadInode(ino: number, where: string): Promise<Inode> {
    const inode = await this.vol.readInode(ino);
    if (inode.linksCount === 0 && inode.mode === 0) {
      throw corrupt('dirent-unused-inode', `directory entry '${where}' points to unused inode ${ino}`, { inode: ino });
    }
    return inode;
  }

  private async resolve(path: string, followLast: boolean, syscall: string): Promise<Resolved> {
    this.checkOpen();
    if (typeof path !== 'string') throw posixError('EINVAL', syscall, String(path));
    if (path.includes('\0')) throw posixError('EINVAL', syscall, path);
    const fail = (code: Ext4ErrorCode) => posixError(code, syscall, path);
    const stack = path.split('/').filter((c) => c !== '' && c !== '.').reverse();
    let cur: Resolved = { ino: ROOT_INO, inode: await this.loadInode(ROOT_INO, '/') };
    let follows = 0;
    while (stack.length) {
      const name = stack.pop()!;
      if (!isDirMode(cur.inode.mode)) throw fail('ENOTDIR');
      const nameBytes = encodeUtf8(name);
      if (nameBytes.length > 255) throw fail('ENAMETOOLONG');
      const entry = await lookupName(this.dirSource(cur.ino, cur.inode), nameBytes);
      if (!entry) throw fail('ENOENT');
      const next: Resolved = { ino: entry.ino, inode: await this.loadInode(entry.ino, name) };
      if (isSymlinkMode(next.inode.mode) && (stack.length > 0 || followLast)) {
        if (++follows > MAX_SYMLINK_FOLLOWS) throw fail('ELOOP');
        const target = decodeUtf8(await new InodeData(this.vol, next.ino, next.inode).symlinkTarget());
        for (const c of target.split('/').filter((x) => x !== '' && x !== '.').reverse()) stack.push(c);
        if (target.startsWith('/')) cur = { ino: ROOT_INO, inode: await this.loadInode(ROOT_INO, '/') };
        continue;
      }
      cur = next;
    }
    return cur;
  }

  private checkOpen(): void {
    if (this.closed) throw new Ext4Error('EBADF', 'filesystem is closed');
  }

  // ---- metadata ---------------------------------------------------------------------------

  async stat(path: string): Promise<Ext4Stats> {
    const r = await this.resolve(path, true, 'stat');
    return makeStats(r.ino, r.inode, this.vol.geo.blockSize);
  }

  async lstat(path: string): Promise<Ext4Stats> {
    const r = await this.resolve(path, false, 'lstat');
    return makeStats(r.ino, r.inode, this.vol.geo.blockSize);
  }

  async readdir(path: string): Promise<string[]>;
  async readdir(path: string, opts: { withFileTypes: true }): Promise<Ext4Dirent[]>;
  async readdir(path: string, opts: { withFileTypes?: boolean } = {}): Promise<string[] | Ext4Dirent[]> {
    const r = await this.resolve(path, true, 'scandir');
    if (!isDirMode(r.inode.mode)) throw posixError('ENOTDIR', 'scandir', path);
    const raw: RawDirEntry[] = [];
    for await (const e of listDirectory(this.dirSource(r.ino, r.inode))) {
      if (isDotOrDotDot(e.name)) continue;
      raw.push(e);
    }
    if (!opts.withFileTypes) return raw.map((e) => decodeUtf8(e.name));
    const out: Ext4Dirent[] = [];
    for (const e of raw) {
      const name = decodeUtf8(e.name);
      if (this.vol.filetype && e.fileType !== 0) out.push(makeDirent(name, e.name, path, e.ino, { fileType: e.fileType }));
      else out.push(makeDirent(name, e.name, path, e.ino, { mode: (await this.loadInode(e.ino, name)).mode }));
    }
    return out;
  }

  async readlink(path: string): Promise<string> {
    return decodeUtf8(await this.readlinkBytes(path));
  }

  async readlinkBytes(path: string): Promise<Uint8Array> {
    const r = await this.resolve(path, false, 'readlink');
    if (!isSymlinkMode(r.inode.mode)) throw posixError('EINVAL', 'readlink', path);
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

  async listxattr(path: string): Promise<string[]> {
    const r = await this.resolve(path, false, 'listxattr');
    const entries = await readXattrs(this.vol, r.ino, r.inode, this.readInodeBytes);
    return entries.filter((e) => !(e.nameIndex === 7 && e.name === 'data')).map((e) => e.fullName);
  }

  async getxattr(path: string, name: string): Promise<Uint8Array> {
    const r = await this.resolve(path, false, 'getxattr');
    const e = (await readXattrs(this.vol, r.ino, r.inode, this.readInodeBytes)).find((x) => x.fullName === name);
    if (!e) throw posixError('ENODATA', 'getxattr', path);
    return e.value.slice();
  }

  private readInodeBytes = async (ino: number, inode: Inode, maxBytes: number): Promise<Uint8Array> =>
    new InodeData(this.vol, ino, inode).read(0, Math.min(maxBytes, inode.sizeBytes));

  // ---- file data --------------------------------------------------------------------------

  private async openData(path: string, syscall: string): Promise<InodeData> {
    const r = await this.resolve(path, true, syscall);
    if ((r.inode.mode & S_IFMT) === S_IFDIR) throw posixError('EISDIR', syscall, path);
    return new InodeData(this.vol, r.ino, r.inode);
  }

  async readFile(path: string): Promise<Uint8Array>;
  async readFile(path: string, encoding: 'utf8' | 'utf-8' | { encoding: 'utf8' | 'utf-8' }): Promise<string>;
  async readFile(path: string, encoding?: 'utf8' | 'utf-8' | { encoding: 'utf8' | 'utf-8' }): Promise<Uint8Array | string> {
    const data = await this.openData(path, 'open');
    if (data.sizeBytes > READ_FILE_LIMIT) throw posixError('EFBIG', 'read', path);
    const bytes = await data.read(0, data.sizeBytes);
    return encoding === undefined ? bytes : decodeUtf8(bytes);
  }

  async open(path: string, flags: string | number = 'r'): Promise<Ext4FileHandle> {
    if (flags !== 'r' && flags !== 0) throw posixError(this.vol.readOnly ? 'EROFS' : 'ENOTSUP', 'open', path);
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
    };
  }

  /** A web ReadableStream of the file's bytes (`end` inclusive, as in Node). */
  createReadStream(path: string, opts: { start?: number; end?: number; highWaterMark?: number } = {}): ReadableStream<Uint8Array> {
    const chunk = opts.highWaterMark ?? 1 << 20;
    let data: InodeData | undefined;
    let pos = opts.start ?? 0;
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
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
  async *mappings(path: string): AsyncGenerator<Mapping> {
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
    const bfree = freeClusters * R;
    return {
      type: 0xef53, bsize: geo.blockSize, blocks: geo.blocksCount - geo.firstDataBlock - overheadBlocks,
      bfree, bavail: Math.max(0, bfree - sb.rBlocksCount), files: geo.inodesCount, ffree: freeInodes,
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
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.vol.close();
  }
}

function isDotOrDotDot(name: Uint8Array): boolean {
  return (name.length === 1 && name[0] === 0x2e) || (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e);
}
