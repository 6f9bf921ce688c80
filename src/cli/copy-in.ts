// Copy-in, shared by `put` and `mkfs -d`: host files and trees into a writable image, keeping
// contents (all-zero blocks become holes, as mke2fs -d does), modes with set-id and sticky bits,
// the host's uid/gid numbers, atime/mtime to the nanosecond, symlinks, hard links and xattrs.
//
// Speed matters (mkfs -d is measured against mke2fs -d): a tree is listed, lstat'ed and its small
// files read ahead on a worker thread (host-tree.ts); each small file then becomes one
// importFile call (contents, owner, mode and times at once); large ones stream in 1 MiB chunks
// through a file handle; a directory's files are created right after it; every entry is created
// exclusively (EEXIST falls back to merging); xattrs come from one `getfattr -R` run that
// overlaps the copy, and are applied at the end.
//
// Choices, where the host or the library limit fidelity:
//  - names and symlink targets must be valid UTF-8 (the library takes string paths): others are
//    skipped with a warning;
//  - FIFOs, sockets and devices are created with mknod (hard links among them kept);
//  - xattrs: user.*, trusted.* and security.* (what getfattr can read); system.* (POSIX ACLs,
//    whose on-disk encoding differs) is skipped with a warning; without getfattr, a warning;
//  - ctime cannot be set (as with cp -a); directories get their times after their contents;
//  - an existing destination directory is merged into; an existing non-directory is replaced.
import { spawn } from 'node:child_process';
import { closeSync, lstatSync, openSync, read, readlinkSync, type BigIntStats } from 'node:fs';
import * as hostfs from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import type { Ext4 } from '../node.ts';
import { Ext4Error } from '../errors/ext4-error.ts';
import type { Filesystem } from '../fs/filesystem.ts';
import type { OpenInode } from '../fs/inode-cache.ts';
import type { Mount } from '../fs/mount.ts';
import { walk } from '../fs/path-walk.ts';
import { Progress } from './progress.ts';
import { HostTreeReader, hostStatOf, isDirStat, isFileStat, isSymlinkStat, isUtf8Name, joinHost, type HostEntry, type HostStat } from './host-tree.ts';

const CHUNK = 1 << 20;
/** Files up to this size are read whole into one reused buffer; larger ones are streamed. */
const SMALL_FILE = 256 << 10;
/**
 * Written bytes between syncs (without flush). Imported data goes straight to the device, so
 * this only keeps a long copy's metadata moving to disk; the file count below bounds memory.
 */
const SYNC_EVERY_BYTES = 1 << 30;
/** Files between syncs: the library keeps every inode touched since the last sync in memory. */
const SYNC_EVERY_FILES = 1024;
const NS = 1_000_000_000n;
const XATTR_NAMESPACES = ['user.', 'trusted.', 'security.'];

export interface CopyInOptions {
  /** Copy directories recursively (put -r; mkfs -d always). */
  recursive: boolean;
  /** Warnings go here (default: one line on stderr). */
  warn?: (msg: string) => void;
  /** Label of the progress bar (drawn only when stderr is a terminal). */
  progressLabel?: string;
  /** Copy xattrs (default true). */
  xattrs?: boolean;
  /** Host dev/ino of a file never to copy (the image itself, when it lives inside the source). */
  exclude?: { dev: bigint; ino: bigint };
  /**
   * The source tree's reader, started before the image was opened (startTreeReader): its worker
   * thread boots and reads ahead meanwhile. Closed by the copy.
   */
  reader?: HostTreeReader;
}

export interface CopyInResult {
  files: number;
  dirs: number;
  symlinks: number;
  /** FIFOs, sockets and device nodes. */
  specials: number;
  hardLinks: number;
  bytes: number;
  skipped: number;
}

type XattrMap = Map<string, Array<{ name: string; value: Buffer }>>;

/** The engine behind the public object (as the FUSE backend reaches it): imports by directory inode. */
interface Engine { mount: Mount; fs: Filesystem | undefined; cred: { uid: number; gid: number } }
const engineOf = (fs: Ext4): Engine => fs as unknown as Engine;

