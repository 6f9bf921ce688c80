// Crash points (journal.md §5.4): every workload's device writes and flushes are recorded, crash
// states are cut at flushes and between them (in-order prefixes and torn random subsets), and each
// state is recovered by ext4kit, by e2fsck and (a sample) by the kernel. Every recovered image must
// pass e2fsck -fn and hold every fsync/sync-acknowledged byte and name.
// `npm test` runs a bounded sample; CRASH_FULL=1 samples every window.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { haveE2fsprogs, loopMountSupport } from './support/oracles.ts';
import { runCrashPoints } from './support/crash-run.ts';
import { smallFiles, renames, founding, fillDisk, type Workload } from './support/crash-workloads.ts';
import type { Ext4 } from '../src/api/ext4.ts';
import type { Jbd2Log } from '../src/journal/jbd2-log.ts';

const skip = haveE2fsprogs() ? false : 'e2fsprogs not installed (Debian package e2fsprogs)';
const FULL = process.env.CRASH_FULL === '1';
const SEED = Number(process.env.CRASH_SEED ?? 4242);

const workloads: Workload[] = FULL
  ? [smallFiles(1024, 96), smallFiles(4096, 96), renames(1024, 60), renames(4096, 60), founding(1024, 80), founding(4096, 80), fillDisk(1024), fillDisk(4096)]
  : [smallFiles(4096), renames(1024), founding(1024, 40), founding(4096, 40), fillDisk(4096)];

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

// The harness must catch broken commit protocols: no log at all (the code before journaled
// writes), blocks written home before the log, no flush between the log copies and the commit
// block (a log superblock that forgets a transaction before its home writes are durable is
// shown by test/jbd2-home-flush.test.ts with one deterministic cut).
const broken: Array<{ name: string; openOpts?: { journal: 'bypass' }; hook?: Jbd2Log['brokenForTest']; perWindow?: number }> = [
  { name: 'no log (in-place metadata, as before)', openOpts: { journal: 'bypass' } },
  { name: 'blocks written home before the log', hook: 'home-first' },
  // Only a torn window (commit block and descriptor durable, a logged copy not) shows this one:
  // more states per window.
  { name: 'no flush before the commit block', hook: 'no-commit-flush', perWindow: 8 },
];
for (const b of broken) {
  test(`crash points catch a broken variant: ${b.name}`, { skip, timeout: 240_000 }, async (t) => {
    const r = await runCrashPoints(renames(4096, 16), {
      seed: SEED, maxWindows: 40, perWindow: b.perWindow ?? 3, kernelEvery: 0, kernelMax: 0, latency: 2,
      ...(b.openOpts ? { openOpts: b.openOpts } : {}),
      openHook: (fs: Ext4) => {
        const log = (fs as unknown as { fs: { log: Jbd2Log | undefined } }).fs.log;
        if (b.hook) log!.brokenForTest = b.hook;
      },
    });
    t.diagnostic(`${r.tally.states} crash states: ${r.tally.summary()}`);
    assert.ok(r.tally.failures('e2fsprogs') + r.tally.failures('ext4kit') > 0, `the broken variant went unnoticed: ${r.tally.summary()}`);
  });
}
