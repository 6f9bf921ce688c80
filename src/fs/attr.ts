// setattr: one typed description of what changes (mode, owner, times), applied once, with the
// quota transfer an owner change implies.
import { Ext4Error } from '../errors/ext4-error.ts';
import { S_IFMT, isDirMode, type Inode, type Timestamp } from '../format/inode.ts';
import type { MemoryQuota } from '../alloc/space-accounting.ts';
import { inodeNo } from '../util/brand.ts';
import { createDelallocState } from '../mapping/delalloc.ts';
import type { OpenInode } from './inode-cache.ts';
import { creditsFor } from './ext4-jbd2.ts';
import type { Writeback, WritebackCtx } from './writeback.ts';
import { nowTs } from './clock.ts';

/** What a setattr changes; absent fields stay as they are. */
export interface SetAttr {
  /** Permission bits (with set-id and sticky); the file type never changes. */
  mode?: number;
  /** chown(2): present even when both ids are left as they are (-1), since chown still clears set-ID bits. */
  owner?: { uid?: number; gid?: number };
  atime?: Timestamp;
  mtime?: Timestamp;
}

export interface AttrCtx extends WritebackCtx {
  readonly quota: MemoryQuota | undefined;
  readonly writeback: Writeback;
}

/**
 * Applies `attr`. Synchronous (returns undefined) when a journal handle is available at once and
 * no delayed data must be allocated first; otherwise a promise.
 */
export function setattr(ctx: AttrCtx, oi: OpenInode, attr: SetAttr): Promise<void> | undefined {
  const uid = attr.owner?.uid ?? oi.inode.uid;
  const gid = attr.owner?.gid ?? oi.inode.gid;
  const ownerChanges = uid !== oi.inode.uid || gid !== oi.inode.gid;
  // Quota moves whole allocations between owners: delayed blocks are allocated first.
  if (ctx.quota && ownerChanges && oi.state.reservation.reservedClusters > 0) return setattrAfterWriteback(ctx, oi, attr, uid, gid);
  return ctx.jbd.runNow(creditsFor('setattr', ctx.vol), () => apply(ctx, oi, attr, uid, gid));
}

async function setattrAfterWriteback(ctx: AttrCtx, oi: OpenInode, attr: SetAttr, uid: number, gid: number): Promise<void> {
  await ctx.writeback.inode(oi);
  await ctx.jbd.runNow(creditsFor('setattr', ctx.vol), () => apply(ctx, oi, attr, uid, gid));
}

function apply(ctx: AttrCtx, oi: OpenInode, attr: SetAttr, uid: number, gid: number): undefined {
  const { inode } = oi;
  if (ctx.quota && (uid !== inode.uid || gid !== inode.gid)) {
    if (oi.state.reservation.reservedClusters) throw new Ext4Error('EBUSY', 'chown raced with a write of delayed data; retry');
    const bytes = inode.blocks512 * 512;
    ctx.quota.freeUsage(inode.uid, inode.gid, bytes);
    ctx.quota.addInodes(inode.uid, inode.gid, -1);
    ctx.quota.addUsage(uid, gid, bytes, { force: true });
    ctx.quota.addInodes(uid, gid, 1);
    oi.state = createDelallocState(ctx.space, inodeNo(oi.ino), uid, gid);
  }
  inode.uid = uid;
  inode.gid = gid;
  if (attr.mode !== undefined) inode.mode = (inode.mode & S_IFMT) | (attr.mode & 0o7777);
  // chown(2) on ext4 (even with -1, -1): a non-directory loses S_ISUID, and S_ISGID when it is
  // group-executable (S_ISGID without group-exec means mandatory locking and stays).
  if (attr.owner && attr.mode === undefined && !isDirMode(inode.mode)) {
    inode.mode &= ~0o4000;
    if (inode.mode & 0o010) inode.mode &= ~0o2000;
  }
  if (attr.atime) inode.atime = storableTs(attr.atime, inode, ctx.vol.geo.inodeSize);
  if (attr.mtime) inode.mtime = storableTs(attr.mtime, inode, ctx.vol.geo.inodeSize);
  inode.ctime = nowTs();
  ctx.icache.markDirty(oi);
  return undefined;
}

/**
 * A time as ext4 stores it in this inode (what stat shows after a remount): signed 32-bit
 * seconds, widened by two epoch bits and given nanoseconds when the inode's extra fields hold
 * the time's `_extra` word (the kernel clamps the same way, to s_time_min/s_time_max).
 */
function storableTs(t: Timestamp, inode: Inode, inodeSize: number): Timestamp {
  // i_mtime_extra and i_atime_extra end 12 and 16 bytes past the 128-byte base inode.
  const wide = inodeSize > 128 && inode.extraIsize >= 16;
  const min = -0x8000_0000;
  const max = wide ? 0x3_7fff_ffff : 0x7fff_ffff;
  // At or past either end the kernel stores the limit with zero nanoseconds.
  if (t.sec <= min || t.sec >= max) return { sec: t.sec <= min ? min : max, nsec: 0 };
  return { sec: Math.trunc(t.sec), nsec: wide ? Math.min(Math.max(Math.trunc(t.nsec), 0), 999_999_999) : 0 };
}
