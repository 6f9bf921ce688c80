// setattr: one typed description of what changes (mode, owner, times), applied once, with the
// quota transfer an owner change implies.
import { Ext4Error } from '../errors/ext4-error.ts';
import { S_IFMT, type Timestamp } from '../format/inode.ts';
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
  uid?: number;
  gid?: number;
  atime?: Timestamp;
  mtime?: Timestamp;
}

export interface AttrCtx extends WritebackCtx {
  readonly quota: MemoryQuota | undefined;
  readonly writeback: Writeback;
}

export async function setattr(ctx: AttrCtx, oi: OpenInode, attr: SetAttr): Promise<void> {
  const uid = attr.uid ?? oi.inode.uid;
  const gid = attr.gid ?? oi.inode.gid;
  const ownerChanges = uid !== oi.inode.uid || gid !== oi.inode.gid;
  // Quota moves whole allocations between owners: delayed blocks are allocated first.
  if (ctx.quota && ownerChanges && oi.state.reservation.reservedClusters > 0) await ctx.writeback.inode(oi);
  await ctx.jbd.withHandle(creditsFor('setattr', ctx.vol), async () => {
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
    if (attr.atime) inode.atime = { ...attr.atime };
    if (attr.mtime) inode.mtime = { ...attr.mtime };
    inode.ctime = nowTs();
    ctx.icache.markDirty(oi);
  });
}
