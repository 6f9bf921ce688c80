// ext4kit mount through a real FUSE mount: lifecycle and ordinary programs (cp -a, tar, diff -r,
// git), POSIX details (orphans, setgid directories, chown clearing set-id bits, errno), and the
// CLI (background server, lock, clear errors, umount waiting for write-back, SIGTERM).
// After every mount: e2fsck -fn clean, and the kernel reads the same tree.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ext4 } from '../src/node.ts';
import { e2fsck, loopMountSupport, withLoopMount, runTool } from './support/oracles.ts';
import { tmpImagePath, tmpDirPath, cleanupTemp, tempRunDir } from './support/images.ts';
import { fuseSkipReason, sh, shOk, withFuse } from './fuse-support.ts';

const skip = fuseSkipReason(['tar']);
if (skip) console.log(`# fuse: skipping: ${skip}`);
const loop = skip ? { ok: false } : await loopMountSupport();
const CLI = join(import.meta.dirname, '..', 'bin', 'ext4kit.js');
const SRC = join(import.meta.dirname, '..', 'src');

after(() => cleanupTemp());

async function freshImage(name: string, opts: Parameters<typeof Ext4.mkfs>[1] = {}): Promise<string> {
  const img = tmpImagePath(name);
  await Ext4.mkfs(img, { sizeBytes: 256 << 20, ...opts });
  return img;
}

/** Lazily unmounts whichever of `dirs` is still mounted (by /proc/self/mounts: a stat could hang). */
async function unmountIfMounted(...dirs: string[]): Promise<void> {
  const mounted = new Set(readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1]));
  for (const d of dirs) if (mounted.has(d)) await runTool('umount', ['-l', d]);
}

async function assertClean(img: string): Promise<void> {
  const r = await e2fsck(img);
  assert.equal(r.exitCode, 0, `e2fsck -fn:\n${r.output}`);
}

test('cp -a, tar x, diff -r, mv, rm -r, links and git through the mount; e2fsck clean; the kernel reads the same', { skip }, async () => {
  const img = await freshImage('programs');
  const tarball = join(tmpDirPath('tar'), 'src.tar');
  await shOk(`tar -C ${SRC}/.. -cf ${tarball} src`);
  await withFuse(img, async (mnt) => {
    await shOk(`
      cp -a ${SRC} ${mnt}/copy
      diff -r ${SRC} ${mnt}/copy
      mkdir ${mnt}/untar && tar -C ${mnt}/untar -xf ${tarball}
      diff -r ${SRC} ${mnt}/untar/src
      mv ${mnt}/untar/src ${mnt}/moved && rmdir ${mnt}/untar
      rm -r ${mnt}/moved/fs
      ln ${mnt}/copy/index.ts ${mnt}/hard && ln -s copy/node.ts ${mnt}/soft
      test "$(stat -c %h ${mnt}/hard)" = 2 && test "$(readlink ${mnt}/soft)" = copy/node.ts
      cmp ${mnt}/soft ${SRC}/node.ts
      chmod 640 ${mnt}/hard && test "$(stat -c %a ${mnt}/copy/index.ts)" = 640
      touch -d '2001-02-03 04:05:06.123456789' ${mnt}/hard && test "$(stat -c %y ${mnt}/hard)" = '2001-02-03 04:05:06.123456789 +0000'
      truncate -s 100000 ${mnt}/sparse && test "$(stat -c %s ${mnt}/sparse)" = 100000
      dd if=/dev/urandom of=${mnt}/big bs=1M count=8 conv=fsync status=none
      dd if=${mnt}/big of=/dev/null bs=1M status=none
      df ${mnt} | tail -1
    `, { timeoutMs: 240_000 });
    const haveGit = (await runTool('bash', ['-c', 'command -v git'])).exitCode === 0;
    if (haveGit) {
      await shOk(`
        cd ${mnt} && mkdir repo && cd repo && git init -q
        git config user.email t@example.com && git config user.name t
        cp -a ${SRC}/fuse . && git add -A && git commit -qm one
        echo change >> fuse/session.ts && git rm -q fuse/names.ts && git commit -qam two
        git gc -q && git fsck --strict && git log --oneline | wc -l | grep -q 2
      `);
    }
  });
  await assertClean(img);
  if (loop.ok) {
    await withLoopMount(img, async (kmnt) => {
      await shOk(`diff -r ${SRC} ${kmnt}/copy && test "$(stat -c %h ${kmnt}/hard)" = 2 && test ! -e ${kmnt}/moved/fs && cmp ${kmnt}/soft ${SRC}/node.ts`);
    }, { readOnly: true, options: ['noload'] });
  }
});