/** A directory being filled, pinned in memory (a sync may otherwise drop its in-memory inode). */
interface PinnedDir { oi: OpenInode; fs: Filesystem }

export function timeOf(ns: bigint): { sec: number; nsec: number } {
  let sec = ns / NS;
  let nsec = ns % NS;
  if (nsec < 0n) {
    nsec += NS;
    sec -= 1n;
  }
  return { sec: Number(sec), nsec: Number(nsec) };
}

/** The name as a string when its bytes are valid UTF-8 (the library's paths are strings). */
function utf8Name(bytes: Buffer): string | undefined {
  return isUtf8Name(bytes) ? bytes.toString('utf8') : undefined;
}

function joinImage(dir: string, name: string): string {
  return dir.endsWith('/') ? dir + name : `${dir}/${name}`;
}

function isCode(e: unknown, code: string): boolean {
  return e instanceof Ext4Error && e.code === code;
}

/** getfattr's \ooo escapes back to bytes. */
function unescapeOctal(s: string): Buffer {
  const raw = Buffer.from(s, 'latin1');
  if (!raw.includes(0x5c)) return raw;
  const out: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i]!;
    if (b === 0x5c && i + 3 < raw.length && /^[0-7]{3}$/.test(raw.toString('latin1', i + 1, i + 4))) {
      out.push(parseInt(raw.toString('latin1', i + 1, i + 4), 8) & 0xff);
      i += 3;
    } else {
      out.push(b);
    }
  }
  return Buffer.from(out);
}

function decodeXattrValue(text: string): Buffer | undefined {
  if (text.startsWith('0s')) return Buffer.from(text.slice(2), 'base64');
  if (text.startsWith('0x')) return Buffer.from(text.slice(2), 'hex');
  if (text.startsWith('"') && text.endsWith('"') && text.length >= 2) return unescapeOctal(text.slice(1, -1));
  return undefined;
}

/** Parses `getfattr -d -e base64 --absolute-names` output: host path (latin1 key) → attributes. */
export function parseGetfattr(out: string): XattrMap {
  const map: XattrMap = new Map();
  let cur: Array<{ name: string; value: Buffer }> | undefined;
  for (const line of out.split('\n')) {
    if (line.startsWith('# file: ')) {
      cur = [];
      map.set(unescapeOctal(line.slice(8)).toString('latin1'), cur);
      continue;
    }
    if (!cur || line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    const nameBytes = unescapeOctal(eq < 0 ? line : line.slice(0, eq));
    const value = eq < 0 ? Buffer.alloc(0) : decodeXattrValue(line.slice(eq + 1));
    const name = utf8Name(nameBytes);
    if (name !== undefined && value !== undefined) cur.push({ name, value });
  }
  return map;
}

/** A getfattr run: its map, an error it reported, or undefined when getfattr is missing. */
export type XattrScan = Promise<{ map: XattrMap; error?: string } | undefined>;

/**
 * Runs `getfattr [-R] -h -d -m - -e base64` on `root` (undefined when getfattr is missing). A root
 * path that is not UTF-8 cannot be an argument from Node: it goes through `xargs -0` as bytes.
 */
export function startXattrScan(root: Buffer, recursive: boolean): XattrScan {
  const args = [...(recursive ? ['-R'] : []), '-h', '-d', '-m', '-', '--absolute-names', '-e', 'base64', '--'];
  const asText = utf8Name(root);
  return new Promise((resolvePromise) => {
    const env = { ...process.env, LC_ALL: 'C' };
    const child = asText !== undefined
      ? spawn('getfattr', [...args, asText], { stdio: ['ignore', 'pipe', 'pipe'], env })
      : spawn('xargs', ['-0', 'getfattr', ...args], { stdio: ['pipe', 'pipe', 'pipe'], env });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => {
      if (stderr.length < 4096) stderr += b.toString();
    });
    child.on('error', (e: NodeJS.ErrnoException) => resolvePromise(e.code === 'ENOENT' ? undefined : { map: new Map(), error: e.message }));
    child.on('close', (code) => {
      if (code === 127) return resolvePromise(undefined);
      const map = parseGetfattr(Buffer.concat(out).toString('latin1'));
      resolvePromise(code === 0 ? { map } : { map, error: stderr.trim().split('\n')[0] || `exit ${code}` });
    });
    if (child.stdin) {
      child.stdin.on('error', () => undefined);
      child.stdin.end(Buffer.concat([root, Buffer.from([0])]));
    }
  });
}

