// Replay fidelity (issue 8): for images that need journal recovery — the e2fsprogs corpus j_*
// images, images the kernel leaves behind (EXT4_IOC_SHUTDOWN with LOGFLUSH after a workload of
// creates, renames, unlinks, rmdirs, xattrs, truncates; 1 KiB and 4 KiB blocks, with and without
// metadata_csum) and debugfs-written logs with revokes — ext4kit's read-only view (names, modes,
// sizes, owners, times, contents, symlink targets, xattrs) must equal its view of a copy
// recovered by `e2fsck -E journal_only -y` and of a copy recovered by a kernel mount; the image
// must be byte-identical after the read-only open; a writable open + close must leave an image
// `e2fsck -fn` accepts, with the same view. A replay that ignores revokes must fail these checks.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { Ext4 } from '../src/node.ts';
import type { Ext4 as CoreExt4 } from '../src/api/ext4.ts';
import { Ext4Error } from '../src/errors/ext4-error.ts';
import { replayTestHooks } from '../src/journal/replay/passes.ts';
import { cleanupTemp, makeImage, tmpImagePath, tmpDirPath } from './support/images.ts';
import { debugfs, haveE2fsprogs, loopMountSupport, runTool, toolPath, withLoopMount } from './support/oracles.ts';
import { corpusAvailable, extractCorpusImage, listCorpus } from './support/corpus.ts';
import { kernelCrashImage, copyImage, debugfsWrite } from './support/journal-images.ts';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dumpe2fsHeader } from './support/oracles.ts';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'ext4kit.js');

const skipTools = haveE2fsprogs() ? false : 'e2fsprogs (Debian package e2fsprogs) not installed';
if (skipTools) console.log(`journal-replay.test.ts: skipped: ${skipTools}`);

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex').slice(0, 16);
const fileSha = async (p: string) => sha(await readFile(p));

/** The whole tree as sorted lines: path, mode, size, owner, mtime, content hash or link target, xattrs. */
async function viewOf(fs: CoreExt4): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const name of (await fs.readdir(dir)).sort()) {
      const p = dir === '/' ? `/${name}` : `${dir}/${name}`;
      const st = await fs.lstat(p);
      let what = '';
      if (st.isFile()) what = sha(await fs.readFile(p));
      else if (st.isSymbolicLink()) what = `-> ${await fs.readlink(p)}`;
      const xattrs: string[] = [];
      for (const x of (await fs.listxattr(p)).sort()) xattrs.push(`${x}=${sha(await fs.getxattr(p, x))}`);
      out.push(`${p} ${st.mode.toString(8)} ${st.size} ${st.uid}:${st.gid} ${st.mtimeMs} ${st.nlink} ${what} ${xattrs.join(',')}`);
      if (st.isDirectory() && name !== 'lost+found') await walk(p);
    }
  };
  await walk('/');
  return out;
}

async function openView(img: string, readOnly = true): Promise<{ lines: string[]; fs: CoreExt4 }> {
  const fs = await Ext4.open(img, { readOnly });
  return { lines: await viewOf(fs), fs };
}

async function e2fsckJournalOnly(img: string): Promise<string> {
  const copy = await copyImage(img, 'e2fsck-replayed');
  const r = await runTool(toolPath('e2fsck'), ['-E', 'journal_only', '-y', copy]);
  assert.ok(r.exitCode <= 1 || r.exitCode === 4, `e2fsck -E journal_only: exit ${r.exitCode}\n${r.stdout}${r.stderr}`);
  return copy;
}

async function fsckClean(img: string): Promise<void> {
  const r = await runTool(toolPath('e2fsck'), ['-fn', img]);
  assert.equal(r.exitCode, 0, `e2fsck -fn:\n${r.stdout}${r.stderr}`);
}

interface FidelityResult { report: NonNullable<ReturnType<CoreExt4['info']>['journal']>; ours: string[] }

