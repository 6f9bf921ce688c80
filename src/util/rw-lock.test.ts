import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Mutex, RwLock, type Release } from './rw-lock.ts';

const tick = () => new Promise<void>((r) => setImmediate(r));

test('readers share, writers exclude', async () => {
  const lock = new RwLock();
  const r1 = await lock.acquireRead();
  const r2 = await lock.acquireRead();
  assert.equal(lock.readers, 2);
  let wrote = false;
  const w = lock.acquireWrite().then((rel) => { wrote = true; return rel; });
  await tick();
  assert.equal(wrote, false);
  r1();
  await tick();
  assert.equal(wrote, false);
  r2();
  const wr = await w;
  assert.equal(wrote, true);
  assert.equal(lock.writing, true);
  let second = false;
  const w2 = lock.acquireWrite().then((rel) => { second = true; return rel; });
  await tick();
  assert.equal(second, false);
  wr();
  (await w2)();
  assert.equal(second, true);
  assert.equal(lock.writing, false);
});

test('a reader arriving behind a waiting writer queues (writers are not starved)', async () => {
  const lock = new RwLock();
  const order: string[] = [];
  const r1 = await lock.acquireRead();
  const w = lock.acquireWrite().then((rel) => { order.push('W'); return rel; });
  const r2 = lock.acquireRead().then((rel) => { order.push('R2'); return rel; });
  const r3 = lock.acquireRead().then((rel) => { order.push('R3'); return rel; });
  await tick();
  assert.deepEqual(order, []);
  r1();
  const wr = await w;
  await tick();
  assert.deepEqual(order, ['W']);
  wr();
  const [a, b] = await Promise.all([r2, r3]);
  assert.deepEqual(order, ['W', 'R2', 'R3']);
  assert.equal(lock.readers, 2);
  a(); b();
  assert.equal(lock.readers, 0);
});

test('an endless stream of readers does not starve a writer', async () => {
  const lock = new RwLock();
  let writerDone = false;
  let readsAfterWriterQueued = 0;
  let writerQueued = false;
  const readers: Promise<void>[] = [];
  for (let i = 0; i < 50; i++) {
    readers.push(lock.withRead(async () => {
      if (writerQueued && !writerDone) readsAfterWriterQueued++;
      await tick();
    }));
    if (i === 10) {
      writerQueued = true;
      readers.push(lock.withWrite(() => { writerDone = true; }));
    }
  }
  await Promise.all(readers);
  assert.equal(writerDone, true);
  // Only the eleven readers admitted before the writer arrived may run before it.
  assert.ok(readsAfterWriterQueued <= 11, `${readsAfterWriterQueued}`);
});

test('double release throws; withWrite releases on throw', async () => {
  const lock = new RwLock();
  const rel = await lock.acquireWrite();
  rel();
  assert.throws(() => rel(), /released twice/);
  await assert.rejects(lock.withWrite(() => { throw new Error('boom'); }), /boom/);
  assert.equal(lock.writing, false);
  await assert.rejects(lock.withRead(async () => { throw new Error('boom'); }), /boom/);
  assert.equal(lock.readers, 0);
  const m = new Mutex();
  const order: number[] = [];
  await Promise.all([1, 2, 3].map((i) => m.withLock(async () => {
    assert.equal(m.locked, true);
    order.push(i);
    await tick();
  })));
  assert.deepEqual(order, [1, 2, 3]);
  assert.equal(m.locked, false);
});