/**
 * Sets the xattrs a getfattr run found on the image paths the copy made (`destOf`: host path as
 * latin1 → image path, undefined when not copied); system.* (ACLs) and names the image refuses are skipped with a warning.
 */
export async function applyXattrs(fs: Ext4, scan: XattrScan, destOf: (hostKey: string) => string | undefined, warnOnce: (key: string, msg: string) => void, warn: (msg: string) => void): Promise<void> {
  const r = await scan;
  if (!r) {
    warnOnce('getfattr', 'getfattr not found: extended attributes not copied');
    return;
  }
  if (r.error) warnOnce('getfattr-error', `getfattr: ${r.error} (some extended attributes may be missing)`);
  // Directory times are already set: setxattr changes only ctime, as on Linux.
  for (const [hostKey, attrs] of r.map) {
    if (attrs.length === 0) continue;
    const dest = destOf(hostKey);
    if (dest === undefined) continue;
    for (const { name, value } of attrs) {
      if (!XATTR_NAMESPACES.some((p) => name.startsWith(p))) {
        warnOnce(`xattr-ns ${name.split('.')[0]}`, `${name.split('.')[0]}.* extended attributes (e.g. '${name}' on '${dest}') not copied`);
        continue;
      }
      try {
        await fs.setxattr(dest, name, value);
      } catch (e) {
        if (!(e instanceof Ext4Error) || !['E2BIG', 'ENOSPC', 'ENOTSUP', 'ERANGE'].includes(e.code)) throw e;
        warn(`extended attribute '${name}' of '${dest}' not copied: ${e.code}`);
      }
    }
  }
}

/** Whether a finished getfattr run found any attribute on a path the copy made. */
export async function hasXattrsFor(scan: XattrScan, destOf: (hostKey: string) => string | undefined): Promise<boolean> {
  const r = await scan;
  if (!r) return true; // the warning comes from applyXattrs
  if (r.error) return true;
  for (const [hostKey, attrs] of r.map) if (attrs.length > 0 && destOf(hostKey) !== undefined) return true;
  return false;
}

export class CopyIn {
  private readonly links = new Map<string, string>();
  /** Host path (latin1) → image path, for applying xattrs at the end. */
  private readonly created = new Map<string, string>();
  /**
   * False once nothing can need `created`: no xattr copy, or the scan (which overlaps the copy and
   * usually ends first) found no attribute. A 20,000-file copy then builds no 20,000-entry map.
   */
  private recordCreated = true;
  private readonly warned = new Set<string>();
  private readonly warn: (msg: string) => void;
  private readonly chunk = Buffer.allocUnsafe(CHUNK);
  private readonly chunk2 = Buffer.allocUnsafe(CHUNK);
  private readonly blockSize: number;
  private xattrs: XattrScan | undefined;
  private sinceSync = 0;
  private filesSinceSync = 0;
  private progress: Progress | undefined;
  private reader: HostTreeReader | undefined;
  readonly result: CopyInResult = { files: 0, dirs: 0, symlinks: 0, specials: 0, hardLinks: 0, bytes: 0, skipped: 0 };

  constructor(private readonly fs: Ext4, private readonly opts: CopyInOptions) {
    this.warn = opts.warn ?? ((m: string) => process.stderr.write(`ext4kit: warning: ${m}\n`));
    this.reader = opts.reader;
    this.blockSize = fs.info().blockSize;
  }

  private warnOnce(key: string, msg: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.warn(msg);
  }

  private skip(key: string, msg: string): void {
    this.result.skipped++;
    this.warnOnce(key, msg);
  }

