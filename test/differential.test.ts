// Differential test (issue 12): the same seeded random sequences of API calls run against
// ext4kit and against the kernel's ext4 on a loop mount of the same fresh image (ext4kit's mkfs,
// copied), compared call by call (result or errno) and as final trees (names, types, modes,
// owners, sizes, link counts, blocks, contents, symlink targets, xattrs; never inode numbers or
// times, except the mtime utimes stores), with e2fsck -fn on every ext4kit image. Then
// concurrent scenarios, path edge cases, and a check that the runner catches deliberately broken
// variants. The runner (test/support/differential/) drives any node:fs directory, so the same
// sequences later run against a FUSE mount of ext4kit.
//
// DIFF_SEQUENCES=N runs N sequences per geometry (default 20); DIFF_OPS=N operations each (70);
// DIFF_SEEDS=a,b replays the sequences a failure names.
//
// Differences kept on purpose (not counted as mismatches; each is asserted where it shows):
// - statfs f_blocks on bigalloc: the kernel counts the metadata overhead it subtracts in whole
//   clusters per group (a group's superblock, descriptors, bitmaps and inode table round up to
//   clusters), ext4kit in blocks, so its f_blocks is a few blocks off (60,381 vs 60,384 with
//   1 KiB blocks and 16 KiB clusters). On bigalloc every statfs field but f_blocks is compared.
// - write() of 0 bytes: Node's FileHandle.write returns 0 without a syscall, whatever the
//   handle (so even on a read-only one); ext4kit checks the handle first and gives EBADF there,
//   as write(2) would.
//
// - Block placement: the kernel puts a directory's blocks in the first group of its flex group
//   and a regular file's in the next one; ext4kit lets both share an area, so a file written
//   after a mkdir can land in two runs instead of one. Its contents and sizes are the same, but
//   with more than four extents it needs an extent index block, which st_blocks shows (1 of 300
//   sequences, 1 KiB blocks with 16 KiB clusters: 224 vs 192 sectors). Not excused: it fails the
//   final tree comparison when it shows, and the default seeds do not meet it.
//
// - st_blocks of a bigalloc file while the kernel has it mounted includes clusters it reserved in
//   memory, and once in CI it read one cluster high after syncfs (384 sectors on a file that maps
//   two 64 KiB clusters, seed 140903; not reproduced in 10 reruns). A final tree that differs in
//   st_blocks alone is read again from a fresh read-only mount of the kernel's image, and that,
//   what the kernel stored, decides (kernelStoredDiff).

// The path cases of issue 12 (trailing '/', '/.', dangling-symlink creates, over-long names,
// reading a directory handle) ran as `todo` until branch arch's single path walk landed; they
// are plain assertions now. A mismatch may still be classified `todo:` (the test then becomes
// a TODO) when a known difference owned elsewhere turns up again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { haveE2fsprogs, loopMountSupport } from './support/oracles.ts';
import { cleanupTemp } from './support/images.ts';
import { havePython3 } from './support/differential/nodefs-backend.ts';
import { GEOMETRIES, withPair, type Geometry } from './support/differential/pair.ts';
import { randomSequence, type Op } from './support/differential/ops.ts';
import { runSequence, Session, type Mismatch } from './support/differential/runner.ts';
import { SCENARIOS } from './support/differential/scenarios.ts';
import type { Outcome } from './support/differential/backend.ts';

const loop = await loopMountSupport();
const skip: string | false = !haveE2fsprogs() ? 'e2fsprogs not installed (Debian package e2fsprogs)'
  : !havePython3() ? 'python3 not installed (Debian package python3; it makes the xattr and fallocate calls on the mount)'
    : !loop.ok ? `loop mounts unavailable: ${loop.reason}` : false;
if (skip) console.log(`# differential: skipping: ${skip}`);

// Modes passed to open/mkdir reach the kernel unmasked, as they reach ext4kit (opened with umask 0).
process.umask(0);

const SEQUENCES = Number(process.env['DIFF_SEQUENCES'] ?? 20);
const OPS = Number(process.env['DIFF_OPS'] ?? 70);
/** DIFF_SEEDS=a,b,…: replay just these sequences (as a failure names them) on every geometry. */
const ONLY_SEEDS = process.env['DIFF_SEEDS']?.split(',').map(Number);
const ARCH_TODO = 'path walk reshaped on branch arch (issue 12, "Paths")';

