// The differential runner (test/support/differential/) pointed at a FUSE mount: the same seeded
// random system-call sequences run through node:fs on a kernel ext4 loop mount and on an
// `ext4kit mount` of a copy of the same fresh image (a separate server process: node:fs calls
// into an in-process server would deadlock the threadpool), compared call by call (result or
// errno) and as final trees; e2fsck -fn of the ext4kit image after unmount. Both sides run in
// the kernel's VFS, so the path-walk differences of the API comparison do not arise here.
// FUSE_DIFF_SEQUENCES=N sequences per geometry (default 4), DIFF_OPS=N calls each (70).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Ext4 } from '../src/node.ts';
import { e2fsck, loopMountSupport, runTool, withLoopMount } from './support/oracles.ts';
import { chmodSync, existsSync } from 'node:fs';
import { cleanupTemp, tempRunDir, tmpDirPath, tmpImagePath } from './support/images.ts';
import { havePython3, NodeFsBackend } from './support/differential/nodefs-backend.ts';
import { GEOMETRIES, type Geometry } from './support/differential/pair.ts';
import { randomSequence, type Op } from './support/differential/ops.ts';
import { runSequence, snapshot, diffTrees } from './support/differential/runner.ts';
import type { Outcome } from './support/differential/backend.ts';
import { fuseSkipReason } from './fuse-support.ts';

const base = fuseSkipReason();
const loop = base ? { ok: false, reason: base } : await loopMountSupport();
const skip: string | false = base || (!havePython3() ? 'python3 not installed (Debian package python3)' : !loop.ok ? `loop mounts unavailable: ${loop.reason}` : false);
if (skip) console.log(`# fuse-differential: skipping: ${skip}`);
after(() => cleanupTemp());
process.umask(0);

const CLI = join(import.meta.dirname, '..', 'bin', 'ext4kit.js');
const SEQUENCES = Number(process.env['FUSE_DIFF_SEQUENCES'] ?? 4);
const OPS = Number(process.env['DIFF_OPS'] ?? 70);

/** Known differences of the mount (each names why). */
function classify(op: Op, expected: Outcome, actual: Outcome): string | undefined {
  if (op.k === 'write' && op.len === 0) return 'kept: Node skips write(2) for 0 bytes';
  void expected; void actual;
  return undefined;
}

async function withExt4kitMount<T>(image: string, fn: (mnt: string) => Promise<T>, mountOpts: string[] = []): Promise<T> {
  const mnt = tmpDirPath('fuse-diff');
  const m = await runTool(process.execPath, [CLI, 'mount', ...mountOpts, image, mnt], { timeoutMs: 60_000 });
  if (m.exitCode !== 0) throw new Error(`ext4kit mount: ${m.stderr}`);
  try {
    return await fn(mnt);
  } finally {
    const u = await runTool(process.execPath, [CLI, 'umount', mnt], { timeoutMs: 120_000 });
    if (u.exitCode !== 0) await runTool('umount', ['-l', mnt]);
  }
}

async function pair(g: Geometry, ops: readonly Op[]) {
  const image = tmpImagePath('fdiff-ext4kit');
  const kimage = tmpImagePath('fdiff-kernel');
  await Ext4.mkfs(image, {
    sizeBytes: g.sizeMiB << 20, blockSize: g.blockSize, timeSec: 1_700_000_000,
    ...(g.clusterBytes ? { features: 'bigalloc', clusterBytes: g.clusterBytes } : {}),
  });
  await copyFile(image, kimage);
  const opts = { blocks: true };
  const out = await withLoopMount(kimage, (kmnt) => withExt4kitMount(image, async (fmnt) => {
    const kernel = new NodeFsBackend(kmnt, 'kernel');
    const mounted = new NodeFsBackend(fmnt, 'ext4kit mount');
    try {
      const r = await runSequence(ops, kernel, mounted, opts, classify);
      await kernel.sync();
      await mounted.sync();
      const treeDiff = diffTrees(await snapshot(kernel, opts), await snapshot(mounted, opts));
      return { ...r, treeDiff };
    } finally {
      kernel.close();
      mounted.close();
    }
  }));
  return { ...out, fsck: await e2fsck(image) };
}

