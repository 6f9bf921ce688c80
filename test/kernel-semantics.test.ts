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
