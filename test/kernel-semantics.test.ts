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
