// `ext4kit get [-r] IMAGE PATH DEST`: copies a file or a tree out of an image onto the host,
// keeping bytes, holes, modes, times, symlinks, hard links, user.* xattrs and (as root) owners.
//
// The image is untrusted: nothing is ever written outside DEST. Names are single path components
// checked byte by byte; every host entry is created exclusively (O_EXCL, mkdir, symlink, link
// all fail on an existing name and never follow a symlink in the last component); metadata is
// applied only after checking with lstat that the path still holds the entry that was created;
// a directory inode met twice is a cycle (EUCLEAN); depth and entry count are bounded.
// Residual risk: another host process that can write inside DEST while the copy runs could swap
// a directory we created for a symlink between two calls (Node offers no openat/O_PATH).
//
// Choices, where Node or the host limit fidelity:
//  - times: lutimes() takes a double and libuv truncates to the microsecond; entries whose
//    nanoseconds differ are fixed afterwards with GNU `touch -h -d @S.N` (batched per distinct
//    time, at most MAX_TOUCH_RUNS runs unless --exact-times; paths must be valid UTF-8 to be
//    passed as arguments). Without touch, times are exact to the microsecond.
//  - user.* xattrs: restored with one `setfattr -h --restore=-` run at the end; without setfattr,
//    or when the host refuses them, a one-time warning. Other namespaces are not restored.
//  - owners: lchown() only when running as root (before chmod, which keeps set-id bits).
//  - FIFOs: created with the `mkfifo` binary; block and character devices with `mknod`, only as
//    root; sockets are skipped. Each skip gives a one-time warning.
import { spawn } from 'node:child_process';
import { constants, openSync, writeSync, ftruncateSync, closeSync, lstatSync, mkdirSync, linkSync, symlinkSync } from 'node:fs';
import * as hostfs from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { corrupt, Ext4Error } from '../errors/ext4-error.ts';
import type { Ext4Stats } from '../api/types.ts';
import { parseArgs, UsageError } from './args.ts';
import { pipeToWritable } from './cat.ts';
import { childPath, devMajorMinor, normalizeImagePath, printableName } from './ls.ts';
import { Progress } from './progress.ts';
import type { Ext4 } from '../node.ts';
import { IMAGE_OPTIONS, IMAGE_USAGE, openImage } from './image.ts';

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
const MAX_TOUCH_RUNS = 1000;
const INLINE_DATA_FL = 0x10000000;
const NS = 1_000_000_000n;
const ROOT_INO = 2;

type Kind = 'file' | 'dir' | 'symlink' | 'special';

interface Rec {
  host: Buffer;
  st: Ext4Stats;
  kind: Kind;
  hostDev: bigint;
  hostIno: bigint;
}

interface CopyOptions {
  recursive: boolean;
  exactTimes: boolean;
  warn: (msg: string) => void;
}

/** A directory entry name that can only ever name one entry inside its parent. */
function checkName(name: Uint8Array, parent: string): void {
  const bad = name.length === 0 || name.includes(0x2f) || name.includes(0) ||
    (name.length === 1 && name[0] === 0x2e) || (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e);
  if (bad) throw corrupt('dirent-name', `unsafe directory entry name '${printableName(name)}' in '${parent}'`, { path: parent });
}

function joinHost(parent: Buffer, name: Uint8Array): Buffer {
  return Buffer.concat([parent, Buffer.from('/'), name]);
}

/** Seconds as a double that libuv turns into exactly the intended microsecond. */
function timeArg(ns: bigint): number {
  let sec = ns / NS;
  let frac = ns % NS;
  if (frac < 0n) {
    frac += NS;
    sec -= 1n;
  }
  const usec = frac / 1000n;
  return Number(sec) + (Number(usec) * 1000 + 500) / 1e9;
}

function touchTime(ns: bigint): string {
  const neg = ns < 0n;
  const abs = neg ? -ns : ns;
  return `@${neg ? '-' : ''}${abs / NS}.${String(abs % NS).padStart(9, '0')}`;
}

