// Call-by-call behaviour the kernel's ext4 has and ext4kit must match (issue 12): each test is
// the regression test of one fix, asserting bytes, errno, modes or an e2fsck verdict. The
// differential test (test/differential.test.ts) finds such differences; these pin them down.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ext4 } from '../src/node.ts';
import { e2fsck, haveE2fsprogs } from './support/oracles.ts';
import { tmpImagePath } from './support/images.ts';

const skipE2 = haveE2fsprogs() ? false : 'e2fsprogs not installed (Debian package e2fsprogs)';
if (skipE2) console.log(`# kernel-semantics: skipping e2fsck checks: ${skipE2}`);

interface Geo { blockSize: number; clusterBytes?: number }
async function fresh(g: Geo = { blockSize: 4096 }, sizeMiB = 16): Promise<{ fs: Ext4; image: string }> {
  const image = tmpImagePath('semantics');
  await Ext4.mkfs(image, {
    sizeBytes: sizeMiB << 20, blockSize: g.blockSize, timeSec: 1_700_000_000,
    ...(g.clusterBytes ? { features: 'bigalloc', clusterBytes: g.clusterBytes } : {}),
  });
  return { fs: await Ext4.open(image), image };
}

async function fsckClean(image: string): Promise<void> {
  if (skipE2) return;
  const r = await e2fsck(image);
  assert.equal(r.exitCode, 0, r.output);
}

async function errnoOf(p: Promise<unknown>): Promise<string> {
  try { await p; return 'ok'; } catch (e) { return (e as { code?: string }).code ?? String(e); }
}

// ---- (a) concurrent writers ------------------------------------------------------------------

test('six parallel appendFile calls of 7,000 bytes leave all 42,000 bytes, each run intact', async () => {
  const { fs, image } = await fresh();
  const chunks = Array.from({ length: 6 }, (_, i) => new Uint8Array(7000).fill(0x41 + i));
  await Promise.all(chunks.map((c) => fs.appendFile('/log', c)));
  const got = await fs.readFile('/log') as Uint8Array;
  assert.equal(got.length, 42_000);
  const seen = new Set<number>();
  for (let k = 0; k < 6; k++) {
    const run = got.subarray(k * 7000, (k + 1) * 7000);
    assert.ok(run.every((b) => b === run[0]), `run ${k} is not one writer's bytes`);
    seen.add(run[0]!);
  }
  assert.equal(seen.size, 6);
  await fs.close();
  await fsckClean(image);
});

for (const flags of ['a', 'w'] as const) {
  test(`five parallel fh.write(buf, 0, len, null) on one handle opened '${flags}' leave 15,000 bytes`, async () => {
    const { fs, image } = await fresh();
    const fh = await fs.open('/f', flags);
    await Promise.all(Array.from({ length: 5 }, (_, i) => fh.write(new Uint8Array(3000).fill(0x61 + i), 0, 3000, null)));
    await fh.close();
    const got = await fs.readFile('/f') as Uint8Array;
    assert.equal(got.length, 15_000);
    const firsts = new Set(Array.from({ length: 5 }, (_, k) => got[k * 3000]));
    assert.equal(firsts.size, 5, 'every write landed in its own 3,000-byte run');
    await fs.close();
    await fsckClean(image);
  });
}

test('a positioned write on an O_APPEND handle still appends (Linux ignores the position)', async () => {
  const { fs } = await fresh();
  await fs.writeFile('/f', 'abc');
  const fh = await fs.open('/f', 'a');
  await fh.write(new TextEncoder().encode('XY'), 0, 2, 0);
  await fh.close();
  assert.equal(await fs.readFile('/f', 'utf8'), 'abcXY');
  await fs.close();
});

// ---- (b) setxattr error paths ---------------------------------------------------------------

