import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inodeNo } from '../util/brand.ts';
import { Ext4Error } from '../errors/ext4-error.ts';
import { MemoryQuota, SpaceAccounting } from './space-accounting.ts';

const code = (c: string) => (e: unknown) => e instanceof Ext4Error && e.code === c;

function fs(opts: { free?: number; root?: number; pool?: number; quota?: MemoryQuota } = {}) {
  return new SpaceAccounting({
    clusterRatio: 4, blockSizeBytes: 1024, totalClusters: 100, freeClusters: opts.free ?? 20,
    rootReserveClusters: opts.root ?? 5, resvPoolClusters: opts.pool ?? 3, ...(opts.quota ? { quota: opts.quota } : {}),
  });
}

test('claim applies rule 5: unprivileged, root reserve, reserved pool', () => {
  const s = fs();
  // free 20 − dirty 0 − root 5 − pool 3 = 12 for ordinary users.
  assert.equal(s.hasFreeClusters(12), true);
  assert.equal(s.hasFreeClusters(13), false);
  assert.equal(s.hasFreeClusters(17, { useRootReserve: true }), true);
  assert.equal(s.hasFreeClusters(18, { useRootReserve: true }), false);
  assert.equal(s.hasFreeClusters(20, { useResvPool: true }), true);
  assert.equal(s.hasFreeClusters(21, { useResvPool: true }), false);
  s.claim(10);
  assert.equal(s.dirtyClusters, 10);
  assert.throws(() => s.claim(3), code('ENOSPC'));
  assert.equal(s.dirtyClusters, 10);
  s.claim(2);
  s.claim(5, { useRootReserve: true });
  assert.throws(() => s.claim(1, { useRootReserve: true }), code('ENOSPC'));
  s.claim(3, { useResvPool: true });
  assert.throws(() => s.claim(1, { useResvPool: true }), code('ENOSPC'));
  s.releaseClaim(20);
  assert.equal(s.dirtyClusters, 0);
  assert.throws(() => s.releaseClaim(1), /negative/);
});

test('reserve charges quota first and undoes it on ENOSPC; release/consume/rereserve', () => {
  const q = new MemoryQuota();
  const s = fs({ quota: q });
  const ino = s.createInode(inodeNo(13), 1000, 100);
  s.reserve(ino, 2);
  assert.equal(ino.reservedClusters, 2);
  assert.deepEqual(q.usage('user', 1000), { usedBytes: 0, reservedBytes: 2 * 4096 });
  assert.throws(() => s.reserve(ino, 11), code('ENOSPC'));
  assert.deepEqual(q.usage('user', 1000), { usedBytes: 0, reservedBytes: 2 * 4096 });
  assert.deepEqual(q.usage('group', 100), { usedBytes: 0, reservedBytes: 2 * 4096 });
  s.markAllocated(1);
  s.consume(ino, 1, true);
  assert.deepEqual(q.usage('user', 1000), { usedBytes: 4096, reservedBytes: 4096 });
  assert.throws(() => s.consume(ino, 2, true), /^Error: inode 13: used 2 with only 1 reserved clusters$/);
  assert.throws(() => s.release(ino, 2), /inode 13: to_free 2 with only 1 reserved clusters/);
  s.release(ino, 1);
  assert.equal(s.dirtyClusters, 0);
  assert.deepEqual(q.usage('user', 1000), { usedBytes: 4096, reservedBytes: 0 });
  // The allocated cluster is freed while its logical cluster still has delayed blocks.
  s.rereserve(ino);
  assert.equal(ino.reservedClusters, 1);
  assert.equal(s.dirtyClusters, 1);
  assert.equal(s.freeClusters, 20);
  assert.deepEqual(q.usage('user', 1000), { usedBytes: 0, reservedBytes: 4096 });
  // Non-delalloc consume: the allocator charged quota itself.
  q.addUsage(1000, 100, 4096);
  s.consume(ino, 1, false);
  assert.deepEqual(q.usage('user', 1000), { usedBytes: 4096, reservedBytes: 0 });
});

test('quota: hard limit is EDQUOT on reserve and addUsage, nothing changes; force bypasses', () => {
  const q = new MemoryQuota();
  q.setLimits('group', 7, { softBytes: 0, hardBytes: 3 * 4096 });
  const s = fs({ quota: q });
  const ino = s.createInode(inodeNo(12), 1, 7);
  s.reserve(ino, 3);
  assert.throws(() => s.reserve(ino, 1), code('EDQUOT'));
  assert.equal(ino.reservedClusters, 3);
  assert.equal(s.dirtyClusters, 3);
  assert.deepEqual(q.usage('user', 1), { usedBytes: 0, reservedBytes: 3 * 4096 });
  assert.throws(() => q.addUsage(1, 7, 1), code('EDQUOT'));
  q.addUsage(1, 7, 1, { force: true });
  assert.equal(q.usage('group', 7).usedBytes, 1);
  assert.throws(() => q.freeUsage(1, 7, 2), /moving 2 bytes out of usage with only 1/);
});

test('quota: soft limit starts a grace period, then refuses', () => {
  let now = 1000;
  const q = new MemoryQuota({ now: () => now, graceSeconds: 60 });
  q.setLimits('user', 5, { softBytes: 100, hardBytes: 1000 });
  q.reserve(5, 0, 90);
  q.reserve(5, 0, 20); // over soft: grace until 1060
  now = 1059;
  q.addUsage(5, 0, 10);
  now = 1060;
  assert.throws(() => q.reserve(5, 0, 1), code('EDQUOT'));
  q.claim(5, 0, 110); // conversion never fails
  q.freeUsage(5, 0, 60); // back under soft: grace reset
  assert.deepEqual(q.usage('user', 5), { usedBytes: 60, reservedBytes: 0 });
  q.reserve(5, 0, 41);
  now = 2000;
  assert.throws(() => q.reserve(5, 0, 1), code('EDQUOT'));
});
