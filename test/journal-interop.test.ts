// Interoperability of the journals ext4kit writes (journal.md §5.2):
//  - kill -9 of an ext4kit process in the middle of a workload, then a kernel mount replays the
//    log: e2fsck is clean and every fsync-acknowledged file is there;
//  - debugfs logdump parses ext4kit's log (v3 checksums with 64-bit tags, and no checksums with
//    32-bit tags), and e2fsck replays it to a clean image.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Ext4 } from '../src/node.ts';
import { MemoryDevice } from '../src/device/memory-device.ts';
import type { Jbd2Log } from '../src/journal/jbd2-log.ts';
import { haveE2fsprogs, loopMountSupport, runTool, toolPath, withLoopMount, dumpe2fsHeader } from './support/oracles.ts';
import { tmpImagePath, tempRunDir, cleanupTemp } from './support/images.ts';
import { fillPattern } from './support/byte-model.ts';
import { fsckAccepts, debugfsDump } from './support/crash-check.ts';
import { recordWorkload } from './support/crash-run.ts';
import { crashStates } from './support/crash-states.ts';
import { smallFiles, renames } from './support/crash-workloads.ts';

const skip = haveE2fsprogs() ? false : 'e2fsprogs not installed (Debian package e2fsprogs)';

test('kernel replays the log of an ext4kit process killed with SIGKILL', { skip, timeout: 120_000 }, async (t) => {
  const loop = await loopMountSupport();
  if (!loop.ok) { t.skip(`loop mounts unavailable: ${loop.reason}`); return; }
  const image = tmpImagePath('sigkill');
  await Ext4.mkfs(image, { sizeBytes: 32 << 20, blockSize: 1024, timeSec: 1_700_000_000 });
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'support', 'crash-child.ts'), image], { stdio: ['ignore', 'pipe', 'pipe'] });
  const acked: Array<{ path: string; len: number; seed: number }> = [];
  let err = '';
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  let buf = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const [, path, len, seed] = buf.slice(0, nl).split(' ');
        buf = buf.slice(nl + 1);
        acked.push({ path: path!, len: Number(len), seed: Number(seed) });
        // Killed after a varying delay past the 40th acknowledgement: mid-commit or mid-checkpoint.
        if (acked.length === 40) setTimeout(() => child.kill('SIGKILL'), 3);
      }
    });
    child.on('exit', (code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`child exited ${code}: ${err}`))));
  });
  const hdr = await dumpe2fsHeader(image);
  t.diagnostic(`killed after ${acked.length} acknowledged fsyncs; features: ${hdr['Filesystem features']}; journal start ${hdr['Journal start']}, sequence ${hdr['Journal sequence']}`);
  assert.match(hdr['Filesystem features'] ?? '', /needs_recovery/, 'a killed writable mount leaves needs_recovery set');
  const mount = await runTool(toolPath('dmesg'), []).catch(() => undefined);
  void mount;
  await withLoopMount(image, async () => undefined);
  const ck = await runTool(toolPath('e2fsck'), ['-fn', image]);
  assert.ok(fsckAccepts(ck.exitCode, ck.stdout + ck.stderr), `e2fsck -fn after the kernel's replay:\n${ck.stdout}`);
  // Renamed files (f → g) may be under either name; each acknowledged file must be complete.
  const paths = acked.flatMap((a) => [a.path, a.path.replace('/f', '/g')]);
  const got = await debugfsDump(image, paths, tempRunDir());
  for (const a of acked) {
    const bytes = got.get(a.path) ?? got.get(a.path.replace('/f', '/g')) ?? null;
    assert.ok(bytes, `${a.path}: fsync returned but the file is gone`);
    assert.deepEqual(Buffer.from(bytes), Buffer.from(fillPattern(a.len, a.seed)), `${a.path}: contents`);
  }
});