/** setfattr's path quoting: whitespace, '=', '\\' and non-printable bytes as \ooo. */
function quoteAttrPath(p: Buffer): string {
  let s = '';
  for (const b of p) s += b <= 0x20 || b >= 0x7f || b === 0x3d || b === 0x5c ? '\\' + b.toString(8).padStart(3, '0') : String.fromCharCode(b);
  return s;
}

function asArg(p: Buffer): string | undefined {
  const s = p.toString('utf8');
  return Buffer.from(s, 'utf8').equals(p) ? s : undefined;
}

function runTool(cmd: string, args: string[], input?: string): Promise<{ ok: boolean; missing: boolean; stderr: string }> {
  return new Promise((resolvePromise) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => {
      if (stderr.length < 4096) stderr += b.toString();
    });
    child.on('error', (e: NodeJS.ErrnoException) => resolvePromise({ ok: false, missing: e.code === 'ENOENT', stderr: e.message }));
    child.on('close', (code) => resolvePromise({ ok: code === 0, missing: false, stderr: stderr.trim() }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
  });
}

class Copier {
  private readonly links = new Map<number, Buffer>();
  private readonly dirInodes = new Set<number>();
  private readonly records: Rec[] = [];
  private xattrDump = '';
  private readonly warned = new Set<string>();
  private readonly isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  private entries = 0;
  copiedFiles = 0;
  copiedBytes = 0;

  constructor(
    private readonly fs: Ext4,
    private readonly opts: CopyOptions,
    private readonly blockSize: number,
    private readonly maxEntries: number,
    private readonly progress: Progress,
  ) {}

  private warnOnce(key: string, msg: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.opts.warn(msg);
  }

  /** Copies the entry at image path `src` (already lstat'ed as `st`) to the new host path `host`. */
  async copyTree(src: string, st: Ext4Stats, host: Buffer, existingRoot: boolean): Promise<void> {
    const stack: Array<{ src: string; st: Ext4Stats; host: Buffer; depth: number }> = [];
    if (existingRoot) {
      this.enterDir(src, st);
      await this.pushChildren(stack, src, host, 1);
    } else {
      stack.push({ src, st, host, depth: 0 });
    }
    while (stack.length > 0) {
      const job = stack.pop()!;
      const isDir = await this.copyEntry(job.src, job.st, job.host);
      if (isDir) await this.pushChildren(stack, job.src, job.host, job.depth + 1);
    }
  }

  private enterDir(src: string, st: Ext4Stats): void {
    if (this.dirInodes.has(st.ino)) throw corrupt('dir-cycle', `directory inode ${st.ino} is reachable twice (at '${src}')`, { inode: st.ino, path: src });
    this.dirInodes.add(st.ino);
  }

  private async pushChildren(stack: Array<{ src: string; st: Ext4Stats; host: Buffer; depth: number }>, dir: string, host: Buffer, depth: number): Promise<void> {
    if (!this.opts.recursive) return;
    const entries = await this.fs.readdir(dir, { withFileTypes: true });
    if (entries.length > 0 && depth > MAX_DEPTH) throw new Ext4Error('ENAMETOOLONG', `directory tree deeper than ${MAX_DEPTH} levels at '${dir}'`, { where: { path: dir } });
    const jobs: Array<{ src: string; st: Ext4Stats; host: Buffer; depth: number }> = [];
    for (const d of entries) {
      checkName(d.nameBytes, dir);
      if (++this.entries > this.maxEntries) throw corrupt('dir-walk', `more directory entries than the image can hold (at '${dir}')`, { path: dir });
      if (!Buffer.from(d.name, 'utf8').equals(Buffer.from(d.nameBytes))) {
        // The API addresses entries by (UTF-8) string paths only.
        this.warnOnce('non-utf8', `skipping names that are not UTF-8 (first: '${printableName(d.nameBytes)}' in '${dir}')`);
        continue;
      }
      const src = childPath(dir, d.name);
      const st = await this.fs.lstat(src);
      if (st.ino !== d.ino) {
        throw corrupt('dirent-duplicate', `directory '${dir}' holds the name '${printableName(d.nameBytes)}' more than once`, { path: dir, inode: d.ino });
      }
      jobs.push({ src, st, host: joinHost(host, d.nameBytes), depth });
    }
    for (let i = jobs.length - 1; i >= 0; i--) stack.push(jobs[i]!);
  }