for (const g of GEOMETRIES) {
  test(`FUSE differential: ${SEQUENCES} random sequences of ${OPS} calls, ext4kit mount vs the kernel (${g.label})`, { skip, timeout: 20 * 60_000 }, async (t) => {
    for (let s = 1; s <= SEQUENCES; s++) {
      const seed = s * 104729 + g.blockSize + (g.clusterBytes ?? 0);
      await t.test(`seed ${seed}`, async () => {
        const r = await pair(g, randomSequence(seed, OPS));
        assert.equal(r.fsck.exitCode, 0, `e2fsck -fn (seed ${seed}):\n${r.fsck.output}`);
        const show = r.mismatches.slice(0, 8).map((m) => `#${m.index} ${m.op}: kernel ${JSON.stringify(m.expected)}, mount ${JSON.stringify(m.actual)}`).join('\n');
        assert.deepEqual(r.mismatches, [], `calls that differ (seed ${seed}):\n${show}`);
        assert.deepEqual(r.treeDiff, [], `final trees differ (seed ${seed})`);
      });
    }
  });
}

// mknod: FIFOs, sockets, character and block devices (old and new device-number encodings),
// renamed, linked, chmod/chown'ed and removed by a seeded python3 script on both mounts; every
// call's outcome and the final tree (type, mode, links, owner, major:minor) must match, the
// ext4kit image must pass e2fsck -fn, and the kernel must read back the same tree from it.
const SPECIAL = join(import.meta.dirname, 'fuse-special-nodes.py');
async function specialNodes(dir: string, seed: number, count: number, asUid?: number): Promise<string> {
  // env finds a python3 this uid may run (execvp skips PATH entries it cannot enter).
  const cmd = asUid === undefined ? ['python3'] : ['setpriv', `--reuid=${asUid}`, `--regid=${asUid}`, '--clear-groups', 'env', 'python3'];
  const r = await runTool(cmd[0]!, [...cmd.slice(1), SPECIAL, dir, String(seed), String(count)], { timeoutMs: 120_000 });
  if (r.exitCode !== 0) throw new Error(`fuse-special-nodes.py failed: ${r.stderr}`);
  return r.stdout;
}

for (const g of GEOMETRIES.slice(0, 2)) {
  test(`FUSE differential: mknod of FIFOs, sockets and devices, ext4kit mount vs the kernel (${g.label})`, { skip, timeout: 5 * 60_000 }, async (t) => {
    for (const seed of [11, 12, 13]) {
      await t.test(`seed ${seed}`, async () => {
        const image = tmpImagePath('fmknod-ext4kit');
        const kimage = tmpImagePath('fmknod-kernel');
        await Ext4.mkfs(image, { sizeBytes: g.sizeMiB << 20, blockSize: g.blockSize, timeSec: 1_700_000_000, ...(g.clusterBytes ? { features: 'bigalloc', clusterBytes: g.clusterBytes } : {}) });
        await copyFile(image, kimage);
        const kernel = await withLoopMount(kimage, (kmnt) => specialNodes(kmnt, seed, 80));
        const ours = await withExt4kitMount(image, (fmnt) => specialNodes(fmnt, seed, 80));
        assert.equal(ours, kernel, `outcomes or final tree differ (seed ${seed})`);
        assert.match(kernel, / ok$/m, 'some calls succeeded');
        assert.match(kernel, /^\S+ [cbps]\S+ /m, 'special nodes are left in the final tree');
        const fsck = await e2fsck(image);
        assert.equal(fsck.exitCode, 0, `e2fsck -fn:\n${fsck.output}`);
        const finalTree = (out: string) => out.split('\n').filter((l) => /^\S+ [-cbpsdl][-rwxsStT]{9} /.test(l)).join('\n');
        const reread = await withLoopMount(image, (kmnt) => specialNodes(kmnt, seed, -1), { readOnly: true });
        assert.ok(finalTree(kernel).length > 0, 'a final tree was listed');
        assert.equal(finalTree(reread), finalTree(kernel), 'the kernel reads the ext4kit image as it wrote its own');
      });
    }
  });
}

// As an unprivileged uid (setpriv, uid/gid 1000, no groups): the same random sequences run by a
// child process on both mounts (allow_other), over a tree root made before: a sticky
// world-writable root, /a a root-owned file, /b a root-owned directory, /c a sticky
// world-writable directory holding a root-owned file. Permission checks, sticky-directory
// rules, EPERM of chown and set-id clearing must match the kernel call by call; the final
// trees are compared as root.
const CHILD = join(import.meta.dirname, 'fuse-differential-child.ts');
const setpriv = existsSync('/usr/bin/setpriv') ? false : 'setpriv missing (Debian package util-linux)';
const UNPRIV_SEQUENCES = Number(process.env['FUSE_DIFF_UNPRIV_SEQUENCES'] ?? 3);

