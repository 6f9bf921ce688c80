// `ext4kit ls [-l] [-R] [-a] [-i] IMAGE [PATH]`: lists a directory of an image like ls(1), and the
// formatting helpers (mode strings, times, safe names) that stat and demo share.
import { corrupt } from '../errors/ext4-error.ts';
import type { Ext4Dirent, Ext4Stats } from '../api/types.ts';
import { parseArgs } from './args.ts';
import { statJson } from './stat.ts';
import type { Ext4 } from '../node.ts';
import { IMAGE_OPTIONS, IMAGE_USAGE, openImage } from './image.ts';

export const LS_USAGE = `usage: ext4kit ls [-l] [-R] [-a] [-i] IMAGE [PATH]
  -l  long format: mode, links, uid, gid, size, mtime (UTC), name, -> target
  -R  recurse into subdirectories
  -a  include '.', '..' and names starting with '.'
  -i  print inode numbers
  --json  print a JSON array of entries (as 'stat --json' shows them, plus name; with -R,
          every entry below PATH)
${IMAGE_USAGE}
example:
  ext4kit ls -l disk.img /etc
  ext4kit ls --json 'disk.img?offset=1M' /`;

const S_IFMT = 0o170000;
const TYPE_CHARS: Record<number, string> = {
  0o140000: 's', 0o120000: 'l', 0o100000: '-', 0o060000: 'b', 0o040000: 'd', 0o020000: 'c', 0o010000: 'p',
};

/** `drwxr-xr-x`, with s/S and t/T for set-id and sticky bits, as ls(1) prints it. */
export function modeString(mode: number): string {
  const type = TYPE_CHARS[mode & S_IFMT] ?? '?';
  const rwx = (shift: number, special: boolean, on: string, off: string): string => {
    const bits = (mode >> shift) & 7;
    const x = bits & 1 ? (special ? on : 'x') : special ? off : '-';
    return (bits & 4 ? 'r' : '-') + (bits & 2 ? 'w' : '-') + x;
  };
  return type + rwx(6, (mode & 0o4000) !== 0, 's', 'S') + rwx(3, (mode & 0o2000) !== 0, 's', 'S') + rwx(0, (mode & 0o1000) !== 0, 't', 'T');
}

export function fileTypeName(mode: number): string {
  switch (mode & S_IFMT) {
    case 0o100000: return 'regular file';
    case 0o040000: return 'directory';
    case 0o120000: return 'symbolic link';
    case 0o020000: return 'character special file';
    case 0o060000: return 'block special file';
    case 0o010000: return 'fifo';
    case 0o140000: return 'socket';
    default: return 'unknown';
  }
}

const pad2 = (n: number) => String(n).padStart(2, '0');

/** `YYYY-MM-DD HH:MM:SS` in UTC, with `.nnnnnnnnn` when `ns` is given. */
export function formatTimeNs(ns: bigint, withNs = true): string {
  const NS = 1_000_000_000n;
  let sec = ns / NS;
  let frac = ns % NS;
  if (frac < 0n) {
    frac += NS;
    sec -= 1n;
  }
  const d = new Date(Number(sec) * 1000);
  if (Number.isNaN(d.getTime())) return `@${sec}`;
  const y = d.getUTCFullYear();
  const year = y >= 0 && y <= 9999 ? String(y).padStart(4, '0') : String(y);
  const base = `${year}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())} ${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())}`;
  return withNs ? `${base}.${String(frac).padStart(9, '0')}` : base;
}

const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/** A name safe to print on a terminal: control characters and bytes that are not UTF-8 as `\ooo`. */
export function printableName(bytes: Uint8Array): string {
  let text: string | undefined;
  try {
    text = utf8Strict.decode(bytes);
  } catch {
    text = undefined;
  }
  if (text !== undefined) {
    // eslint-disable-next-line no-control-regex
    return text.replace(/[\x00-\x1f\x7f]/g, (c) => '\\' + c.charCodeAt(0).toString(8).padStart(3, '0'));
  }
  let out = '';
  for (const b of bytes) {
    out += b < 0x20 || b >= 0x7f ? '\\' + b.toString(8).padStart(3, '0') : String.fromCharCode(b);
  }
  return out;
}