/** Images where the log holds a committed, not yet checkpointed transaction. */
async function loggedStates(features: string | undefined, blockSize: 1024 | 4096): Promise<Uint8Array[]> {
  const w = { ...renames(blockSize, 12), mkfs: { blockSize, timeSec: 1_700_000_000, ...(features ? { features } : {}) } };
  const rec = await recordWorkload(w, 77);
  const out: Uint8Array[] = [];
  for (const st of crashStates(rec.base, rec.events, { seed: 1, maxWindows: 1_000_000, perWindow: 0 })) {
    if (st.kind !== 'flush') continue;
    // After the commit block's flush and before the checkpoint's: jsb s_start != 0.
    out.push(st.image);
  }
  return out;
}

for (const v of [
  { name: 'metadata_csum, 64bit (CSUM_V3, 16-byte tags), 4 KiB blocks', features: undefined, bs: 4096 as const, csum: true },
  { name: 'no metadata_csum, no 64bit (no checksums, 8-byte tags), 1 KiB blocks', features: '^metadata_csum,^64bit', bs: 1024 as const, csum: false },
]) {
  test(`debugfs logdump parses ext4kit's log and e2fsck replays it: ${v.name}`, { skip, timeout: 240_000 }, async (t) => {
    const states = await loggedStates(v.features, v.bs);
    const file = tmpImagePath('logdump');
    let withCommit = 0;
    let tags = 0;
    let revokes = 0;
    for (const img of states) {
      await writeFile(file, img);
      const r = await runTool(toolPath('debugfs'), ['-R', 'logdump -a', file]);
      const out = r.stdout;
      const m = /Journal starts at block (\d+), transaction (\d+)/.exec(out);
      assert.ok(m, `logdump header:\n${out.slice(0, 500)}`);
      if (m[1] === '0') continue; // checkpointed: the log is empty
      assert.doesNotMatch(out, /checksum|invalid|bad|corrupt/i, `logdump complains:\n${out}`);
      const tid = m[2]!;
      if (!new RegExp(`Found expected sequence ${tid}, type 2 \\(commit block\\)`).test(out)) continue; // commit not yet written
      withCommit++;
      assert.match(out, new RegExp(`Found expected sequence ${tid}, type 1 \\(descriptor block\\)`));
      tags += (out.match(/FS block \d+ logged at journal block \d+/g) ?? []).length;
      revokes += (out.match(/Revoke FS block \d+/g) ?? []).length;
      if (withCommit > 6) continue; // replay checked on a few; logdump on all
      const hdr = await dumpe2fsHeader(file);
      assert.match(hdr['Journal features'] ?? '', v.csum ? /journal_checksum_v3/ : /journal_incompat_revoke/);
      if (!v.csum) assert.doesNotMatch(hdr['Journal features'] ?? '', /checksum|64bit/);
      const j = await runTool(toolPath('e2fsck'), ['-E', 'journal_only', '-y', file]);
      assert.ok(j.exitCode < 4, `e2fsck -E journal_only: exit ${j.exitCode}\n${j.stdout}${j.stderr}`);
      const ck = await runTool(toolPath('e2fsck'), ['-fn', file]);
      assert.ok(fsckAccepts(ck.exitCode, ck.stdout + ck.stderr), `e2fsck -fn after replay:\n${ck.stdout}`);
    }
    t.diagnostic(`${states.length} flush points, ${withCommit} with a committed transaction in the log: ${tags} logged blocks, ${revokes} revokes`);
    assert.ok(withCommit >= 3, `only ${withCommit} states caught a committed transaction`);
    void readFile;
  });
}