/** Names a mismatch that is a known difference: 'kept:…' on purpose, 'todo:…' owned by branch arch. */
function classify(op: Op, expected: Outcome, actual: Outcome): string | undefined {
  if (op.k === 'write' && op.len === 0 && expected.ok && !actual.ok && actual.code === 'EBADF') return 'kept: Node skips write(2) for 0 bytes';
  return undefined;
}

// st_blocks is compared in the final trees, taken after syncfs. Not in the results of single
// calls: the kernel's background writeback can run at any time, and while it moves a delayed
// block to allocated, stat may count one block short (seen in 2 of 300 sequences before syncfs).
const compareBlocks = true;
const callBlocks = false;
const totals = { sequences: 0, identical: 0, ops: 0, opsIdentical: 0, known: new Map<string, number>() };

/**
 * The final-tree differences that count. When they are in st_blocks alone, pair.ts has read the
 * kernel's tree again after a remount and checked its image: what the kernel stored decides, and
 * a kernel image that fails e2fsck is no reference for block counts.
 */
function kernelStoredDiff(r: { treeDiff: string[]; kernelRecheck?: { fsckExitCode: number; treeDiff: string[] } }, seed: number): string[] {
  const k = r.kernelRecheck;
  if (!k) return r.treeDiff;
  if (k.fsckExitCode !== 0 || k.treeDiff.length === 0) {
    console.log(`# differential seed ${seed}: st_blocks differed only while the kernel had it mounted (${r.treeDiff.join('; ')}); after a remount ${k.treeDiff.length === 0 ? 'the kernel stored the same counts' : `its image fails e2fsck (exit ${k.fsckExitCode})`}: not counted`);
    return [];
  }
  return r.treeDiff;
}

function report(mismatches: Mismatch[]): string {
  return mismatches.slice(0, 8).map((m) => `#${m.index} ${m.op}: kernel ${JSON.stringify(m.expected)}, ext4kit ${JSON.stringify(m.actual)}`).join('\n');
}

for (const g of GEOMETRIES) {
  test(`differential: ${SEQUENCES} random sequences of ${OPS} calls, ext4kit vs the kernel (${g.label})`, { skip, timeout: 30 * 60_000 }, async (t) => {
    const seeds = ONLY_SEEDS ?? Array.from({ length: SEQUENCES }, (_, i) => (i + 1) * 7919 + g.blockSize + (g.clusterBytes ?? 0));
    for (const seed of seeds) {
      await t.test(`seed ${seed}`, async (st) => {
        const ops = randomSequence(seed, OPS);
        const r = await withPair(g, { blocks: compareBlocks }, (kernel, ext4kit) => runSequence(ops, kernel, ext4kit, { blocks: callBlocks }, classify));
        const { mismatches, known } = r.result;
        totals.sequences++;
        totals.ops += ops.length;
        totals.opsIdentical += ops.length - mismatches.length - known.length;
        for (const k of known) totals.known.set(k.why, (totals.known.get(k.why) ?? 0) + 1);
        if (mismatches.length === 0 && known.length === 0 && r.treeDiff.length === 0) totals.identical++;
        // Never excused: every ext4kit image passes e2fsck.
        assert.equal(r.fsck.exitCode, 0, `e2fsck -fn of the ext4kit image (seed ${seed}):\n${r.fsck.output}`);
        const todo = known.find((k) => k.why.startsWith('todo'));
        // After a known (todo) difference the two trees may legitimately have parted.
        if (todo) st.todo(`diverged at #${todo.index} ${todo.op}: ${todo.why}`);
        assert.deepEqual(mismatches, [], `calls that differ (seed ${seed}):\n${report(mismatches)}`);
        assert.deepEqual(kernelStoredDiff(r, seed), [], `final trees differ (seed ${seed})`);
        const view = (x: typeof r.statfs.kernel) => g.clusterBytes ? { ...x, blocks: 'not compared on bigalloc' } : x;
        assert.deepEqual(view(r.statfs.ext4kit), view(r.statfs.kernel), 'statfs');
      });
    }
  });
}

test('differential totals', { skip }, () => {
  const known = [...totals.known].map(([why, n]) => `${n} × ${why}`).join('; ');
  console.log(`# differential: ${totals.identical}/${totals.sequences} sequences identical; ${totals.opsIdentical}/${totals.ops} calls identical${known ? `; known: ${known}` : ''}`);
});

