
import {
  constants, openSync, writeSync, ftruncateSync, closeSync, lstatSync, mkdirSync, linkSync, symlinkSync,
  fstatSync, futimesSync, fchownSync, fchmodSync, lutimesSync, lchownSync, chmodSync,
} from 'node:fs';
import * as hostfs from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { NodeFileDevice } from '../node.ts';
import { corrupt, Ext4Error } from '../errors/ext4-error.ts';
import type { Mapping } from '../mapping/read-map.ts';
import { rootLeafMappings } from '../fs/readpage.ts';
import { fmtOf, InodeReader, listDir, mayHaveXattrs, metaOf, mountOf, type Meta } from './get-inode.ts';
import { defaultWriterOptions, HostWriter, type FileOp, type HostWriterOptions } from './get-writer.ts';
import { checkName, ImgRef, joinHost, NameSet, shownPath, type ImgPath } from './get-paths.ts';
import { asArg, fixTimes, newFileDefaults, quoteAttrPath, runTool, touchTime, tsArg, tsNs, tsSafe, type NewFileDefaults } from './get-host.ts';
import { makeSpecial } from './get-special.ts';
import type { Mount, Node } from '../fs/mount.ts';
import { S_IFREG, S_IFDIR, S_IFLNK } from '../format/inode.ts';
import { isDotOrDotDot } from '../fs/names.ts';
import { parseArgs, UsageError } from './args.ts';
import { pipeToWritable } from './cat.ts';
import { normalizeImagePath, printableName } from './ls.ts';
import { Progress } from './progress.ts';
import type { Ext4 } from '../node.ts';
import { IMAGE_OPTIONS, IMAGE_USAGE, imageRef, openImage } from './image.ts';

export const GET_USAGE = `usage: ext4kit get [-r] [-f] [--exact-times] IMAGE PATH DEST
  copies PATH out of IMAGE to DEST on the host (into DEST/NAME when DEST is a directory;
  with PATH '/' and an existing directory DEST, the root's entries go straight into DEST);
  DEST '-' writes one file's bytes to standard output
  -r             copy a directory tree (symlinks are copied as symlinks)
  -f             replace an existing DEST file (single-file copies only)
  --exact-times  restore nanosecond times with touch(1) however many runs that takes
Keeps contents, holes, modes (set-id, sticky), atime and mtime, symlinks, hard links, user.*
xattrs (needs setfattr) and, as root, owners and devices (needs mknod). Nothing is written outside
DEST: hostile names fail with EUCLEAN.
${IMAGE_USAGE}
example:
  ext4kit get -r disk.img /etc ./etc-copy
  ext4kit get disk.img /etc/hostname -      (to stdout)`;

const CHUNK = 1 << 20;
const MAX_DEPTH = 2048;
const INLINE_DATA_FL = 0x10000000;
const ROOT_INO = 2;

type Kind = 'file' | 'dir' | 'symlink' | 'special';

interface Job { src: ImgRef; node: Node; st: Meta; host: Buffer; depth: number }

const NO_MAPPINGS: readonly Mapping[] = [];
const unreachableStat = (): never => {
  throw new Error('unreachable: times within ±2^31 s need no stat');
};

interface Rec {
  host: Buffer;
  st: Meta;
  kind: Kind;
  hostDev: bigint;
  hostIno: bigint;
  /** The owner it was created with (lchown is left out when the image's is the same). */
  hostUid: bigint;
  hostGid: bigint;
}

/** Raw reads of the image (Node's file device): file data without the API's copies. */
export interface DataSource {
  readInto(offsetBytes: number, target: Uint8Array): void;
  /** The image file's descriptor and the image's offset in it: lets writer threads pread it. */
  hostFd?: number;
  baseBytes?: number;
}

interface CopyOptions {
  recursive: boolean;
  exactTimes: boolean;
  warn: (msg: string) => void;
  /** What a new host file gets without being told (see newFileDefaults). */
  host: NewFileDefaults;
  /** Writer threads for plain files (default: defaultWriterOptions()). */
  writers?: HostWriterOptions;
}


