// mkfs -d's fast path: walks the host tree with synchronous calls (as mke2fs -d does) and hands
// each entry to the bulk tree builder of the filesystem being made (mkfs/bulk-tree.ts): no
// mounted filesystem, no per-file handles. xattrs come from one `getfattr -R` run that overlaps
// the build and are set afterwards through the library (see copy-in.ts); what is skipped and
// why is the same as for the general copy-in.
import { closeSync, constants, lstatSync, openSync, readdirSync, readlinkSync, readSync } from 'node:fs';
import { resolve } from 'node:path';
import type { ReadAt, TreeAttrs, TreeBuilder } from '../mkfs/bulk-tree.ts';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK } from '../format/inode.ts';
import { joinHost, isUtf8Name } from './host-tree.ts';
import { startXattrScan, timeOf, type CopyInResult, type XattrScan } from './copy-in.ts';

export interface HostTreeBuildOptions {
  warn: (msg: string) => void;
  /** Host dev/ino of a file never to copy (the image itself). */
  exclude?: { dev: bigint; ino: bigint } | undefined;
  /** Copy xattrs (default true). */
  xattrs?: boolean;
}

export interface HostTreeBuild {
  result: CopyInResult;
  /** Host path (latin1) → image path of an entry made (undefined when not copied), for the xattrs. */
  destOf: (hostKey: string) => string | undefined;
  /** The getfattr run started with the build (undefined without xattrs). */
  xattrs: XattrScan | undefined;
}

interface HostStat { mode: number; uid: number; gid: number; nlink: number; dev: bigint; ino: bigint; rdev: bigint; size: number; atimeNs: bigint; mtimeNs: bigint }

function hostStat(path: Buffer): HostStat {
  const st = lstatSync(path, { bigint: true });
  return {
    mode: Number(st.mode), uid: Number(st.uid), gid: Number(st.gid), nlink: Number(st.nlink), dev: st.dev, ino: st.ino,
    rdev: st.rdev, size: Number(st.size), atimeNs: st.atimeNs, mtimeNs: st.mtimeNs,
  };
}

const attrsOf = (st: HostStat): TreeAttrs => ({ perm: st.mode & 0o7777, uid: st.uid, gid: st.gid, atime: timeOf(st.atimeNs), mtime: timeOf(st.mtimeNs) });

