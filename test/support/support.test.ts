// Tests of the test support code: the fixture tree, the tree comparison, image building, the
// e2fsprogs wrappers, loop mounts and the corpus index.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile, chmod, lstat, open, readdir, readFile, rm, stat, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { generateTree, setMtimeNs, type TreeManifest } from './fixture-tree.ts';
import {
  cleanupTemp,
  compareTrees,
  DEFAULT_HASH_SEED,
  DEFAULT_UUID,
  makeImage,
  MKE2FS_D_COMPARE,
  RDUMP_COMPARE,
  tmpDirPath,
} from './images.ts';
import { debugfs, debugfsRaw, debugfsRdump, dumpe2fsHeader, e2fsck, haveCommand, haveE2fsprogs, loopMountSupport, withLoopMount } from './oracles.ts';
import { corpusAvailable, extractCorpusImage, listCorpus } from './corpus.ts';

const run = promisify(execFile);
const noE2fsprogs = haveE2fsprogs() ? false : 'e2fsprogs not installed';
const KiB = 1024;
const MiB = 1024 * KiB;

// One tree for the whole file: small big directory (mke2fs -d is quadratic in directory size).
let tree: string;
let manifest: TreeManifest;
const TREE_OPTS = { seed: 1234, bigDirEntries: 600, maxSymlinkTarget: 1023 } as const;

before(async () => {
  tree = tmpDirPath('tree');
  manifest = await generateTree(tree, TREE_OPTS);
});
after(async () => {
  await cleanupTemp();
});

describe('fixture tree', () => {
  test('the manifest describes what is on disk', async () => {
    assert.ok(manifest.deepest.depth >= 12, `depth ${manifest.deepest.depth}`);
    assert.equal((await readdir(join(tree, 'bigdir'))).length, 600);
    for (const e of manifest.entries) {
      const st = await lstat(join(tree, e.path), { bigint: true });
      const kind = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
      assert.equal(kind, e.kind, e.path);
      assert.equal(st.mtimeNs, e.mtimeNs, `mtime of ${e.path}`);
      if (e.kind === 'file') assert.equal(Number(st.size), e.size, e.path);
      if (e.kind !== 'symlink') assert.equal(Number(st.mode & 0o7777n), e.mode, e.path);
      if (e.uid !== undefined) assert.equal(Number(st.uid), e.uid, e.path);
      // Not read by anyone yet, so relatime has not touched these.
      if (e.tags.includes('mode') && e.kind === 'file') assert.equal(st.atimeNs, e.atimeNs, `atime of ${e.path}`);
    }
    const root = await stat(tree, { bigint: true });
    assert.equal(root.mtimeNs, manifest.rootTimes.mtimeNs);
    assert.ok(manifest.nanosecondTimes, 'GNU touch should set nanosecond times here');
    assert.ok(manifest.entries.some((e) => e.mtimeNs % 1000n !== 0n), 'some times use the nanosecond digits');

    const huge = manifest.hugeSparse!;
    const hs = await stat(join(tree, huge.path));
    assert.equal(hs.size, 3 * 1024 * MiB);
    assert.ok(hs.blocks * 512 < 64 * MiB, 'the huge file is sparse');

    const symlinks = manifest.entries.filter((e) => e.kind === 'symlink');
    assert.ok(symlinks.some((e) => e.tags.includes('fast-symlink') && e.size === 59));
    assert.ok(symlinks.some((e) => e.tags.includes('slow-symlink') && e.size === 1023));
    assert.ok(!symlinks.some((e) => e.size > 1023), 'maxSymlinkTarget is honoured');
    assert.ok(symlinks.some((e) => e.tags.includes('dangling')) && symlinks.some((e) => e.tags.includes('absolute')));

    for (const group of manifest.hardLinkGroups) {
      const inos = await Promise.all(group.map(async (p) => (await lstat(join(tree, p))).ino));
      assert.equal(new Set(inos).size, 1, `one inode for ${group.join(', ')}`);
      assert.equal((await lstat(join(tree, group[0]!))).nlink, group.length);
    }
    const names = await readdir(join(tree, 'names'), { encoding: 'buffer' });
    assert.ok(names.some((n) => n.length === 255 && n.toString() === 'x'.repeat(255)));
    assert.ok(names.some((n) => n.length === 255 && n.toString().startsWith('日')));
    assert.ok(names.some((n) => n.equals(Buffer.from('café'))) && names.some((n) => n.equals(Buffer.from('cafe\u0301'))));
    assert.equal(((await stat(join(tree, 'modes/sticky'))).mode & 0o7777), 0o1777);
    assert.equal(((await stat(join(tree, 'modes/file-4755'))).mode & 0o7777), 0o4755);
    if (haveCommand('setfattr')) assert.ok(manifest.xattrs.applied, manifest.xattrs.reason);
    if (manifest.xattrs.applied) {
      const { stdout } = await run('getfattr', ['-h', '-n', 'user.comment', '--only-values', join(tree, 'xattrs/one')]);
      assert.equal(stdout, 'hello xattr');
    }
  });

  test('the same seed gives an identical tree; another seed does not', async () => {
    const again = tmpDirPath('tree-again');
    const m2 = await generateTree(again, TREE_OPTS);
    assert.deepEqual(await compareTrees(tree, again, { root: true }), []);
    assert.deepEqual(
      m2.entries.map((e) => [e.path, e.mtimeNs, e.size]),
      manifest.entries.map((e) => [e.path, e.mtimeNs, e.size]),
    );
    const other = tmpDirPath('tree-other');
    await generateTree(other, { ...TREE_OPTS, seed: 99, sparseHugeBytes: 0 });
    assert.notDeepEqual(await compareTrees(tree, other), []);
    await Promise.all([rm(again, { recursive: true }), rm(other, { recursive: true })]);
  });
});

