// The 2011 bigalloc race (delalloc-bigalloc spec §2.1) at the level of the delalloc core:
// a writer that decides "this cluster is already paid for" from page-cache delayed flags, which
// writeback clears lazily after dropping i_data_sem, leaves a delayed block without a
// reservation; its writeback later reports "used 1 with only 0 reserved clusters". The real
// insertDelayed decides from the es tree under the exclusive lock and survives every schedule.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { fileBlock, type FileBlock } from '../util/brand.ts';
import { Mutex, RwLock } from '../util/rw-lock.ts';
import { checkQuiescent, insertDelayed, type DelallocState, type IsClusterAllocated } from './delalloc.ts';
import { clusterFirstBlock, clusterLastBlock, clusterOf, type LogicalCluster } from './extent-status.ts';
import { SimFs } from './delalloc-sim.test-util.ts';

const R = 4;
const INO = 13;

/**
 * BROKEN on purpose (the pre-5356f2615c logic): "does cluster c already hold a delayed block?"
 * is answered by `staleDelayed`, i.e. page-cache BH_Delay flags, instead of the es tree.
 */
function brokenInsertDelayed(
  state: DelallocState, first: FileBlock, countBlocks: number, ratio: number,
  isClusterAllocated: IsClusterAllocated, staleDelayed: (c: LogicalCluster) => boolean,
): void {
  const last = (first + countBlocks - 1) as FileBlock;
  const cF = clusterOf(first, ratio);
  const cL = clusterOf(last, ratio);
  let need = Math.max(0, cL - cF - 1);
  const pendingAdded: LogicalCluster[] = [];
  for (const c of cF === cL ? [cF] : [cF, cL]) {
    if (staleDelayed(c)) continue; // "cluster already paid"
    if (state.es.hasMappedIn(clusterFirstBlock(c, ratio), clusterLastBlock(c, ratio)) || isClusterAllocated(c)) pendingAdded.push(c);
    else need++;
  }
  state.space.reserve(state.reservation, need);
  state.es.insert(first, countBlocks, 'delayed');
  for (const c of pendingAdded) state.pending.add(c);
}

/** The simulated world: fs + the page cache's BH_Delay flags. Blocks 0,1 delayed, C0 reserved once. */
function world() {
  const fs = new SimFs({ ratio: R, totalClusters: 32, blockSizeBytes: 1024 });
  const ino = fs.addInode(INO, 1000, 1000);
  const bhDelay = new Set<number>();
  fs.write(INO, 0, 2);
  bhDelay.add(0).add(1);
  const flagsSay = (snapshot: ReadonlySet<number>) => (c: LogicalCluster) => {
    for (let b = clusterFirstBlock(c, R); b <= clusterLastBlock(c, R); b++) if (snapshot.has(b)) return true;
    return false;
  };
  return { fs, ino, bhDelay, flagsSay };
}

test('§2.1 table, explicit interleaving: the broken writer leaves an unpaid delayed block', () => {
  const { fs, ino, bhDelay, flagsSay } = world();
  assert.equal(ino.state.reservation.reservedClusters, 1);
  // 1. U looks up block 2: unmapped; blocks 0,1 carry BH_Delay → "cluster already paid".
  const snapshot = new Set(bhDelay);
  // 2. W (i_data_sem write): allocates C0 for 0–1; no delayed block left in C0 → consumes it.
  assert.equal(fs.writeback(INO, 0, 1), 1);
  assert.equal(ino.state.reservation.reservedClusters, 0);
  fs.check();
  // 3. U sets block 2 delayed without a reservation.
  brokenInsertDelayed(ino.state, fileBlock(2), 1, R, ino.isAllocated, flagsSay(snapshot));
  bhDelay.add(2);
  assert.throws(() => fs.check(), /^Error: inode 13: cluster 0 is allocated and has delayed blocks but is not pending$/);
  // 4. W clears BH_Delay on 0,1 at submit.
  bhDelay.delete(0); bhDelay.delete(1);
  // 5. Writeback of block 2: implied cluster C0, and the kernel's warning.
  assert.throws(() => fs.writeback(INO, 2, 2), /^Error: inode 13: used 1 with only 0 reserved clusters$/);
});