/** Builds the tree below host directory `dir` into `tree`; the root takes `dir`'s own metadata. */
export async function buildFromHostDir(tree: TreeBuilder, dir: string, opts: HostTreeBuildOptions): Promise<HostTreeBuild> {
  const root = Buffer.from(resolve(dir));
  const result: CopyInResult = { files: 0, dirs: 0, symlinks: 0, specials: 0, hardLinks: 0, bytes: 0, skipped: 0 };
  /** Host paths (latin1) of entries not copied: nothing at or below them was made. */
  const skipped = new Set<string>();
  const warned = new Set<string>();
  const skip = (host: Buffer, key: string, msg: string): void => {
    skipped.add(host.toString('latin1'));
    result.skipped++;
    if (warned.has(key)) return;
    warned.add(key);
    opts.warn(msg);
  };
  const xattrs = opts.xattrs === false ? undefined : startXattrScan(root, true);
  const rootSt = hostStat(root);
  tree.setRoot(attrsOf(rootSt));
  /** Host dev:ino of a multiply linked non-directory → its inode in the image. */
  const links = new Map<string, number>();
  const noFollow = constants.O_RDONLY | constants.O_NOFOLLOW;

  const stack: Array<{ host: Buffer; ino: number }> = [{ host: root, ino: 2 }];
  for (let d = stack.pop(); d !== undefined; d = stack.pop()) {
    const names = readdirSync(d.host, { encoding: 'buffer' }).sort(Buffer.compare);
    const subdirs: Array<{ host: Buffer; ino: number }> = [];
    for (const raw of names) {
      const host = joinHost(d.host, raw);
      if (!isUtf8Name(raw)) {
        skip(host, `name ${d.host.toString('latin1')}`, `'${host.toString()}' skipped: the name is not valid UTF-8`);
        continue;
      }
      const st = hostStat(host);
      if (opts.exclude && st.dev === opts.exclude.dev && st.ino === opts.exclude.ino) {
        skip(host, `self ${host.toString('latin1')}`, `'${host.toString()}' is the image being written: not copied`);
        continue;
      }
      const type = st.mode & S_IFMT;
      if (type === S_IFDIR) {
        subdirs.push({ host, ino: tree.mkdir(d.ino, raw, attrsOf(st)) });
        result.dirs++;
        continue;
      }
      const key = st.nlink > 1 ? `${st.dev}:${st.ino}` : undefined;
      const seen = key === undefined ? undefined : links.get(key);
      if (seen !== undefined) {
        tree.link(d.ino, raw, seen);
        result.hardLinks++;
        continue;
      }
      let ino: number;
      if (type === S_IFREG) {
        ino = await copyFile(tree, d.ino, raw, host, st, noFollow, key !== undefined);
        result.files++;
        result.bytes += st.size;
      } else if (type === S_IFLNK) {
        const target = readlinkSync(host, { encoding: 'buffer' });
        if (!isUtf8Name(target)) {
          skip(host, `target ${host.toString('latin1')}`, `symlink '${host.toString()}' skipped: its target is not valid UTF-8`);
          continue;
        }
        ino = await tree.symlink(d.ino, raw, attrsOf(st), target, key !== undefined);
        result.symlinks++;
      } else if (type === S_IFIFO || type === S_IFSOCK || type === S_IFCHR || type === S_IFBLK) {
        // glibc's dev_t keeps majors of 4096 and up above bit 32; ext4's i_block form has 12 bits.
        if (st.rdev > 0xffffffffn) {
          skip(host, `rdev ${host.toString('latin1')}`, `device '${host.toString()}' skipped: its device number does not fit ext4's 32-bit form`);
          continue;
        }
        ino = await tree.special(d.ino, raw, type, attrsOf(st), Number(st.rdev), key !== undefined);
        result.specials++;
      } else {
        skip(host, `type ${host.toString('latin1')}`, `'${host.toString()}' skipped: unknown file type`);
        continue;
      }
      if (key !== undefined) links.set(key, ino);
    }
    await tree.closeDir(d.ino);
    // Depth first, in name order.
    for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i]!);
  }
  const rootKey = root.toString('latin1');
  const prefix = rootKey.endsWith('/') ? rootKey : `${rootKey}/`;
  const destOf = (hostKey: string): string | undefined => {
    if (hostKey === rootKey) return '/';
    if (!hostKey.startsWith(prefix)) return undefined;
    for (let i = hostKey.indexOf('/', prefix.length); i >= 0; i = hostKey.indexOf('/', i + 1)) if (skipped.has(hostKey.slice(0, i))) return undefined;
    if (skipped.has(hostKey)) return undefined;
    return `/${Buffer.from(hostKey.slice(prefix.length), 'latin1').toString('utf8')}`;
  };
  return { result, destOf, xattrs };
}

/** A regular file's contents, read with plain reads (O_NOFOLLOW: it must still be the file lstat saw). */
async function copyFile(tree: TreeBuilder, parent: number, name: Buffer, host: Buffer, st: HostStat, flags: number, mayGainLinks: boolean): Promise<number> {
  const attrs = attrsOf(st);
  if (st.size === 0) return tree.file(parent, name, attrs, () => 0, mayGainLinks);
  const fd = openSync(host, flags);
  try {
    const read: ReadAt = (into, pos) => readSync(fd, into, 0, into.length, pos);
    return await tree.file(parent, name, attrs, read, mayGainLinks);
  } finally {
    closeSync(fd);
  }
}