  /** Starts the xattr scan and the progress bar for a copy of host path `root`. */
  private async begin(root: Buffer, st: BigIntStats): Promise<void> {
    if (this.opts.xattrs === false) this.recordCreated = false;
    else {
      const scan = startXattrScan(root, this.opts.recursive && st.isDirectory());
      this.xattrs = scan;
      this.recordCreated = true;
      void scan.then((r) => {
        if (this.xattrs !== scan || (r && (r.error !== undefined || [...r.map.values()].some((attrs) => attrs.length > 0)))) return;
        this.recordCreated = false;
        this.created.clear();
      });
    }
    if (this.opts.progressLabel && process.stderr.isTTY) {
      const total = st.isDirectory() && this.opts.recursive ? await treeBytes(root) : Number(st.size);
      this.progress = new Progress(this.opts.progressLabel, total);
    }
  }

  /** Copies host entry `src` to the new (or replaced, or merged) image path `dest`. */
  async copy(src: Buffer, st: BigIntStats, dest: string): Promise<void> {
    await this.begin(src, st);
    try {
      await this.copyEntry({ host: src, st: hostStatOf(st) }, dest);
      await this.finish();
    } finally {
      await this.end();
    }
  }

  /** Copies the contents of host directory `src` into image directory `dest` and then gives
   * `dest` the mode, owner, xattrs and times of `src` (mkfs -d: `dest` is the root). */
  async copyInto(src: Buffer, st: BigIntStats, dest: string): Promise<void> {
    await this.begin(src, st);
    try {
      await this.fs.chmod(dest, Number(st.mode) & 0o7777);
      await this.setOwner(dest, hostStatOf(st), 0, 0);
      this.noteCreated(src, dest);
      await this.copyChildren(src, dest);
      await this.finish();
      await this.fs.lutimes(dest, timeOf(st.atimeNs), timeOf(st.mtimeNs));
    } finally {
      await this.end();
    }
  }

  private async end(): Promise<void> {
    this.progress?.finish();
    await this.reader?.close();
    this.reader = undefined;
  }

  private async finish(): Promise<void> {
    if (this.xattrs) await applyXattrs(this.fs, this.xattrs, (k) => this.created.get(k), (k, m) => this.warnOnce(k, m), this.warn);
  }

  private noteCreated(host: Buffer, dest: string): void {
    if (this.recordCreated) this.created.set(host.toString('latin1'), dest);
  }

  /** lchown when the owner differs from what the entry was created with. */
  private async setOwner(dest: string, st: HostStat, uid: number, gid: number): Promise<void> {
    if (st.uid === uid && st.gid === gid) return;
    await this.fs.lchown(dest, st.uid, st.gid);
    // Linux clears set-id bits on chown: restore them whatever the library does.
    if ((st.mode & 0o6000) !== 0 && !isSymlinkStat(st)) await this.fs.chmod(dest, st.mode & 0o7777);
  }

  /**
   * The in-memory inode of image directory `dest`, held until released: small files are then
   * created in it by inode (one path walk per directory instead of one per file).
   */
  private async pinDir(dest: string): Promise<PinnedDir | undefined> {
    const eng = engineOf(this.fs);
    if (!eng.fs) return undefined;
    const oi = (await walk(eng.mount, Buffer.from(dest), true, { syscall: 'open', path: dest })) as OpenInode;
    eng.fs.icache.hold(oi);
    return { oi, fs: eng.fs };
  }

  private async copyEntry(e: HostEntry, dest: string, at?: { dir: PinnedDir; name: Uint8Array }): Promise<void> {
    const { st } = e;
    if (this.opts.exclude && st.dev === this.opts.exclude.dev && st.ino === this.opts.exclude.ino) {
      this.skip(`self ${dest}`, `'${e.host.toString()}' is the image being written: not copied`);
      return;
    }
    if (isDirStat(st)) {
      if (!this.opts.recursive) throw new Ext4Error('EISDIR', `EISDIR: '${e.host.toString()}' is a directory (use -r)`);
      await this.copyDir(e, dest);
    } else if (isFileStat(st)) {
      if (st.nlink > 1 && await this.linkIfSeen(st, dest)) return;
      await this.copyFile(e, dest, at);
    } else if (isSymlinkStat(st)) {
      await this.copySymlink(e, dest);
    } else if (!(await this.copySpecial(e, dest))) {
      return;
    }
    this.noteCreated(e.host, dest);
  }