test('unlinked open files live until closed; setgid dirs; chown clears set-id; errno of failures', { skip }, async () => {
  const img = await freshImage('posix');
  await withFuse(img, async (mnt) => {
    const out = await shOk(`
      cd ${mnt}
      echo keep > f && exec 3<f && rm f && cat <&3 && exec 3<&-
      test ! -e f
      mkdir g && chown 0:1234 g && chmod 2775 g && mkdir g/sub && touch g/file
      stat -c '%g %a' g/sub g/file
      touch s && chmod 6755 s && chown 1:1 s && stat -c %a s
      mkdir d && touch d/x; rmdir d 2>&1 || true
      ln -s nowhere dangling; cat dangling 2>&1 || true
      mkdir d 2>&1 || true
    `);
    assert.match(out, /^keep$/m);
    assert.match(out, /^1234 2755$/m, 'subdirectory inherits group and setgid');
    assert.match(out, /^1234 644$/m, 'file inherits group only');
    assert.match(out, /^755$/m, 'chown cleared setuid and setgid');
    assert.match(out, /Directory not empty/);
    assert.match(out, /No such file or directory/);
    assert.match(out, /File exists/);
  });
  await assertClean(img);
});

test('CLI: background mount, lock, clear errors, umount waits for write-back, SIGTERM ends a foreground server cleanly', { skip, timeout: 180_000 }, async () => {
  const img = await freshImage('cli');
  const mnt = tmpDirPath('cli-mnt');
  const run = (args: string[]) => runTool(process.execPath, [CLI, ...args], { timeoutMs: 120_000 });
  const other = tmpDirPath('cli-other');
  try {
    const m = await run(['mount', img, mnt]);
    assert.equal(m.exitCode, 0, m.stderr);
    const again = await run(['mount', img, other]);
    assert.equal(again.exitCode, 1);
    assert.match(again.stderr, /already mounted by ext4kit/);
    await shOk(`cp -a ${SRC}/fuse ${mnt}/fuse && sync`);
    const u = await run(['umount', mnt]);
    assert.equal(u.exitCode, 0, u.stderr);
    await assertClean(img);
    const back = await Ext4.open(img, { readOnly: true });
    assert.equal((await back.readdir('/fuse')).length > 5, true);
    await back.close();
  } finally {
    await unmountIfMounted(mnt, other);
  }
  // Clear errors.
  const full = tmpDirPath('full');
  writeFileSync(join(full, 'x'), 'x');
  const notEmpty = await run(['mount', img, full]);
  assert.equal(notEmpty.exitCode, 1);
  assert.match(notEmpty.stderr, /not empty/);
  const missing = await run(['mount', img, join(full, 'nope')]);
  assert.match(missing.stderr, /does not exist/);
  const junk = tmpImagePath('junk');
  writeFileSync(junk, new Uint8Array(4 << 20));
  const notExt4 = await run(['mount', junk, mnt]);
  assert.equal(notExt4.exitCode, 1);
  assert.match(notExt4.stderr, /EUCLEAN|superblock|magic/i);
  assert.notEqual((await sh(`mountpoint -q ${mnt}`)).exitCode, 0, 'nothing left mounted');
  // Foreground server stopped by SIGTERM (generous waits: start-up may compile the sources).
  const fg = await sh(`
    ${process.execPath} ${CLI} mount -f ${img} ${mnt} 2>${mnt}.log & pid=$!
    trap 'echo "failed at line $LINENO; server log:" >&2; cat ${mnt}.log >&2; mountpoint -q ${mnt} && umount -l ${mnt}; kill $pid 2>/dev/null || true' ERR
    for i in $(seq 600); do mountpoint -q ${mnt} && break; kill -0 $pid; sleep 0.1; done
    mountpoint -q ${mnt}
    echo data > ${mnt}/after-signal
    kill -TERM $pid; wait $pid; echo "status $?"
  `, { timeoutMs: 120_000 });
  await unmountIfMounted(mnt);
  assert.match(fg.stdout, /status 0/, `exit ${fg.exitCode}${fg.timedOut ? ' (timed out)' : ''}\n${fg.stderr}`);
  assert.notEqual((await sh(`mountpoint -q ${mnt}`)).exitCode, 0);
  await assertClean(img);
  const fs = await Ext4.open(img, { readOnly: true });
  assert.equal(await fs.readFile('/after-signal', 'utf8'), 'data\n');
  await fs.close();
});

test('a corrupt directory block fails its requests (EBADMSG/EUCLEAN), is reported once, the server keeps serving read-only and never writes', { skip }, async () => {
  const img = await freshImage('corrupt', { blockSize: 4096 });
  const fs = await Ext4.open(img);
  await fs.mkdir('/d');
  for (let i = 0; i < 5; i++) await fs.writeFile(`/d/f${i}`, `file ${i}\n`);
  await fs.writeFile('/ok', 'fine\n');
  await fs.close();
  const blocks = await shOk(`debugfs -R 'blocks /d' ${img} 2>/dev/null`);
  const blk = Number(blocks.trim().split(/\s+/)[0]);
  assert.ok(blk > 0, blocks);
  // rec_len of the first entry ('.') becomes 3: invalid (and the block checksum no longer matches).
  await shOk(`printf '\\x03\\x00' | dd of=${img} bs=1 seek=$((${blk} * 4096 + 4)) conv=notrunc status=none`);
  const before = await shOk(`sha256sum < ${img}`);
  const log: string[] = [];
  await withFuse(img, async (mnt) => {
    const r = await sh(`set +e; ls ${mnt}/d; ls ${mnt}/d; cat ${mnt}/ok; touch ${mnt}/new; echo done`);
    assert.match(r.stderr, /Structure needs cleaning|Bad message/);
    assert.match(r.stdout, /^fine$/m, 'other files still read');
    assert.match(r.stderr, /touch: .*Read-only file system/, 'no writes after a corrupt structure was met');
    assert.match(r.stdout, /done/);
  }, { log: (l) => log.push(l) });
  const reports = log.filter((l) => /failed:/.test(l));
  assert.equal(reports.length, 1, `reported once:\n${log.join('\n')}`);
  assert.match(reports[0]!, /inode|block/);
  assert.equal(await shOk(`sha256sum < ${img}`), before, 'the image was not written');
});

