// Crash points (journal.md §5.4): every workload's device writes and flushes are recorded, crash
// states are cut at flushes and between them (in-order prefixes and torn random subsets), and each
// state is recovered by ext4kit, by e2fsck and (a sample) by the kernel. Every recovered image must
// pass e2fsck -fn and hold every fsync/sync-acknowledged byte and name.
// `npm test` runs a bounded sample; CRASH_FULL=1 samples every window.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { haveE2fsprogs, loopMountSupport } from './support/oracles.ts';
import { runCrashPoints, type CrashRunResult } from './support/crash-run.ts';
import { smallFiles, renames, founding, fillDisk, growingFiles, sharedFsyncs, unwrittenWrites, type Workload } from './support/crash-workloads.ts';
import type { Ext4 } from '../src/api/ext4.ts';
import type { Jbd2Log } from '../src/journal/jbd2-log.ts';
import type { RecEvent } from './support/recording-device.ts';

const skip = haveE2fsprogs() ? false : 'e2fsprogs not installed (Debian package e2fsprogs)';
const FULL = process.env.CRASH_FULL === '1';
const SEED = Number(process.env.CRASH_SEED ?? 4242);

const workloads: Workload[] = FULL
  ? [smallFiles(1024, 96), smallFiles(4096, 96), renames(1024, 60), renames(4096, 60), founding(1024, 80), founding(4096, 80), fillDisk(1024), fillDisk(4096),
    growingFiles(1024, 24), growingFiles(4096, 24), sharedFsyncs(1024, 30), sharedFsyncs(4096, 30), unwrittenWrites(1024, 30), unwrittenWrites(4096, 30)]
  : [smallFiles(4096), renames(1024), founding(1024, 40), founding(4096, 40), fillDisk(4096), growingFiles(1024), sharedFsyncs(4096), unwrittenWrites(4096)];

for (const [i, w] of workloads.entries()) {
  test(`crash points: ${w.name}`, { skip, timeout: FULL ? 3_600_000 : 240_000 }, async (t) => {
    const loop = await loopMountSupport();
    if (!loop.ok) t.diagnostic(`kernel recovery skipped: ${loop.reason}`);
    const started = Date.now();
    const r = await runCrashPoints(w, {
      seed: SEED + i, maxWindows: FULL ? 100_000 : 6, perWindow: FULL ? 4 : 2,
      kernelEvery: loop.ok ? (FULL ? 10 : 8) : 0, kernelMax: FULL ? 40 : 2,
      // Writes complete out of order, a few event-loop turns late: commits overlap as on a real disk.
      latency: 2,
    });
    t.diagnostic(`${r.writes} writes, ${r.flushes} flushes, ${r.acks} acknowledgements; ${r.tally.states} crash states: ${r.tally.summary()} (${Date.now() - started} ms)`);
    for (const ex of r.tally.examples) t.diagnostic(ex);
    for (const who of ['e2fsprogs', 'ext4kit', 'kernel']) {
      assert.equal(r.tally.failures(who), 0, `${who}: ${r.tally.failures(who)} of ${r.tally.total(who)} crash states not recovered cleanly: ${r.tally.examples.filter((e) => e.startsWith(who)).slice(0, 3).join(' || ')}`);
    }
  });
}

type Internals = { fs: { log: Jbd2Log | undefined; icache: { sizeAheadForTest: boolean }; jbd: { noDataFlushForTest: boolean }; writeback: { convertBeforeDataForTest: boolean } } };

// Lazy checkpointing: when the rest of the log is too short for a transaction, everything goes
// home, the journal superblock points back at the log's first block, and the log restarts
// there over the old transactions. Every crash state in the windows around that point.
const isJsbAtFirst = (e: RecEvent): boolean => e.kind === 'write' && e.data.length >= 32 &&
  e.data[0] === 0xc0 && e.data[1] === 0x3b && e.data[2] === 0x39 && e.data[3] === 0x98 && e.data[7] === 4 &&
  e.data[0x1c] === 0 && e.data[0x1d] === 0 && e.data[0x1e] === 0 && e.data[0x1f] === 1;
