// Inode creation and eviction: a new inode's fields and number, and freeing an inode whose
// last link and last reference are gone (its blocks, xattr block, quota and bitmap bit).
import {
  blankInode, EXTENTS_FL, S_IFMT, S_IFDIR, S_IFREG, S_IFLNK, isDirMode, isRegMode, isSymlinkMode, type Inode,
} from '../format/inode.ts';
import type { Handle, MetaTxn } from '../journal/transaction.ts';
import type { InodeAllocator } from '../alloc/inode-allocator.ts';
import type { MemoryQuota } from '../alloc/space-accounting.ts';
import { checkQuiescent } from '../mapping/delalloc.ts';
import { MAX_FILE_BLOCK } from '../mapping/extent-status.ts';
import { initExtentRoot } from '../mapping/extent-tree.ts';
import { removeBlocks } from '../mapping/map-blocks.ts';
import type { InodeCache, OpenInode } from './inode-cache.ts';
import { freeMetaCluster, type BallocCtx } from './balloc.ts';
import { fileMap } from './inode-env.ts';
import { nowSec, nowTs } from './clock.ts';

export interface Credentials { uid: number; gid: number }

const S_ISGID = 0o2000;

export interface IallocCtx extends BallocCtx {
  readonly inodes: InodeAllocator;
  readonly icache: InodeCache;
  readonly quota: MemoryQuota | undefined;
}

function newInodeFields(inodeSize: number, mode: number, cred: Credentials, flags: number): Inode {
  const inode = blankInode(inodeSize, inodeSize > 128 ? 32 : 0);
  const t = nowTs();
  inode.mode = mode;
  inode.uid = cred.uid;
  inode.gid = cred.gid;
  inode.atime = t;
  inode.ctime = { sec: t.sec, nsec: t.nsec };
  inode.mtime = { sec: t.sec, nsec: t.nsec };
  inode.linksCount = 1;
  inode.flags = flags;
  if (inode.crtime) inode.crtime = { sec: t.sec, nsec: t.nsec };
  inode.generation = (Math.random() * 0x1_0000_0000) >>> 0;
  return inode;
}

/** A new inode near its parent, owned by `cred`, charged one inode of quota. */
export async function createInode(ctx: IallocCtx, txn: MetaTxn, parent: OpenInode, mode: number, cred: Credentials): Promise<OpenInode> {
  const isDir = (mode & S_IFMT) === S_IFDIR;
  // A set-group-ID directory gives new entries its group, and new directories its S_ISGID.
  if (parent.inode.mode & S_ISGID) {
    cred = { uid: cred.uid, gid: parent.inode.gid };
    if (isDir) mode |= S_ISGID;
  }
  ctx.quota?.addInodes(cred.uid, cred.gid, 1);
  const ino = await ctx.allocLock.withLock(() => ctx.inodes.alloc(txn, parent.ino, isDir));
  const usesExtents = (mode & S_IFMT) === S_IFREG || isDir || (mode & S_IFMT) === S_IFLNK;
  const inode = newInodeFields(ctx.vol.geo.inodeSize, mode, cred, usesExtents ? EXTENTS_FL : 0);
  if (usesExtents) initExtentRoot(inode.iBlock);
  return ctx.icache.add(ino, inode);
}

/** Frees an inode whose link count reached zero and that nobody has open. */
export async function evictInode(ctx: IallocCtx, txn: Handle, oi: OpenInode): Promise<void> {
  const { inode } = oi;
  if (isRegMode(inode.mode) || isDirMode(inode.mode) || (isSymlinkMode(inode.mode) && inode.flags & EXTENTS_FL)) {
    if (inode.flags & EXTENTS_FL) {
      await oi.data.withWrite(() => removeBlocks(fileMap(ctx, oi), txn, 0, MAX_FILE_BLOCK));
    }
  }
  oi.pages.drop(0);
  checkQuiescent(oi.state);
  if (inode.fileAcl) {
    await freeMetaCluster(ctx, txn, oi, inode.fileAcl);
    inode.fileAcl = 0;
  }
  ctx.quota?.addInodes(inode.uid, inode.gid, -1);
  inode.dtime = nowSec();
  inode.linksCount = 0;
  ctx.icache.markDirty(oi);
  await ctx.allocLock.withLock(() => ctx.inodes.free(txn, oi.ino, isDirMode(inode.mode)));
  ctx.icache.drop(oi.ino);
}

/** Clusters an inode holds (what freeing it may touch), for credit estimates. */
export function heldClusters(ctx: Pick<BallocCtx, 'vol'>, oi: OpenInode): number {
  return Math.ceil(oi.inode.blocks512 * 512 / ctx.vol.geo.clusterSize);
}
