// What `ext4kit get` reads of an image's inodes: the few fields a copy needs, decoded once per
// inode (the copy walks the tree by inode through the mount, not by path).
import type { Mount, Node } from '../fs/mount.ts';
import { decodeInode, S_IFMT, S_IFBLK, S_IFCHR, type InodeCodecOptions, type Timestamp } from '../format/inode.ts';
import { BG_FLAGS } from '../format/group-desc.ts';
import { INCOMPAT } from '../format/features.ts';
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

/** Inode-table blocks per read: the walk meets inodes in table order in most images. */
const TABLE_RUN_BLOCKS = 32;
/** Runs kept (32 × 32 blocks: 4 MiB with 4 KiB blocks). */
const TABLE_RUNS_KEPT = 32;

/**
 * The walk's inodes on a read-only mount: the inode table is read in runs of up to 32 blocks
 * (one request and one buffer per run instead of one per block: fewer host reads when the
 * image is not cached, fewer allocations when it is), each record decoded and checksummed in
 * place, without copying it (decodeInode's shareBytes: a run is never written). Records in
 * never-initialised table space, out-of-range numbers and writable mounts go through
 * `Mount.iget`, as before. The bytes are the volume's (the journal's overlay included).
 */
export class InodeReader {
  private readonly runs = new Map<number, Uint8Array>();
  private readonly opts: InodeCodecOptions;

  constructor(private readonly mount: Mount) {
    const { geo } = mount.vol;
    this.opts = {
      ino: 0, inodeSize: geo.inodeSize, fsCsumSeed: geo.metadataCsum ? geo.csumSeed : undefined, hugeFile: mount.vol.hugeFile,
      blockSize: geo.blockSize, has64bit: mount.vol.has('incompat', INCOMPAT['64bit']), shareBytes: true,
    };
  }

  /** The inode, without an await when its part of the table is already read (most calls). */
  iget(ino: number): Node | Promise<Node> {
    const { vol } = this.mount;
    const { geo } = vol;
    if (this.mount.fs || !Number.isInteger(ino) || ino < 1 || ino > geo.inodesCount) return this.mount.iget(ino);
    this.mount.checkOpen();
    const g = Math.floor((ino - 1) / geo.inodesPerGroup);
    const idx = (ino - 1) % geo.inodesPerGroup;
    const gd = vol.groups[g]!;
    // Records past the initialised part of the table read as zeros (Volume.readInode).
    const usedInodes = geo.gdCsum.kind === 'none' ? geo.inodesPerGroup
      : gd.flags & BG_FLAGS.inodeUninit ? 0 : geo.inodesPerGroup - gd.itableUnused;
    if (idx >= usedInodes) return this.mount.iget(ino);
    const tableBlock = Math.floor(idx / geo.inodesPerBlock);
    const runStart = tableBlock - (tableBlock % TABLE_RUN_BLOCKS);
    const first = gd.inodeTable + runStart;
    const off = (tableBlock - runStart) * geo.blockSize + (idx % geo.inodesPerBlock) * geo.inodeSize;
    const run = this.runs.get(first);
    if (run !== undefined) return this.decode(ino, run, off);
    const countBlocks = Math.min(TABLE_RUN_BLOCKS, Math.ceil(usedInodes / geo.inodesPerBlock) - runStart);
    return vol.device.read(first * geo.blockSize, countBlocks * geo.blockSize).then((bytes) => {
      this.runs.set(first, bytes);
      if (this.runs.size > TABLE_RUNS_KEPT) this.runs.delete(this.runs.keys().next().value!);
      return this.decode(ino, bytes, off);
    });
  }

  private decode(ino: number, run: Uint8Array, off: number): Node {
    // decodeInode keeps nothing of its options: one object serves every call.
    this.opts.ino = ino;
    return { ino, inode: decodeInode(run.subarray(off, off + this.opts.inodeSize), this.opts) };
  }
}
