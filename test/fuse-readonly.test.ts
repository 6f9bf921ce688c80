// Read-only serving of images ext4kit can open but not write: an ext2 image (block-mapped
// files), an ext4 image with inline_data (inline files and directories) and a corpus image.
// `ext4kit mount` without -o ro mounts them read-only with one warning; with -o ro, silently.
// Through the mount, the tree (types, modes, sizes, links, owners, device numbers, symlink
// targets, xattrs, contents) equals the kernel's read-only view of the same image, contents
// equal debugfs's rdump where rdump is exact, every change fails with EROFS, and the image is left byte for byte unchanged.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { debugfsRdump, haveCommand, loopMountSupport, runTool, withLoopMount } from './support/oracles.ts';
import { cleanupTemp, tmpDirPath, tmpImagePath } from './support/images.ts';
import { corpusAvailable, extractCorpusImage } from './support/corpus.ts';
import { fuseSkipReason, sh, shOk } from './fuse-support.ts';

after(() => cleanupTemp());

const base = fuseSkipReason() || (haveCommand('mke2fs') ? false : 'mke2fs missing (Debian package e2fsprogs)');
const loop = base ? { ok: false, reason: base } : await loopMountSupport();
const skip: string | false = base || (!loop.ok ? `loop mounts unavailable: ${loop.reason}` : false);
if (skip) console.log(`# fuse-readonly: skipping: ${skip}`);
const CLI = join(import.meta.dirname, '..', 'bin', 'ext4kit.js');