/** The checks every needs-recovery image goes through. */
async function checkFidelity(img: string, opts: { kernel: boolean; writable: 'clean' | 'refused' }): Promise<FidelityResult> {
  const before = await fileSha(img);
  const { lines: ours, fs } = await openView(img);
  const report = fs.info().journal!;
  await fs.close();
  assert.equal(await fileSha(img), before, 'a read-only open leaves the image byte-identical');
  assert.equal(report.needsRecovery, true, 'image needs recovery');

  const fixed = await e2fsckJournalOnly(img);
  const e2 = await openView(fixed);
  assert.equal(e2.fs.info().journal!.needsRecovery, false, 'e2fsck emptied the log');
  await e2.fs.close();
  assert.deepEqual(ours, e2.lines, 'read-only view equals the view after e2fsck -E journal_only');

  if (opts.kernel) {
    const k = await copyImage(img, 'kernel-replayed');
    await withLoopMount(k, async () => undefined);
    const kv = await openView(k);
    await kv.fs.close();
    assert.deepEqual(ours, kv.lines, 'read-only view equals the view after a kernel mount');
  }

  const rw = await copyImage(img, 'rw-replayed');
  if (opts.writable === 'clean') {
    const w = await Ext4.open(rw);
    assert.equal(w.readOnly, false, `writable after replay (${w.info().forcedReadOnly})`);
    assert.equal(w.info().journal!.applied, 'on-disk');
    assert.deepEqual(await viewOf(w), ours, 'writable view equals the read-only view');
    await w.close();
    await fsckClean(rw);
    const again = await openView(rw);
    assert.equal(again.fs.info().journal!.needsRecovery, false);
    await again.fs.close();
    assert.deepEqual(again.lines, ours);
  } else {
    const sum = await fileSha(rw);
    await assert.rejects(Ext4.open(rw), (e: unknown) => e instanceof Ext4Error && ['EBADMSG', 'EUCLEAN', 'ENOTSUP'].includes(e.code));
    assert.equal(await fileSha(rw), sum, 'a refused writable open wrote nothing');
  }
  return { report, ours };
}