test(`FUSE differential as uid 1000: ${UNPRIV_SEQUENCES} random sequences of ${OPS} calls, ext4kit mount vs the kernel (4 KiB blocks)`, { skip: skip || setpriv, timeout: 15 * 60_000 }, async (t) => {
  chmodSync(tempRunDir(), 0o711); // uid 1000 must reach the ext4kit mountpoint
  for (let s = 1; s <= UNPRIV_SEQUENCES; s++) {
    const seed = s * 7919 + 1000;
    await t.test(`seed ${seed}`, async () => {
      const image = tmpImagePath('fdiff-unpriv');
      const kimage = tmpImagePath('fdiff-unpriv-kernel');
      await Ext4.mkfs(image, { sizeBytes: 64 << 20, timeSec: 1_700_000_000 });
      const fs = await Ext4.open(image);
      fs.umask = 0;
      await fs.chmod('/', 0o1777);
      await fs.writeFile('/a', 'root file\n', { mode: 0o644 });
      await fs.mkdir('/b', { mode: 0o755 });
      await fs.writeFile('/b/x', 'in b\n', { mode: 0o666 });
      await fs.mkdir('/c', { mode: 0o1777 });
      await fs.writeFile('/c/x', 'root in sticky\n', { mode: 0o666 });
      await fs.close();
      await copyFile(image, kimage);
      const opts = { blocks: true };
      const out = await withLoopMount(kimage, (kmnt) => withExt4kitMount(image, async (fmnt) => {
        const r = await runTool('setpriv', ['--reuid=1000', '--regid=1000', '--clear-groups', process.execPath, '--import', 'tsx', CHILD, kmnt, fmnt, String(seed), String(OPS)],
          { timeoutMs: 10 * 60_000, cwd: join(import.meta.dirname, '..') });
        if (r.exitCode !== 0) throw new Error(`child failed (${r.exitCode}):\n${r.stderr.slice(-3000)}`);
        const res = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { uid: number; mismatches: Array<{ index: number; op: string; expected: Outcome; actual: Outcome }> };
        const kernel = new NodeFsBackend(kmnt, 'kernel');
        const mounted = new NodeFsBackend(fmnt, 'ext4kit mount');
        try {
          await kernel.sync();
          await mounted.sync();
          return { ...res, treeDiff: diffTrees(await snapshot(kernel, opts), await snapshot(mounted, opts)) };
        } finally {
          kernel.close();
          mounted.close();
        }
      }, ['-o', 'allow_other']));
      assert.equal(out.uid, 1000, 'the calls ran unprivileged');
      const fsck = await e2fsck(image);
      assert.equal(fsck.exitCode, 0, `e2fsck -fn (seed ${seed}):\n${fsck.output}`);
      const show = out.mismatches.slice(0, 8).map((m) => `#${m.index} ${m.op}: kernel ${JSON.stringify(m.expected)}, mount ${JSON.stringify(m.actual)}`).join('\n');
      assert.deepEqual(out.mismatches, [], `calls that differ (seed ${seed}):\n${show}`);
      assert.deepEqual(out.treeDiff, [], `final trees differ (seed ${seed})`);
    });
  }
});

// mknod as uid 1000 in a sticky world-writable root and a setgid directory of another group:
// devices are EPERM, FIFOs and sockets are made, set-group-ID handling and ownership as the kernel's.
test('FUSE differential: mknod as uid 1000, ext4kit mount vs the kernel (4 KiB blocks)', { skip: skip || setpriv, timeout: 5 * 60_000 }, async () => {
  chmodSync(tempRunDir(), 0o711);
  const image = tmpImagePath('fmknod-unpriv');
  const kimage = tmpImagePath('fmknod-unpriv-kernel');
  await Ext4.mkfs(image, { sizeBytes: 64 << 20, timeSec: 1_700_000_000 });
  const fs = await Ext4.open(image);
  fs.umask = 0;
  await fs.chmod('/', 0o1777);
  await fs.mkdir('/g', { mode: 0o2777 });
  await fs.chown('/g', 0, 1234);
  await fs.close();
  await copyFile(image, kimage);
  const kernel = await withLoopMount(kimage, (kmnt) => specialNodes(kmnt, 21, 80, 1000));
  const ours = await withExt4kitMount(image, (fmnt) => specialNodes(fmnt, 21, 80, 1000), ['-o', 'allow_other']);
  assert.equal(ours, kernel, 'outcomes or final tree differ');
  assert.match(kernel, /^mknod \S+ (20000|60000) .* EPERM$/m, 'devices refused to an unprivileged user');
  assert.match(kernel, /^\S+ [ps]\S+ 1 1000 /m, 'FIFOs or sockets made by uid 1000');
  const fsck = await e2fsck(image);
  assert.equal(fsck.exitCode, 0, `e2fsck -fn:\n${fsck.output}`);
});
