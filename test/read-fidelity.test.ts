// Read fidelity: a seeded host tree goes into an image by an independent writer (mke2fs -d, or the
// kernel through a loop mount), comes back out with `ext4kit get -r IMAGE / DEST`, and DEST must
// equal the source tree: every byte (holes included), modes with set-id/sticky bits, owners,
// mtimes, symlink targets, hard-link groups and user.* xattrs (compareTrees).
//
// mke2fs -d keeps whole seconds of mtime only, so those images compare times to the second; the
// kernel keeps nanoseconds, so the loop-mount image compares them exactly. The 20 000-entry
// directory (a two-level htree with 1 KiB blocks) goes in through the kernel (`cp -a` onto a loop
// mount, about a second) rather than `mke2fs -d` (quadratic: about 40 s); without loop mounts it
// falls back to `mke2fs -d` + `e2fsck -fyD`. Either way `debugfs htree` must show two levels.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { generateTree, type GenerateTreeOptions, type TreeManifest } from './support/fixture-tree.ts';
import { cleanupTemp, compareTrees, makeImage, MKE2FS_D_COMPARE, tmpDirPath, type MakeImageOptions } from './support/images.ts';
import { debugfs, e2fsck, haveCommand, haveE2fsprogs, loopMountSupport, runTool, toolPath, withLoopMount } from './support/oracles.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const CLI = fileURLToPath(new URL('../bin/ext4kit.js', import.meta.url));

const skip = !haveE2fsprogs() ? 'e2fsprogs not installed' : !haveCommand('cp') ? 'cp not installed' : false;
if (skip) console.log(`read-fidelity.test.ts: skipped: ${skip}`);

interface Geometry { name: string; image: Omit<MakeImageOptions, 'dir' | 'sizeBytes'>; tree: '1k' | '4k' }
const GEOMETRIES: Geometry[] = [
  { name: '4 KiB ext4 default', image: { blockSize: 4096 }, tree: '4k' },
  { name: '1 KiB ext4 default', image: { blockSize: 1024 }, tree: '1k' },
  { name: '4 KiB bigalloc ratio 16', image: { blockSize: 4096, clusterBytes: 64 * KiB }, tree: '4k' },
  { name: '1 KiB bigalloc ratio 4', image: { blockSize: 1024, clusterBytes: 4 * KiB }, tree: '1k' },
  { name: '4 KiB ^metadata_csum', image: { blockSize: 4096, features: '^metadata_csum' }, tree: '4k' },
  { name: 'ext2 (4 KiB, block maps)', image: { blockSize: 4096, type: 'ext2' }, tree: '4k' },
  { name: 'ext3 (1 KiB, block maps, journal)', image: { blockSize: 1024, type: 'ext3' }, tree: '1k' },
];

// Trees for mke2fs -d: a 600-entry directory (an htree after e2fsck -fyD), the 3 GiB sparse
// file, symlink targets up to what the block size allows (mke2fs refuses B bytes or more).
const TREE_OPTS: Record<'1k' | '4k', GenerateTreeOptions> = {
  '1k': { seed: 101, bigDirEntries: 600, maxSymlinkTarget: 1023 },
  '4k': { seed: 202, bigDirEntries: 600, maxSymlinkTarget: 4000 },
};
const trees = new Map<string, TreeManifest>();
const timings: string[] = [];

before(async () => {
  if (skip) return;
  for (const [k, o] of Object.entries(TREE_OPTS)) {
    const t0 = performance.now();
    trees.set(k, await generateTree(tmpDirPath(`tree-${k}`), o));
    timings.push(`tree ${k}: ${ms(t0)}`);
  }
  const m = trees.get('1k')!;
  if (!m.xattrs.applied) console.log(`read-fidelity.test.ts: no xattrs in the trees: ${m.xattrs.reason}`);
});
after(async () => {
  await cleanupTemp();
  if (timings.length) console.log(`read-fidelity timings:\n  ${timings.join('\n  ')}`);
});
const ms = (t0: number) => `${((performance.now() - t0) / 1000).toFixed(1)} s`;