test('§2.1 table, same interleaving with the real insertDelayed: accounting stays exact', () => {
  const { fs, ino, bhDelay } = world();
  const snapshot = new Set(bhDelay); // 1. (read, but accounting never looks at it)
  assert.equal(snapshot.size, 2);
  assert.equal(fs.writeback(INO, 0, 1), 1); // 2.
  fs.check();
  const r = insertDelayed(ino.state, fileBlock(2), 1, R, ino.isAllocated); // 3.
  assert.deepEqual(r, { reservedClusters: 0, pendingAdded: [0] });
  bhDelay.add(2);
  fs.check();
  bhDelay.delete(0); bhDelay.delete(1); // 4.
  assert.equal(fs.writeback(INO, 2, 2), 0); // 5.
  fs.check();
  checkQuiescent(ino.state);
});

type Variant = 'real' | 'broken: flags read before i_data_sem' | 'broken: flags read under i_data_sem';

/**
 * Two writers (blocks 2 and 3 of C0: different pages, so page locks do not serialize them) and
 * two writeback passes (fsync in a loop), with the kernel's lock order (page lock → i_data_sem).
 * Each critical section takes i_data_sem exclusively; the scheduler interleaves the steps the
 * kernel performs outside it. Ends with a final fsync and the invariant checker.
 */
async function scenario(s: fc.Scheduler, variant: Variant): Promise<void> {
  const { fs, ino, bhDelay, flagsSay } = world();
  const dataSem = new RwLock();
  const pageLock = new Map<number, Mutex>();
  const page = (b: number) => { let m = pageLock.get(b); if (!m) { m = new Mutex(); pageLock.set(b, m); } return m; };
  const dirty = new Set<number>([0, 1]);
  const pause = (label: string) => s.schedule(Promise.resolve(), label);

  const writer = async (block: number) => {
    const unlockPage = await page(block).acquire();
    // Step 1: es/page-cache lookup without i_data_sem.
    const before = new Set(bhDelay);
    await pause(`U${block}: looked up block ${block}, takes i_data_sem`);
    await dataSem.withWrite(() => {
      // Step 3: look again under the exclusive lock.
      if (fs.holeRuns(INO, block, 1).length === 0) return;
      if (variant === 'real') insertDelayed(ino.state, fileBlock(block), 1, R, ino.isAllocated);
      else brokenInsertDelayed(ino.state, fileBlock(block), 1, R, ino.isAllocated,
        flagsSay(variant === 'broken: flags read before i_data_sem' ? before : bhDelay));
    });
    await pause(`U${block}: sets BH_Delay on block ${block}`);
    bhDelay.add(block);
    dirty.add(block);
    unlockPage();
  };

  const writeback = async (name: string) => {
    await pause(`${name}: starts`);
    const pages = [...dirty].sort((a, b) => a - b);
    const unlock = [];
    for (const b of pages) unlock.push(await page(b).acquire());
    const mine = pages.filter((b) => dirty.has(b)); // re-check after locking
    await pause(`${name}: locked pages [${mine.join(',')}], takes i_data_sem`);
    const mapped: number[] = [];
    await dataSem.withWrite(() => {
      for (const b of mine) {
        if (ino.state.es.lookup(fileBlock(b))?.status !== 'delayed') continue;
        fs.writeback(INO, b, b);
        mapped.push(b);
      }
    });
    await pause(`${name}: submits, clears BH_Delay on [${mapped.join(',')}]`);
    for (const b of mine) { bhDelay.delete(b); dirty.delete(b); }
    for (const u of unlock) u();
  };

  const tasks = [writer(2), writer(3), writeback('W1'), writeback('W2')];
  await s.waitIdle();
  await Promise.all(tasks);
  await dataSem.withWrite(() => fs.flush()); // final fsync
  fs.check();
  checkQuiescent(ino.state);
}

test('fc.scheduler: the real insertDelayed passes every explored schedule', async () => {
  await fc.assert(fc.asyncProperty(fc.scheduler(), (s) => scenario(s, 'real')), { numRuns: 300 });
});

for (const variant of ['broken: flags read before i_data_sem', 'broken: flags read under i_data_sem'] as const) {
  test(`fc.scheduler finds the 2011 race in the ${variant} variant`, async () => {
    const details = await fc.check(fc.asyncProperty(fc.scheduler(), (s) => scenario(s, variant)), { numRuns: 300, seed: 2011 });
    assert.equal(details.failed, true, 'the broken variant survived every schedule');
    const err = details.errorInstance;
    assert.ok(err instanceof Error);
    assert.match(err.message, /^inode 13: used 1 with only 0 reserved clusters$/);
    const report = fc.defaultReportMessage(details) ?? '';
    // The counterexample prints the schedule that lost the reservation: W1 maps C0 between the
    // writer's flag read and its delayed insert.
    assert.match(report, /W[12]: locked pages \[0,1\], takes i_data_sem/);
    assert.match(report, /U[23]: looked up block/);
  });
}