test('xattr names are checked like the kernel, argument checks before the path lookup', async () => {
  const { fs, image } = await fresh();
  await fs.writeFile('/f', 'x');
  await fs.symlink('f', '/l');
  const long = 'user.' + 'a'.repeat(251);
  assert.equal(await errnoOf(fs.setxattr('/f', 'user.', 'v')), 'EINVAL');
  assert.equal(await errnoOf(fs.setxattr('/f', 'bogus.x', 'v')), 'ENOTSUP');
  assert.equal(await errnoOf(fs.setxattr('/f', long, 'v')), 'ERANGE');
  assert.equal(await errnoOf(fs.setxattr('/nope', long, 'v')), 'ERANGE');
  assert.equal(await errnoOf(fs.setxattr('/nope', 'user.a', new Uint8Array(70_000))), 'E2BIG');
  assert.equal(await errnoOf(fs.setxattr('/nope', 'user.', 'v')), 'ENOENT');
  assert.equal(await errnoOf(fs.setxattr('/f', 'user.' + 'a'.repeat(250), 'v')), 'ok');
  assert.equal(await errnoOf(fs.setxattr('/l', 'user.a', 'v')), 'EPERM');
  assert.equal(await errnoOf(fs.setxattr('/l', 'trusted.a', 'v')), 'ok');
  assert.equal(await errnoOf(fs.getxattr('/l', 'user.a')), 'ENODATA');
  assert.equal(await errnoOf(fs.getxattr('/f', 'user.')), 'EINVAL');
  assert.equal(await errnoOf(fs.getxattr('/f', 'bogus.x')), 'ENOTSUP');
  assert.equal(await errnoOf(fs.removexattr('/f', 'user.')), 'EINVAL');
  assert.equal(await errnoOf(fs.removexattr('/f', 'user.zz')), 'ENODATA');
  assert.equal(await errnoOf(fs.setxattr('/f', 'user.big', new Uint8Array(5000))), 'ENOSPC');
  assert.deepEqual((await fs.listxattr('/f')).length, 1);
  await fs.close();
  await fsckClean(image);
});

for (const g of [{ blockSize: 4096 }, { blockSize: 4096, clusterBytes: 65536 }, { blockSize: 1024, clusterBytes: 16384 }] as Geo[]) {
  test(`an xattr set that fails with ENOSPC changes nothing: no leaked block, no bad header (${g.blockSize}-byte blocks${g.clusterBytes ? `, ${g.clusterBytes}-byte clusters` : ''})`, async () => {
    const { fs, image } = await fresh(g);
    await fs.writeFile('/f', 'x');
    const free0 = (await fs.statfs()).bfree;
    // A value that passes the size check but does not fit a block with its long name.
    const tooBig = new Uint8Array(g.blockSize - 64).fill(7);
    assert.equal(await errnoOf(fs.setxattr('/f', 'user.' + 'n'.repeat(200), tooBig)), 'ENOSPC');
    assert.equal((await fs.statfs()).bfree, free0, 'no cluster leaked');
    assert.deepEqual(await fs.listxattr('/f'), []);
    // Fill a block, then overflow it: ENOSPC, and the block still holds what it held.
    const half = new Uint8Array(Math.floor(g.blockSize * 0.6)).fill(9);
    await fs.setxattr('/f', 'user.one', half);
    assert.equal(await errnoOf(fs.setxattr('/f', 'user.two', half)), 'ENOSPC');
    assert.deepEqual(await fs.listxattr('/f'), ['user.one']);
    assert.deepEqual(await fs.getxattr('/f', 'user.one'), half);
    await fs.setxattr('/f', 'user.small', 'ok');
    assert.deepEqual((await fs.listxattr('/f')).sort(), ['user.one', 'user.small']);
    await fs.close();
    await fsckClean(image);
  });
}

// ---- (c) modes, owners, times, zero-range ----------------------------------------------------