test('as an unprivileged user (allow_other): mode bits, sticky directories, set-id bits cleared on write', { skip: skip || (haveSetpriv() ? false : 'setpriv missing (Debian package util-linux)') }, async () => {
  const img = await freshImage('perm');
  chmodSync(tempRunDir(), 0o711); // the other user must reach the mountpoint
  await withFuse(img, async (mnt) => {
    const as = (cmd: string) => `setpriv --reuid=1000 --regid=1000 --clear-groups bash -c '${cmd}'`;
    const out = await shOk(`
      set +e
      cd ${mnt}
      mkdir sticky && chmod 1777 sticky && echo root > sticky/rootfile && chmod 666 sticky/rootfile
      echo secret > private && chmod 600 private
      ${as(`cat ${mnt}/private`)} 2>&1
      ${as(`rm ${mnt}/sticky/rootfile`)} 2>&1
      ${as(`mv ${mnt}/sticky/rootfile ${mnt}/sticky/x`)} 2>&1
      ${as(`echo mine > ${mnt}/sticky/userfile && chmod 6755 ${mnt}/sticky/userfile && stat -c %a ${mnt}/sticky/userfile`)}
      ${as(`echo more >> ${mnt}/sticky/userfile; stat -c %a ${mnt}/sticky/userfile`)}
      ${as(`chmod 6755 ${mnt}/sticky/userfile && truncate -s 1 ${mnt}/sticky/userfile; stat -c trunc:%a ${mnt}/sticky/userfile`)}
      ${as(`chmod 2745 ${mnt}/sticky/userfile && echo x >> ${mnt}/sticky/userfile; stat -c sgid:%a ${mnt}/sticky/userfile`)}
      echo r > rootsuid && chmod 6755 rootsuid && echo x >> rootsuid && stat -c root:%a rootsuid
      ${as(`rm ${mnt}/sticky/userfile && echo removed-own`)}
      ${as(`touch ${mnt}/notmine`)} 2>&1
      stat -c '%U %a' sticky/rootfile
    `);
    assert.match(out, /cat: .*private: Permission denied/);
    assert.match(out, /rm: cannot remove .*rootfile.*: Operation not permitted/);
    assert.match(out, /mv: cannot move .*: Operation not permitted/);
    assert.match(out, /^6755$/m);
    assert.match(out, /^755$/m, 'a write by the owner clears setuid and setgid');
    assert.match(out, /^trunc:755$/m, 'a truncate by the owner clears setuid and setgid');
    assert.match(out, /^sgid:2745$/m, 'setgid without group-exec stays for a writer in the group');
    assert.match(out, /^root:6755$/m, 'a write by root (CAP_FSETID) keeps the set-id bits');
    assert.match(out, /^removed-own$/m);
    assert.match(out, /touch: cannot touch .*notmine.*: Permission denied/);
    assert.match(out, /^root 666$/m);
  }, { allowOther: true });
  await assertClean(img);
});

function haveSetpriv(): boolean {
  try { return readFileSync('/usr/bin/setpriv').length > 0; } catch { return false; }
}

test('renameat2: RENAME_EXCHANGE swaps files and directories, RENAME_NOREPLACE refuses an existing target', { skip: skip || fuseSkipReason(['python3']) }, async () => {
  const img = await freshImage('exchange');
  await withFuse(img, async (mnt) => {
    const out = await shOk(`cd ${mnt}
      mkdir -p d1/sub d2 && echo one > a && echo two > d2/b && echo in-sub > d1/sub/f
      python3 - <<'PY'
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def renameat2(a, b, flags):
    r = libc.renameat2(-100, a.encode(), -100, b.encode(), flags)
    return 'ok' if r == 0 else os.strerror(ctypes.get_errno())
print('x-files', renameat2('a', 'd2/b', 2))
print('x-dirs', renameat2('d1/sub', 'd2', 2))
print('noreplace', renameat2('a', 'd1', 1))
print('x-missing', renameat2('a', 'nope', 2))
PY
      echo "a=$(cat a) d1/sub/b=$(cat d1/sub/b) d2/f=$(cat d2/f)"`);
    assert.match(out, /x-files ok/);
    assert.match(out, /x-dirs ok/);
    assert.match(out, /noreplace File exists/);
    assert.match(out, /x-missing No such file or directory/);
    assert.match(out, /^a=two d1\/sub\/b=one d2\/f=in-sub$/m, 'both pairs swapped');
  });
  await assertClean(img);
});