  private async record(host: Buffer, st: Ext4Stats, kind: Kind): Promise<void> {
    const h = lstatSync(host, { bigint: true });
    this.records.push({ host, st, kind, hostDev: h.dev, hostIno: h.ino });
  }

  /** Creates one host entry; returns true when it is a directory whose children are to follow. */
  private async copyEntry(src: string, st: Ext4Stats, host: Buffer): Promise<boolean> {
    this.progress.tick(0, true);
    if (st.isDirectory()) {
      if (!this.opts.recursive) throw new Ext4Error('EISDIR', `EISDIR: '${src}' is a directory (use -r)`, { where: { path: src } });
      this.enterDir(src, st);
      mkdirSync(host, 0o700);
      await this.record(host, st, 'dir');
      await this.collectXattrs(src, host);
      return true;
    }
    if (st.nlink > 1) {
      const first = this.links.get(st.ino);
      if (first !== undefined) {
        linkSync(first, host);
        return false;
      }
    }
    let kind: Kind;
    if (st.isFile()) {
      await this.copyFile(src, st, host);
      kind = 'file';
    } else if (st.isSymbolicLink()) {
      const target = await this.fs.readlinkBytes(src);
      if (target.length === 0 || target.includes(0)) {
        this.warnOnce(`badlink:${src}`, `skipping symlink '${printableName(new TextEncoder().encode(src))}' with an invalid target`);
        return false;
      }
      symlinkSync(Buffer.from(target), host);
      kind = 'symlink';
    } else {
      if (!(await this.makeSpecial(src, st, host))) return false;
      kind = 'special';
    }
    if (st.nlink > 1) this.links.set(st.ino, host);
    await this.record(host, st, kind);
    if (kind !== 'symlink') await this.collectXattrs(src, host);
    return false;
  }

  // Host writes are synchronous: a CLI copying many small files is dominated by per-call
  // promise overhead otherwise, and nothing else runs concurrently here.
  private async copyFile(src: string, st: Ext4Stats, host: Buffer): Promise<void> {
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
    const out = openSync(host, flags, 0o600);
    try {
      if (st.size > 0) {
        if (st.flags & INLINE_DATA_FL) this.writeAll(out, await this.fs.readFile(src), 0);
        else await this.copyMapped(src, st, out);
      }
      ftruncateSync(out, st.size);
    } finally {
      closeSync(out);
    }
    this.copiedFiles++;
  }

  private writeAll(out: number, data: Uint8Array, position: number): void {
    let done = 0;
    while (done < data.length) done += writeSync(out, data, done, data.length - done, position + done);
    this.copiedBytes += data.length;
    this.progress.tick(data.length);
  }

  /** Copies only the written, mapped ranges: holes and unwritten extents stay holes. */
  private async copyMapped(src: string, st: Ext4Stats, out: number): Promise<void> {
    const fh = await this.fs.open(src, 'r');
    const buf = new Uint8Array(CHUNK);
    try {
      const bs = this.blockSize;
      for await (const m of this.fs.mappings(src)) {
        if (m.unwritten) continue;
        let pos = Number(m.fileBlock) * bs;
        const end = Math.min(st.size, (Number(m.fileBlock) + m.countBlocks) * bs);
        while (pos < end) {
          const { bytesRead } = await fh.read(buf, 0, Math.min(CHUNK, end - pos), pos);
          if (bytesRead <= 0) break;
          this.writeAll(out, buf.subarray(0, bytesRead), pos);
          pos += bytesRead;
        }
      }
    } finally {
      await fh.close();
    }
  }