test('a clean close leaves an empty log, needs_recovery clear and the sequence advanced', { skip }, async () => {
  const image = tmpImagePath('clean');
  await Ext4.mkfs(image, { sizeBytes: 16 << 20, blockSize: 4096, timeSec: 1_700_000_000 });
  const before = await dumpe2fsHeader(image);
  const fs = await Ext4.open(image);
  for (let i = 0; i < 50; i++) await fs.writeFile(`/f${i}`, fillPattern(100 * i + 1, i));
  await fs.sync();
  await fs.writeFile('/last', 'x');
  await fs.close();
  const after = await dumpe2fsHeader(image);
  assert.doesNotMatch(after['Filesystem features'] ?? '', /needs_recovery/);
  assert.equal(after['Journal start'], '0');
  assert.ok(parseInt(after['Journal sequence']!, 16) > parseInt(before['Journal sequence']!, 16), `sequence ${before['Journal sequence']} → ${after['Journal sequence']}`);
  const ck = await runTool(toolPath('e2fsck'), ['-fn', image]);
  assert.equal(ck.exitCode, 0, ck.stdout);
  void smallFiles;
});

type LogStats = { commits: number; loggedBlocks: number; flushes: number; checkpoints?: number; homeBlocks?: number; revokes: number };
const statsOf = (fs: Ext4) => (fs as unknown as { fs: { log: { stats: LogStats } } }).fs.log.stats;
/** Per-file journal costs, printed (before lazy checkpointing every commit wrote its blocks home: home = logged, 3 flushes per commit). */
function costLine(what: string, files: number, s: LogStats): string {
  const home = s.homeBlocks ?? s.loggedBlocks;
  return `${what}: ${files} files, ${s.commits} commits, ${s.checkpoints ?? s.commits} checkpoints; per file: ${(s.loggedBlocks / files).toFixed(2)} metadata blocks logged, ` +
    `${(home / files).toFixed(2)} written home, ${((s.loggedBlocks + home) / files).toFixed(2)} metadata writes, ${(s.flushes / files).toFixed(2)} flushes`;
}

// Commits batch many operations: the log must not carry a transaction per file.
test('journaled metadata blocks per file created (batched commits)', { skip }, async (t) => {
  const image = tmpImagePath('batch');
  await Ext4.mkfs(image, { sizeBytes: 64 << 20, blockSize: 4096, timeSec: 1_700_000_000 });
  const fs = await Ext4.open(image);
  const stats = statsOf(fs);
  const FILES = 2000;
  await fs.mkdir('/many');
  for (let i = 0; i < FILES; i++) await fs.writeFile(`/many/f${i}`, fillPattern(1 + (i % 3000), i));
  await fs.close();
  const perFile = stats.loggedBlocks / FILES;
  t.diagnostic(costLine('writeFile, close', FILES, stats));
  assert.ok(stats.commits < FILES / 20, `${stats.commits} commits for ${FILES} files: commits do not batch`);
  assert.ok(perFile < 1, `${perFile} journaled blocks per file`);
  const ck = await runTool(toolPath('e2fsck'), ['-fn', image]);
  assert.equal(ck.exitCode, 0, ck.stdout);
});