test('a setgid directory gives new entries its group, new directories S_ISGID; mkdir ignores set-ID bits of its mode', async () => {
  const { fs, image } = await fresh();
  await fs.mkdir('/g');
  await fs.chown('/g', 0, 1234);
  await fs.chmod('/g', 0o2775);
  await fs.mkdir('/g/sub', { mode: 0o755 });
  const sub = await fs.stat('/g/sub');
  assert.equal(sub.mode, 0o42755);
  assert.equal(sub.gid, 1234);
  await fs.writeFile('/g/file', 'x', { mode: 0o644 });
  assert.equal((await fs.stat('/g/file')).gid, 1234);
  assert.equal((await fs.stat('/g/file')).mode, 0o100644);
  await fs.mkdir('/plain', { mode: 0o7777 });
  assert.equal((await fs.stat('/plain')).mode, 0o41777);
  await fs.close();
  await fsckClean(image);
});

test('chown clears S_ISUID, and S_ISGID only with group-exec, on non-directories (as the kernel, even for -1, -1)', async () => {
  const { fs } = await fresh();
  // Measured on a loop mount (Linux 6.18): mode before → after chown by root.
  const cases: Array<[number, number, number]> = [[0o6755, 0o100755, 0o46755], [0o6745, 0o102745, 0o46745], [0o2745, 0o102745, 0o42745], [0o4755, 0o100755, 0o44755], [0o2755, 0o100755, 0o42755]];
  for (const [mode, file, dir] of cases) {
    const f = `/f${mode.toString(8)}`;
    const d = `/d${mode.toString(8)}`;
    await fs.writeFile(f, '');
    await fs.chmod(f, mode);
    await fs.chown(f, -1, -1);
    assert.equal((await fs.stat(f)).mode, file, `file ${mode.toString(8)}`);
    await fs.mkdir(d);
    await fs.chmod(d, mode);
    await fs.chown(d, 5, 6);
    assert.equal((await fs.stat(d)).mode, dir, `dir ${mode.toString(8)}`);
  }
  await fs.close();
});

test('utimes stores what ext4 can hold: clamped seconds, zero ns at the limits; unchanged by a remount', async () => {
  const { fs: first, image } = await fresh();
  await first.writeFile('/t', '');
  await first.close();
  // [seconds, ns] given → [seconds, ns] stored (measured on a loop mount, 256-byte inodes).
  const cases: Array<[[number, number], [number, number]]> = [
    [[2 ** 35, 5], [15032385535, 0]], [[-(2 ** 32), 7], [-2147483648, 0]], [[2 ** 33, 123], [2 ** 33, 123]],
    [[-5, 3], [-5, 3]], [[15032385535, 999], [15032385535, 0]], [[-2147483648, 5], [-2147483648, 0]],
  ];
  for (const [[sec, nsec], [wantSec, wantNs]] of cases) {
    const fs = await Ext4.open(image);
    await fs.utimes('/t', { sec, nsec }, { sec, nsec });
    const st = await fs.stat('/t');
    assert.equal(st.mtimeNs, BigInt(wantSec) * 1_000_000_000n + BigInt(wantNs), `${sec}.${nsec}`);
    assert.equal(st.atimeNs, st.mtimeNs);
    await fs.close();
    const again = await Ext4.open(image);
    assert.equal((await again.stat('/t')).mtimeNs, st.mtimeNs, 'unchanged by a remount');
    await again.close();
  }
  await fsckClean(image);
});

