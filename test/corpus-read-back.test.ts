// Everything e2fsprogs reads, ext4kit reads the same: every corpus image that e2fsck calls clean
// (INDEX.tsv verdict 'clean'), and a revision-0 image made with `mke2fs -r 0` (no s_inode_size:
// 128-byte inodes, first inode 11), comes out through `ext4kit get -r IMAGE / DEST` identical
// to `debugfs rdump / DEST2`: every file's bytes, every directory, every symlink target, modes
// and owners. (corpus.test.ts walks the whole corpus for errors and hangs; this compares bytes
// with a second reader.) `ext4kit check` must pass them too.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { rm, writeFile, mkdir, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { corpusAvailable, extractCorpusImage, listCorpus } from './support/corpus.ts';
import { cleanupTemp, compareTrees, RDUMP_COMPARE, tmpDirPath, tmpImagePath } from './support/images.ts';
import { debugfsRdump, dumpe2fsHeader, e2fsck, haveE2fsprogs, runTool, toolPath } from './support/oracles.ts';

const CLI = fileURLToPath(new URL('../bin/ext4kit.js', import.meta.url));
const noE2fs = haveE2fsprogs() ? false : 'e2fsprogs not installed (Debian package e2fsprogs)';
const avail = corpusAvailable();

after(cleanupTemp);

function ext4kit(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 300_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** ext4kit's extraction against debugfs's, plus `ext4kit check`. */
async function sameAsDebugfs(image: string): Promise<void> {
  const theirs = tmpDirPath('rdump');
  await debugfsRdump(image, theirs);
  const ours = tmpDirPath('get');
  const got = ext4kit('get', '-r', image, '/', ours);
  assert.equal(got.code, 0, `ext4kit get -r: ${got.stderr}`);
  const diffs = await compareTrees(theirs, ours, RDUMP_COMPARE);
  assert.deepEqual(diffs, [], 'ext4kit get -r differs from debugfs rdump');
  const check = ext4kit('check', image);
  assert.equal(check.code, 0, `ext4kit check:\n${check.stdout}${check.stderr}`);
  await rm(theirs, { recursive: true, force: true });
  await rm(ours, { recursive: true, force: true });
}

describe('corpus images e2fsck calls clean read back as debugfs reads them', { skip: noE2fs || (avail.ok ? false : avail.reason ?? 'corpus missing') }, () => {
  const clean = avail.ok ? listCorpus().filter((e) => e.verdict === 'clean') : [];
  test('the corpus has clean images', () => assert.ok(clean.length >= 5, `${clean.length} clean images`));
  for (const e of clean) {
    test(e.id, async () => {
      const path = await extractCorpusImage(e.id);
      try {
        await sameAsDebugfs(path);
      } finally {
        await rm(path, { force: true });
      }
    });
  }
});

describe('a revision-0 ext2 image (mke2fs -r 0)', { skip: noE2fs }, () => {
  test('lists, reads and checks like debugfs; its geometry is 128-byte inodes', async () => {
    const src = tmpDirPath('rev0-src');
    await mkdir(join(src, 'dir', 'deeper'), { recursive: true });
    await writeFile(join(src, 'dir', 'small.txt'), 'revision zero\n');
    const big = Buffer.alloc(300_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 13 + (i >>> 8)) & 0xff;
    await writeFile(join(src, 'dir', 'deeper', 'big.bin'), big);
    await symlink('dir/small.txt', join(src, 'link'));
    const img = tmpImagePath('rev0');
    // mke2fs -r 0 -d: a revision-0 filesystem (no extended superblock fields) holding the tree.
    const mk = await runTool(toolPath('mke2fs'), ['-q', '-F', '-r', '0', '-t', 'ext2', '-d', src, img, '8M'], { env: { E2FSPROGS_LIBMAGIC_SUPPRESS: '1' } });
    assert.equal(mk.exitCode, 0, mk.stderr);
    const header = await dumpe2fsHeader(img);
    assert.match(header['Filesystem revision #'] ?? '', /^0/);
    const fsck = await e2fsck(img);
    assert.equal(fsck.exitCode, 0, fsck.output);
    const info = JSON.parse(ext4kit('info', '--json', img).stdout) as { inodeSize: number };
    assert.equal(info.inodeSize, 128);
    assert.equal(ext4kit('cat', img, '/dir/small.txt').stdout, 'revision zero\n');
    await sameAsDebugfs(img);
  });
});