// Lazy checkpointing: an fsync per file commits (two flushes) but writes nothing home; blocks
// logged again and again (the directory, bitmaps, inode-table block) go home once.
test('create+fsync per file: commits leave their blocks in the log until a checkpoint', { skip }, async (t) => {
  const image = tmpImagePath('fsyncs');
  await Ext4.mkfs(image, { sizeBytes: 64 << 20, blockSize: 4096, timeSec: 1_700_000_000 });
  const fs = await Ext4.open(image);
  const stats = statsOf(fs);
  const FILES = 300;
  await fs.mkdir('/d');
  for (let i = 0; i < FILES; i++) {
    const fh = await fs.open(`/d/f${i}`, 'w');
    await fh.write(fillPattern(100 + i, i), 0, 100 + i, 0);
    await fh.sync();
    await fh.close();
  }
  const beforeClose = { ...stats };
  await fs.close();
  t.diagnostic(costLine('create+write+fsync, close', FILES, stats));
  assert.ok(beforeClose.commits >= FILES, `${beforeClose.commits} commits for ${FILES} fsyncs`);
  // Two flushes per commit, no checkpoint while the log has room (1 per commit would be eager).
  // (A checkpoint when the log is full: one flush after the home writes, one after the log superblock.)
  assert.ok(beforeClose.flushes <= 2 * beforeClose.commits + 2 * (beforeClose.checkpoints ?? beforeClose.commits), `${beforeClose.flushes} flushes for ${beforeClose.commits} commits`);
  assert.ok((beforeClose.checkpoints ?? beforeClose.commits) <= FILES / 50, `${beforeClose.checkpoints} checkpoints for ${beforeClose.commits} commits`);
  assert.ok((beforeClose.homeBlocks ?? beforeClose.loggedBlocks) < beforeClose.loggedBlocks / 4, `${beforeClose.homeBlocks} of ${beforeClose.loggedBlocks} logged blocks written home before close`);
  const ck = await runTool(toolPath('e2fsck'), ['-fn', image]);
  assert.equal(ck.exitCode, 0, ck.stdout);
  const got = await debugfsDump(image, ['/d/f0', `/d/f${FILES - 1}`], tempRunDir());
  assert.deepEqual(Buffer.from(got.get(`/d/f${FILES - 1}`)!), Buffer.from(fillPattern(100 + FILES - 1, FILES - 1)));
});

// Group commit: fsyncs issued together share a commit (jbd2 joins a transaction that has not
// started committing); an fsync with nothing left to commit flushes the device once, no commit.
test('concurrent fsyncs share commits; an fsync with nothing to commit only flushes', async (t) => {
  const mem = new MemoryDevice(32 << 20);
  await Ext4.mkfs(mem, { sizeBytes: 32 << 20, blockSize: 4096, timeSec: 1_700_000_000 });
  let deviceFlushes = 0;
  const flush = mem.flush.bind(mem);
  mem.flush = async () => { deviceFlushes++; await flush(); };
  const fs = await Ext4.open(mem);
  const stats = statsOf(fs);
  const FILES = 16;
  const handles = [];
  for (let i = 0; i < FILES; i++) {
    const fh = await fs.open(`/c${i}`, 'w');
    await fh.write(fillPattern(5000 + i, i), 0, 5000 + i, 0);
    handles.push(fh);
  }
  const before = { ...stats };
  const flushesBefore = deviceFlushes;
  await Promise.all(handles.map((fh) => fh.sync()));
  const shared = stats.commits - before.commits;
  const flushed = deviceFlushes - flushesBefore;
  t.diagnostic(`${FILES} concurrent fsyncs: ${shared} commits, ${flushed} device flushes`);
  assert.ok(shared >= 1 && shared <= 3, `${shared} commits for ${FILES} concurrent fsyncs`);
  // Without group commit each fsync waits for its own (empty, data-only) commit and flush.
  assert.ok(flushed <= 2 * shared + 2, `${flushed} device flushes for ${FILES} concurrent fsyncs in ${shared} commits`);
  const again = { commits: stats.commits, flushes: deviceFlushes };
  await handles[3]!.sync();
  assert.equal(stats.commits, again.commits, 'an fsync with nothing to commit wrote a transaction');
  assert.equal(deviceFlushes - again.flushes, 1, 'an fsync with nothing to commit must flush the device once');
  for (const fh of handles) await fh.close();
  await fs.close();
  const back = await Ext4.open(new MemoryDevice(mem.bytes.slice()), { readOnly: true });
  for (let i = 0; i < FILES; i++) assert.deepEqual(await back.readFile(`/c${i}`), fillPattern(5000 + i, i));
  await back.close();
});

/**
 * A directory's blocks are journaled, then the directory is removed (its blocks revoked) and a
 * file fills the disk, reusing them for data; the image is taken with all of it still in the
 * log and replayed by e2fsck. Without the revoke records the replay writes the old directory
 * blocks over the file's data.
 */