  /**
   * A host inode with more than one link that was copied already becomes a hard link to its first
   * copy (true); otherwise it is remembered as copied to `dest` (false).
   */
  private async linkIfSeen(st: HostStat, dest: string): Promise<boolean> {
    if (st.nlink <= 1) return false;
    const key = `${st.dev}:${st.ino}`;
    const first = this.links.get(key);
    if (first === undefined) {
      this.links.set(key, dest);
      return false;
    }
    await this.replacing(dest, () => this.fs.link(first, dest));
    this.result.hardLinks++;
    this.progress?.tick(0, true);
    return true;
  }

  /** Runs `create`; on EEXIST removes the non-directory in the way and runs it again. */
  private async replacing(dest: string, create: () => Promise<unknown>): Promise<void> {
    try {
      await create();
    } catch (err) {
      if (!isCode(err, 'EEXIST')) throw err;
      const old = await this.fs.lstat(dest);
      if (old.isDirectory()) throw new Ext4Error('EISDIR', `EISDIR: cannot overwrite directory '${dest}' with a non-directory`, { where: { path: dest } });
      await this.fs.unlink(dest);
      await create();
    }
  }

  private async copyDir(e: HostEntry, dest: string): Promise<void> {
    const mode = e.st.mode & 0o7777;
    let created = true;
    try {
      await this.fs.mkdir(dest, { mode });
    } catch (err) {
      if (!isCode(err, 'EEXIST')) throw err;
      const old = await this.fs.stat(dest);
      if (!old.isDirectory()) throw new Ext4Error('ENOTDIR', `ENOTDIR: cannot overwrite non-directory '${dest}' with a directory`, { where: { path: dest } });
      // Merging into an existing directory: it takes the source's metadata, as with cp -a.
      created = false;
      await this.fs.chmod(dest, mode);
    }
    await this.setOwner(dest, e.st, created ? 0 : -1, created ? 0 : -1);
    // mkdir keeps no set-gid bit from its mode argument (as the kernel's): set the bits afterwards.
    if (created && (mode & 0o7000) !== 0) await this.fs.chmod(dest, mode);
    this.result.dirs++;
    this.progress?.tick(0, true);
    this.noteCreated(e.host, dest);
    await this.copyChildren(e.host, dest);
    await this.fs.lutimes(dest, timeOf(e.st.atimeNs), timeOf(e.st.mtimeNs));
  }

  /** Non-directories first, then each subdirectory, depth first (the order the host tree reader walks in). */
  private async copyChildren(hostDir: Buffer, dest: string): Promise<void> {
    // The first directory listed is the root of the tree: its reader walks ahead on a worker thread.
    this.reader ??= new HostTreeReader(hostDir, SMALL_FILE);
    const names = await this.reader.listing(hostDir);
    const subdirs: Array<{ e: HostEntry; name: string }> = [];
    const dir = await this.pinDir(dest);
    try {
      for (const raw of names) {
        const name = utf8Name(raw);
        const host = joinHost(hostDir, raw);
        if (name === undefined) {
          this.skip(`name ${hostDir.toString('latin1')}`, `'${host.toString()}' skipped: the name is not valid UTF-8`);
          continue;
        }
        const got = this.reader.entry(host);
        const e = got instanceof Promise ? await got : got; // no await (a microtask turn) when it has arrived
        if (isDirStat(e.st) && this.opts.recursive) subdirs.push({ e, name });
        else await this.copyEntry(e, joinImage(dest, name), dir && { dir, name: raw });
      }
    } finally {
      if (dir) await dir.fs.release(dir.oi);
    }
    for (const { e, name } of subdirs) await this.copyEntry(e, joinImage(dest, name));
  }

  /**
   * A FIFO, socket or device node, with its owner, mode and times (as mke2fs -d copies them).
   * Hard links among them are kept. False when skipped (a device number ext4 cannot store).
   */
  private async copySpecial(e: HostEntry, dest: string): Promise<boolean> {
    const { st } = e;
    // glibc's dev_t keeps majors of 4096 and up above bit 32; ext4's i_block form has 12 bits.
    if (st.rdev > 0xffffffffn) {
      this.skip(`rdev ${dest}`, `device '${e.host.toString()}' skipped: its device number does not fit ext4's 32-bit form`);
      return false;
    }
    if (await this.linkIfSeen(st, dest)) return true;
    await this.replacing(dest, () => this.fs.mknod(dest, st.mode & 0o170777, Number(st.rdev)));
    await this.setOwner(dest, st, 0, 0);
    await this.fs.lutimes(dest, timeOf(st.atimeNs), timeOf(st.mtimeNs));
    this.result.specials++;
    this.progress?.tick(0, true);
    return true;
  }

