// Bounded, seeded fuzzing of the read path. Base images come from ext4kit's own mkfs and from
// `mke2fs -d` over a small tree (files, a fragmented file with an extent-tree block, fast and slow
// symlinks, a hard link, xattrs in the inode and in a block, a ~200-entry directory turned into an
// htree by `e2fsck -fyD`), in 1 KiB and 4 KiB geometries, one bigalloc, one ext3 (block maps).
// Each case applies 1-3 mutations to the superblock, group descriptors, inode records, directory,
// htree-root, extent-tree, indirect, xattr or symlink blocks, or the first 64 KiB (bit flips,
// random bytes, field overwrites with extreme values), and re-signs metadata_csum checksums three
// times in four so mutations get past the checksum gates. The mutated image is opened from memory
// (MemoryDevice) in a worker and walked like the corpus test.
// Rules: only Ext4Error escapes, nothing hangs (per-case bound; the worker is killed), no device
// write happens and the bytes are unchanged afterwards.
//
// FUZZ_CASES=n (default 400), FUZZ_SEED=n|random (default fixed), FUZZ_ONLY=i,j (replay cases),
// FUZZ_CASE_TIMEOUT_MS (default 10000). Every failure prints its replay command.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { link, mkdir, open, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Ext4 } from '../src/node.ts';
import { cleanupTemp, makeImage, tmpDirPath, tmpImagePath } from './support/images.ts';
import { debugfs, haveCommand, haveE2fsprogs, runTool } from './support/oracles.ts';
import { mulberry32 } from './support/fixture-tree.ts';
import { describeCase, discoverBase, makeCase, type FuzzBase } from './support/fuzz-mutate.ts';
import { WalkPool } from './support/walk-pool.ts';
import { MemoryDevice } from '../src/device/memory-device.ts';
import { Ext4Error } from '../src/errors/ext4-error.ts';
import { recoverJournal } from '../src/journal/replay/recover.ts';
import { createHash } from 'node:crypto';
import type { WalkIssue } from './support/fs-walk.ts';
import type { WalkJobResult } from './support/walk-worker.ts';

const CASES = Number(process.env.FUZZ_CASES ?? 400);
const SEED = process.env.FUZZ_SEED === 'random' ? (Math.random() * 0x1_0000_0000) >>> 0 : Number(process.env.FUZZ_SEED ?? 0x5eed1e55);
const ONLY = process.env.FUZZ_ONLY ? process.env.FUZZ_ONLY.split(',').map(Number) : undefined;
const CASE_TIMEOUT_MS = Number(process.env.FUZZ_CASE_TIMEOUT_MS ?? 10_000);
const MAX_HANGS = 3;
// Small read limits keep each case fast: a mutated i_size must not turn into gigabytes of reads.
const LIMITS = { maxEntries: 20_000, maxFileBytes: 4 << 20, maxTotalBytes: 32 << 20, maxMappings: 10_000 };
const KiB = 1024;
const MiB = 1024 * KiB;

const skip = haveE2fsprogs() ? false : 'e2fsprogs (mke2fs, e2fsck, debugfs, dumpe2fs) not installed';
if (skip) console.log(`fuzz.test.ts: skipped: ${skip}`);

const bases: FuzzBase[] = [];
let pool: WalkPool;