class Copier {
  private readonly links = new Map<number, Buffer>();
  private readonly dirInodes = new Set<number>();
  private readonly verifiedBlocks = new Set<number>();
  private readonly records: Rec[] = [];
  private readonly timeFixes = new Map<string, Buffer[]>();
  /** Hard links, made once every file is written (the first name may still be in a writer's queue). */
  private readonly pendingLinks: Array<[first: Buffer, host: Buffer]> = [];
  private readonly writer: HostWriter | undefined;
  readonly inodes: InodeReader;
  private unfixableTimes = 0;
  /** The one read buffer (a fresh 1 MiB buffer per file cost more than the copy itself). */
  private readonly chunk = new Uint8Array(CHUNK);
  private xattrDump = '';
  private readonly warned = new Set<string>();
  private readonly isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  private entries = 0;
  copiedFiles = 0;
  copiedBytes = 0;

  constructor(
    private readonly mount: Mount,
    private readonly opts: CopyOptions,
    private readonly blockSize: number,
    private readonly blocksCount: number,
    private readonly maxEntries: number,
    private readonly progress: Progress,
    private readonly data: DataSource | undefined,
  ) {
    // One file alone gains nothing from a thread that takes longer to start than the copy.
    this.inodes = new InodeReader(mount);
    if (data?.hostFd !== undefined && opts.recursive) this.writer = new HostWriter(data.hostFd, opts.writers ?? defaultWriterOptions());
  }

  private warnOnce(key: string, msg: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.opts.warn(msg);
  }

  /** Copies the entry `node` at image path `src` to the new host path `host`. */
  async copyTree(path: ImgPath, node: Node, host: Buffer, existingRoot: boolean): Promise<void> {
    const src = new ImgRef(undefined, path);
    const stack: Job[] = [];
    const st = metaOf(node);
    if (existingRoot) {
      this.enterDir(src, st);
      await this.pushChildren(stack, src, node, host, 1);
    } else {
      stack.push({ src, node, st, host, depth: 0 });
    }
    while (stack.length > 0) {
      const job = stack.pop()!;
      if (this.queuePlain(job)) continue;
      const isDir = await this.copyEntry(job);
      if (isDir) await this.pushChildren(stack, job.src, job.node, job.host, job.depth + 1);
    }
  }

  private enterDir(src: ImgRef, st: Meta): void {
    if (this.dirInodes.has(st.ino)) throw corrupt('dir-cycle', `directory inode ${st.ino} is reachable twice (at '${src.shown()}')`, { inode: st.ino, path: src.shown() });
    this.dirInodes.add(st.ino);
  }

  /**
   * Lists a directory by inode and decodes each child's inode once (a path walk per child
   * decoded every component again). A name listed twice is refused as a lookup would find only
   * the first; an entry pointing at an unused inode is refused as a lookup does.
   */
  private async pushChildren(stack: Job[], dir: ImgRef, dirNode: Node, host: Buffer, depth: number): Promise<void> {
    if (!this.opts.recursive) return;
    const entries = await listDir(this.mount, dirNode, this.verifiedBlocks);
    const jobs: Job[] = [];
    const seen = new NameSet();
    for (const d of entries) {
      const nameBytes = d.name;
      if (isDotOrDotDot(nameBytes)) continue;
      if (depth > MAX_DEPTH) throw new Ext4Error('ENAMETOOLONG', `directory tree deeper than ${MAX_DEPTH} levels at '${dir.shown()}'`, { where: { path: dir.shown() } });
      checkName(nameBytes, dir);
      if (++this.entries > this.maxEntries) throw corrupt('dir-walk', `more directory entries than the image can hold (at '${dir.shown()}')`, { path: dir.shown() });
      if (!seen.add(nameBytes)) {
        throw corrupt('dirent-duplicate', `directory '${dir.shown()}' holds the name '${printableName(nameBytes)}' more than once`, { path: dir.shown(), inode: d.ino });
      }
      const got = this.inodes.iget(d.ino);
      const node = got instanceof Promise ? await got : got;
      if (node.inode.linksCount === 0 && node.inode.mode === 0) {
        throw corrupt('dirent-unused-inode', `directory entry points to unused inode ${d.ino}`, { inode: d.ino });
      }
      jobs.push({ src: new ImgRef(dir, nameBytes), node, st: metaOf(node), host: joinHost(host, nameBytes), depth });
    }
    for (let i = jobs.length - 1; i >= 0; i--) stack.push(jobs[i]!);
  }

