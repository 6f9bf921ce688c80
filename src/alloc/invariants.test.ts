import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inodeNo } from '../util/brand.ts';
import { checkInvariants, type AccountingView, type EsEntryView, type InodeAccountingView } from './invariants.ts';
import type { QuotaKind } from './space-accounting.ts';

// R=4. Inode 13: blocks 0–1 written in physical cluster 5 (blocks 20–21), 2–3 delayed (C0
// pending), 8–9 delayed (C2, reserved). Inode 14 (ratio-independent): nothing.
const CB = 4 * 1024;

function baseInode(over: Partial<InodeAccountingView> = {}): InodeAccountingView {
  const es: EsEntryView[] = [
    { first: 0, countBlocks: 2, status: 'written', fsBlock: 20 },
    { first: 2, countBlocks: 2, status: 'delayed' },
    { first: 8, countBlocks: 2, status: 'delayed' },
  ];
  const mapped = new Set([0, 1]);
  return {
    ino: inodeNo(13), uid: 1000, gid: 100, es, pending: [0], reservedClusters: 1,
    clusterMapped: (c) => c === 0,
    blocksMapped: (f, l) => { for (let b = f; b <= l; b++) if (mapped.has(b)) return true; return false; },
    allocatedClusters: 1,
    ...over,
  };
}

function quota(reserved: number, used: number) {
  return { usage: (_k: QuotaKind, _id: number) => ({ reservedBytes: reserved, usedBytes: used }) };
}

function base(over: Partial<AccountingView> = {}, inode: Partial<InodeAccountingView> = {}): AccountingView {
  return {
    clusterRatio: 4, blockSizeBytes: 1024, totalClusters: 100, overheadClusters: 4,
    freeClusters: 50, dirtyClusters: 1, bitmapFreeClusters: 50,
    inodes: [baseInode(inode)], quota: quota(CB, CB), ...over,
  };
}

test('a consistent state passes', () => {
  checkInvariants(base());
  checkInvariants(base({ dirtyClusters: 3, transientClaimClusters: 2 }));
});

const cases: [string, AccountingView, RegExp][] = [
  ['1: pending without delayed blocks', base({}, { pending: [0, 1] }), /^inode 13: pending cluster 1 has no delayed blocks$/],
  ['1: pending but not allocated', base({}, { pending: [0, 2] }), /^inode 13: pending cluster 2 is not allocated$/],
  ['1: allocated with delayed blocks but not pending', base({}, { pending: [], reservedClusters: 2 }),
    /^inode 13: cluster 0 is allocated and has delayed blocks but is not pending$/],
  ['2: reserved count', base({ dirtyClusters: 0 }, { reservedClusters: 0 }),
    /^inode 13: reserved 0 clusters, but 1 delayed clusters are unallocated \(2 delayed, 1 pending\)$/],
  ['2: ratio 1', base({ clusterRatio: 1, quota: quota(1024, 1024) }, {
    es: [{ first: 0, countBlocks: 3, status: 'delayed' }], pending: [], clusterMapped: () => false, blocksMapped: () => false,
  }), /^inode 13: reserved 1 blocks, but 3 blocks are delayed$/],
  ['3: quota reservation', base({ quota: quota(2 * CB, CB) }), /^user 1000: quota reserved 8192 bytes, expected 4096 \(1 reserved clusters\)$/],
  ['3: quota usage', base({ quota: quota(CB, 0) }), /^user 1000: quota used 0 bytes, expected 4096 \(1 allocated clusters\)$/],
  ['4: dirty vs reserved', base({ dirtyClusters: 2 }), /^dirty clusters 2, expected 1 \(1 reserved by inodes \+ 0 transient\)$/],
  ['5: dirty above free', base({ freeClusters: 0, bitmapFreeClusters: 0, dirtyClusters: 1 }), /^dirty clusters 1 exceed free clusters 0$/],
  ['5: free above usable', base({ freeClusters: 97, bitmapFreeClusters: 97 }), /^free clusters 97 exceed usable clusters 96$/],
  ['6: counter vs bitmaps', base({ bitmapFreeClusters: 49 }), /^free clusters counter 50, bitmaps count 49$/],
  ['7: delayed block mapped on disk', base({}, { blocksMapped: (f) => f === 8 }), /^inode 13: delayed range \[8, 9\] is mapped on disk$/],
  ['8: offset congruence', base({}, { es: [{ first: 0, countBlocks: 2, status: 'written', fsBlock: 21 }, { first: 2, countBlocks: 2, status: 'delayed' }, { first: 8, countBlocks: 2, status: 'delayed' }] }),
    /^inode 13: logical block 0 violates cluster allocation rules$/],
  ['8: two physical clusters in one logical cluster', base({}, { es: [
    { first: 0, countBlocks: 1, status: 'written', fsBlock: 20 }, { first: 1, countBlocks: 1, status: 'unwritten', fsBlock: 41 },
    { first: 2, countBlocks: 2, status: 'delayed' }, { first: 8, countBlocks: 2, status: 'delayed' }] }),
    /^inode 13: logical block 1 violates cluster allocation rules$/],
  ['7: one status per range (overlap)', base({}, { es: [{ first: 0, countBlocks: 2, status: 'written', fsBlock: 20 }, { first: 8, countBlocks: 4, status: 'delayed' }, { first: 10, countBlocks: 1, status: 'unwritten', fsBlock: 22 }] }),
    /^inode 13: es entry at 10 overlaps the previous one$/],
  ['structure: delayed with a physical block', base({}, { es: [{ first: 0, countBlocks: 4, status: 'delayed', fsBlock: 20 }] }),
    /^inode 13: delayed es entry at 0 with a physical block$/],
];

for (const [name, view, message] of cases) {
  test(`invariant ${name} is detected`, () => {
    assert.throws(() => checkInvariants(view), (e: unknown) => e instanceof Error && e.constructor === Error && message.test(e.message));
  });
}