async function smallTree(root: string): Promise<{ xattrs: boolean }> {
  const rnd = mulberry32(77);
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => rnd() & 0xff));
  await writeFile(join(root, 'hello.txt'), 'hello, world\n');
  await writeFile(join(root, 'data.bin'), bytes(70 * KiB));
  await writeFile(join(root, 'empty'), '');
  // 40 one-KiB pieces 16 KiB apart: 40 extents in every geometry, so an extent-tree block.
  const frag = Buffer.alloc(39 * 16 * KiB + KiB);
  for (let i = 0; i < 40; i++) bytes(KiB).copy(frag, i * 16 * KiB);
  const fh = await open(join(root, 'frag.bin'), 'w');
  for (let i = 0; i < 40; i++) await fh.write(frag.subarray(i * 16 * KiB, i * 16 * KiB + KiB), 0, KiB, i * 16 * KiB);
  await fh.close();
  await symlink('hello.txt', join(root, 'link-fast'));
  await symlink('sub/dir/' + 'long-target-'.repeat(8) + 'end', join(root, 'link-slow'));
  await link(join(root, 'hello.txt'), join(root, 'hard'));
  await mkdir(join(root, 'sub/dir'), { recursive: true });
  await writeFile(join(root, 'sub/dir/deep.txt'), 'deep\n');
  await mkdir(join(root, 'big'));
  for (let i = 0; i < 200; i++) {
    const name = `entry-${String(i).padStart(3, '0')}-`.padEnd(48, 'x');
    await writeFile(join(root, 'big', name), i % 20 === 0 ? `file ${i}\n` : '');
  }
  if (!haveCommand('setfattr')) return { xattrs: false };
  const set = (p: string, n: string, v: string) => runTool('setfattr', ['-n', n, '-v', v, join(root, p)]);
  const r1 = await set('hello.txt', 'user.small', 'in-inode');
  const r2 = await set('data.bin', 'user.big', 'v'.repeat(900));
  const r3 = await set('sub', 'user.dir', 'on a dir');
  return { xattrs: r1.exitCode === 0 && r2.exitCode === 0 && r3.exitCode === 0 };
}

const TREE_INODES = [
  '/', '/hello.txt', '/data.bin', '/empty', '/frag.bin', '/link-fast', '/link-slow', '/sub', '/sub/dir',
  '/sub/dir/deep.txt', '/big', `/big/${'entry-000-'.padEnd(48, 'x')}`, '/lost+found', '<7>', '<8>',
];
const MKFS_INODES = ['<2>', '<7>', '<8>', '<11>', '<12>'];

/**
 * A base whose journal needs recovery: debugfs logs copies of the root directory block and an
 * inode-table block (tid 1), revokes the /sub directory block (tid 2... 3) and logs it again
 * (tid 4), then sets needs_recovery. Journal checksums v3 with metadata_csum, none without.
 * Mutations then land mostly in the journal superblock and the first 12 log blocks.
 */
async function journalBase(name: string, opts: { blockSize: 1024 | 4096; sizeBytes: number; features?: string }, tree: string): Promise<void> {
  const path = await makeImage({ ...opts, dir: tree });
  const num = async (req: string, re: RegExp) => Number(re.exec(await debugfs(path, req))?.[1] ?? NaN);
  const root = await num('bmap / 0', /(\d+)/);
  const sub = await num('bmap /sub 0', /(\d+)/);
  const itable = await num('imap <12>', /located at block (\d+)/);
  const bytes = await readFile(path);
  const copy = async (b: number) => {
    const f = tmpImagePath(`blk${b}`);
    await writeFile(f, bytes.subarray(b * opts.blockSize, (b + 1) * opts.blockSize));
    return f;
  };
  const cmds = ['jo -c', `jw -b ${root} ${await copy(root)}`, `jw -b ${itable} ${await copy(itable)}`, 'jc',
    'jo -c', `jw -r ${sub}`, 'jc', 'jo -c', `jw -b ${sub} ${await copy(sub)}`, 'jc'];
  const cmdFile = tmpImagePath('jcmds');
  await writeFile(cmdFile, cmds.join('\n') + '\n');
  const r = await runTool('debugfs', ['-w', '-f', cmdFile, path]);
  assert.equal(r.exitCode, 0, r.stderr);
  await debugfs(path, 'feature needs_recovery', { write: true });
  bases.push(await discoverBase(name, path, MKFS_INODES, { journalLogBlocks: 12 }));
  await rm(path);
}