  private record(host: Buffer, st: Meta, kind: Kind): void {
    const h = lstatSync(host, { bigint: true });
    this.records.push({ host, st, kind, hostDev: h.dev, hostIno: h.ino, hostUid: h.uid, hostGid: h.gid });
  }

  /**
   * Most entries without an await: a regular file for the writer threads whose extents are all
   * in its inode (its first name, or a further name of a file already queued). False: the
   * entry is left to copyEntry.
   */
  private queuePlain(job: Job): boolean {
    const { node, st, host } = job;
    const writer = this.writer;
    if (!writer || fmtOf(st) !== S_IFREG || st.flags & INLINE_DATA_FL || !tsSafe(st.atime) || !tsSafe(st.mtime) || mayHaveXattrs(node)) return false;
    if (st.nlink > 1) {
      const first = this.links.get(st.ino);
      if (first !== undefined) {
        this.progress.tick(0, true);
        this.pendingLinks.push([first, host]);
        return true;
      }
    }
    const maps = st.size > 0 ? rootLeafMappings(this.mount.vol, node.ino, node.inode) : NO_MAPPINGS;
    if (maps === undefined) return false;
    this.progress.tick(0, true);
    this.describeFile(st, host, this.directMode(st, false), writer, maps);
    if (st.nlink > 1) this.links.set(st.ino, host);
    return true;
  }

  /** Creates one host entry; returns true when it is a directory whose children are to follow. */
  private async copyEntry(job: Job): Promise<boolean> {
    const { src, node, st, host } = job;
    this.progress.tick(0, true);
    const fmt = fmtOf(st);
    if (fmt === S_IFDIR) {
      if (!this.opts.recursive) throw new Ext4Error('EISDIR', `EISDIR: '${src.shown()}' is a directory (use -r)`, { where: { path: src.shown() } });
      this.enterDir(src, st);
      mkdirSync(host, 0o700);
      this.record(host, st, 'dir');
      await this.collectXattrs(node, host);
      return true;
    }
    if (st.nlink > 1) {
      const first = this.links.get(st.ino);
      if (first !== undefined) {
        this.pendingLinks.push([first, host]);
        return false;
      }
    }
    let kind: Kind;
    if (fmt === S_IFREG) {
      await this.copyFile(node, st, host);
      if (st.nlink > 1) this.links.set(st.ino, host);
      return false;
    } else if (fmt === S_IFLNK) {
      const target = await this.mount.readlink(node);
      if (target.length === 0 || target.includes(0)) {
        this.warnOnce(`badlink:${src.shown()}`, `skipping symlink '${src.shown()}' with an invalid target`);
        return false;
      }
      symlinkSync(Buffer.from(target), host);
      kind = 'symlink';
    } else {
      if (!(await makeSpecial(st, host, src.shown(), this.isRoot, (k, m) => this.warnOnce(k, m)))) return false;
      kind = 'special';
    }
    if (st.nlink > 1) this.links.set(st.ino, host);
    this.record(host, st, kind);
    if (kind !== 'symlink') await this.collectXattrs(node, host);
    return false;
  }

