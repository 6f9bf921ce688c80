// The accounting invariants, recomputed from scratch (delalloc-bigalloc.md §4.2): free clusters
// from the bitmaps, reserved clusters from the extent-status trees and pending sets,
// dirty = Σ reserved, and quota usage from every inode's i_blocks.
import { EXTENTS_FL, INLINE_DATA_FL } from '../format/inode.ts';
import { inodeNo } from '../util/brand.ts';
import type { Mutex } from '../util/rw-lock.ts';
import type { InodeAllocator } from '../alloc/inode-allocator.ts';
import type { MemoryQuota } from '../alloc/space-accounting.ts';
import { checkInvariants as checkAccounting } from '../alloc/invariants.ts';
import { logicalCluster } from '../mapping/extent-status.ts';
import { logicalClusterMapped } from '../mapping/extent-tree.ts';
import type { InodeCache } from './inode-cache.ts';
import type { FsJournal } from './ext4-jbd2.ts';
import type { BallocCtx } from './balloc.ts';
import { fileMap, treeEnv } from './inode-env.ts';
import { checkMappingCache } from '../mapping/map-blocks.ts';
import type { Orphans } from './orphan.ts';
import { ROOT_INO } from './names.ts';

export interface InvariantsCtx extends BallocCtx {
  readonly journal: FsJournal;
  readonly icache: InodeCache;
  readonly inodes: InodeAllocator;
  readonly quota: MemoryQuota | undefined;
  readonly orphans: Orphans;
  readonly ns: Mutex;
}

/** Throws an Error worded like the kernel's warnings when a running counter disagrees. */
export async function checkInvariants(ctx: InvariantsCtx): Promise<void> {
  // A consistent view: no namespace change, no mapping change on any cached inode, no
  // allocation in flight (same lock order as writers: ns → data → allocator). An inode loaded
  // while the data locks were taken (a path walk needs no ns lock) would be unlocked: take them
  // again, a few times, before settling for the counters read in one synchronous step.
  await ctx.ns.withLock(async () => {
    for (let attempt = 0; ; attempt++) {
      const inodes = [...ctx.icache.open.values()].sort((a, b) => a.ino - b.ino);
      const releases = [];
      try {
        for (const oi of inodes) releases.push(await oi.data.acquireRead());
        const moved = ctx.icache.open.size !== inodes.length || inodes.some((oi) => ctx.icache.open.get(oi.ino) !== oi);
        if (moved && attempt < 8) continue;
        await ctx.allocLock.withLock(() => checkLocked(ctx));
        return;
      } finally {
        for (const r of releases) r();
      }
    }
  });
}

async function checkLocked(ctx: InvariantsCtx): Promise<void> {
  const R = ctx.vol.geo.clusterRatio;
  // One snapshot, taken synchronously: iterating the live cache across awaits would visit an
  // inode twice when a lookup moves it to the most-recently-used end meanwhile.
  const inodes = [...ctx.icache.open.values()];
  const reserved = inodes.map((oi) => oi.state.reservation.reservedClusters);
  const dirtyClusters = ctx.space.dirtyClusters;
  const h = ctx.journal.start(0);
  try {
    const views = [];
    for (const [i, oi] of inodes.entries()) {
      const env = treeEnv(ctx, h, oi);
      const mapped = new Map<number, boolean>();
      const extents = (oi.inode.flags & EXTENTS_FL) !== 0 && !(oi.inode.flags & INLINE_DATA_FL);
      // Mappings the es tree caches must be what the extent tree says.
      if (extents) await checkMappingCache(fileMap(ctx, oi), h);
      for (const c of [...oi.state.es.delayedClusters(R), ...oi.state.pending]) {
        if (!mapped.has(c)) mapped.set(c, extents && (await logicalClusterMapped(env, logicalCluster(c))) !== undefined);
      }
      views.push({
        ino: inodeNo(oi.ino), uid: oi.inode.uid, gid: oi.inode.gid, es: oi.state.es, pending: oi.state.pending,
        reservedClusters: reserved[i]!, clusterMapped: (c: number) => mapped.get(c) ?? false,
      });
    }
    checkAccounting({
      clusterRatio: R, blockSizeBytes: ctx.vol.geo.blockSize, totalClusters: ctx.vol.geo.clustersCount,
      freeClusters: ctx.space.freeClusters, dirtyClusters,
      bitmapFreeClusters: await ctx.clusters.countFreeInBitmaps(h), inodes: views,
      ...(ctx.quota ? { quota: ctx.quota } : {}),
    });
    if (ctx.space.freeClusters !== ctx.clusters.freeClusters) {
      throw new Error(`free clusters counter ${ctx.space.freeClusters}, allocator ${ctx.clusters.freeClusters}`);
    }
    await ctx.clusters.checkWindows(h);
    if (ctx.quota) await checkQuotaUsage(ctx, ctx.quota);
  } finally { h.stop(); }
}

/** Quota usage must equal Σ i_blocks and the inode count per owner (what e2fsck recomputes). */
async function checkQuotaUsage(ctx: InvariantsCtx, quota: MemoryQuota): Promise<void> {
  const { geo, sb } = ctx.vol;
  const expected = new Map<string, { bytes: number; inodes: number }>();
  const skip = new Set([sb.usrQuotaInum, sb.grpQuotaInum, sb.prjQuotaInum, sb.orphanFileInum, sb.journalInum]);
  for (let ino = 1; ino <= geo.inodesCount; ino++) {
    if ((ino < sb.firstIno && ino !== ROOT_INO) || skip.has(ino)) continue;
    if (!(await ctx.inodes.isAllocated(ino))) continue;
    const inode = ctx.icache.open.get(ino)?.inode ?? await ctx.vol.readInode(ino);
    if (inode.linksCount === 0 && !ctx.orphans.has(ino)) continue;
    for (const key of [`user:${inode.uid}`, `group:${inode.gid}`]) {
      const e = expected.get(key) ?? { bytes: 0, inodes: 0 };
      e.bytes += inode.blocks512 * 512;
      e.inodes++;
      expected.set(key, e);
    }
  }
  for (const kind of ['user', 'group'] as const) {
    for (const e of quota.entries(kind)) {
      const want = expected.get(`${kind}:${e.id}`) ?? { bytes: 0, inodes: 0 };
      if (want.bytes !== e.usedBytes || want.inodes !== e.inodes) {
        throw new Error(`${kind} quota ${e.id}: usage (${e.usedBytes} bytes, ${e.inodes} inodes) but inodes hold (${want.bytes} bytes, ${want.inodes} inodes)`);
      }
      expected.delete(`${kind}:${e.id}`);
    }
  }
  for (const [key, want] of expected) {
    if (want.bytes || want.inodes) throw new Error(`quota ${key}: no record for (${want.bytes} bytes, ${want.inodes} inodes)`);
  }
}
