// Allocating and freeing one cluster of metadata for an inode: extent-tree nodes, directory
// blocks, xattr blocks, quota-file blocks. One place decides which reserve it may use, whether
// it is charged to the owner's quota, and keeps the free-space counter and i_blocks in step.
import { Ext4Error } from '../errors/ext4-error.ts';
import type { MetaTxn } from '../journal/transaction.ts';
import type { ClusterRun } from './cluster-allocator.ts';
import type { SpaceAccounting } from './space-accounting.ts';

/** What the allocator needs from the mounted filesystem. */
export interface MetaClusterContext {
  space: SpaceAccounting;
  /** The cluster allocator's allocRun, serialised by the caller's lock. */
  allocRun(txn: MetaTxn, goalCluster: number, wantClusters: number, minClusters: number): Promise<ClusterRun | undefined>;
  /** The cluster allocator's free, serialised by the caller's lock. */
  free(txn: MetaTxn, cluster: number, count: number): Promise<void>;
}

/** The inode the cluster belongs to. */
export interface MetaClusterOwner {
  uid: number;
  gid: number;
  /** Adds to i_blocks, in clusters (negative to remove). */
  chargeClusters(delta: number): void;
}

export interface MetaClusterOptions {
  /**
   * Must not fail for a limit: the allocation may use the reserved pool and quota is charged
   * with force (writeback's tree nodes). Otherwise the root reserve is open only to root-owned
   * inodes and a quota limit refuses with EDQUOT.
   */
  mustSucceed: boolean;
  /** Charge the owner's quota. Off for the quota files themselves, which no quota counts. */
  charge: boolean;
}

/**
 * Allocates one cluster near `goalBlock` and returns its first block. ENOSPC (or EDQUOT) leaves
 * every counter as it was; on success the cluster is counted allocated and charged to i_blocks.
 */
export async function allocMetaCluster(
  ctx: MetaClusterContext, txn: MetaTxn, owner: MetaClusterOwner, goalBlock: number, opts: MetaClusterOptions,
): Promise<number> {
  const { space } = ctx;
  const R = space.clusterRatio;
  const clusterBytes = R * space.blockSizeBytes;
  space.claim(1, opts.mustSucceed || !opts.charge ? { useResvPool: true } : { useRootReserve: owner.uid === 0 });
  if (opts.charge) {
    try {
      space.quota.addUsage(owner.uid, owner.gid, clusterBytes, { force: opts.mustSucceed });
    } catch (e) {
      space.releaseClaim(1);
      throw e;
    }
  }
  const run = await ctx.allocRun(txn, Math.floor(goalBlock / R), 1, 1);
  space.releaseClaim(1);
  if (!run) {
    if (opts.charge) space.quota.freeUsage(owner.uid, owner.gid, clusterBytes);
    throw new Ext4Error('ENOSPC', 'no free cluster for metadata', { detail: 'meta-enospc' });
  }
  space.markAllocated(1);
  owner.chargeClusters(1);
  return run.cluster * R;
}

/** Frees the metadata cluster starting at `block`, undoing what allocMetaCluster counted. */
export async function freeMetaCluster(
  ctx: MetaClusterContext, txn: MetaTxn, owner: MetaClusterOwner, block: number, opts: { charge: boolean },
): Promise<void> {
  const { space } = ctx;
  const R = space.clusterRatio;
  txn.forget(block);
  await ctx.free(txn, Math.floor(block / R), 1);
  space.markFreed(1);
  if (opts.charge) space.quota.freeUsage(owner.uid, owner.gid, R * space.blockSizeBytes);
  owner.chargeClusters(-1);
}