  // Host calls are synchronous: a CLI copying many small files is dominated by the libuv
  // threadpool round trip of every async call otherwise, and nothing else runs concurrently here.
  // A regular file gets its times, owner and mode through the descriptor it was created with (no
  // path lookup, so nothing can be swapped in between); one with user.* xattrs keeps a writable
  // mode until setfattr has run and is finished with the directories. Calls that would change
  // nothing are left out: the mode is given at creation when the umask keeps it whole and it has
  // no set-id or sticky bit, and the owner is set only when it differs from the creator's.
  private async copyFile(node: Node, st: Meta, host: Buffer): Promise<void> {
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
    const maybeXattrs = mayHaveXattrs(node);
    const direct = this.directMode(st, maybeXattrs);
    if (this.writer && !maybeXattrs && tsSafe(st.atime) && tsSafe(st.mtime)) {
      await this.queueFile(node, st, host, direct, this.writer);
      return;
    }
    const out = openSync(host, flags, direct ? st.mode & 0o777 : 0o600);
    try {
      let endBytes = 0;
      if (st.size > 0) {
        if (st.flags & INLINE_DATA_FL) endBytes = this.writeAll(out, await this.mount.read(node, 0, st.size), 0);
        else endBytes = await this.copyMapped(node, st, out);
      }
      // Only a trailing hole (or unwritten tail) leaves the host file short.
      if (endBytes !== st.size) ftruncateSync(out, st.size);
      if (maybeXattrs && await this.collectXattrs(node, host)) {
        const h = fstatSync(out, { bigint: true });
        this.records.push({ host, st, kind: 'file', hostDev: h.dev, hostIno: h.ino, hostUid: h.uid, hostGid: h.gid });
      } else {
        futimesSync(out, tsArg(st.atime), tsArg(st.mtime));
        this.noteTimeFixes(host, st, () => fstatSync(out, { bigint: true }));
        if (this.isRoot && (st.uid !== this.opts.host.uid || st.gid !== this.opts.host.gid)) fchownSync(out, st.uid, st.gid);
        if (!direct) fchmodSync(out, st.mode & 0o7777);
      }
    } finally {
      closeSync(out);
    }
    this.copiedFiles++;
  }

  /** Whether the mode given at creation is final (no set-id or sticky bit, the umask keeps it whole, no xattrs pending). */
  private directMode(st: Meta, maybeXattrs: boolean): boolean {
    return !maybeXattrs && (st.mode & 0o7000) === 0 && (st.mode & 0o777 & this.opts.host.umask) === 0;
  }

  /**
   * The same copy described for a writer thread (see get-writer.ts): mappings are validated and
   * range-checked here, the host calls run there. Times in 0…2^31 s only (no stat needed).
   */
  private async queueFile(node: Node, st: Meta, host: Buffer, direct: boolean, writer: HostWriter): Promise<void> {
    if (st.size > 0 && st.flags & INLINE_DATA_FL) {
      this.describeFile(st, host, direct, writer, NO_MAPPINGS, await this.mount.read(node, 0, st.size));
    } else {
      this.describeFile(st, host, direct, writer, st.size > 0 ? await this.mount.mappings(node) : NO_MAPPINGS);
    }
  }

  /** queueFile's op from the file's mappings (range-checked here) or its inline bytes. */
  private describeFile(st: Meta, host: Buffer, direct: boolean, writer: HostWriter, maps: readonly Mapping[], inline?: Uint8Array): void {
    const op: FileOp = {
      host, openMode: direct ? st.mode & 0o777 : 0o600, sizeBytes: st.size, ranges: [],
      atimeSec: tsArg(st.atime), mtimeSec: tsArg(st.mtime),
      uid: -1, gid: -1, chmod: direct ? -1 : st.mode & 0o7777,
    };
    if (this.isRoot && (st.uid !== this.opts.host.uid || st.gid !== this.opts.host.gid)) {
      op.uid = st.uid;
      op.gid = st.gid;
    }
    let dataBytes = 0;
    if (inline) {
      op.inline = inline;
      dataBytes = inline.length;
    } else if (st.size > 0) {
      const bs = this.blockSize;
      const base = this.data?.baseBytes ?? 0;
      for (const m of maps) {
        if (m.unwritten) continue;
        const fsBlock = Number(m.fsBlock);
        if (fsBlock < 0 || fsBlock + m.countBlocks > this.blocksCount) {
          throw corrupt('extent-range', `file '${st.ino}' maps blocks ${fsBlock}+${m.countBlocks} outside the filesystem`, { inode: st.ino });
        }
        const pos = Number(m.fileBlock) * bs;
        const lenBytes = Math.min(st.size, (Number(m.fileBlock) + m.countBlocks) * bs) - pos;
        if (lenBytes <= 0) continue;
        op.ranges.push(base + fsBlock * bs, pos, lenBytes);
        dataBytes += lenBytes;
      }
    }
    writer.add(op, dataBytes);
    // Times within 0…2^31 s (checked before queueing): no stat is needed.
    if (st.atime.nsec % 1000 !== 0 || st.mtime.nsec % 1000 !== 0) this.noteTimeFixes(host, st, unreachableStat);
    this.copiedBytes += dataBytes;
    this.progress.tick(dataBytes);
    this.copiedFiles++;
  }

