// What `ext4kit get` reads of an image's inodes: the few fields a copy needs, decoded once per
// inode (the copy walks the tree by inode through the mount, not by path).
import type { Mount, Node } from '../fs/mount.ts';
import { S_IFMT, S_IFBLK, S_IFCHR, type Timestamp } from '../format/inode.ts';
import { deviceNumber } from '../api/stats.ts';
import { XATTR_MAGIC } from '../format/xattr.ts';
import { u32 } from '../util/bytes.ts';
import type { Ext4 } from '../node.ts';
import { listDirectory, type RawDirEntry } from '../dir/dir-read.ts';
import { dirSource } from '../fs/dir-source.ts';

/** What the copy needs of an inode (decoded once per inode: the walk goes by inode, not by path). */
export interface Meta {
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  flags: number;
  rdev: number;
  /** Seconds and 0 ≤ nsec < 10^9 (plain numbers: BigInt times cost the walk ~30 allocations a file). */
  atime: Timestamp;
  mtime: Timestamp;
}

const NS_PER_SEC = 1_000_000_000;

/** An inode time with its nanoseconds folded into 0 ≤ nsec < 10^9 (the field holds up to 2^30 − 1). */
function timeOf(t: Timestamp | undefined): Timestamp {
  if (!t) return { sec: 0, nsec: 0 };
  if (t.nsec >= 0 && t.nsec < NS_PER_SEC) return t;
  return { sec: t.sec + Math.floor(t.nsec / NS_PER_SEC), nsec: ((t.nsec % NS_PER_SEC) + NS_PER_SEC) % NS_PER_SEC };
}

export function metaOf(node: Node): Meta {
  const i = node.inode;
  const fmt = i.mode & S_IFMT;
  return {
    ino: node.ino, mode: i.mode, nlink: i.linksCount, uid: i.uid, gid: i.gid, size: i.sizeBytes, flags: i.flags,
    rdev: fmt === S_IFBLK || fmt === S_IFCHR ? deviceNumber(i) : 0, atime: timeOf(i.atime), mtime: timeOf(i.mtime),
  };
}

export const fmtOf = (m: Meta): number => m.mode & S_IFMT;

/** False when the inode has no xattr block and no in-inode xattr header (how the kernel tells). */
export function mayHaveXattrs(node: Node): boolean {
  const i = node.inode;
  const base = 128 + i.extraIsize;
  return i.fileAcl !== 0 || (base + 4 <= i.raw.length && u32(i.raw, base) === XATTR_MAGIC);
}

/** The image as the walk sees it: the mount behind the public object (inode-level reads). */
export function mountOf(fs: Ext4): Mount {
  return (fs as unknown as { mount: Mount }).mount;
}

/**
 * Every entry of a directory, '.' and '..' included. On a read-only mount the listing skips the
 * mount's name cache (a copy never looks a name up again); `verified` remembers the directory
 * blocks whose checksums were checked.
 */
export async function listDir(mount: Mount, dir: Node, verified: Set<number>): Promise<RawDirEntry[]> {
  if (mount.fs) return mount.list(dir);
  mount.checkOpen();
  const out: RawDirEntry[] = [];
  for await (const e of listDirectory(dirSource(mount.vol, dir.ino, dir.inode, { verified }))) out.push(e);
  return out;
}
