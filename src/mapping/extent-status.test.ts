import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { fileBlock, fsBlock, type FileBlock } from '../util/brand.ts';
import { ExtentStatusTree, PendingClusters, logicalCluster, entryLast, type ExtentStatus } from './extent-status.ts';

const fb = fileBlock;

test('insert splits and merges neighbours; mapped entries merge only when physically contiguous', () => {
  const es = new ExtentStatusTree();
  es.insert(fb(0), 10, 'delayed');
  es.insert(fb(3), 2, 'written', fsBlock(100));
  assert.deepEqual([...es].map((e) => [e.first, e.countBlocks, e.status, e.fsBlock]), [
    [0, 3, 'delayed', undefined], [3, 2, 'written', 100], [5, 5, 'delayed', undefined],
  ]);
  es.insert(fb(5), 1, 'written', fsBlock(102)); // contiguous: merges
  es.insert(fb(6), 1, 'written', fsBlock(200)); // not contiguous: separate
  es.insert(fb(7), 1, 'unwritten', fsBlock(201)); // other status: separate
  assert.deepEqual([...es].map((e) => [e.first, e.countBlocks, e.status, e.fsBlock]), [
    [0, 3, 'delayed', undefined], [3, 3, 'written', 100], [6, 1, 'written', 200], [7, 1, 'unwritten', 201],
    [8, 2, 'delayed', undefined],
  ]);
  es.remove(fb(4), fb(8));
  assert.deepEqual([...es].map((e) => [e.first, e.countBlocks, e.status, e.fsBlock]), [
    [0, 3, 'delayed', undefined], [3, 1, 'written', 100], [9, 1, 'delayed', undefined],
  ]);
  es.insert(fb(3), 6, 'delayed');
  assert.deepEqual([...es].map((e) => [e.first, e.countBlocks, e.status]), [[0, 10, 'delayed']]);
  assert.equal(es.lookup(fb(9))?.status, 'delayed');
  assert.equal(es.lookup(fb(10)), undefined);
  es.remove(fb(2), fb(2));
  es.insert(fb(2), 1, 'written', fsBlock(6));
  // R=4: clusters 0 (blocks 0,1,3) and 1 and 2 (blocks 8,9) hold delayed blocks.
  assert.equal(es.countDelayedClusters(fb(0), fb(100), 4), 3);
  assert.equal(es.countDelayedClusters(fb(2), fb(2), 4), 0);
  assert.deepEqual([...es.delayedClusters(4)], [0, 1, 2]);
  const untyped = es.insert as (...args: unknown[]) => void;
  assert.throws(() => untyped.call(es, fb(0), 1, 'delayed', 1), /takes no physical block/);
  assert.throws(() => untyped.call(es, fb(0), 1, 'written'), /needs physical block/);
  assert.throws(() => es.insert(fb(0), 0, 'delayed'), /bad length/);
});

test('lookup stays fast with many entries', () => {
  const es = new ExtentStatusTree();
  const n = 20000;
  for (let i = 0; i < n; i++) {
    if (i % 2) es.insert(fb(i * 2), 1, 'delayed');
    else es.insert(fb(i * 2), 1, 'written', fsBlock(i * 7));
  }
  assert.equal(es.size, n);
  for (let i = 0; i < n; i++) {
    assert.equal(es.lookup(fb(i * 2))?.first, i * 2);
    assert.equal(es.lookup(fb(i * 2 + 1)), undefined);
  }
  assert.equal(es.countDelayedBlocks(), n / 2);
});

test('pending set: ranges', () => {
  const p = new PendingClusters();
  for (const c of [9, 2, 5, 100]) p.add(logicalCluster(c));
  assert.deepEqual([...p], [2, 5, 9, 100]);
  assert.deepEqual(p.inRange(logicalCluster(3), logicalCluster(9)), [5, 9]);
  assert.deepEqual(p.inRange(logicalCluster(0), logicalCluster(1000)), [2, 5, 9, 100]);
  assert.equal(p.delete(logicalCluster(5)), true);
  assert.equal(p.size, 3);
});

type Cell = { status: ExtentStatus; fsBlock: number | undefined } | undefined;
const SPAN = 48;

const opArb = fc.oneof(
  fc.record({
    kind: fc.constant('insert' as const),
    first: fc.nat(SPAN - 1), len: fc.integer({ min: 1, max: 12 }),
    status: fc.constantFrom<ExtentStatus>('written', 'unwritten', 'delayed', 'hole'),
    fsBlock: fc.nat(60),
  }),
  fc.record({ kind: fc.constant('remove' as const), first: fc.nat(SPAN - 1), len: fc.integer({ min: 1, max: 12 }) }),
);

test('property: es tree equals a per-block model, entries stay disjoint and maximally merged', () => {
  fc.assert(fc.property(fc.array(opArb, { maxLength: 40 }), fc.constantFrom(1, 4, 16), (ops, ratio) => {
    const es = new ExtentStatusTree();
    const model: Cell[] = new Array(SPAN + 12).fill(undefined);
    for (const op of ops) {
      if (op.kind === 'insert') {
        const mapped = op.status === 'written' || op.status === 'unwritten';
        if (mapped) es.insert(fb(op.first), op.len, op.status as 'written', fsBlock(op.fsBlock));
        else es.insert(fb(op.first), op.len, op.status as 'delayed');
        for (let i = 0; i < op.len; i++) model[op.first + i] = { status: op.status, fsBlock: mapped ? op.fsBlock + i : undefined };
      } else {
        es.remove(fb(op.first), fb(op.first + op.len - 1));
        for (let i = 0; i < op.len; i++) model[op.first + i] = undefined;
      }
      es.checkStructure();
      for (let b = 0; b < model.length; b++) {
        const e = es.lookup(fb(b));
        const m = model[b];
        if (m === undefined) { assert.equal(e, undefined, `block ${b}`); continue; }
        assert.ok(e, `block ${b}`);
        assert.equal(e.status, m.status);
        assert.equal(e.fsBlock === undefined ? undefined : e.fsBlock + (b - e.first), m.fsBlock);
      }
      const entries = [...es];
      for (let i = 1; i < entries.length; i++) {
        const a = entries[i - 1]!, b = entries[i]!;
        const mergeable = a.status === b.status && entryLast(a) + 1 === b.first &&
          (a.fsBlock === undefined || a.fsBlock + a.countBlocks === b.fsBlock);
        assert.ok(!mergeable, `entries at ${a.first} and ${b.first} should have merged`);
      }
      for (const [lo, hi] of [[0, model.length - 1], [op.first, op.first + op.len - 1], [3, 17]] as const) {
        const isDelayed = (b: number) => model[b]?.status === 'delayed';
        let blocks = 0;
        const clusters = new Set<number>();
        for (let b = lo; b <= hi; b++) if (isDelayed(b)) { blocks++; clusters.add(Math.floor(b / ratio)); }
        assert.equal(es.countDelayedBlocks(fb(lo), fb(hi)), blocks);
        assert.equal(es.hasDelayedIn(fb(lo), fb(hi)), blocks > 0);
        assert.equal(es.countDelayedClusters(fb(lo), fb(hi), ratio), clusters.size);
        assert.deepEqual([...es.delayedClusters(ratio, fb(lo) as FileBlock, fb(hi))], [...clusters].sort((x, y) => x - y));
      }
    }
  }), { numRuns: 300 });
});