describe('compareTrees', () => {
  test('a tree compared with itself has no differences (and a 3 GiB sparse file compares fast)', async () => {
    const t0 = Date.now();
    assert.deepEqual(await compareTrees(tree, tree, { root: true }), []);
    assert.ok(Date.now() - t0 < 20_000, `took ${Date.now() - t0} ms`);
  });

  test('a modified copy gives exactly the expected differences', async () => {
    const copy = tmpDirPath('copy');
    await run('cp', ['-a', '--sparse=always', `${tree}/.`, copy]);
    assert.deepEqual(await compareTrees(tree, copy, { root: true }), [], 'cp -a copies faithfully');

    const entry = (p: string) => manifest.entries.find((e) => e.path === p)!;
    // Mode change.
    await chmod(join(copy, 'files/random-4095'), 0o600);
    // One byte changed, size and mtime kept.
    const fh = await open(join(copy, 'files/random-4097'), 'r+');
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, 1000);
    b[0] = b[0]! ^ 0xff;
    await fh.write(b, 0, 1, 1000);
    await fh.close();
    await setMtimeNs(join(copy, 'files/random-4097'), entry('files/random-4097').mtimeNs);
    // One byte written into a hole of the 3 GiB sparse file (found although holes are skipped).
    const huge = manifest.hugeSparse!;
    const hh = await open(join(copy, huge.path), 'r+');
    await hh.write(Buffer.from('!'), 0, 1, 1.5 * 1024 * MiB);
    await hh.close();
    await setMtimeNs(join(copy, huge.path), entry(huge.path).mtimeNs);
    // mtime change by one nanosecond.
    await setMtimeNs(join(copy, 'small/s1/tiny-1'), entry('small/s1/tiny-1').mtimeNs + 1n);
    // Broken hard link: same bytes, mode and time, but a new inode.
    const bPath = join(copy, 'hardlinks/b');
    const bytes = await readFile(bPath);
    await unlink(bPath);
    await writeFile(bPath, bytes, { mode: 0o644 });
    await chmod(bPath, entry('hardlinks/a').mode);
    await setMtimeNs(bPath, entry('hardlinks/a').mtimeNs);
    await setMtimeNs(join(copy, 'hardlinks'), entry('hardlinks').mtimeNs);
    // Symlink retargeted (same length, so only the target differs).
    const l = join(copy, 'links/short');
    await unlink(l);
    await symlink('y', l);
    await setMtimeNs(l, entry('links/short').mtimeNs);
    await setMtimeNs(join(copy, 'links'), entry('links').mtimeNs);
    // Size change on a file in the big directory, a missing file and an extra file.
    const big = manifest.entries.find((e) => e.tags.includes('bigdir') && e.size === 0 && e.kind === 'file')!;
    await appendFile(join(copy, big.path), 'x');
    await setMtimeNs(join(copy, big.path), big.mtimeNs);
    await unlink(join(copy, 'small/s2/tiny-2'));
    await writeFile(join(copy, 'small/s2/extra'), '');
    await setMtimeNs(join(copy, 'small/s2/extra'), 0n);
    await setMtimeNs(join(copy, 'small/s2'), entry('small/s2').mtimeNs);
    // A directory removed entirely is reported once, not once per child.
    await rm(join(copy, 'deep/l01/l02/l03'), { recursive: true });
    await setMtimeNs(join(copy, 'deep/l01/l02'), entry('deep/l01/l02').mtimeNs);
    // Root mode (reported only with root: true).
    await chmod(copy, 0o700);
    const expected = [
      'mode differs: /: expected 00755, actual 00700',
      'missing in actual: deep/l01/l02/l03 (dir)',
      'mode differs: files/random-4095: expected 00644, actual 00600',
      `symlink target differs: links/short: expected "x", actual "y"`,
      'unexpected in actual: small/s2/extra (file)',
      'missing in actual: small/s2/tiny-2 (file)',
      `mtime differs: small/s1/tiny-1: expected ${fmt(entry('small/s1/tiny-1').mtimeNs)}, actual ${fmt(entry('small/s1/tiny-1').mtimeNs + 1n)}`,
      `size differs: ${big.path}: expected 0, actual 1`,
      'content differs from byte 1000: files/random-4097',
      `content differs from byte ${1.5 * 1024 * MiB}: ${huge.path}`,
      'hard links differ: files/link-to-a: expected linked names {files/link-to-a, hardlinks/a, hardlinks/b, hardlinks/sub/c}, actual {files/link-to-a, hardlinks/a, hardlinks/sub/c}',
    ];
    if (manifest.xattrs.applied) {
      await run('setfattr', ['-n', 'user.comment', '-v', 'changed', join(copy, 'xattrs/one')]);
      await run('setfattr', ['-x', 'user.dir', join(copy, 'xattrs/dir')]);
      await run('setfattr', ['-n', 'user.new', '-v', '1', join(copy, 'xattrs/dir')]);
      expected.push(
        'xattr missing in actual: xattrs/dir: user.dir',
        'xattr unexpected in actual: xattrs/dir: user.new',
        'xattr differs: xattrs/one: user.comment: expected 0x68656c6c6f207861747472, actual 0x6368616e676564',
      );
    }
    const diffs = await compareTrees(tree, copy, { root: true });
    assert.deepEqual([...diffs].sort(), [...expected].sort());
    // Options turn checks off.
    const relaxed = await compareTrees(tree, copy, { times: false, hardLinks: false, xattrs: false });
    assert.ok(!relaxed.some((d) => /mtime|hard links|xattr|: \/:/.test(d)), relaxed.join('\n'));
    await rm(copy, { recursive: true });
  });

  test('ignore, specialBits and seconds-only times', async () => {
    const a = tmpDirPath('cmp-a');
    const b = tmpDirPath('cmp-b');
    await writeFile(join(a, 'f'), 'same');
    await writeFile(join(b, 'f'), 'same');
    await chmod(join(a, 'f'), 0o4755);
    await chmod(join(b, 'f'), 0o755);
    await utimes(join(a, 'f'), 100, 100.25);
    await utimes(join(b, 'f'), 100, 100.5);
    await writeFile(join(b, 'lost+found'), '');
    assert.deepEqual(await compareTrees(a, b, { times: 'seconds', specialBits: false }), []);
    assert.deepEqual((await compareTrees(a, b, { ignore: [] })).length, 3);
  });
});

