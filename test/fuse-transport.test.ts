// Who reads /dev/fuse (src/fuse/transport.ts): while nothing is in flight the main thread reads
// requests itself (no hand-off per request), and a mount left idle gives its event loop back
// within a few milliseconds (the reader worker's NOTIFY_RETRIEVE poke), so timers, child-exit
// events and signals of the hosting program are not held up by a server waiting in read(2).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { stat } from 'node:fs/promises';
import { Ext4 } from '../src/node.ts';
import { cleanupTemp, tmpImagePath } from './support/images.ts';
import { fuseSkipReason, shOk, withFuse } from './fuse-support.ts';

after(() => cleanupTemp());

const skip = fuseSkipReason();
if (skip) console.log(`# fuse-transport: skipping: ${skip}`);

/**
 * A watchdog on its own thread: after `ms` it stats the mountpoint, which wakes a main thread
 * stuck in read(2) (so a broken poke fails the test instead of hanging it).
 */
function watchdog(dir: string, ms: number): Worker {
  return new Worker(`
    const { workerData } = require('node:worker_threads');
    const { statfsSync } = require('node:fs');
    setTimeout(() => { try { statfsSync(workerData.dir); } catch {} }, workerData.ms);
  `, { eval: true, workerData: { dir, ms } });
}

test('the main thread reads requests itself; an idle mount frees its event loop within milliseconds', { skip, timeout: 120_000 }, async () => {
  const img = tmpImagePath('transport');
  await Ext4.mkfs(img, { sizeBytes: 32 << 20, blockSize: 4096, timeSec: 1_700_000_000 });
  await withFuse(img, async (mnt, m) => {
    await shOk(`cd ${mnt}; mkdir d; for i in $(seq 100); do echo $i > d/f$i; done; cat d/f* | wc -l; cat d/f50`);
    // A sequential client: nearly every request finds the main thread waiting for it.
    assert.ok(m.readsBy.main > 500, `main thread read ${m.readsBy.main}, worker ${m.readsBy.worker}`);
    assert.ok(m.readsBy.main > 5 * m.readsBy.worker, `main thread read ${m.readsBy.main}, worker ${m.readsBy.worker}`);
    // Stats from this process (through the threadpool; no caching: one LOOKUP each), then a
    // timer: the main thread read that request and waits in read(2) again; only the idle poke
    // gives the event loop back (else the watchdog's statfs after 3 s does).
    let worstMs = 0;
    for (let i = 1; i <= 20; i++) {
      const dog = watchdog(mnt, 3000);
      assert.equal((await stat(`${mnt}/d/f${i}`)).size, `${i}\n`.length);
      const t0 = performance.now();
      await new Promise((r) => setTimeout(r, 20));
      worstMs = Math.max(worstMs, performance.now() - t0 - 20);
      await dog.terminate();
    }
    assert.ok(worstMs < 1000, `a 20 ms timer fired up to ${worstMs.toFixed(0)} ms late: the idle main thread was not woken`);
    // Requests still arrive after the hand-back (the worker reads, the main thread takes over again).
    assert.equal((await shOk(`cat ${mnt}/d/f7; ls ${mnt}/d | wc -l`)).trim(), '7\n100');
  }, { cacheSeconds: 0 });
});

test('mainThreadReads: false: every request comes from the reader worker (an embedder whose event loop must never block)', { skip, timeout: 120_000 }, async () => {
  const img = tmpImagePath('transport-worker');
  await Ext4.mkfs(img, { sizeBytes: 32 << 20, blockSize: 4096, timeSec: 1_700_000_000 });
  await withFuse(img, async (mnt, m) => {
    assert.equal((await shOk(`cd ${mnt}; for i in $(seq 20); do echo $i > f$i; done; cat f* | wc -l`)).trim(), '20');
    assert.equal(m.readsBy.main, 0, `main thread read ${m.readsBy.main} requests`);
    assert.ok(m.readsBy.worker > 40, `worker read ${m.readsBy.worker}`);
  }, { mainThreadReads: false });
});