  private async makeSpecial(src: string, st: Ext4Stats, host: Buffer): Promise<boolean> {
    const shown = printableName(new TextEncoder().encode(src));
    const arg = asArg(host);
    if (st.isSocket()) {
      this.warnOnce('socket', `skipping sockets (first: '${shown}')`);
      return false;
    }
    if (arg === undefined) {
      this.warnOnce('special-name', `skipping special files whose host path is not UTF-8 (first: '${shown}')`);
      return false;
    }
    if (st.isFIFO()) {
      const r = await runTool('mkfifo', ['-m', '600', '--', arg]);
      if (r.ok) return true;
      if (r.missing) this.warnOnce('mkfifo', `mkfifo not found: skipping FIFOs (first: '${shown}')`);
      else throw new Ext4Error('EIO', `mkfifo '${arg}' failed: ${r.stderr}`);
      return false;
    }
    if (st.isBlockDevice() || st.isCharacterDevice()) {
      if (!this.isRoot) {
        this.warnOnce('device', `not root: skipping device files (first: '${shown}')`);
        return false;
      }
      const [major, minor] = devMajorMinor(st.rdev);
      const r = await runTool('mknod', ['-m', '600', '--', arg, st.isBlockDevice() ? 'b' : 'c', String(major), String(minor)]);
      if (r.ok) return true;
      if (r.missing) this.warnOnce('mknod', `mknod not found: skipping device files (first: '${shown}')`);
      else this.warnOnce('mknod-failed', `mknod failed, skipping device files (first: '${shown}': ${r.stderr})`);
      return false;
    }
    this.warnOnce('unknown-type', `skipping entries of unknown type (first: '${shown}')`);
    return false;
  }

  private async collectXattrs(src: string, host: Buffer): Promise<void> {
    const names = await this.fs.listxattr(src);
    let lines = '';
    for (const name of names) {
      if (!name.startsWith('user.')) {
        if (!name.startsWith('system.data')) this.warnOnce('xattr-ns', `only user.* xattrs are restored (skipping ${name} and the like)`);
        continue;
      }
      if (/[\s=\\]/.test(name) || name.length > 255) {
        this.warnOnce('xattr-name', `skipping xattrs with unusual names (first: ${JSON.stringify(name)})`);
        continue;
      }
      const value = await this.fs.getxattr(src, name);
      lines += `${name}=0x${Buffer.from(value).toString('hex')}\n`;
    }
    if (lines) this.xattrDump += `# file: ${quoteAttrPath(host)}\n${lines}\n`;
  }

  /** Applies xattrs, owners, modes and times; children before parents. */
  async finish(): Promise<void> {
    if (this.xattrDump) {
      const r = await runTool('setfattr', ['-h', '--restore=-'], this.xattrDump);
      if (r.missing) this.opts.warn('setfattr not found (package attr): user.* xattrs were not restored');
      else if (!r.ok) this.opts.warn(`setfattr could not restore user.* xattrs: ${r.stderr.split('\n')[0]}`);
    }
    // Times first, then owners and modes: neither chown nor chmod touches atime or mtime, and a
    // directory made read-only or unsearchable last cannot get in the way of its children.
    const fixes = new Map<string, Buffer[]>();
    let unfixable = 0;
    for (let i = this.records.length - 1; i >= 0; i--) {
      const rec = this.records[i]!;
      await this.checkSame(rec);
      await hostfs.lutimes(rec.host, timeArg(rec.st.atimeNs), timeArg(rec.st.mtimeNs));
      const after = await hostfs.lstat(rec.host, { bigint: true });
      for (const [which, want, got] of [['a', rec.st.atimeNs, after.atimeNs], ['m', rec.st.mtimeNs, after.mtimeNs]] as const) {
        if (want === got) continue;
        const arg = asArg(rec.host);
        if (arg === undefined) {
          unfixable++;
          continue;
        }
        const key = `${which} ${touchTime(want)}`;
        const list = fixes.get(key);
        if (list) list.push(rec.host);
        else fixes.set(key, [rec.host]);
      }
    }
    await this.fixTimes(fixes);
    if (unfixable > 0) this.opts.warn(`${unfixable} times on paths that are not UTF-8 kept to the microsecond`);
    for (let i = this.records.length - 1; i >= 0; i--) {
      const rec = this.records[i]!;
      await this.checkSame(rec);
      // chown clears set-id bits: it goes first.
      if (this.isRoot) await hostfs.lchown(rec.host, rec.st.uid, rec.st.gid);
      if (rec.kind !== 'symlink') await hostfs.chmod(rec.host, rec.st.mode & 0o7777);
    }
  }