export function printablePath(path: string): string {
  return printableName(new TextEncoder().encode(path));
}

/** The image path of a directory entry. */
export function childPath(parent: string, name: string): string {
  return parent.endsWith('/') ? parent + name : `${parent}/${name}`;
}

export function normalizeImagePath(p: string | undefined): string {
  if (p === undefined || p === '') return '/';
  return p.startsWith('/') ? p : `/${p}`;
}

/** Linux dev_t (as glibc encodes it) → major, minor. */
export function devMajorMinor(rdev: number): [number, number] {
  const hi = Math.floor(rdev / 2 ** 32);
  const lo = rdev >>> 0;
  const major = ((lo >>> 8) & 0xfff) | ((hi & 0xfffff000) >>> 0);
  const minor = (lo & 0xff) | ((lo >>> 12) & 0xfff00);
  return [major >>> 0, minor >>> 0];
}

export interface LsOptions {
  long: boolean;
  recursive: boolean;
  all: boolean;
  inode: boolean;
}

interface Row {
  name: string;
  path: string;
  st: Ext4Stats | undefined;
  ino: number;
  isDir: boolean;
}

async function formatRow(fs: Ext4, row: Row, opts: LsOptions): Promise<string> {
  const ino = opts.inode ? `${String(row.ino).padStart(8)} ` : '';
  if (!opts.long) return ino + row.name;
  if (!row.st) return `${ino}?????????? ${'?'.padStart(3)} ${'?'.padStart(5)} ${'?'.padStart(5)} ${'?'.padStart(10)} ${'?'.padEnd(19)} ${row.name}`;
  const st = row.st;
  let size = String(st.size);
  if (st.isBlockDevice() || st.isCharacterDevice()) {
    const [ma, mi] = devMajorMinor(st.rdev);
    size = `${ma}, ${mi}`;
  }
  let line = `${ino}${modeString(st.mode)} ${String(st.nlink).padStart(3)} ${String(st.uid).padStart(5)} ${String(st.gid).padStart(5)} ` +
    `${size.padStart(10)} ${formatTimeNs(st.mtimeNs, false)} ${row.name}`;
  if (st.isSymbolicLink()) line += ` -> ${printableName(await fs.readlinkBytes(row.path))}`;
  return line;
}