before(async () => {
  if (skip) return;
  const t0 = performance.now();
  pool = new WalkPool();
  const tree = tmpDirPath('fuzz-tree');
  const { xattrs } = await smallTree(tree);
  if (!xattrs) console.log('fuzz.test.ts: setfattr missing or failing: bases have no user xattrs');

  const fromMkfs = async (name: string, opts: Parameters<typeof Ext4.mkfs>[1]) => {
    const path = tmpImagePath(name);
    await Ext4.mkfs(path, { timeSec: 1_700_000_000, ...opts });
    bases.push(await discoverBase(name, path, MKFS_INODES));
    await rm(path);
  };
  const fromMke2fs = async (name: string, opts: Omit<Parameters<typeof makeImage>[0], 'dir' | 'indexDirs'>) => {
    const path = await makeImage({ ...opts, dir: tree, indexDirs: true });
    const htree = await debugfs(path, 'htree /big');
    assert.match(htree, /Root node dump/, `${name}: /big should be an htree after e2fsck -fyD`);
    bases.push(await discoverBase(name, path, TREE_INODES));
    await rm(path);
  };
  await fromMkfs('ext4kit-mkfs-1k', { sizeBytes: 4 * MiB, blockSize: 1024 });
  await fromMkfs('ext4kit-mkfs-4k-bigalloc4', { sizeBytes: 16 * MiB, blockSize: 4096, features: 'bigalloc', clusterBytes: 16 * KiB });
  await fromMke2fs('mke2fs-1k', { blockSize: 1024, sizeBytes: 4 * MiB });
  await fromMke2fs('mke2fs-1k-nocsum', { blockSize: 1024, sizeBytes: 4 * MiB, features: '^metadata_csum' });
  await fromMke2fs('mke2fs-1k-ext3', { blockSize: 1024, sizeBytes: 4 * MiB, type: 'ext3' });
  await fromMke2fs('mke2fs-4k', { blockSize: 4096, sizeBytes: 8 * MiB });
  await fromMke2fs('mke2fs-4k-bigalloc16', { blockSize: 4096, sizeBytes: 32 * MiB, clusterBytes: 64 * KiB });
  await journalBase('journal-1k-csum3', { blockSize: 1024, sizeBytes: 4 * MiB }, tree);
  await journalBase('journal-4k-nocsum', { blockSize: 4096, sizeBytes: 8 * MiB, features: '^metadata_csum,^64bit' }, tree);
  const summary = bases.map((b) => {
    const kinds = new Map<string, number>();
    for (const r of b.regions) kinds.set(r.kind, (kinds.get(r.kind) ?? 0) + 1);
    return `  ${b.name}: ${b.bytes.length / MiB} MiB, ${b.blockSize}-byte blocks, regions ${[...kinds].map(([k, n]) => `${k}×${n}`).join(' ')}`;
  });
  console.log(`fuzz bases built in ${Math.round(performance.now() - t0)} ms:\n${summary.join('\n')}`);
});

after(async () => {
  await pool?.close();
  await cleanupTemp();
});

const fmt = (i: WalkIssue) => `${i.step} ${i.path}: ${i.code}: ${i.message}${i.stack ? `\n${i.stack}` : ''}`;

/** Rule violations in one finished job. */
function violations(r: WalkJobResult): string[] {
  const out: string[] = [];
  for (const i of [...r.foreign, ...(r.walk?.foreign ?? [])]) out.push(`non-Ext4Error escaped: ${fmt(i)}`);
  if (r.hashAfter !== r.hashBefore) out.push('image bytes changed');
  if (r.writes > 0) out.push(`${r.writes} device write/flush call(s) on a read-only open`);
  const all = [...(r.openError ? [r.openError] : []), ...r.errors, ...(r.walk?.errors ?? [])];
  for (const i of all) if (i.code === 'EROFS') out.push(`write attempted: ${fmt(i)}`);
  return out;
}

