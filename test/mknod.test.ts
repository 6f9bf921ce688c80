// Ext4.mknod: FIFOs, sockets, character and block devices. Device numbers are stored as the
// kernel's ext4 stores them (checked byte for byte against an image the kernel wrote: old
// 16-bit form in i_block[0] when major and minor fit in 8 bits, else the 32-bit form in
// i_block[1]); stat's rdev, readdir's types, e2fsck -fn, debugfs and a kernel mount agree.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile } from 'node:fs/promises';
import { Ext4, MemoryDevice } from '../src/node.ts';
import { Ext4Error } from '../src/errors/ext4-error.ts';
import { decodeDeviceNumber, encodeDeviceNumber, makeDeviceNumber } from '../src/format/device-number.ts';
import { u32 } from '../src/util/bytes.ts';
import { debugfs, e2fsck, haveE2fsprogs, loopMountSupport, runTool, withLoopMount } from './support/oracles.ts';
import { cleanupTemp, tmpImagePath } from './support/images.ts';

after(() => cleanupTemp());

/** name, S_IF* type, major, minor. */
const NODES: Array<[string, number, number, number]> = [
  ['c-small', 0o020000, 1, 3], ['c-big-major', 0o020000, 300, 5], ['b-small', 0o060000, 8, 1],
  ['b-big-minor', 0o060000, 259, 100_000], ['c-zero', 0o020000, 0, 0], ['c-max', 0o020000, 4095, 0xfffff],
  ['b-edge', 0o060000, 255, 255], ['b-minor256', 0o060000, 0, 256], ['fifo', 0o010000, 0, 0], ['sock', 0o140000, 0, 0],
];

test('device numbers: old form for 8-bit major and minor, the 32-bit form otherwise, round trip', () => {
  const ib = new Uint8Array(60).fill(0xee);
  encodeDeviceNumber(ib, makeDeviceNumber(8, 1));
  assert.equal(u32(ib, 0), 0x0801);
  assert.equal(u32(ib, 4), 0);
  assert.ok(ib.every((b, i) => i < 4 || b === 0), 'the rest of i_block is cleared');
  encodeDeviceNumber(ib, makeDeviceNumber(259, 100_000));
  assert.equal(u32(ib, 0), 0);
  assert.equal(u32(ib, 4), 0x186103a0);
  for (const [, , major, minor] of NODES) {
    encodeDeviceNumber(ib, makeDeviceNumber(major, minor));
    assert.equal(decodeDeviceNumber(ib), makeDeviceNumber(major, minor), `${major}:${minor}`);
  }
});

test('Ext4.mknod: types, rdev, readdir types, errors', async () => {
  const dev = new MemoryDevice(new Uint8Array(16 << 20));
  await Ext4.mkfs(dev, { sizeBytes: 16 << 20, timeSec: 1_700_000_000 });
  const fs = await Ext4.open(dev);
  fs.umask = 0o022;
  for (const [name, type, major, minor] of NODES) await fs.mknod(`/${name}`, type | 0o666, makeDeviceNumber(major, minor));
  await fs.mknod('/plain', 0o100600);
  const c = await fs.stat('/c-big-major');
  assert.ok(c.isCharacterDevice());
  assert.equal(c.rdev, makeDeviceNumber(300, 5));
  assert.equal(c.mode, 0o020644, 'umask applied');
  assert.equal(c.size, 0);
  assert.equal(c.blocks, 0);
  assert.equal((await fs.stat('/fifo')).rdev, 0, 'a FIFO has no device number');
  assert.ok((await fs.stat('/plain')).isFile());
  const types = Object.fromEntries((await fs.readdir('/', { withFileTypes: true })).map((d) => [d.name,
    d.isCharacterDevice() ? 'c' : d.isBlockDevice() ? 'b' : d.isFIFO() ? 'p' : d.isSocket() ? 's' : d.isFile() ? 'f' : 'd']));
  assert.deepEqual([types['c-small'], types['b-small'], types['fifo'], types['sock'], types['plain']], ['c', 'b', 'p', 's', 'f']);
  const code = async (p: Promise<unknown>) => { try { await p; return 'ok'; } catch (e) { if (e instanceof Ext4Error) return e.code; throw e; } };
  assert.equal(await code(fs.mknod('/fifo', 0o010644)), 'EEXIST');
  assert.equal(await code(fs.mknod('/nope/x', 0o010644)), 'ENOENT');
  assert.equal(await code(fs.mknod('/bad', 0o170644)), 'EINVAL');
  assert.equal(await code(fs.mknod('/fifo/x', 0o010644)), 'ENOTDIR');
  await fs.unlink('/c-small');
  await fs.rename('/sock', '/sock2');
  await fs.checkInvariants();
  await fs.close();
  const ro = await Ext4.open(dev, { readOnly: true });
  assert.equal((await ro.stat('/b-big-minor')).rdev, makeDeviceNumber(259, 100_000));
  await ro.close();
});

