// Clusters for an inode's metadata (extent-tree nodes, directory, xattr and quota-file blocks):
// space and quota charged before the bitmap search, i_blocks kept in step.
import { assert } from '../errors/ext4-error.ts';
import { allocMetaCluster as allocShared, freeMetaCluster as freeShared, type MetaClusterContext, type MetaClusterOwner } from '../alloc/meta-cluster.ts';
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

/** The shared metadata-cluster allocator (alloc/meta-cluster.ts) seen from an inode of this mount. */
function metaCtx(ctx: BallocCtx): MetaClusterContext {
  return {
    space: ctx.space,
    allocRun: (txn, goal, want, min) => ctx.allocLock.withLock(() => ctx.clusters.allocRun(txn, goal, want, min)),
    free: (txn, cluster, count) => ctx.allocLock.withLock(() => ctx.clusters.free(txn, cluster, count)),
  };
}

function metaOwner(vol: Volume, oi: OpenInode): MetaClusterOwner {
  return { uid: oi.inode.uid, gid: oi.inode.gid, chargeClusters: (delta) => chargeClusters(vol, oi, delta) };
}

/**
 * Allocates one cluster for metadata. `mustSucceed` (extent-tree nodes needed to finish an
 * operation already promised) may use the reserve pool and exceed quota; `charge: false`
 * (quota files) charges no quota.
 */
export function allocMetaCluster(ctx: BallocCtx, txn: MetaTxn, oi: OpenInode, goalBlock: number, mustSucceed: boolean, opts: { charge?: boolean } = {}): Promise<number> {
  return allocShared(metaCtx(ctx), txn, metaOwner(ctx.vol, oi), goalBlock, { mustSucceed, charge: opts.charge !== false });
}

export function freeMetaCluster(ctx: BallocCtx, txn: MetaTxn, oi: OpenInode, block: number): Promise<void> {
  return freeShared(metaCtx(ctx), txn, metaOwner(ctx.vol, oi), block, { charge: true });
}