  /**
   * Queues a touch(1) run for times that lutimes/futimes could not set (they take microseconds).
   * Within ±2^31 s the double timeArg() passes is exact to the microsecond, so only sub-microsecond
   * parts need fixing; outside that range the host's result is read back with `stat`.
   */
  private noteTimeFixes(host: Buffer, st: Meta, stat: () => { atimeNs: bigint; mtimeNs: bigint }): void {
    let got: { atimeNs: bigint; mtimeNs: bigint };
    if (tsSafe(st.atime) && tsSafe(st.mtime)) {
      if (st.atime.nsec % 1000 === 0 && st.mtime.nsec % 1000 === 0) return;
      const us = (ns: bigint) => ns - (ns % 1000n);
      got = { atimeNs: us(tsNs(st.atime)), mtimeNs: us(tsNs(st.mtime)) };
    } else {
      got = stat();
    }
    for (const [which, want, have] of [['a', tsNs(st.atime), got.atimeNs], ['m', tsNs(st.mtime), got.mtimeNs]] as const) {
      if (want === have) continue;
      if (asArg(host) === undefined) {
        this.unfixableTimes++;
        continue;
      }
      const key = `${which} ${touchTime(want)}`;
      const list = this.timeFixes.get(key);
      if (list) list.push(host);
      else this.timeFixes.set(key, [host]);
    }
  }

  /** Writes `data` at `position`; returns the end offset. */
  private writeAll(out: number, data: Uint8Array, position: number): number {
    let done = 0;
    while (done < data.length) done += writeSync(out, data, done, data.length - done, position + done);
    this.copiedBytes += data.length;
    this.progress.tick(data.length);
    return position + data.length;
  }

  /** Copies only the written, mapped ranges: holes and unwritten extents stay holes. Returns the end of the last write. */
  private async copyMapped(node: Node, st: Meta, out: number): Promise<number> {
    const maps = await this.mount.mappings(node);
    if (this.data) return this.copyDirect(maps, st, out, this.data);
    // Without a raw image file (an image on standard input): through the mount's read path.
    const bs = this.blockSize;
    let endBytes = 0;
    for (const m of maps) {
      if (m.unwritten) continue;
      let pos = Number(m.fileBlock) * bs;
      const end = Math.min(st.size, (Number(m.fileBlock) + m.countBlocks) * bs);
      while (pos < end) {
        const got = await this.mount.read(node, pos, Math.min(CHUNK, end - pos));
        if (got.length === 0) break;
        endBytes = this.writeAll(out, got, pos);
        pos += got.length;
      }
    }
    return endBytes;
  }

  /**
   * The same copy with the mapped blocks read straight from the image into one reused buffer
   * (the API's read path allocates and copies twice per request). Mappings come from the
   * validated extent tree; their range is checked again here.
   */
  private copyDirect(maps: readonly Mapping[], st: Meta, out: number, data: DataSource): number {
    const bs = this.blockSize;
    let endBytes = 0;
    for (const m of maps) {
      if (m.unwritten) continue;
      const fsBlock = Number(m.fsBlock);
      if (fsBlock < 0 || fsBlock + m.countBlocks > this.blocksCount) {
        throw corrupt('extent-range', `file '${st.ino}' maps blocks ${fsBlock}+${m.countBlocks} outside the filesystem`, { inode: st.ino });
      }
      let pos = Number(m.fileBlock) * bs;
      const end = Math.min(st.size, (Number(m.fileBlock) + m.countBlocks) * bs);
      while (pos < end) {
        const n = Math.min(CHUNK, end - pos);
        const buf = this.chunk.subarray(0, n);
        data.readInto((fsBlock - Number(m.fileBlock)) * bs + pos, buf);
        endBytes = this.writeAll(out, buf, pos);
        pos += n;
      }
    }
    return endBytes;
  }

