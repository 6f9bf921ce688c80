// Clusters for an inode's metadata (extent-tree nodes, directory, xattr and quota-file blocks):
// space and quota charged before the bitmap search, i_blocks kept in step.
import { Ext4Error, assert } from '../errors/ext4-error.ts';
import type { MetaTxn } from '../journal/transaction.ts';
import type { ClusterAllocator } from '../alloc/cluster-allocator.ts';
import type { SpaceAccounting } from '../alloc/space-accounting.ts';
import type { Mutex } from '../util/rw-lock.ts';
import type { OpenInode } from './inode-cache.ts';
import type { Volume } from './volume.ts';

/** What block allocation for an inode needs from the mount. */
export interface BallocCtx {
  readonly vol: Volume;
  readonly space: SpaceAccounting;
  readonly clusters: ClusterAllocator;
  /** Taken innermost around bitmap search-and-set. */
  readonly allocLock: Mutex;
}

/** The first block of the inode's group: where its blocks go when it has no goal of its own. */
export function defaultGoal(vol: Volume, ino: number): number {
  const { geo } = vol;
  const g = Math.floor((ino - 1) / geo.inodesPerGroup);
  return geo.firstDataBlock + g * geo.blocksPerGroup;
}

/** Adds (or with a negative count, removes) whole clusters to the inode's i_blocks. */
export function chargeClusters(vol: Volume, oi: OpenInode, clusters: number): void {
  oi.inode.blocks512 += clusters * vol.geo.clusterRatio * (vol.geo.blockSize / 512);
  assert(oi.inode.blocks512 >= 0, `inode ${oi.ino}: i_blocks went negative`);
}

/**
 * Allocates one cluster for metadata. `mustSucceed` (extent-tree nodes needed to finish an
 * operation already promised) may use the reserve pool and exceed quota; `charge: false`
 * (quota files) charges no quota.
 */
export async function allocMetaCluster(ctx: BallocCtx, txn: MetaTxn, oi: OpenInode, goalBlock: number, mustSucceed: boolean, opts: { charge?: boolean } = {}): Promise<number> {
  const R = ctx.vol.geo.clusterRatio;
  const clusterBytes = R * ctx.vol.geo.blockSize;
  const charge = opts.charge !== false;
  ctx.space.claim(1, mustSucceed ? { useResvPool: true } : { useRootReserve: oi.inode.uid === 0 });
  if (charge) {
    try {
      ctx.space.quota.addUsage(oi.inode.uid, oi.inode.gid, clusterBytes, { force: mustSucceed });
    } catch (e) {
      ctx.space.releaseClaim(1);
      throw e;
    }
  }
  const run = await ctx.allocLock.withLock(() => ctx.clusters.allocRun(txn, Math.floor(goalBlock / R), 1, 1));
  ctx.space.releaseClaim(1);
  if (!run) {
    if (charge) ctx.space.quota.freeUsage(oi.inode.uid, oi.inode.gid, clusterBytes);
    throw new Ext4Error('ENOSPC', 'no free cluster for metadata', { detail: charge ? 'meta-enospc' : 'quota-enospc' });
  }
  ctx.space.markAllocated(1);
  chargeClusters(ctx.vol, oi, 1);
  return run.cluster * R;
}

export async function freeMetaCluster(ctx: BallocCtx, txn: MetaTxn, oi: OpenInode, block: number): Promise<void> {
  const R = ctx.vol.geo.clusterRatio;
  txn.forget(block);
  await ctx.allocLock.withLock(() => ctx.clusters.free(txn, Math.floor(block / R), 1));
  ctx.space.markFreed(1);
  ctx.space.quota.freeUsage(oi.inode.uid, oi.inode.gid, R * ctx.vol.geo.blockSize);
  chargeClusters(ctx.vol, oi, -1);
}