/** A small tree: files of several sizes, a deep directory, a 400-entry directory, symlinks, a FIFO, a device. */
function sourceTree(): string {
  const root = tmpDirPath('ro-tree');
  writeFileSync(join(root, 'small'), 'hello\n');
  writeFileSync(join(root, 'tiny'), 'x');
  writeFileSync(join(root, 'empty'), '');
  const big = new Uint8Array(700_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
  writeFileSync(join(root, 'big'), big);
  mkdirSync(join(root, 'd/e/f'), { recursive: true });
  writeFileSync(join(root, 'd/e/f/deep'), 'deep\n');
  mkdirSync(join(root, 'many'));
  for (let i = 0; i < 400; i++) writeFileSync(join(root, 'many', `entry-${i}`), `${i}\n`);
  symlinkSync('../small', join(root, 'd/rel'));
  symlinkSync('/' + 'long/'.repeat(20) + 'target', join(root, 'd/long'));
  return root;
}

/** Everything the kernel's VFS shows of a tree, one sorted line per entry (plus xattrs). */
const LIST = `find . -mindepth 1 -not -path './lost+found*' -printf '%P %y %m %s %n %U %G %l\\n' | sort
  for f in $(find . -mindepth 1 -not -path './lost+found*' -type c -o -type b | sort); do stat -c '%n %t %T' "$f"; done
  find . -mindepth 1 -not -path './lost+found*' -type f -exec md5sum {} + | sort
  getfattr -R -d -m - --absolute-names . 2>/dev/null | grep -v '^#' | sort || true`;

async function ext4kitMount(img: string, mnt: string, opts: string[]): Promise<{ exitCode: number; stderr: string }> {
  return runTool(process.execPath, [CLI, 'mount', ...opts, img, mnt], { timeoutMs: 60_000 });
}

/** `rdump`: also compare contents with debugfs's rdump (not for inline-data files: rdump writes all 60 bytes of i_block). */
async function compareServed(img: string, label: string, rdump: boolean): Promise<void> {
  const before = await shOk(`sha256sum < ${img}`);
  const kernelView = await withLoopMount(img, (kmnt) => shOk(`cd ${kmnt}\n${LIST}`), { readOnly: true, options: ['noload'] });
  assert.ok(kernelView.split('\n').length > 3, `${label}: the kernel lists the tree`);
  const dump = tmpDirPath('ro-rdump');
  if (rdump) await debugfsRdump(img, dump);
  const mnt = tmpDirPath('ro-mnt');
  const m = await ext4kitMount(img, mnt, []);
  assert.equal(m.exitCode, 0, `${label}: ${m.stderr}`);
  try {
    const warnings = m.stderr.split('\n').filter((l) => l.trim() !== '');
    assert.equal(warnings.length, 1, `${label}: one warning:\n${m.stderr}`);
    assert.match(warnings[0]!, /warning: .*cannot be written by ext4kit \(.+\); mounted read-only/);
    assert.match(await shOk(`grep " ${mnt} " /proc/mounts`), /fuse\.ext4kit ro[,\s]/, `${label}: the kernel mount is read-only`);
    assert.equal(await shOk(`cd ${mnt}\n${LIST}`), kernelView, `${label}: tree through the mount vs the kernel`);
    if (rdump) {
      // Contents: debugfs's rdump of the image against the mount (rdump skips devices and FIFOs).
      const d = await sh(`diff -r --no-dereference -x lost+found -x dev -x pipe ${dump}/ ${mnt}/`);
      assert.equal(d.stdout + d.stderr, '', `${label}: rdump vs the mount`);
      assert.equal(d.exitCode, 0);
    }
    const w = await sh(`set +e; touch ${mnt}/new 2>&1; mkdir ${mnt}/dir 2>&1; { echo more >> ${mnt}/$(cd ${mnt} && find . -type f | head -1); } 2>&1; rm -rf ${mnt}/* 2>&1 | head -1; true`);
    const refusals = w.stdout.split('\n').filter((l) => /Read-only file system/.test(l));
    assert.ok(refusals.length >= 4, `${label}: changes refused with EROFS:\n${w.stdout}`);
  } finally {
    const u = await runTool(process.execPath, [CLI, 'umount', mnt], { timeoutMs: 60_000 });
    if (u.exitCode !== 0) await runTool('umount', ['-l', mnt]);
  }
  assert.equal(await shOk(`sha256sum < ${img}`), before, `${label}: the image is unchanged`);
  // -o ro: the same image mounts without a warning.
  const again = await ext4kitMount(img, mnt, ['-o', 'ro']);
  assert.equal(again.exitCode, 0, again.stderr);
  try {
    assert.equal(again.stderr.trim(), '', `${label}: no warning with -o ro`);
    assert.equal(await shOk(`cd ${mnt}\n${LIST}`), kernelView);
  } finally {
    const u = await runTool(process.execPath, [CLI, 'umount', mnt], { timeoutMs: 60_000 });
    if (u.exitCode !== 0) await runTool('umount', ['-l', mnt]);
  }
}

test('an ext2 image (block-mapped files) is served read-only with one warning; the tree equals the kernel view and debugfs contents', { skip, timeout: 5 * 60_000 }, async () => {
  const img = tmpImagePath('ro-ext2');
  await shOk(`mke2fs -q -F -t ext2 -b 1024 -d ${sourceTree()} ${img} 16M && debugfs -w -R 'mknod dev c 4 64' ${img} && debugfs -w -R 'mknod pipe p' ${img}`);
  await compareServed(img, 'ext2', true);
});

test('an ext4 image with inline_data files and directories is served read-only; same tree and contents', { skip, timeout: 5 * 60_000 }, async () => {
  const img = tmpImagePath('ro-inline');
  await shOk(`mke2fs -q -F -t ext4 -O inline_data -I 512 -d ${sourceTree()} ${img} 32M`);
  const stat = await shOk(`debugfs -R 'stat /d' ${img} 2>/dev/null`);
  assert.match(stat, /Flags: 0x10000000/, 'd is an inline-data directory');
  await compareServed(img, 'inline_data', false);
});

const corpus = corpusAvailable();
test('a corpus image ext4kit cannot write (f_selinux: block-mapped, xattrs) is served read-only', { skip: skip || (corpus.ok ? false : corpus.reason ?? 'no corpus') }, async () => {
  await compareServed(await extractCorpusImage('f_selinux'), 'f_selinux', true);
});
