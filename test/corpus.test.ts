// The e2fsprogs test-image corpus: every image opens or is refused with an Ext4Error, a walk of
// everything reachable (lstat, readdir, readlink, listxattr/getxattr, createReadStream up to 64 MiB
// per file, mappings) lets only Ext4Errors escape, nothing hangs, and the image file is unchanged.
//
// Each image runs in a worker thread (walk-pool.ts) under a 20 s bound: a hang, even a synchronous
// loop, is a failure that names the last directory or file the walk reached. Walk policy
// (fs-walk.ts): an Ext4Error is recorded and the walk carries on with the next sibling.
//
// Verdicts from INDEX.tsv:
//   clean         must open, and the walk must finish with zero errors;
//   clean_replay  (journal needs replay, which ext4kit does not do yet) must either open forced
//                 read-only with a reason naming the journal and walk with zero errors (the
//                 pre-replay view), or be refused with ENOTSUP;
//   anything else may open or be refused, with Ext4Errors only.
// EROFS anywhere means ext4kit tried to write to a read-only open: a failure.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { corpusAvailable, corpusDir, extractCorpusImage, listCorpus, type CorpusEntry } from './support/corpus.ts';
import { cleanupTemp } from './support/images.ts';
import { WalkPool, type WalkOutcome } from './support/walk-pool.ts';
import type { WalkIssue } from './support/fs-walk.ts';

const IMAGE_TIMEOUT_MS = Number(process.env.CORPUS_IMAGE_TIMEOUT_MS ?? 20_000);
const avail = corpusAvailable();
const entries: CorpusEntry[] = avail.ok ? listCorpus() : [];
if (!avail.ok) console.log(`corpus.test.ts: skipped: ${avail.reason}`);

interface Row { id: string; verdict: string; outcome: string; walk: string; errors: string; ms: number }
const rows: Row[] = [];
let pool: WalkPool;

before(() => {
  pool = new WalkPool();
});
after(async () => {
  await pool?.close();
  await cleanupTemp();
  if (rows.length > 0) printSummary();
});

function fmtIssue(i: WalkIssue): string {
  return `${i.step} ${i.path}: ${i.code}${i.detail ? `/${i.detail}` : ''}: ${i.message}${i.stack ? `\n${i.stack}` : ''}`;
}

function tally(issues: WalkIssue[]): string {
  const m = new Map<string, number>();
  for (const i of issues) m.set(i.code, (m.get(i.code) ?? 0) + 1);
  return [...m].map(([c, n]) => `${c}×${n}`).join(' ');
}

function printSummary(): void {
  const w = { id: 38, verdict: 13, outcome: 44, walk: 30 };
  const lines = [
    `corpus summary (${corpusDir()}):`,
    `${'image'.padEnd(w.id)}${'verdict'.padEnd(w.verdict)}${'outcome'.padEnd(w.outcome)}${'walked'.padEnd(w.walk)}errors during walk`,
    ...rows.map((r) => `${r.id.padEnd(w.id)}${r.verdict.padEnd(w.verdict)}${r.outcome.padEnd(w.outcome)}${r.walk.padEnd(w.walk)}${r.errors} (${Math.round(r.ms)} ms)`),
  ];
  const opened = rows.filter((r) => r.outcome.startsWith('opened')).length;
  const refused = rows.filter((r) => r.outcome.startsWith('refused')).length;
  lines.push(`${rows.length} images: ${opened} opened, ${refused} refused, ${rows.length - opened - refused} hung or crashed`);
  console.log(lines.join('\n'));
}

describe('e2fsprogs corpus: open or refuse, walk, never throw anything else, never hang, never write', { skip: avail.ok ? false : avail.reason }, () => {
  for (const e of entries) {
    test(`${e.id} (${e.verdict})`, async () => {
      const path = await extractCorpusImage(e.id);
      let outcome: WalkOutcome;
      try {
        outcome = await pool.run({ path }, IMAGE_TIMEOUT_MS);
      } finally {
        await rm(path, { force: true });
      }
      const row: Row = { id: e.id, verdict: e.verdict, outcome: '', walk: '', errors: '', ms: 0 };
      rows.push(row);
      if (outcome.kind === 'hang') {
        row.outcome = 'HANG';
        row.ms = outcome.ms;
        assert.fail(`hang: no result within ${IMAGE_TIMEOUT_MS} ms; last progress: ${outcome.lastProgress}`);
      }
      if (outcome.kind === 'crash') {
        row.outcome = 'CRASH';
        assert.fail(`worker crashed (last progress: ${outcome.lastProgress}): ${fmtIssue(outcome.issue)}`);
      }
      const r = outcome.result;
      const w = r.walk;
      row.ms = r.ms;
      row.outcome = r.opened ? `opened${r.forcedReadOnly ? ' (forced ro)' : ''}` : `refused ${r.openError!.code}${r.openError!.detail ? `/${r.openError!.detail}` : ''}`;
      if (w) {
        row.walk = `${w.entries} entries, ${w.files} files${w.truncated ? ' (truncated)' : ''}`;
        row.errors = w.errors.length ? `${w.errors.length}: ${tally(w.errors)}` : '0';
      }

      const foreign = [...r.foreign, ...(w?.foreign ?? [])];
      assert.deepEqual(foreign.map(fmtIssue), [], 'only Ext4Error may escape');
      assert.equal(r.hashAfter, r.hashBefore, 'the image file must not change');
      const all = [...(r.openError ? [r.openError] : []), ...r.errors, ...(w?.errors ?? [])];
      assert.deepEqual(all.filter((i) => i.code === 'EROFS').map(fmtIssue), [], 'no write attempts on a read-only open');

      if (r.opened && r.info && e.blocksize !== null) {
        assert.equal(r.info.blockSize, e.blocksize, 'block size as dumpe2fs reports it');
        if (e.clustersize !== null) assert.equal(r.info.clusterSize, e.clustersize, 'cluster size as dumpe2fs reports it');
      }
      if (e.verdict === 'clean') {
        assert.ok(r.opened, `a clean image must open; got ${r.openError && fmtIssue(r.openError)}`);
        assert.deepEqual([...r.errors, ...w!.errors].map(fmtIssue), [], 'a clean image must walk without errors');
        assert.equal(w!.truncated, undefined);
      } else if (e.verdict === 'clean_replay') {
        if (r.opened) {
          // A read-only open replays the journal into an in-memory overlay: the recovered view.
          assert.equal(r.info?.journalApplied, 'in-memory', 'a journal needing recovery is replayed in memory on a read-only open');
          assert.deepEqual([...r.errors, ...w!.errors].map(fmtIssue), [], 'the recovered view must walk without errors');
        } else {
          assert.equal(r.openError!.code, 'ENOTSUP', `refusing an image that needs replay must be ENOTSUP: ${fmtIssue(r.openError!)}`);
        }
      }
    });
  }
});