/** Writes the listing of `path` (a directory's entries, or the entry itself) with `write`. */
export async function listPath(fs: Ext4, path: string, opts: LsOptions, write: (s: string) => void): Promise<void> {
  const top = await fs.lstat(path);
  if (!top.isDirectory()) {
    write(await formatRow(fs, { name: printablePath(path), path, st: top, ino: top.ino, isDir: false }, opts) + '\n');
    return;
  }
  const seen = new Set<number>();
  // Depth-first in ls -R order: a directory's listing, then each subdirectory in name order.
  const stack: Array<{ dir: string; ino: number }> = [{ dir: path, ino: top.ino }];
  let first = true;
  while (stack.length > 0) {
    const { dir, ino } = stack.pop()!;
    const dst = await fs.lstat(dir);
    if (dst.ino !== ino) throw corrupt('dirent-duplicate', `'${dir}' is named more than once in its directory`, { inode: ino, path: dir });
    if (seen.has(dst.ino)) throw corrupt('dir-cycle', `directory inode ${dst.ino} is reachable twice`, { inode: dst.ino, path: dir });
    seen.add(dst.ino);
    const entries: Ext4Dirent[] = await fs.readdir(dir, { withFileTypes: true });
    entries.sort((a, b) => Buffer.compare(Buffer.from(a.nameBytes), Buffer.from(b.nameBytes)));
    const rows: Row[] = [];
    if (opts.all) {
      rows.push({ name: '.', path: dir, st: opts.long ? dst : undefined, ino: dst.ino, isDir: true });
      const parent = dir === '/' ? '/' : dir.replace(/\/[^/]*\/?$/, '') || '/';
      const pst = opts.long || opts.inode ? await fs.lstat(parent) : undefined;
      rows.push({ name: '..', path: parent, st: pst, ino: pst?.ino ?? 0, isDir: true });
    }
    for (const d of entries) {
      if (!opts.all && d.nameBytes[0] === 0x2e) continue;
      const p = childPath(dir, d.name);
      // Names that are not UTF-8 cannot be addressed by path: listed, but without details.
      const addressable = Buffer.from(d.name, 'utf8').equals(Buffer.from(d.nameBytes));
      let st = opts.long && addressable ? await fs.lstat(p) : undefined;
      // A duplicated name resolves to its first entry: show this one without details.
      if (st && st.ino !== d.ino) st = undefined;
      rows.push({ name: printableName(d.nameBytes), path: p, st, ino: d.ino, isDir: addressable && d.isDirectory() });
    }
    if (opts.recursive) write(`${first ? '' : '\n'}${printablePath(dir)}:\n`);
    first = false;
    for (const r of rows) write((await formatRow(fs, r, opts)) + '\n');
    if (opts.recursive) {
      const subdirs = rows.filter((r) => r.isDir && r.name !== '.' && r.name !== '..').map((r) => ({ dir: r.path, ino: r.ino }));
      for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i]!);
    }
  }
}

/** `ls --json`: the entries of `path` (or the entry itself) with their stat fields. */
async function listJson(fs: Ext4, path: string, opts: LsOptions): Promise<Array<Record<string, unknown>>> {
  const out: Array<Record<string, unknown>> = [];
  const entry = async (p: string, name: Uint8Array) => {
    const st = await fs.lstat(p);
    const target = st.isSymbolicLink() ? await fs.readlinkBytes(p) : undefined;
    out.push({ name: Buffer.from(name).toString('utf8'), nameHex: Buffer.from(name).toString('hex'), ...statJson(p, st, target) });
    return st;
  };
  const top = await fs.lstat(path);
  if (!top.isDirectory()) {
    await entry(path, new TextEncoder().encode(path.slice(path.lastIndexOf('/') + 1)));
    return out;
  }
  const seen = new Set<number>([top.ino]);
  const visit = async (dir: string): Promise<void> => {
    const entries = await fs.readdir(dir, { withFileTypes: true });
    entries.sort((a, b) => Buffer.compare(Buffer.from(a.nameBytes), Buffer.from(b.nameBytes)));
    for (const d of entries) {
      if (!opts.all && d.nameBytes[0] === 0x2e) continue;
      const p = childPath(dir, d.name);
      const st = await entry(p, d.nameBytes);
      if (opts.recursive && st.isDirectory()) {
        if (seen.has(st.ino)) throw corrupt('dir-cycle', `directory inode ${st.ino} is reachable twice`, { inode: st.ino, path: p });
        seen.add(st.ino);
        await visit(p);
      }
    }
  };
  await visit(path);
  return out;
}

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { options: [...IMAGE_OPTIONS], flags: ['l', 'R', 'a', 'i', 'json'], minPositionals: 1, maxPositionals: 2, usage: LS_USAGE });
  const [image, path] = args.positionals as [string, string | undefined];
  const fs = await openImage(image, args, { readOnly: true });
  try {
    const opts: LsOptions = { long: args.flags.has('l'), recursive: args.flags.has('R'), all: args.flags.has('a'), inode: args.flags.has('i') };
    if (args.flags.has('json')) process.stdout.write(JSON.stringify(await listJson(fs, normalizeImagePath(path), opts), null, 2) + '\n');
    else await listPath(fs, normalizeImagePath(path), opts, (s) => process.stdout.write(s));
  } finally {
    await fs.close();
  }
  return 0;
}