describe('images and e2fsprogs', { skip: noE2fsprogs }, () => {
  test('makeImage over several geometries passes e2fsck', async () => {
    const cases = [
      { blockSize: 1024, sizeBytes: 8 * MiB },
      { blockSize: 4096, sizeBytes: 32 * MiB },
      { blockSize: 2048, sizeBytes: 16 * MiB, features: '^metadata_csum' },
      { blockSize: 4096, sizeBytes: 64 * MiB, clusterBytes: 16 * KiB },
      { blockSize: 1024, sizeBytes: 16 * MiB, clusterBytes: 4 * KiB, features: 'quota' },
      { blockSize: 4096, sizeBytes: 32 * MiB, features: 'metadata_csum_seed,orphan_file' },
      { blockSize: 1024, sizeBytes: 8 * MiB, type: 'ext2' },
      { blockSize: 4096, sizeBytes: 32 * MiB, type: 'ext3', inodeSize: 128 },
    ] as const;
    for (const c of cases) {
      const img = await makeImage(c);
      const r = await e2fsck(img);
      assert.equal(r.exitCode, 0, `${JSON.stringify(c)}\n${r.output}`);
      const h = await dumpe2fsHeader(img);
      assert.equal(h['Block size'], String(c.blockSize));
      if ('clusterBytes' in c) assert.equal(h['Cluster size'], String(c.clusterBytes));
      await rm(img);
    }
  });

  test('makeImage is deterministic and dumpe2fsHeader parses it', async () => {
    const opts = { blockSize: 1024, sizeBytes: 4 * MiB } as const;
    const [a, b] = [await makeImage(opts), await makeImage(opts)];
    assert.ok((await readFile(a)).equals(await readFile(b)), 'two runs give the same bytes');
    const h = await dumpe2fsHeader(a);
    assert.equal(h['Filesystem UUID'], DEFAULT_UUID);
    assert.equal(h['Directory Hash Seed'], DEFAULT_HASH_SEED);
    assert.equal(h['Filesystem magic number'], '0xEF53');
    assert.match(h['Filesystem features'] ?? '', /\bextent\b.*\bmetadata_csum\b/);
    await assert.rejects(makeImage({ blockSize: 4096, sizeBytes: 4096 * 3 + 1 }));
  });

  test('debugfs reads and writes', async () => {
    const img = await makeImage({ blockSize: 4096, sizeBytes: 8 * MiB });
    const src = join(tmpDirPath('dbg'), 'hello.txt');
    await writeFile(src, 'hello debugfs\n');
    await debugfs(img, `write ${src} hello.txt\nmkdir sub\nsymlink sub/l /hello.txt`, { write: true });
    assert.equal(await debugfs(img, 'cat /hello.txt'), 'hello debugfs\n');
    assert.match(await debugfs(img, 'ls -l /sub'), /\bl\b/);
    const missing = await debugfsRaw(img, 'stat /nope');
    assert.match(missing.stderr, /not found/i);
    assert.equal((await e2fsck(img)).exitCode, 0);
  });

  test('the fixture tree through mke2fs -d: e2fsck clean, htree, rdump and loop mount agree', async () => {
    const img = await makeImage({ dir: tree, blockSize: 1024, sizeBytes: 64 * MiB, indexDirs: true });
    const r = await e2fsck(img);
    assert.equal(r.exitCode, 0, r.output);
    assert.match(await debugfs(img, 'htree /bigdir'), /Root node dump/);
    assert.equal(await debugfs(img, 'cat "/names/café"'), await readFile(join(tree, 'names/café'), 'utf8'));

    const loop = await loopMountSupport();
    if (loop.ok) {
      const diffs = await withLoopMount(img, (mnt) => compareTrees(tree, mnt, MKE2FS_D_COMPARE), { readOnly: true });
      assert.deepEqual(diffs, []);
    }

    // rdump writes the 3 GiB file out in full: use an image of a tree without it.
    const small = tmpDirPath('small-tree');
    await generateTree(small, { ...TREE_OPTS, bigDirEntries: 50, sparseHugeBytes: 0 });
    const img2 = await makeImage({ dir: small, blockSize: 4096, sizeBytes: 64 * MiB });
    const out = tmpDirPath('rdump');
    await debugfsRdump(img2, out);
    assert.deepEqual(await compareTrees(small, out, RDUMP_COMPARE), []);
    await Promise.all([rm(img), rm(img2), rm(out, { recursive: true }), rm(small, { recursive: true })]);
  });

  test('withLoopMount mounts, always unmounts, and removes its directory', async (t) => {
    const loop = await loopMountSupport();
    if (!loop.ok) return t.skip(loop.reason);
    const img = await makeImage({ blockSize: 4096, sizeBytes: 16 * MiB });
    let seen = '';
    await withLoopMount(img, async (mnt) => {
      seen = mnt;
      await writeFile(join(mnt, 'from-kernel'), 'written through the kernel');
    });
    assert.ok(!existsSync(seen), 'mount directory removed');
    assert.equal(await debugfs(img, 'cat /from-kernel'), 'written through the kernel');
    await assert.rejects(
      withLoopMount(img, async (mnt) => {
        seen = mnt;
        throw new Error('boom');
      }, { readOnly: true }),
      /boom/,
    );
    assert.ok(!existsSync(seen), 'unmounted and removed after a throw');
    const mounts = await readFile('/proc/self/mounts', 'utf8');
    assert.ok(!mounts.includes(seen));
    assert.equal((await e2fsck(img)).exitCode, 0);
  });
});

