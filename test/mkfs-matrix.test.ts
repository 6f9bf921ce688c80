// ext4kit's mkfs across geometries, checked by e2fsprogs and the kernel:
//   block size {1024, 4096} × cluster ratio {1, 4, 16} × size {8 MiB, 1 GiB, 2 TiB (sparse)}
//   × features {default, ^has_journal, quota}.
// Every image passes `e2fsck -fn` and `dumpe2fs -h` shows the requested block size, cluster size,
// block count and features. Where loop mounts work, non-quota images get a kernel write workload
// (mkdir, a 1 MiB random file, small files, sync, umount), then `e2fsck -fn` again, and ext4kit
// reads the kernel's files back. Images are deleted right after their test.
//
// Cost: the full matrix (54 images) takes 2 min 18 s alone on the 2-core reference machine but
// 6.5 min beside the other test files, nearly all of it in six cells: 2 TiB with 1 KiB blocks and
// ratio 1 or 4 (131 072 to 262 144 groups). All 54 run by default; MKFS_MATRIX=quick skips
// those six (48 images) and still has every block size × ratio × feature.
//
// Also: mkfs is deterministic for fixed options and timeSec, and an ext4kit-made image opens with
// Ext4.open and info() agrees with `dumpe2fs -h`.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { Ext4 } from '../src/node.ts';
import { cleanupTemp, tmpImagePath } from './support/images.ts';
import { dumpe2fsHeader, e2fsck, haveE2fsprogs, loopMountSupport, runTool, toolPath, withLoopMount } from './support/oracles.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;
// The full matrix is the default (mkfs of 2 TiB with 1 KiB blocks now takes a few seconds);
// MKFS_MATRIX=quick leaves out the six slowest images for local runs.
const FULL = process.env.MKFS_MATRIX !== 'quick';
const TIME_SEC = 1_700_000_000;

type Feature = 'default' | '^has_journal' | 'quota';
interface Cell { bs: 1024 | 4096; ratio: 1 | 4 | 16; size: number; feature: Feature; mount: boolean }

const SIZES = [8 * MiB, 1 * GiB, 2 * TiB];
const FEATURES: Feature[] = ['default', '^has_journal', 'quota'];
const sizeName = (s: number) => (s >= TiB ? `${s / TiB} TiB` : s >= GiB ? `${s / GiB} GiB` : `${s / MiB} MiB`);

/** The cells to run; `mount` marks those that also get the kernel write workload. */
function cells(): Cell[] {
  const out: Cell[] = [];
  for (const bs of [1024, 4096] as const) {
    for (const ratio of [1, 4, 16] as const) {
      for (const feature of FEATURES) {
        for (const size of SIZES) {
          // The slow cells: 2 TiB with 1 KiB blocks and ratio 1 or 4 (131 072 to 262 144 groups).
          if (!FULL && size === 2 * TiB && bs === 1024 && ratio < 16) continue;
          // One 2 TiB image per block size is mounted (the cheapest one of that block size).
          const mount2t = feature === 'default' && ratio === (bs === 1024 ? 16 : 1);
          out.push({ bs, ratio, size, feature, mount: feature !== 'quota' && (size < TiB || mount2t) });
        }
      }
    }
  }
  return out;
}

function mkfsOptions(c: Cell) {
  const feats = [c.ratio > 1 ? 'bigalloc' : '', c.feature === 'default' ? '' : c.feature].filter(Boolean).join(',');
  return {
    sizeBytes: c.size, blockSize: c.bs, timeSec: TIME_SEC,
    ...(c.ratio > 1 ? { clusterBytes: c.bs * c.ratio } : {}),
    ...(feats ? { features: feats } : {}),
  };
}

const skipTools = haveE2fsprogs() ? false : 'e2fsprogs not installed';
if (skipTools) console.log(`mkfs-matrix.test.ts: skipped: ${skipTools}`);
let loop: { ok: boolean; reason?: string } = { ok: false, reason: 'not probed' };
const timings: Array<{ name: string; mkfs: number; fsck: number; mount: number; total: number }> = [];
const t0 = performance.now();