  /** Queues the entry's user.* xattrs for setfattr; true when there are any. */
  private async collectXattrs(node: Node, host: Buffer): Promise<boolean> {
    if (!mayHaveXattrs(node)) return false;
    let lines = '';
    for (const e of await this.mount.xattrs(node)) {
      if (e.nameIndex === 7 && e.name === 'data') continue;
      const name = e.fullName;
      if (!name.startsWith('user.')) {
        if (!name.startsWith('system.data')) this.warnOnce('xattr-ns', `only user.* xattrs are restored (skipping ${name} and the like)`);
        continue;
      }
      if (/[\s=\\]/.test(name) || name.length > 255) {
        this.warnOnce('xattr-name', `skipping xattrs with unusual names (first: ${JSON.stringify(name)})`);
        continue;
      }
      lines += `${name}=0x${Buffer.from(e.value).toString('hex')}\n`;
    }
    if (lines) this.xattrDump += `# file: ${quoteAttrPath(host)}\n${lines}\n`;
    return lines !== '';
  }

  /** Applies xattrs, owners, modes and times; children before parents. */
  async finish(): Promise<void> {
    if (this.writer) {
      await this.writer.drain();
      await this.writer.close();
    }
    for (const [first, host] of this.pendingLinks) linkSync(first, host);
    if (this.xattrDump) {
      const r = await runTool('setfattr', ['-h', '--restore=-'], this.xattrDump);
      if (r.missing) this.opts.warn('setfattr not found (package attr): user.* xattrs were not restored');
      else if (!r.ok) this.opts.warn(`setfattr could not restore user.* xattrs: ${r.stderr.split('\n')[0]}`);
    }
    // Times first, then owners and modes: neither chown nor chmod touches atime or mtime, and a
    // directory made read-only or unsearchable last cannot get in the way of its children.
    for (let i = this.records.length - 1; i >= 0; i--) {
      const rec = this.records[i]!;
      this.checkSame(rec);
      lutimesSync(rec.host, tsArg(rec.st.atime), tsArg(rec.st.mtime));
      this.noteTimeFixes(rec.host, rec.st, () => lstatSync(rec.host, { bigint: true }));
    }
    await fixTimes(this.timeFixes, this.opts.exactTimes, this.opts.warn);
    if (this.unfixableTimes > 0) this.opts.warn(`${this.unfixableTimes} times on paths that are not UTF-8 kept to the microsecond`);
    for (let i = this.records.length - 1; i >= 0; i--) {
      const rec = this.records[i]!;
      this.checkSame(rec);
      // chown clears set-id bits: it goes first.
      if (this.isRoot && (BigInt(rec.st.uid) !== rec.hostUid || BigInt(rec.st.gid) !== rec.hostGid)) lchownSync(rec.host, rec.st.uid, rec.st.gid);
      if (rec.kind !== 'symlink') chmodSync(rec.host, rec.st.mode & 0o7777);
    }
  }

  /** Stops the writer threads (after finish, or when the copy failed). */
  async stop(): Promise<void> {
    await this.writer?.close();
  }

  private checkSame(rec: Rec): void {
    const h = lstatSync(rec.host, { bigint: true });
    if (h.dev !== rec.hostDev || h.ino !== rec.hostIno) {
      throw new Ext4Error('EIO', `host entry '${rec.host.toString('utf8')}' was replaced during the copy`);
    }
  }
}

export interface GetResult {
  files: number;
  bytes: number;
}