// ---- concurrent scenarios ----------------------------------------------------------------------

for (const g of [GEOMETRIES[0]!, GEOMETRIES[2]!] as Geometry[]) {
  for (const sc of SCENARIOS) {
    test(`concurrent, ext4kit vs the kernel (${g.label}): ${sc.name}`, { skip, timeout: 120_000 }, async () => {
      const r = await withPair(g, { blocks: compareBlocks, contents: false }, async (kernel, ext4kit) => ({
        kernel: await sc.run(kernel), ext4kit: await sc.run(ext4kit),
      }));
      assert.equal(r.fsck.exitCode, 0, r.fsck.output);
      assert.deepEqual(r.result.ext4kit, r.result.kernel);
      assert.deepEqual(kernelStoredDiff(r, 0), []);
    });
  }
}

// ---- the runner catches deliberately broken variants -------------------------------------------

test('the differential runner catches a reintroduced append race (offset chosen before the write)', { skip, timeout: 120_000 }, async () => {
  const sc = SCENARIOS[0]!;
  const r = await withPair(GEOMETRIES[0]!, { blocks: compareBlocks, contents: false, broken: { appendOffsetEarly: true } }, async (kernel, ext4kit) => ({
    kernel: await sc.run(kernel), ext4kit: await sc.run(ext4kit),
  }));
  assert.notDeepEqual(r.result.ext4kit, r.result.kernel, 'the broken variant must be told apart');
  assert.ok((r.result.kernel as { size: number }).size === 42_000);
  assert.ok((r.result.ext4kit as { size: number }).size < 42_000, 'the broken variant loses appended bytes');
});

test('the differential runner catches a reintroduced xattr name check bug (user. accepted)', { skip, timeout: 120_000 }, async () => {
  const ops: Op[] = [
    { k: 'writeFile', path: '/f', len: 10, seed: 1, flag: 'w', mode: 0o644 },
    { k: 'setxattr', path: '/f', name: 'user.', len: 5, seed: 2, flags: 0 },
    { k: 'listxattr', path: '/f' },
  ];
  const r = await withPair(GEOMETRIES[0]!, { blocks: compareBlocks, broken: { acceptEmptyXattrName: true } }, (kernel, ext4kit) => runSequence(ops, kernel, ext4kit, { blocks: callBlocks }));
  assert.deepEqual(r.result.mismatches.map((m) => [m.index, m.expected, m.actual]), [[1, { ok: false, code: 'EINVAL' }, { ok: true }]]);
});

// ---- path edge cases ----------------------------------------------------------------------------