before(async () => {
  loop = await loopMountSupport();
  if (!loop.ok) console.log(`mkfs-matrix.test.ts: kernel write checks skipped: ${loop.reason}`);
});
after(async () => {
  await cleanupTemp();
  if (timings.length === 0) return;
  const lines = timings.map((t) => `  ${t.name.padEnd(44)} mkfs ${ms(t.mkfs)}  e2fsck ${ms(t.fsck)}  mount+write ${ms(t.mount)}  total ${ms(t.total)}`);
  const sum = timings.reduce((n, t) => n + t.total, 0);
  console.log(`mkfs matrix (${FULL ? 'full' : 'quick; the default adds 2 TiB × 1 KiB × ratio 1 and 4'}): ${timings.length} images, ${(sum / 1000).toFixed(1)} s in image tests, ${((performance.now() - t0) / 1000).toFixed(1)} s in all\n${lines.join('\n')}`);
});
const ms = (x: number) => `${(x / 1000).toFixed(2).padStart(6)} s`;

async function fsckClean(path: string, what: string): Promise<void> {
  const r = await e2fsck(path, { timeoutMs: 600_000 });
  assert.equal(r.exitCode, 0, `e2fsck -fn ${what}: exit ${r.exitCode}\n${r.output.slice(-3000)}`);
}

function featureList(h: Record<string, string>): string[] {
  return (h['Filesystem features'] ?? '').split(/\s+/).filter(Boolean);
}

/** Kernel workload: a directory, one 1 MiB random file and several small ones; then read back with ext4kit. */
async function kernelWrite(path: string): Promise<void> {
  const big = randomBytes(MiB);
  const small = Array.from({ length: 6 }, (_, i) => randomBytes(1 + i * 700));
  await withLoopMount(path, async (mnt) => {
    await mkdir(join(mnt, 'd/sub'), { recursive: true });
    await writeFile(join(mnt, 'd/big.bin'), big);
    for (const [i, b] of small.entries()) await writeFile(join(mnt, `d/sub/small-${i}`), b);
    const s = await runTool(toolPath('sync'), [], { timeoutMs: 60_000 });
    assert.equal(s.exitCode, 0, 'sync');
  });
  await fsckClean(path, 'after kernel writes');
  const fs = await Ext4.open(path, { readOnly: true });
  try {
    assert.ok(Buffer.from(await fs.readFile('/d/big.bin')).equals(big), 'ext4kit reads the kernel-written 1 MiB file');
    for (const [i, b] of small.entries()) assert.ok(Buffer.from(await fs.readFile(`/d/sub/small-${i}`)).equals(b), `small-${i}`);
  } finally {
    await fs.close();
  }
}

describe('mkfs matrix: e2fsck -fn clean, dumpe2fs agrees, the kernel can write', { skip: skipTools }, () => {
  for (const c of cells()) {
    const name = `${c.bs} B blocks, ratio ${c.ratio}, ${sizeName(c.size)}, ${c.feature}`;
    test(name, { timeout: 900_000 }, async () => {
      const path = tmpImagePath(`mkfs-${c.bs}-${c.ratio}-${c.size}-${c.feature}`);
      const t = { name, mkfs: 0, fsck: 0, mount: 0, total: 0 };
      const start = performance.now();
      try {
        const res = await Ext4.mkfs(path, mkfsOptions(c));
        t.mkfs = performance.now() - start;
        const expectBlocks = Math.floor(c.size / c.bs) - (Math.floor(c.size / c.bs) % c.ratio);
        assert.equal(res.blocksCount, expectBlocks);
        const t1 = performance.now();
        await fsckClean(path, name);
        t.fsck = performance.now() - t1;

        const h = await dumpe2fsHeader(path);
        const feats = featureList(h);
        assert.equal(Number(h['Block size']), c.bs, 'block size');
        assert.equal(Number(h['Block count']), expectBlocks, 'block count');
        if (c.ratio > 1) {
          assert.ok(feats.includes('bigalloc'), `bigalloc in ${feats}`);
          assert.equal(Number(h['Cluster size']), c.bs * c.ratio, 'cluster size');
        } else {
          assert.ok(!feats.includes('bigalloc'), `no bigalloc in ${feats}`);
          assert.equal(Number(h['Fragment size'] ?? h['Cluster size']), c.bs, 'cluster (fragment) size');
        }
        if (c.feature === '^has_journal') assert.ok(!feats.includes('has_journal'), `no has_journal in ${feats}`);
        else assert.ok(feats.includes('has_journal'), `has_journal in ${feats}`);
        if (c.feature === 'quota') assert.ok(feats.includes('quota'), `quota in ${feats}`);
        for (const f of ['extent', '64bit', 'flex_bg', 'metadata_csum']) assert.ok(feats.includes(f), `${f} in ${feats}`);

        if (c.mount && loop.ok) {
          const t2 = performance.now();
          await kernelWrite(path);
          t.mount = performance.now() - t2;
        }
      } finally {
        t.total = performance.now() - start;
        timings.push(t);
        await rm(path, { force: true });
      }
    });
  }
});

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