describe('fuzz: mutated images', { skip }, () => {
  test('every unmutated base opens and walks without errors', async () => {
    for (const b of bases) {
      const o = await pool.run({ bytes: b.bytes, limits: LIMITS }, 30_000);
      assert.equal(o.kind, 'done', `${b.name}: ${JSON.stringify(o)}`);
      if (o.kind !== 'done') continue;
      const r = o.result;
      assert.ok(r.opened, `${b.name}: ${r.openError && fmt(r.openError)}`);
      assert.deepEqual([...violations(r), ...(r.walk?.errors ?? []).map(fmt)], [], b.name);
      assert.ok((r.walk?.entries ?? 0) >= (b.name.startsWith('mke2fs') ? 200 : 1), `${b.name}: walked ${r.walk?.entries} entries`);
      if (b.journalSbStart !== undefined) assert.equal(r.info?.journalApplied, 'in-memory', `${b.name}: the journal was replayed in memory`);
    }
  });

  test(`${ONLY ? `replay of cases ${ONLY.join(',')}` : `${CASES} cases`} (seed ${SEED})`, async () => {
    console.log(`fuzz: seed ${SEED}${ONLY ? `, cases ${ONLY.join(',')}` : `, ${CASES} cases`} (FUZZ_SEED / FUZZ_CASES / FUZZ_ONLY to change)`);
    const t0 = performance.now();
    const failures: string[] = [];
    const outcomes = new Map<string, number>();
    const codes = new Map<string, number>();
    const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
    let hangs = 0;
    let bytesRead = 0;
    const indices = ONLY ?? Array.from({ length: CASES }, (_, i) => i);
    for (const i of indices) {
      const c = makeCase(SEED, i, bases);
      const o = await pool.run({ bytes: c.bytes, limits: LIMITS }, CASE_TIMEOUT_MS);
      if (o.kind === 'hang') {
        hangs++;
        bump(outcomes, 'hang');
        failures.push(`HANG (no result in ${CASE_TIMEOUT_MS} ms; last progress: ${o.lastProgress})\n${describeCase(c)}`);
        if (hangs >= MAX_HANGS) {
          failures.push(`stopped after ${hangs} hangs`);
          break;
        }
        continue;
      }
      if (o.kind === 'crash') {
        bump(outcomes, 'crash');
        failures.push(`CRASH (last progress: ${o.lastProgress}): ${fmt(o.issue)}\n${describeCase(c)}`);
        continue;
      }
      const r = o.result;
      bump(outcomes, r.opened ? 'opened' : `refused ${r.openError?.code}`);
      for (const e of r.walk?.errors ?? []) bump(codes, `${e.step}:${e.code}`);
      bytesRead += r.walk?.bytesRead ?? 0;
      const v = violations(r);
      if (v.length) failures.push(`${v.join('\n')}\n${describeCase(c)}`);
    }
    const ms = performance.now() - t0;
    console.log([
      `fuzz: ${indices.length} cases in ${(ms / 1000).toFixed(1)} s (${pool.spawned} worker(s)); ${(bytesRead / MiB).toFixed(0)} MiB of file data read`,
      `  outcomes: ${[...outcomes].sort().map(([k, n]) => `${k} ${n}`).join(', ')}`,
      `  walk errors (step:code): ${[...codes].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}`,
    ].join('\n'));
    if (failures.length) console.log(`fuzz failures:\n${failures.join('\n\n')}`);
    assert.equal(failures.length, 0, `${failures.length} failing case(s), first:\n${failures[0]}`);
  });

  test('journal cases recovered for a writable open: an Ext4Error leaves the bytes untouched, success empties the log', async () => {
    const jbases = bases.filter((b) => b.journalSbStart !== undefined);
    assert.ok(jbases.length >= 2);
    const n = Math.min(CASES, 300);
    const outcomes = new Map<string, number>();
    const failures: string[] = [];
    const hash = (b: Uint8Array) => createHash('sha1').update(b).digest('hex');
    for (let i = 0; i < n; i++) {
      const c = makeCase(SEED ^ 0x10a1, i, jbases);
      const before = hash(c.bytes);
      const dev = new MemoryDevice(c.bytes);
      try {
        const r = await recoverJournal(dev, { mode: 'write' });
        outcomes.set(r.report.applied, (outcomes.get(r.report.applied) ?? 0) + 1);
        if (r.report.applied === 'on-disk' && (c.bytes[1024 + 0x60]! & 0x4) !== 0) failures.push(`needs_recovery still set\n${describeCase(c)}`);
      } catch (e) {
        const code = e instanceof Ext4Error ? e.code : `foreign ${(e as Error)?.constructor?.name}`;
        outcomes.set(code, (outcomes.get(code) ?? 0) + 1);
        if (!(e instanceof Ext4Error)) failures.push(`non-Ext4Error: ${(e as Error)?.stack}\n${describeCase(c)}`);
        else if (hash(c.bytes) !== before) failures.push(`image written before refusing (${e.message})\n${describeCase(c)}`);
      }
    }
    console.log(`fuzz journal rw: ${n} cases: ${[...outcomes].sort().map(([k, v]) => `${k} ${v}`).join(', ')}`);
    assert.deepEqual(failures, []);
  });
});