/** Copies image path `srcPath` to host path `dest` (see GET_USAGE for the rules). */
export async function getFromImage(
  fs: Ext4,
  srcPath: string,
  dest: string,
  opts: { recursive: boolean; force?: boolean; exactTimes?: boolean; warn?: (msg: string) => void; data?: DataSource; writers?: HostWriterOptions },
): Promise<GetResult> {
  const warn = opts.warn ?? ((m: string) => process.stderr.write(`ext4kit: warning: ${m}\n`));
  const given = normalizeImagePath(srcPath);
  const src = opts.recursive ? given : await fs.realpath(given);
  const st = await fs.lstat(src);
  if (st.isDirectory() && !opts.recursive) throw new Ext4Error('EISDIR', `EISDIR: '${shownPath(src)}' is a directory (use -r)`, { where: { path: shownPath(src) } });
  const destAbs = resolve(dest);
  const destSt = await hostfs.stat(destAbs).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return undefined;
    throw e;
  });
  let target: Buffer = Buffer.from(destAbs);
  let existingRoot = false;
  if (destSt?.isDirectory()) {
    if (st.ino === ROOT_INO) {
      existingRoot = true;
    } else {
      // The name the user gave (cp keeps a symlink's name for the copied contents).
      let base = basename(given);
      if (base === '' || base === '.' || base === '..') base = basename(await fs.realpath(given));
      const name = new TextEncoder().encode(base);
      checkName(name, src);
      target = joinHost(target, name);
    }
  }
  if (!existingRoot && opts.force && !st.isDirectory()) {
    const old = await hostfs.lstat(target).catch(() => undefined);
    if (old && !old.isDirectory()) await hostfs.unlink(target);
  }
  const info = await fs.info();
  const usedBytes = Math.max(0, (info.blocksCount - info.freeBlocks) * info.blockSize);
  const progress = new Progress('get', opts.recursive ? usedBytes : st.size);
  const mount = mountOf(fs);
  const hostOwner = await newFileDefaults(destSt?.isDirectory() ? destAbs : dirname(destAbs));
  const copier = new Copier(mount, { recursive: opts.recursive, exactTimes: opts.exactTimes ?? false, warn, host: hostOwner, writers: opts.writers }, info.blockSize, info.blocksCount,
    Math.max(1024, Math.floor((info.blocksCount * info.blockSize) / 12)), progress, opts.data);
  try {
    await copier.copyTree(src, await copier.inodes.iget(st.ino), target, existingRoot);
    await copier.finish();
  } finally {
    await copier.stop();
    progress.finish();
  }
  return { files: copier.copiedFiles, bytes: copier.copiedBytes };
}

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { options: [...IMAGE_OPTIONS], flags: ['r', 'f', 'exact-times'], minPositionals: 3, maxPositionals: 3, usage: GET_USAGE });
  const [image, path, dest] = args.positionals as [string, string, string];
  const fs = await openImage(image, args, { readOnly: true });
  // File data is read straight from the image file (a second read-only descriptor), not
  // through the API's buffers; an image on standard input goes through the API.
  const ref = imageRef(image, args);
  const raw = ref.path === '-' ? undefined : await NodeFileDevice.open(ref.path, { readOnly: true }).catch(() => undefined);
  const offset = ref.offsetBytes ?? 0;
  const data: DataSource | undefined = raw && { readInto: (at, target) => raw.readInto(at + offset, target), hostFd: raw.hostFd, baseBytes: offset };
  try {
    if (dest === '-') {
      // DEST '-': one file's bytes to standard output (symlinks followed, as cat does).
      if (args.flags.has('r')) throw new UsageError("DEST '-' (standard output) takes one file, not -r", GET_USAGE);
      const p = normalizeImagePath(path);
      if ((await fs.stat(p)).isDirectory()) throw new Ext4Error('EISDIR', `EISDIR: '${path}' is a directory`, { where: { path } });
      await pipeToWritable(fs.createReadStream(p), process.stdout);
      return 0;
    }
    await getFromImage(fs, path, dest, { recursive: args.flags.has('r'), force: args.flags.has('f'), exactTimes: args.flags.has('exact-times'), data });
  } finally {
    await raw?.close();
    await fs.close();
  }
  return 0;
}