  private async checkSame(rec: Rec): Promise<void> {
    const h = await hostfs.lstat(rec.host, { bigint: true });
    if (h.dev !== rec.hostDev || h.ino !== rec.hostIno) {
      throw new Ext4Error('EIO', `host entry '${rec.host.toString('utf8')}' was replaced during the copy`);
    }
  }

  /** Sets nanosecond times with GNU touch, one run per distinct (kind, time). */
  private async fixTimes(fixes: Map<string, Buffer[]>): Promise<void> {
    if (fixes.size > MAX_TOUCH_RUNS && !this.opts.exactTimes) {
      this.opts.warn(`${fixes.size} distinct sub-microsecond times: kept to the microsecond (use --exact-times for nanoseconds)`);
    } else if (fixes.size > 0) {
      for (const [key, paths] of fixes) {
        const [which, time] = key.split(' ') as [string, string];
        for (let i = 0; i < paths.length; i += 500) {
          const batch = paths.slice(i, i + 500).map((p) => asArg(p)!);
          const r = await runTool('touch', ['-h', `-${which}`, '-d', time, '--', ...batch]);
          if (r.missing) {
            this.opts.warn('touch not found: times kept to the microsecond');
            return;
          }
          if (!r.ok) {
            this.opts.warn(`touch failed, times kept to the microsecond: ${r.stderr.split('\n')[0]}`);
            return;
          }
        }
      }
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
  opts: { recursive: boolean; force?: boolean; exactTimes?: boolean; warn?: (msg: string) => void },
): Promise<GetResult> {
  const warn = opts.warn ?? ((m: string) => process.stderr.write(`ext4kit: warning: ${m}\n`));
  const given = normalizeImagePath(srcPath);
  const src = opts.recursive ? given : await fs.realpath(given);
  const st = await fs.lstat(src);
  if (st.isDirectory() && !opts.recursive) throw new Ext4Error('EISDIR', `EISDIR: '${src}' is a directory (use -r)`, { where: { path: src } });
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
  const copier = new Copier(fs, { recursive: opts.recursive, exactTimes: opts.exactTimes ?? false, warn }, info.blockSize,
    Math.max(1024, Math.floor((info.blocksCount * info.blockSize) / 12)), progress);
  try {
    await copier.copyTree(src, st, target, existingRoot);
    await copier.finish();
  } finally {
    progress.finish();
  }
  return { files: copier.copiedFiles, bytes: copier.copiedBytes };
}

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { options: [...IMAGE_OPTIONS], flags: ['r', 'f', 'exact-times'], minPositionals: 3, maxPositionals: 3, usage: GET_USAGE });
  const [image, path, dest] = args.positionals as [string, string, string];
  const fs = await openImage(image, args, { readOnly: true });
  try {
    if (dest === '-') {
      // DEST '-': one file's bytes to standard output (symlinks followed, as cat does).
      if (args.flags.has('r')) throw new UsageError("DEST '-' (standard output) takes one file, not -r", GET_USAGE);
      const p = normalizeImagePath(path);
      if ((await fs.stat(p)).isDirectory()) throw new Ext4Error('EISDIR', `EISDIR: '${path}' is a directory`, { where: { path } });
      await pipeToWritable(fs.createReadStream(p), process.stdout);
      return 0;
    }
    await getFromImage(fs, path, dest, { recursive: args.flags.has('r'), force: args.flags.has('f'), exactTimes: args.flags.has('exact-times') });
  } finally {
    await fs.close();
  }
  return 0;
}