test('property: under any schedule, grants follow arrival order and writers are exclusive', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.scheduler(),
      fc.array(fc.record({ write: fc.boolean(), holdTicks: fc.nat(3) }), { minLength: 1, maxLength: 10 }),
      async (s, requests) => {
        const lock = new RwLock();
        const arrivals: number[] = [];
        const grants: number[] = [];
        let readers = 0;
        let writers = 0;
        const tasks = requests.map(async (req, i) => {
          await s.schedule(Promise.resolve(), `arrive ${i} ${req.write ? 'W' : 'R'}`);
          arrivals.push(i);
          const p = req.write ? lock.acquireWrite() : lock.acquireRead();
          const release: Release = await p;
          grants.push(i);
          if (req.write) writers++; else readers++;
          if (writers > 1 || (writers === 1 && readers > 0)) throw new Error(`exclusion broken at ${i}`);
          for (let t = 0; t < req.holdTicks; t++) await s.schedule(Promise.resolve(), `hold ${i}`);
          if (req.write) writers--; else readers--;
          release();
        });
        await s.waitIdle();
        await Promise.all(tasks);
        assert.deepEqual(grants, arrivals);
        assert.equal(lock.readers + lock.waiting, 0);
        assert.equal(lock.writing, false);
      },
    ),
    { numRuns: 200 },
  );
});

test('withRead/withWrite on a free lock start fn at once, hold the lock through it and release it on sync and async throws', async () => {
  const lock = new RwLock();
  let ran = false;
  const p = lock.withWrite(async () => {
    ran = true;
    await tick();
    return 7;
  });
  assert.equal(ran, true, 'fn runs before withWrite returns when nothing holds or waits');
  assert.equal(lock.writing, true);
  // A reader arriving now queues behind the running writer.
  let readerSawWriter = true;
  const r = lock.withRead(() => { readerSawWriter = lock.writing; return 'r'; });
  assert.equal(lock.waiting, 1);
  assert.equal(await p, 7);
  assert.equal(await r, 'r');
  assert.equal(readerSawWriter, false);
  assert.equal(lock.readers + lock.waiting, 0);
  assert.equal(lock.writing, false);
  // Synchronous results and throws.
  assert.equal(await lock.withRead(() => 3), 3);
  await assert.rejects(lock.withWrite(() => { throw new Error('sync boom'); }), /sync boom/);
  assert.equal(lock.writing, false);
  await assert.rejects(lock.withRead(() => Promise.reject(new Error('async boom'))), /async boom/);
  assert.equal(lock.readers, 0);
  // Readers share on the fast path.
  let peak = 0;
  await Promise.all([0, 1, 2].map(() => lock.withRead(async () => { peak = Math.max(peak, lock.readers); await tick(); })));
  assert.equal(peak, 3);
});

test('property: withRead/withWrite mixed with acquire keep arrival order and exclusion', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.scheduler(),
      fc.array(fc.record({ write: fc.boolean(), viaWith: fc.boolean(), holdTicks: fc.nat(3) }), { minLength: 1, maxLength: 10 }),
      async (s, requests) => {
        const lock = new RwLock();
        const arrivals: number[] = [];
        const grants: number[] = [];
        let readers = 0;
        let writers = 0;
        const body = async (i: number, write: boolean, holdTicks: number): Promise<void> => {
          grants.push(i);
          if (write) writers++; else readers++;
          if (writers > 1 || (writers === 1 && readers > 0)) throw new Error(`exclusion broken at ${i}`);
          for (let t = 0; t < holdTicks; t++) await s.schedule(Promise.resolve(), `hold ${i}`);
          if (write) writers--; else readers--;
        };
        const tasks = requests.map(async (req, i) => {
          await s.schedule(Promise.resolve(), `arrive ${i} ${req.write ? 'W' : 'R'}`);
          arrivals.push(i);
          if (req.viaWith) {
            await (req.write ? lock.withWrite(() => body(i, true, req.holdTicks)) : lock.withRead(() => body(i, false, req.holdTicks)));
            return;
          }
          const release = await (req.write ? lock.acquireWrite() : lock.acquireRead());
          await body(i, req.write, req.holdTicks);
          release();
        });
        await s.waitIdle();
        await Promise.all(tasks);
        assert.deepEqual(grants, arrivals);
        assert.equal(lock.readers + lock.waiting, 0);
        assert.equal(lock.writing, false);
      },
    ),
    { numRuns: 200 },
  );
});