describe('journal replay fidelity', { skip: skipTools }, () => {
  let loop: { ok: boolean; reason?: string } = { ok: false };
  before(async () => {
    loop = await loopMountSupport();
    if (!loop.ok) console.log(`journal-replay.test.ts: kernel images and kernel oracle skipped: ${loop.reason}`);
  });
  after(async () => { replayTestHooks.ignoreRevokes = false; await cleanupTemp(); });

  const corpus = corpusAvailable();
  test('e2fsprogs j_* images that need recovery', { skip: corpus.ok ? false : `corpus: ${corpus.reason}` }, async () => {
    const js = listCorpus().filter((e) => e.id.startsWith('j_') && e.needsRecovery);
    assert.ok(js.length >= 3, `found ${js.length} j_* images needing recovery`);
    for (const e of js) {
      const img = await extractCorpusImage(e.id);
      const clean = e.id === 'j_recover_csum3_64bit';
      const r = await checkFidelity(img, { kernel: false, writable: clean ? 'clean' : 'refused' });
      console.log(`${e.id}: ${r.report.transactions} transaction(s), ${r.report.replayedBlocks} block(s) replayed${r.report.error ? `; ${r.report.error}` : ''}${r.report.warnings.length ? `; ${r.report.warnings.join('; ')}` : ''}`);
      if (clean) {
        assert.ok(r.ours.some((l) => l.startsWith('/a/b/c ')), 'the /a/b/c tree of the log is visible');
        assert.equal(r.report.applied, 'in-memory');
      }
      if (e.id === 'j_corrupt_commit_csum') assert.equal(r.report.failedCommitTid, 3);
      if (e.id === 'j_corrupt_revoke_rcount') assert.match(r.report.error ?? '', /r_count/);
    }
  });

  for (const [bs, features] of [[1024, 'metadata_csum,64bit'], [4096, 'metadata_csum'], [1024, '^metadata_csum,^64bit'], [4096, '^metadata_csum']] as const) {
    test(`kernel crash image, ${bs}-byte blocks, ${features}`, async (t) => {
      if (!loop.ok) return t.skip(loop.reason);
      const img = await kernelCrashImage({ blockSize: bs, features });
      const r = await checkFidelity(img, { kernel: true, writable: 'clean' });
      assert.ok(r.report.transactions >= 1 && r.report.replayedBlocks > 0, JSON.stringify(r.report));
      assert.ok(r.ours.some((l) => l.startsWith('/last/a/b/c/file ')), 'the last transaction is visible');
      console.log(`kernel ${bs} ${features}: ${r.report.transactions} transaction(s), ${r.report.replayedBlocks} block(s), ${r.report.revokeRecords} revoke(s)`);
    });
  }

  /** A file whose first block is overwritten by tid 1 and revoked by tid 2 (and rewritten by tid 3 if `third`). */
  async function revokeImage(third: boolean): Promise<{ img: string; garbage: Buffer; later: Buffer; original: Buffer }> {
    const dir = tmpDirPath('revoke-src');
    await mkdir(dir, { recursive: true });
    const original = Buffer.alloc(4096, 0x41);
    await writeFile(join(dir, 'victim'), original);
    const img = await makeImage({ blockSize: 1024, sizeBytes: 8 << 20, dir, type: 'ext4' });
    const block = Number((await debugfs(img, 'bmap /victim 0')).trim());
    assert.ok(block > 0, 'victim block');
    const garbage = Buffer.alloc(1024, 0x5a);
    const later = Buffer.alloc(1024, 0x33);
    const g = tmpImagePath('garbage'); await writeFile(g, garbage);
    const l = tmpImagePath('later'); await writeFile(l, later);
    const cmds = ['jo -c', `jw -b ${block} ${g}`, 'jc', 'jo -c', `jw -r ${block}`, 'jc'];
    if (third) cmds.push('jo -c', `jw -b ${block} ${l}`, 'jc');
    await debugfsWrite(img, cmds);
    // debugfs leaves needs_recovery clear; set it as a crashed kernel would.
    await debugfs(img, 'feature needs_recovery', { write: true });
    return { img, garbage, later, original };
  }

  test('revokes across transactions (debugfs logs): hidden before, not after', async () => {
    for (const third of [false, true]) {
      const { img, later, original } = await revokeImage(third);
      const r = await checkFidelity(img, { kernel: false, writable: 'clean' });
      const fs = await Ext4.open(img, { readOnly: true });
      const content = Buffer.from(await fs.readFile('/victim'));
      await fs.close();
      assert.deepEqual(content.subarray(0, 1024), third ? later : original.subarray(0, 1024));
      assert.equal(r.report.revokedCopies, 1);
    }
  });

  test('ext4kit info shows the journal like dumpe2fs -h, the log summary, and warns on stderr', { skip: corpus.ok ? false : `corpus: ${corpus.reason}` }, async () => {
    const img = await extractCorpusImage('j_recover_csum3_64bit');
    const text = await runTool(process.execPath, [BIN, 'info', img]);
    assert.equal(text.exitCode, 0, text.stderr);
    const h = await dumpe2fsHeader(img);
    for (const k of ['Journal features', 'Total journal size', 'Total journal blocks', 'Journal sequence', 'Journal start', 'Journal checksum type']) {
      assert.match(text.stdout, new RegExp(`^${k}: +${h[k]!.replace(/[()]/g, '.')}$`, 'm'), k);
    }
    assert.match(text.stdout, /^Journal transactions: +2 \(tids 2\.\.3\)$/m);
    assert.match(text.stdout, /^Journal needs recovery: +yes \(replayed in memory, image not written: 9 block/m);
    const json = JSON.parse((await runTool(process.execPath, [BIN, 'info', '--json', img])).stdout) as { journal: { transactions: number; needsRecovery: boolean; applied: string; summary: { sequence: number; fastCommitBlocks: number } } };
    assert.deepEqual([json.journal.transactions, json.journal.needsRecovery, json.journal.applied, json.journal.summary.sequence, json.journal.summary.fastCommitBlocks], [2, true, 'in-memory', 2, 0]);
    const bad = await extractCorpusImage('j_corrupt_commit_csum');
    const warn = await runTool(process.execPath, [BIN, 'info', bad]);
    assert.equal(warn.exitCode, 0);
    assert.match(warn.stderr, /warning: .*transaction 3 was corrupt/);
  });

  test('the fidelity check catches a replay that ignores revokes', async () => {
    const { img } = await revokeImage(false);
    replayTestHooks.ignoreRevokes = true;
    try {
      await assert.rejects(checkFidelity(img, { kernel: false, writable: 'clean' }), /e2fsck -E journal_only/);
    } finally {
      replayTestHooks.ignoreRevokes = false;
    }
  });
});