const loop = haveE2fsprogs() ? await loopMountSupport() : { ok: false, reason: 'e2fsprogs missing (Debian package e2fsprogs)' };
const kernelSkip = loop.ok ? false : `kernel comparison needs loop mounts: ${loop.reason}`;
if (kernelSkip) console.log(`# mknod: skipping: ${kernelSkip}`);

test('the same nodes made by the kernel and by Ext4.mknod: identical i_block bytes, debugfs and kernel stat agree, e2fsck clean', { skip: kernelSkip }, async () => {
  const ours = tmpImagePath('mknod-ours');
  const theirs = tmpImagePath('mknod-kernel');
  await Ext4.mkfs(ours, { sizeBytes: 32 << 20, timeSec: 1_700_000_000 });
  await copyFile(ours, theirs);
  await withLoopMount(theirs, async (mnt) => {
    for (const [name, type, major, minor] of NODES) {
      const kind = { 0o020000: 'c', 0o060000: 'b', 0o010000: 'p' }[type];
      const r = kind
        ? await runTool('mknod', ['-m', '640', `${mnt}/${name}`, kind, ...(kind === 'p' ? [] : [String(major), String(minor)])])
        : await runTool('python3', ['-c', `import socket,os; s=socket.socket(socket.AF_UNIX); s.bind('${mnt}/${name}'); os.chmod('${mnt}/${name}', 0o640)`]);
      assert.equal(r.exitCode, 0, r.stderr);
    }
  });
  const fs = await Ext4.open(ours);
  fs.umask = 0;
  for (const [name, type, major, minor] of NODES) await fs.mknod(`/${name}`, type | 0o640, makeDeviceNumber(major, minor));
  await fs.close();
  const fsck = await e2fsck(ours);
  assert.equal(fsck.exitCode, 0, fsck.output);
  for (const [name] of NODES) {
    const iblock = (img: string) => debugfs(img, `inode_dump -b /${name}`);
    const typeLine = async (img: string) => (await debugfs(img, `stat /${name}`)).split('\n').filter((l) => /Type:|[Dd]evice major/.test(l)).map((l) => l.replace(/Inode: \d+\s+/, '')).join('\n');
    assert.match(await iblock(ours), /^0000 /m);
    assert.equal(await iblock(ours), await iblock(theirs), `i_block of ${name}`);
    assert.equal(await typeLine(ours), await typeLine(theirs), `debugfs stat of ${name}`);
  }
  const statAll = (mnt: string) => runTool('bash', ['-c', `cd ${mnt} && stat -c '%n %F %t %T %a %s' ${NODES.map((n) => n[0]).join(' ')}`]);
  const a = await withLoopMount(ours, statAll, { readOnly: true });
  const b = await withLoopMount(theirs, statAll, { readOnly: true });
  assert.equal(a.exitCode, 0, a.stderr);
  assert.equal(a.stdout, b.stdout);
  assert.match(a.stdout, /^c-big-major character special file 12c 5 640 0$/m);
});