  private async copySymlink(e: HostEntry, dest: string): Promise<void> {
    const raw = readlinkSync(e.host, { encoding: 'buffer' });
    const target = utf8Name(raw);
    if (target === undefined) {
      this.skip(`target ${e.host.toString('latin1')}`, `symlink '${e.host.toString()}' skipped: its target is not valid UTF-8`);
      return;
    }
    await this.replacing(dest, () => this.fs.symlink(target, dest));
    await this.setOwner(dest, e.st, 0, 0);
    await this.fs.lutimes(dest, timeOf(e.st.atimeNs), timeOf(e.st.mtimeNs));
    this.result.symlinks++;
    this.progress?.tick(0, true);
  }

  /** A regular file: one importFile call creates it with its owner, mode, times and contents. */
  private async copyFile(e: HostEntry, dest: string, at?: { dir: PinnedDir; name: Uint8Array }): Promise<void> {
    const { st } = e;
    const attrs = { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, atime: timeOf(st.atimeNs), mtime: timeOf(st.mtimeNs), sparse: true };
    let bytes = 0;
    if (e.data !== undefined) {
      // Small: read whole already (by the tree reader); created by inode in a pinned directory,
      // by path (replacing what is in the way) otherwise or when the name is taken.
      const data = e.data;
      let done = false;
      if (at) {
        try {
          await at.dir.fs.importer.file(at.dir.oi, at.name, data, attrs, engineOf(this.fs).cred, { syscall: 'open', path: dest });
          done = true;
        } catch (err) {
          if (!isCode(err, 'EEXIST')) throw err;
        }
      }
      if (!done) await this.replacing(dest, () => this.fs.importFile(dest, data, attrs));
      this.progress?.tick(data.length);
      bytes = data.length;
    } else {
      // Large: streamed in chunks, each written straight to the image.
      await this.replacing(dest, () => this.fs.importFile(dest, this.hostChunks(e.host, (n) => { bytes += n; }), attrs));
    }
    const sync = this.fileCopied(bytes);
    if (sync) await sync;
  }

  /**
   * Counts a copied file; syncs now and then to bound the memory the library holds (the sync's
   * promise then; nothing to wait for, and no promise made, otherwise).
   */
  private fileCopied(bytes: number): Promise<void> | undefined {
    this.result.files++;
    this.result.bytes += bytes;
    this.progress?.tick(0, true);
    this.sinceSync += bytes;
    this.filesSinceSync++;
    if (this.sinceSync < SYNC_EVERY_BYTES && this.filesSinceSync < SYNC_EVERY_FILES) return undefined;
    this.sinceSync = 0;
    this.filesSinceSync = 0;
    return this.fs.sync({ durable: false });
  }

  /**
   * A host file in CHUNK pieces. Double buffered: the next chunk is read on a libuv thread while
   * this one is written into the image, so the host read overlaps the image work. A chunk is
   * reused once the next one is asked for (importFile has written it by then).
   */
  private async *hostChunks(host: Buffer, counted: (n: number) => void): AsyncGenerator<Uint8Array> {
    const fd = openSync(host, 'r');
    let next: Promise<number> | undefined;
    try {
      const bufs = [this.chunk, this.chunk2];
      let pos = 0;
      next = readAt(fd, bufs[0]!, 0);
      for (let i = 0; ; i++) {
        const n = await next;
        next = undefined;
        if (n === 0) break;
        const buf = bufs[i & 1]!;
        next = readAt(fd, bufs[(i + 1) & 1]!, pos + n);
        pos += n;
        counted(n);
        this.progress?.tick(n);
        yield n === CHUNK ? buf : buf.subarray(0, n);
      }
    } finally {
      // The descriptor must outlive a read still running on another thread.
      if (next) await next.catch(() => 0);
      closeSync(fd);
    }
  }
}