async function freedAndReused(broken: boolean): Promise<{ revoked: number[]; reused: number; jsbStart: string; fsck: boolean; dataOk: boolean }> {
  const mem = new MemoryDevice(16 << 20);
  await Ext4.mkfs(mem, { sizeBytes: 16 << 20, blockSize: 1024, timeSec: 1_700_000_000 });
  const fs = await Ext4.open(mem);
  if (broken) (fs as unknown as { fs: { log: Jbd2Log } }).fs.log.brokenForTest = 'no-revoke';
  const keep = await fs.open('/keep', 'w');
  await keep.write(fillPattern(10, 1), 0, 10, 0);
  await fs.mkdir('/d');
  const name = (i: number) => `/d/${'n'.repeat(180)}${i}`;
  for (let i = 0; i < 60; i++) await fs.writeFile(name(i), '');
  await keep.sync();
  for (let i = 0; i < 60; i++) await fs.unlink(name(i));
  await fs.rmdir('/d');
  await keep.sync();
  const st = await fs.statfs();
  const size = (st.bavail - 48) * st.bsize;
  const big = await fs.open('/big', 'w');
  await big.write(fillPattern(size, 7), 0, size, 0);
  await big.sync();
  const file = tmpImagePath(broken ? 'reuse-broken' : 'reuse');
  await writeFile(file, mem.bytes);
  await big.close();
  await keep.close();
  await fs.close();
  const hdr = await dumpe2fsHeader(file);
  const dump = (await runTool(toolPath('debugfs'), ['-R', 'logdump -a', file])).stdout;
  const revoked = [...new Set([...dump.matchAll(/Revoke FS block (\d+)/g)].map((m) => Number(m[1])))];
  const j = await runTool(toolPath('e2fsck'), ['-E', 'journal_only', '-y', file]);
  assert.ok(j.exitCode < 4, `e2fsck -E journal_only: exit ${j.exitCode}\n${j.stdout}${j.stderr}`);
  const ck = await runTool(toolPath('e2fsck'), ['-fn', file]);
  const blocks = new Set((await runTool(toolPath('debugfs'), ['-R', 'blocks /big', file])).stdout.trim().split(/\s+/).map(Number));
  const got = await debugfsDump(file, ['/big'], tempRunDir());
  const bytes = got.get('/big');
  const dataOk = !!bytes && Buffer.compare(Buffer.from(bytes), Buffer.from(fillPattern(size, 7))) === 0;
  return { revoked, reused: revoked.filter((b) => blocks.has(b)).length, jsbStart: hdr['Journal start'] ?? '?', fsck: fsckAccepts(ck.exitCode, ck.stdout + ck.stderr), dataOk };
}

test('revoke records: metadata blocks freed and reused for data are not replayed over the data', { skip, timeout: 120_000 }, async (t) => {
  const ok = await freedAndReused(false);
  t.diagnostic(`log start ${ok.jsbStart}; ${ok.revoked.length} blocks revoked in the log, ${ok.reused} of them reused by /big; e2fsck ${ok.fsck ? 'clean' : 'NOT clean'}, data ${ok.dataOk ? 'intact' : 'DAMAGED'}`);
  assert.notEqual(ok.jsbStart, '0', 'the transactions must still be in the log (not checkpointed)');
  assert.ok(ok.reused > 0, 'no revoked block was reused: the scenario tests nothing');
  assert.ok(ok.fsck && ok.dataOk, 'replay with revoke records');
  // The broken variant (no revoke records) must be caught by the same checks.
  const bad = await freedAndReused(true);
  t.diagnostic(`without revoke records: e2fsck ${bad.fsck ? 'clean' : 'NOT clean'}, data ${bad.dataOk ? 'intact' : 'DAMAGED'}`);
  assert.ok(!(bad.fsck && bad.dataOk), 'a log without revoke records went unnoticed');
});

test('cleanup', async () => { await cleanupTemp(); });
