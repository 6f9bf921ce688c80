// fsync and sync: data first (writeback), then every pending metadata change in one commit
// (inodes, group descriptors and bitmaps, quota files, superblock, folded in by the journal's
// preCommit), through the jbd2 log when there is one, else in place and a device flush.
import type { GroupTable } from '../alloc/group-table.ts';
import type { MemoryQuota } from '../alloc/space-accounting.ts';
import type { OpenInode } from './inode-cache.ts';
import { settleDiskSize, type Writeback, type WritebackCtx } from './writeback.ts';
import type { FsJournal } from './ext4-jbd2.ts';
import type { Orphans } from './orphan.ts';
import { writeQuotaFiles } from './quota.ts';
import type { Handle } from '../journal/transaction.ts';

export interface SyncCtx extends WritebackCtx {
  readonly journal: FsJournal;
  readonly writeback: Writeback;
  readonly table: GroupTable;
  readonly quota: MemoryQuota | undefined;
  readonly orphans: Orphans;
}

/** fsync: the inode's data, then every pending metadata change. */
export async function fsync(ctx: SyncCtx, oi: OpenInode): Promise<void> {
  await ctx.writeback.inode(oi);
  ctx.writeback.takeError();
  await commit(ctx);
}

/**
 * Writes everything: data, inodes, group descriptors, quota files, superblock, then flushes
 * the device. `durable: false` skips the flush: everything is handed to the device and memory
 * is released, but nothing waits for the medium (bulk copies sync now and then for memory,
 * and leave durability to the final close).
 */
export async function sync(ctx: SyncCtx, opts: { durable?: boolean } = {}): Promise<void> {
  await ctx.writeback.idle();
  ctx.writeback.takeError();
  if (!ctx.jbd.markedDirty) {
    if (ctx.icache.dirty.size === 0 && ctx.writeback.dirtyPages.pages === 0) return;
    await ctx.jbd.markDirty();
  }
  // Preallocation windows give way when they hold more than the free space not promised to
  // delayed writes: that writeback should not be steered around them.
  if (ctx.clusters.windowClusters > ctx.space.freeClusters - ctx.space.dirtyClusters) ctx.clusters.releaseAllWindows();
  await ctx.writeback.all();
  await commit(ctx, opts.durable !== false);
  // A durable sync also empties the log (its blocks go home); fsync and bulk syncs do not.
  if (opts.durable !== false) await ctx.jbd.checkpoint();
  ctx.icache.shrink((oi) => ctx.orphans.has(oi.ino) || oi.diskSizeBytes !== undefined);
}

/** One commit of every dirty inode, the group table, the quota files and the superblock. */
export async function commit(ctx: SyncCtx, durable = true): Promise<void> {
  await ctx.jbd.commit(durable);
}

/**
 * The journal's preCommit: inside the commit's gate (every handle stopped), the deferred
 * in-memory state (dirty inodes, quota files, group descriptors, superblock) joins the
 * transaction, so each commit is one consistent cut.
 */
export async function foldIntoTransaction(ctx: SyncCtx, h: Handle): Promise<void> {
  if (ctx.quota) await writeQuotaFiles(ctx, h, ctx.quota);
  const bs = ctx.vol.geo.blockSize;
  for (const oi of ctx.icache.dirty) {
    settleDiskSize(oi, bs);
    await ctx.icache.writeInode(h, oi);
  }
  ctx.icache.dirty.clear();
  await ctx.table.flush(h);
  await ctx.jbd.writeSuperblock(h);
}