function readAt(fd: number, buf: Buffer, pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    read(fd, buf, 0, buf.length, pos, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

/** Bytes of regular files below `root` (for the progress bar's total). */
async function treeBytes(root: Buffer): Promise<number> {
  let total = 0;
  const stack = [root];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    const entries = await hostfs.readdir(dir, { encoding: 'buffer', withFileTypes: true }).catch(() => []);
    await Promise.all(entries.map(async (d) => {
      const p = joinHost(dir, d.name);
      if (d.isDirectory()) stack.push(p);
      else if (d.isFile()) {
        const { size } = await hostfs.lstat(p).catch(() => ({ size: 0 }));
        total += size;
      }
    }));
  }
  return total;
}

/**
 * For `put -r SRC`: the reader of host directory SRC, started now so that its worker thread boots
 * (tens of milliseconds) and reads ahead while the caller opens the image. Undefined when SRC is
 * not a directory. Pass it as CopyInOptions.reader, or close it.
 */
export function startTreeReader(src: string): HostTreeReader | undefined {
  const abs = resolve(src);
  let isDir: boolean;
  try {
    isDir = lstatSync(abs).isDirectory();
  } catch {
    return undefined; // the copy reports it
  }
  return isDir ? new HostTreeReader(Buffer.from(abs), SMALL_FILE) : undefined;
}

/** Host dev/ino of a file, to keep an image from copying itself. */
export async function hostIdentity(path: string): Promise<{ dev: bigint; ino: bigint } | undefined> {
  const st = await hostfs.stat(path, { bigint: true }).catch(() => undefined);
  return st ? { dev: st.dev, ino: st.ino } : undefined;
}

/**
 * `put` semantics (like `cp -a`): when `dest` names an existing directory the copy goes to
 * dest/basename(src); a directory source needs `recursive`; an existing non-directory is replaced.
 */
export async function putIntoImage(fs: Ext4, src: string, dest: string, opts: CopyInOptions): Promise<CopyInResult> {
  const srcAbs = resolve(src);
  const st = await hostfs.lstat(srcAbs, { bigint: true });
  if (st.isDirectory() && !opts.recursive) throw new Ext4Error('EISDIR', `EISDIR: '${src}' is a directory (use -r)`);
  let target = dest.startsWith('/') ? dest : `/${dest}`;
  const existing = await fs.stat(target).catch((e: unknown) => {
    if (isCode(e, 'ENOENT')) return undefined;
    throw e;
  });
  const copier = new CopyIn(fs, opts);
  const srcBytes = Buffer.from(srcAbs);
  // `SRC/.` (cp's convention): the directory's contents go straight into an existing DEST.
  const contentsOf = st.isDirectory() && /(^|\/)\.\/*$/.test(src);
  if (existing?.isDirectory()) {
    const base = basename(srcAbs);
    if (base === '' || contentsOf) {
      await copier.copyInto(srcBytes, st, target);
      return copier.result;
    }
    target = joinImage(target.replace(/\/+$/, '') || '/', base);
  } else if (target.length > 1 && target.endsWith('/')) {
    throw new Ext4Error(existing ? 'ENOTDIR' : 'ENOENT', `${existing ? 'ENOTDIR' : 'ENOENT'}: '${dest}' is not a directory`, { where: { path: dest } });
  }
  await copier.copy(srcBytes, st, target);
  return copier.result;
}

/** `mkfs -d` semantics: the contents of host directory `dir` into the image root, and the root
 * takes `dir`'s own mode, owner, xattrs and times. */
export async function populateFromDir(fs: Ext4, dir: string, opts: Omit<CopyInOptions, 'recursive'>): Promise<CopyInResult> {
  const abs = resolve(dir);
  const st = await hostfs.lstat(abs, { bigint: true });
  if (!st.isDirectory()) throw new Ext4Error('ENOTDIR', `ENOTDIR: '${dir}' is not a directory`);
  const copier = new CopyIn(fs, { ...opts, recursive: true });
  await copier.copyInto(Buffer.from(abs), st, '/');
  return copier.result;
}