test('fallocate zero-range allocates every block it touches, partial ones too (st_blocks as the kernel)', async () => {
  const { fs, image } = await fresh();
  // [offset, length, keepSize] → [size, st_blocks], measured on a 4 KiB loop mount.
  const cases: Array<[number, number, boolean, number, number]> = [
    [100, 200, false, 300, 8], [0, 8192, false, 8192, 16], [5000, 10000, false, 15000, 24], [100, 200, true, 0, 8],
  ];
  for (const [i, [off, len, keep, size, blocks]] of cases.entries()) {
    const fh = await fs.open(`/z${i}`, 'w+');
    await fs.fallocate(fh, 0x10 | (keep ? 1 : 0), off, len);
    const st = await fh.stat();
    await fh.close();
    assert.deepEqual([st.size, st.blocks], [size, blocks], `zero-range ${off}+${len}${keep ? ' keep-size' : ''}`);
    assert.equal((await fs.readFile(`/z${i}`) as Uint8Array).some((b) => b !== 0), false);
  }
  await fs.close();
  await fsckClean(image);
});

test('a positioned write on an O_APPEND handle does not move the handle position (pwrite)', async () => {
  const { fs } = await fresh();
  const fh = await fs.open('/f', 'a+');
  await fh.write(new TextEncoder().encode('hello'), 0, 5, 1000);
  const buf = new Uint8Array(5);
  const { bytesRead } = await fh.read(buf, 0, 5, null);
  assert.equal(bytesRead, 5, 'the position is still 0');
  assert.equal(new TextDecoder().decode(buf), 'hello');
  await fh.close();
  await fs.close();
});

test('link: an existing new name is EEXIST even when the source is a directory (kernel order)', async () => {
  const { fs } = await fresh();
  await fs.mkdir('/d');
  await fs.writeFile('/f', '');
  assert.equal(await errnoOf(fs.link('/d', '/f')), 'EEXIST');
  assert.equal(await errnoOf(fs.link('/d', '/f/x')), 'ENOTDIR');
  assert.equal(await errnoOf(fs.link('/d', '/new')), 'EPERM');
  await fs.close();
});

test("a handle opened 'a+' reads from the start (O_APPEND moves only writes)", async () => {
  const { fs } = await fresh();
  await fs.writeFile('/f', 'abc');
  const fh = await fs.open('/f', 'a+');
  const buf = new Uint8Array(3);
  assert.equal((await fh.read(buf, 0, 3, null)).bytesRead, 3);
  assert.equal(new TextDecoder().decode(buf), 'abc');
  await fh.write(new TextEncoder().encode('de'));
  assert.equal(await fs.readFile('/f', 'utf8'), 'abcde');
  await fh.close();
  await fs.close();
});

test('statfs bavail leaves out the root reserve and the reserved metadata pool, as the kernel reports it', async () => {
  const { fs } = await fresh({ blockSize: 4096 }, 16);
  const sf = await fs.statfs();
  const pool = Math.min(Math.floor(4096 / 50), 4096); // 16 MiB of 4 KiB clusters: 2 %
  assert.equal(sf.bavail, sf.bfree - fs.info().reservedBlocks - pool);
  await fs.close();
});

test('rename onto an ancestor of the source is ENOTEMPTY, before any type check (kernel order)', async () => {
  const { fs, image } = await fresh();
  await fs.mkdir('/a/x/y', { recursive: true });
  await fs.writeFile('/a/f', '');
  assert.equal(await errnoOf(fs.rename('/a/f', '/a')), 'ENOTEMPTY');
  assert.equal(await errnoOf(fs.rename('/a/x/y', '/a')), 'ENOTEMPTY');
  assert.equal(await errnoOf(fs.rename('/a', '/a/x/z')), 'EINVAL');
  assert.equal(await errnoOf(fs.rename('/a/x', '/a/x')), 'ok');
  await fs.close();
  await fsckClean(image);
});

test("renaming a directory over an empty directory in another parent keeps the new parent's link count", async () => {
  const { fs, image } = await fresh();
  await fs.mkdir('/a/y', { recursive: true });
  await fs.mkdir('/c');
  await fs.rename('/c', '/a/y');
  assert.equal((await fs.stat('/a')).nlink, 3);
  assert.equal((await fs.stat('/')).nlink, 4); // ., .., lost+found's and a's '..'
  await fs.close();
  await fsckClean(image);
});