/** `ext4kit get -r IMAGE / DEST` into a fresh directory; returns DEST. */
async function getTree(image: string, extra: string[] = []): Promise<string> {
  const dest = tmpDirPath('get');
  const r = await runTool(process.execPath, [CLI, 'get', '-r', ...extra, image, '/', dest], { timeoutMs: 600_000 });
  assert.equal(r.exitCode, 0, `ext4kit get -r ${image} / ${dest}: exit ${r.exitCode}${r.timedOut ? ' (timed out)' : ''}\n${(r.stderr + r.stdout).slice(-4000)}`);
  return dest;
}

function assertSame(diffs: string[], what: string): void {
  assert.deepEqual(diffs.slice(0, 40), [], `${what}: ${diffs.length} difference(s)`);
}

describe('read fidelity: mke2fs -d images copied out with ext4kit get -r', { skip }, () => {
  for (const g of GEOMETRIES) {
    test(g.name, { timeout: 600_000 }, async () => {
      const tree = trees.get(g.tree)!;
      const t0 = performance.now();
      const image = await makeImage({ ...g.image, dir: tree.root, sizeBytes: 64 * MiB, indexDirs: true });
      let dest: string | undefined;
      try {
        const fsck = await e2fsck(image);
        assert.equal(fsck.exitCode, 0, `reference image is not clean:\n${fsck.output}`);
        assert.match(await debugfs(image, 'htree /bigdir'), /Root node dump/, 'the 600-entry directory is an htree');
        const t1 = performance.now();
        dest = await getTree(image);
        const tGet = ms(t1);
        const t2 = performance.now();
        assertSame(await compareTrees(tree.root, dest, MKE2FS_D_COMPARE), g.name);
        timings.push(`${g.name}: total ${ms(t0)} (get ${tGet}, compare ${ms(t2)})`);
      } finally {
        await rm(image, { force: true });
        if (dest) await rm(dest, { recursive: true, force: true });
      }
    });
  }
});

describe('read fidelity: the 20 000-entry two-level htree (1 KiB blocks)', { skip }, () => {
  test('kernel-written (or mke2fs -d) image with the full generated tree', { timeout: 900_000 }, async () => {
    const t0 = performance.now();
    const tree = await generateTree(tmpDirPath('tree-20k'), { seed: 303, maxSymlinkTarget: 1023, wideTimes: true });
    timings.push(`tree 20k: ${ms(t0)}`);
    const loop = await loopMountSupport();
    let image: string;
    let exactTimes: boolean;
    const t1 = performance.now();
    if (loop.ok) {
      image = await makeImage({ blockSize: 1024, sizeBytes: 256 * MiB, inodes: 32768 });
      await withLoopMount(image, async (mnt) => {
        const cp = await runTool(toolPath('cp'), ['-a', `${tree.root}/.`, `${mnt}/`], { timeoutMs: 300_000 });
        assert.equal(cp.exitCode, 0, `cp -a: ${cp.stderr}`);
      });
      exactTimes = true;
      timings.push(`20k image via loop mount + cp -a: ${ms(t1)}`);
    } else {
      console.log(`read-fidelity.test.ts: loop mounts unavailable (${loop.reason}); building the 20k image with mke2fs -d (slow)`);
      image = await makeImage({ blockSize: 1024, sizeBytes: 256 * MiB, inodes: 32768, dir: tree.root, indexDirs: true, timeoutMs: 600_000 });
      exactTimes = false;
      timings.push(`20k image via mke2fs -d: ${ms(t1)}`);
    }
    let dest: string | undefined;
    try {
      const fsck = await e2fsck(image);
      assert.equal(fsck.exitCode, 0, `reference image is not clean:\n${fsck.output.slice(-3000)}`);
      const htree = await debugfs(image, 'htree /bigdir');
      const levels = /Indirect levels: (\d+)/.exec(htree);
      assert.ok(levels, 'bigdir is an htree');
      assert.equal(Number(levels[1]), 1, 'bigdir is a two-level htree (one indirect level)');
      const t2 = performance.now();
      dest = await getTree(image, ['--exact-times']);
      const tGet = ms(t2);
      const t3 = performance.now();
      assertSame(await compareTrees(tree.root, dest, exactTimes ? {} : MKE2FS_D_COMPARE), '20k tree');
      timings.push(`20k tree: get ${tGet}, compare ${ms(t3)}`);
    } finally {
      await rm(image, { force: true });
      if (dest) await rm(dest, { recursive: true, force: true });
      await rm(tree.root, { recursive: true, force: true });
    }
  });
});
