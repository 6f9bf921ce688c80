import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ext4Error } from '../errors/ext4-error.ts';
import type { MetaTxn } from '../journal/transaction.ts';
import { MemoryQuota, SpaceAccounting } from './space-accounting.ts';
import { allocMetaCluster, freeMetaCluster, type MetaClusterContext, type MetaClusterOwner } from './meta-cluster.ts';

const code = (c: string) => (e: unknown) => e instanceof Ext4Error && e.code === c;
const R = 4;
const CLUSTER_BYTES = R * 1024;

/** A fake allocator over `total` clusters; records goals and forgets. */
function setup(opts: { free?: number; quota?: MemoryQuota } = {}) {
  const q = opts.quota ?? new MemoryQuota();
  const space = new SpaceAccounting({
    clusterRatio: R, blockSizeBytes: 1024, totalClusters: 100, freeClusters: opts.free ?? 10,
    rootReserveClusters: 2, resvPoolClusters: 2, quota: q,
  });
  const used = new Set<number>();
  const goals: number[] = [];
  const forgotten: number[] = [];
  const ctx: MetaClusterContext = {
    space,
    allocRun: async (_txn, goalCluster) => {
      goals.push(goalCluster);
      if (used.size >= (opts.free ?? 10)) return undefined;
      let c = goalCluster;
      while (used.has(c)) c++;
      used.add(c);
      return { cluster: c, count: 1 };
    },
    free: async (_txn, cluster, count) => { for (let i = 0; i < count; i++) assert.ok(used.delete(cluster + i)); },
  };
  const txn = { forget: (b: number) => forgotten.push(b) } as unknown as MetaTxn;
  let blocks = 0;
  const owner: MetaClusterOwner = { uid: 1000, gid: 100, chargeClusters: (d) => { blocks += d; } };
  return { q, space, ctx, txn, owner, goals, forgotten, used, iBlocks: () => blocks };
}

test('charged allocation: counts the cluster, i_blocks and quota; free undoes all three', async () => {
  const t = setup();
  const block = await allocMetaCluster(t.ctx, t.txn, t.owner, 41, { mustSucceed: false, charge: true });
  assert.equal(block, 10 * R, 'goal block 41 is in cluster 10');
  assert.deepEqual(t.goals, [10]);
  assert.equal(t.space.freeClusters, 9);
  assert.equal(t.space.dirtyClusters, 0);
  assert.equal(t.iBlocks(), 1);
  assert.deepEqual(t.q.usage('user', 1000), { usedBytes: CLUSTER_BYTES, reservedBytes: 0 });
  assert.deepEqual(t.q.usage('group', 100), { usedBytes: CLUSTER_BYTES, reservedBytes: 0 });
  await freeMetaCluster(t.ctx, t.txn, t.owner, block, { charge: true });
  assert.deepEqual(t.forgotten, [block]);
  assert.equal(t.used.size, 0);
  assert.equal(t.space.freeClusters, 10);
  assert.equal(t.iBlocks(), 0);
  assert.deepEqual(t.q.usage('user', 1000), { usedBytes: 0, reservedBytes: 0 });
});

test('charge: false (quota files) leaves quota alone and may use the reserved pool', async () => {
  const q = new MemoryQuota();
  q.setLimits('user', 1000, { softBytes: 0, hardBytes: 1 });
  // 3 free clusters: an unprivileged claim sees 3 - 2 - 2 < 1; the reserved pool lets it through.
  const t = setup({ quota: q, free: 3 });
  const block = await allocMetaCluster(t.ctx, t.txn, t.owner, 0, { mustSucceed: false, charge: false });
  assert.equal(block, 0);
  assert.deepEqual(q.usage('user', 1000), { usedBytes: 0, reservedBytes: 0 });
  assert.equal(t.iBlocks(), 1);
  await freeMetaCluster(t.ctx, t.txn, t.owner, block, { charge: false });
  assert.deepEqual(q.usage('user', 1000), { usedBytes: 0, reservedBytes: 0 });
  assert.equal(t.iBlocks(), 0);
});

test('EDQUOT and ENOSPC change no counter; mustSucceed forces quota', async () => {
  const q = new MemoryQuota();
  q.setLimits('user', 1000, { softBytes: 0, hardBytes: CLUSTER_BYTES });
  const t = setup({ quota: q, free: 10 });
  await allocMetaCluster(t.ctx, t.txn, t.owner, 0, { mustSucceed: false, charge: true });
  await assert.rejects(allocMetaCluster(t.ctx, t.txn, t.owner, 0, { mustSucceed: false, charge: true }), code('EDQUOT'));
  assert.equal(t.space.dirtyClusters, 0);
  assert.equal(t.space.freeClusters, 9);
  assert.equal(t.iBlocks(), 1);
  await allocMetaCluster(t.ctx, t.txn, t.owner, 0, { mustSucceed: true, charge: true });
  assert.deepEqual(q.usage('user', 1000), { usedBytes: 2 * CLUSTER_BYTES, reservedBytes: 0 });

  const full = setup({ free: 5 });
  // mustSucceed may take every free cluster, reserves included.
  for (let i = 0; i < 5; i++) await allocMetaCluster(full.ctx, full.txn, full.owner, 0, { mustSucceed: true, charge: true });
  assert.equal(full.space.freeClusters, 0);
  // The counters say free (the fake bitmap is full): the allocator's ENOSPC must undo the claim and quota.
  const spare = setup({ free: 0 });
  spare.space.markFreed(5);
  await assert.rejects(allocMetaCluster(spare.ctx, spare.txn, spare.owner, 0, { mustSucceed: true, charge: true }), code('ENOSPC'));
  assert.equal(spare.space.dirtyClusters, 0);
  assert.equal(spare.space.freeClusters, 5);
  assert.equal(spare.iBlocks(), 0);
  assert.deepEqual(spare.q.usage('user', 1000), { usedBytes: 0, reservedBytes: 0 });
});