async function aroundWrap(opts: { kernel: boolean; perWindow: number; span: number[]; hook?: Jbd2Log['brokenForTest'] }): Promise<{ r: CrashRunResult; wrapWindow: number }> {
  let wrapWindow = -1;
  const r = await runCrashPoints(growingFiles(4096, 170), {
    seed: SEED, maxWindows: 0, perWindow: opts.perWindow, kernelEvery: opts.kernel ? 6 : 0, kernelMax: 3, latency: 2,
    ...(opts.hook ? { openHook: (fs: Ext4) => { (fs as unknown as Internals).fs.log!.brokenForTest = opts.hook; } } : {}),
    pick: (events, windows) => {
      let at = -1;
      events.forEach((e, i) => { if (isJsbAtFirst(e)) at = i; });
      const first = events.findIndex(isJsbAtFirst);
      assert.ok(at > first, 'the log never wrapped: the workload is too short for the journal');
      wrapWindow = windows.findIndex((w) => at >= w.start && at <= w.end);
      return new Set(opts.span.map((d) => wrapWindow + d).filter((i) => i >= 0 && i < windows.length));
    },
  });
  return { r, wrapWindow };
}
test('crash points around a log wrap (checkpoint, log superblock moved back, log restarted)', { skip, timeout: 600_000 }, async (t) => {
  const loop = await loopMountSupport();
  const { r, wrapWindow } = await aroundWrap({ kernel: loop.ok, perWindow: 4, span: [-2, -1, 0, 1, 2, 3] });
  t.diagnostic(`log wrapped in flush window ${wrapWindow}; ${r.writes} writes, ${r.flushes} flushes; ${r.tally.states} crash states around it: ${r.tally.summary()}`);
  for (const ex of r.tally.examples) t.diagnostic(ex);
  assert.ok(r.tally.states >= 10, `only ${r.tally.states} crash states`);
  for (const who of ['e2fsprogs', 'ext4kit', 'kernel']) assert.equal(r.tally.failures(who), 0, `${who}: ${r.tally.examples.filter((e) => e.startsWith(who)).slice(0, 3).join(' || ')}`);
});
test('crash points around a log wrap catch a broken variant: the log restarts before the log superblock moved durably', { skip, timeout: 600_000 }, async (t) => {
  const { r } = await aroundWrap({ kernel: false, perWindow: 40, span: [0], hook: 'wrap-no-jsb-flush' });
  t.diagnostic(`${r.tally.states} crash states: ${r.tally.summary()}`);
  for (const ex of r.tally.examples.slice(0, 3)) t.diagnostic(ex);
  assert.ok(r.tally.failures('e2fsprogs') + r.tally.failures('ext4kit') > 0, `the broken variant went unnoticed: ${r.tally.summary()}`);
});

// The harness must catch broken commit protocols: no log at all (the code before journaled
// writes), blocks written home before the log, no flush between the log copies and the commit
// block, a checkpoint writing blocks home before their commit record is durable, and sizes
// committed ahead of their data (no i_disksize, the code before it).
const broken: Array<{ name: string; workload: Workload; openOpts?: { journal: 'bypass' }; hook?: Jbd2Log['brokenForTest']; sizeAhead?: boolean; noDataFlush?: boolean; convertEarly?: boolean }> = [
  { name: 'no log (in-place metadata, as before)', workload: renames(4096, 16), openOpts: { journal: 'bypass' } },
  { name: 'blocks written home before the log', workload: renames(4096, 16), hook: 'home-first' },
  { name: 'no flush before the commit block', workload: renames(4096, 16), hook: 'no-commit-flush' },
  { name: 'checkpoint writes home before the commit is durable', workload: renames(4096, 16), hook: 'early-checkpoint' },
  { name: 'in-memory sizes committed ahead of the data (no i_disksize)', workload: growingFiles(4096, 8), sizeAhead: true },
  { name: 'an fsync with nothing to commit does not flush its data', workload: sharedFsyncs(4096, 8), noDataFlush: true },
  { name: 'unwritten extents converted before their data is written', workload: unwrittenWrites(4096, 8), convertEarly: true },
];
for (const b of broken) {
  test(`crash points catch a broken variant: ${b.name}`, { skip, timeout: 240_000 }, async (t) => {
    const r = await runCrashPoints(b.workload, {
      seed: SEED, maxWindows: 40, perWindow: 3, kernelEvery: 0, kernelMax: 0, latency: 2,
      ...(b.openOpts ? { openOpts: b.openOpts } : {}),
      openHook: (fs: Ext4) => {
        const inner = (fs as unknown as Internals).fs;
        if (b.hook) inner.log!.brokenForTest = b.hook;
        if (b.sizeAhead) inner.icache.sizeAheadForTest = true;
        if (b.noDataFlush) inner.jbd.noDataFlushForTest = true;
        if (b.convertEarly) inner.writeback.convertBeforeDataForTest = true;
      },
    });
    t.diagnostic(`${r.tally.states} crash states: ${r.tally.summary()}`);
    for (const ex of r.tally.examples.slice(0, 3)) t.diagnostic(ex);
    assert.ok(r.tally.failures('e2fsprogs') + r.tally.failures('ext4kit') > 0, `the broken variant went unnoticed: ${r.tally.summary()}`);
  });
}