describe('corpus', () => {
  const avail = corpusAvailable();
  test('INDEX.tsv lists 62 images with sane fields', { skip: avail.ok ? false : avail.reason }, () => {
    const all = listCorpus();
    assert.equal(all.length, 62);
    assert.equal(new Set(all.map((e) => e.id)).size, 62);
    const clean = all.filter((e) => e.verdict === 'clean');
    assert.ok(clean.length > 0 && clean.every((e) => e.e2fsckExit === 0));
    assert.ok(all.some((e) => e.features.includes('bigalloc') && e.clustersize! > e.blocksize!));
    const f16 = all.find((e) => e.id === 'f_16384_block')!;
    assert.deepEqual([f16.blocksize, f16.clustersize, f16.needsRecovery], [8192, 8192, false]);
    const junk = all.find((e) => e.verdict === 'not_fs')!;
    assert.equal(junk.blocksize, null);
    assert.deepEqual(junk.features, []);
  });

  test('extracted images are fresh copies and e2fsck agrees with the index', { skip: avail.ok ? (noE2fsprogs || false) : avail.reason }, async () => {
    const all = listCorpus();
    const picks = [all.find((e) => e.verdict === 'clean')!, all.find((e) => e.verdict === 'corrupt')!, all.find((e) => e.category === 'bigalloc')!];
    for (const e of picks) {
      const a = await extractCorpusImage(e.id);
      const b = await extractCorpusImage(e.id);
      assert.notEqual(a, b);
      assert.equal((await stat(a)).size, e.sizeBytes);
      assert.equal((await e2fsck(a)).exitCode, e.e2fsckExit, e.id);
      await Promise.all([rm(a), rm(b)]);
    }
    await assert.rejects(extractCorpusImage('../etc/passwd'));
  });
});

function fmt(ns: bigint): string {
  return `${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, '0')}`;
}