describe('mkfs determinism and info() against dumpe2fs', { skip: skipTools }, () => {
  const variants = [
    { sizeBytes: 64 * MiB, blockSize: 4096, timeSec: TIME_SEC, label: 'det' },
    { sizeBytes: 16 * MiB, blockSize: 1024, features: 'bigalloc,quota', clusterBytes: 4096, timeSec: TIME_SEC },
  ];
  for (const opts of variants) {
    test(`same options and timeSec give identical bytes: ${JSON.stringify(opts)}`, async () => {
      const a = tmpImagePath('det-a');
      const b = tmpImagePath('det-b');
      try {
        const ra = await Ext4.mkfs(a, opts);
        const rb = await Ext4.mkfs(b, opts);
        assert.deepEqual(ra, rb);
        assert.equal((await stat(a)).size, (await stat(b)).size);
        assert.equal(await sha256File(a), await sha256File(b));
        // And a different time gives a different image (the time is really used).
        await Ext4.mkfs(b, { ...opts, timeSec: TIME_SEC + 1 });
        assert.notEqual(await sha256File(a), await sha256File(b));
      } finally {
        await rm(a, { force: true });
        await rm(b, { force: true });
      }
    });
  }

  test('the MkfsResult lists the features written, as dumpe2fs shows them', async () => {
    const path = tmpImagePath('features');
    try {
      const res = await Ext4.mkfs(path, { sizeBytes: 64 * MiB, blockSize: 1024, features: 'bigalloc,quota', clusterBytes: 4096, timeSec: TIME_SEC });
      const feats = featureList(await dumpe2fsHeader(path));
      assert.deepEqual([...res.features].sort(), feats.sort());
    } finally {
      await rm(path, { force: true });
    }
  });

  for (const opts of [
    { sizeBytes: 1 * GiB, blockSize: 4096, timeSec: TIME_SEC, label: 'info-4k' },
    { sizeBytes: 32 * MiB, blockSize: 1024, features: 'bigalloc,^has_journal', clusterBytes: 16 * KiB, timeSec: TIME_SEC },
  ] as const) {
    test(`info() matches dumpe2fs -h: ${JSON.stringify(opts)}`, async () => {
      const path = tmpImagePath('info');
      try {
        await Ext4.mkfs(path, opts);
        const h = await dumpe2fsHeader(path);
        const fs = await Ext4.open(path, { readOnly: true });
        try {
          const i = fs.info();
          assert.equal(i.blocksCount, Number(h['Block count']), 'block count');
          assert.equal(i.inodesCount, Number(h['Inode count']), 'inode count');
          assert.equal(i.freeBlocks, Number(h['Free blocks']), 'free blocks');
          assert.equal(i.freeInodes, Number(h['Free inodes']), 'free inodes');
          assert.equal(i.reservedBlocks, Number(h['Reserved block count']), 'reserved blocks');
          assert.equal(i.blockSize, Number(h['Block size']), 'block size');
          assert.equal(i.clusterSize, Number(h['Cluster size'] ?? h['Fragment size']), 'cluster size');
          assert.equal(i.inodesPerGroup, Number(h['Inodes per group']), 'inodes per group');
          assert.equal(i.blocksPerGroup, Number(h['Blocks per group']), 'blocks per group');
          assert.equal(i.firstDataBlock, Number(h['First block']), 'first block');
          assert.equal(i.inodeSize, Number(h['Inode size']), 'inode size');
          assert.equal(i.uuid, h['Filesystem UUID'], 'UUID');
          assert.equal(i.label, h['Filesystem volume name'] === '<none>' ? '' : h['Filesystem volume name'], 'label');
          assert.deepEqual([...i.features].sort(), featureList(h).sort(), 'features');
          assert.equal(i.forcedReadOnly, undefined);
        } finally {
          await fs.close();
        }
      } finally {
        await rm(path, { force: true });
      }
    });
  }
});