const LONG = 'n'.repeat(256);
/** [name, setup-independent call, owned by arch (todo until it lands)] after the common setup. */
const EDGE_CASES: Array<[string, Op[], boolean]> = [
  ["writeFile('/new/') is EISDIR", [{ k: 'writeFile', path: '/new/', len: 3, seed: 1, flag: 'w', mode: 0o644 }, { k: 'lstat', path: '/new' }], false],
  ["stat('/f/') on a file is ENOTDIR", [{ k: 'stat', path: '/f/' }], false],
  ["rmdir('/d/.') is EINVAL and keeps /d", [{ k: 'rmdir', path: '/d/.' }, { k: 'lstat', path: '/d' }], false],
  ['creating through a dangling symlink creates its target', [{ k: 'writeFile', path: '/dangle', len: 5, seed: 2, flag: 'w', mode: 0o644 }, { k: 'lstat', path: '/nowhere' }], false],
  // Already matches the kernel (checked on create); kept as a guard while the path walk is reshaped.
  ['a name over 255 bytes is ENAMETOOLONG', [{ k: 'writeFile', path: `/${LONG}`, len: 1, seed: 3, flag: 'w', mode: 0o644 }, { k: 'stat', path: `/${LONG}` }, { k: 'mkdir', path: `/d/${LONG}`, mode: 0o755 }], false],
  ['reading a directory through a handle is EISDIR', [{ k: 'open', slot: 0, path: '/d', flags: 'r', mode: 0 }, { k: 'read', slot: 0, len: 10, pos: null }], false],
  ["mkdir of an existing name is EEXIST, mkdir under a file ENOTDIR", [{ k: 'mkdir', path: '/d', mode: 0o755 }, { k: 'mkdir', path: '/f/x', mode: 0o755 }], false],
  ['unlink of a directory is EISDIR, rmdir of a file ENOTDIR, rmdir of a non-empty directory ENOTEMPTY', [{ k: 'unlink', path: '/d' }, { k: 'rmdir', path: '/f' }, { k: 'rmdir', path: '/e' }], false],
  ['rename of a directory into itself is EINVAL; over a non-empty directory ENOTEMPTY; a file over a directory EISDIR', [{ k: 'rename', from: '/d', to: '/d/sub' }, { k: 'rename', from: '/d', to: '/e' }, { k: 'rename', from: '/f', to: '/d' }], false],
  ['opening a directory for writing is EISDIR; truncating one EISDIR', [{ k: 'open', slot: 0, path: '/d', flags: 'r+', mode: 0 }, { k: 'truncate', path: '/d', len: 0 }], false],
  ['readlink of a file is EINVAL; hard link to a directory EPERM', [{ k: 'readlink', path: '/f' }, { k: 'link', from: '/d', to: '/dl' }], false],
  ['user.* xattrs on a symlink: set EPERM, get ENODATA; trusted.* allowed', [{ k: 'setxattr', path: '/dangle', name: 'user.x', len: 3, seed: 4, flags: 0 }, { k: 'getxattr', path: '/dangle', name: 'user.x' }, { k: 'setxattr', path: '/dangle', name: 'trusted.x', len: 3, seed: 4, flags: 0 }, { k: 'listxattr', path: '/dangle' }], false],
  ["O_EXCL on an existing name is EEXIST; 'wx' on a dangling symlink EEXIST", [{ k: 'open', slot: 0, path: '/f', flags: 'wx', mode: 0o644 }, { k: 'open', slot: 1, path: '/dangle', flags: 'wx', mode: 0o644 }], false],
];
const SETUP: Op[] = [
  { k: 'mkdir', path: '/d', mode: 0o755 }, { k: 'mkdir', path: '/e', mode: 0o755 }, { k: 'mkdir', path: '/e/in', mode: 0o755 },
  { k: 'writeFile', path: '/f', len: 100, seed: 9, flag: 'w', mode: 0o644 }, { k: 'symlink', target: 'nowhere', path: '/dangle' },
];

test('path edge cases, ext4kit vs the kernel (4 KiB blocks)', { skip, timeout: 300_000 }, async (t) => {
  const outcomes: Array<{ name: string; arch: boolean; diffs: string[] }> = [];
  const r = await withPair(GEOMETRIES[0]!, { blocks: compareBlocks }, async (kernel, ext4kit) => {
    for (const [i, [name, ops, arch]] of EDGE_CASES.entries()) {
      // Each case in its own directory tree, so one case's effects cannot reach another's.
      const root = `/case${i}`;
      const inRoot = (p: string) => root + p;
      const rebase = (op: Op): Op => {
        const o = { ...op } as Record<string, unknown>;
        for (const key of ['path', 'from', 'to'] as const) if (typeof o[key] === 'string') o[key] = inRoot(o[key] as string);
        return o as Op;
      };
      await kernel.mkdir(root, 0o755);
      await ext4kit.mkdir(root, 0o755);
      const ks = new Session(kernel, { blocks: callBlocks });
      const es = new Session(ext4kit, { blocks: callBlocks });
      const diffs: string[] = [];
      for (const op of [...SETUP, ...ops].map(rebase)) {
        const [k, e] = [await ks.run(op), await es.run(op)];
        if (JSON.stringify(k) !== JSON.stringify(e)) diffs.push(`${op.k} ${JSON.stringify(op).slice(0, 120)}: kernel ${JSON.stringify(k)}, ext4kit ${JSON.stringify(e)}`);
      }
      await ks.closeAll();
      await es.closeAll();
      outcomes.push({ name, arch, diffs });
    }
  });
  assert.equal(r.fsck.exitCode, 0, r.fsck.output);
  for (const o of outcomes) {
    await t.test(o.name, { todo: o.arch ? ARCH_TODO : false }, () => { assert.deepEqual(o.diffs, []); });
  }
  // The trees only part where an arch case did (its own /caseN directory).
  const archRoots = EDGE_CASES.map(([, , arch], i) => arch ? `/case${i}` : '').filter(Boolean);
  assert.deepEqual(r.treeDiff.filter((d) => !archRoots.some((a) => d.startsWith(a + '/') || d.startsWith(a + ':'))), []);
});

test('cleanup', async () => { await cleanupTemp(); });
