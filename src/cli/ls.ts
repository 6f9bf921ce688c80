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

export { modeString, fileTypeName, formatTimeNs, printableName, printablePath, childPath, normalizeImagePath, devMajorMinor } from './print.ts';
import { modeString, formatTimeNs, printableName, printablePath, childPath, normalizeImagePath, devMajorMinor } from './print.ts';

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
