// Writes of a megabyte and more: runs of new pages share one buffer, full-size buffers are
// recycled across files, and writeback hands page runs to the device without gathering them.
// Random sequences of large writes, overwrites, truncates (also up), punches and writeback
// passes (some running while other writes go on) must read back exactly as a byte model,
// before close and after a read-only reopen, and leave an image e2fsck accepts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ext4, MemoryDevice } from '../src/node.ts';
import type { Ext4WritableHandle } from '../src/api/ext4.ts';
import { e2fsck, haveE2fsprogs } from './support/oracles.ts';

const MiB = 1 << 20;
const RUNS = Number(process.env.LARGE_WRITE_RUNS ?? 5);

type Op =
  | { kind: 'write'; file: number; offset: number; len: number; seed: number }
  | { kind: 'truncate'; file: number; len: number }
  | { kind: 'punch'; file: number; offset: number; len: number }
  | { kind: 'writeback' }
  | { kind: 'racing'; file: number; offset: number; len: number; seed: number }
  | { kind: 'sync' };

const paths = ['/a', '/b', '/c'];

function pattern(seed: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  let x = seed | 1;
  for (let i = 0; i < len; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; out[i] = x & 0xff; }
  return out;
}

function opArb(): fc.Arbitrary<Op> {
  const file = fc.nat(paths.length - 1);
  const offset = fc.oneof(fc.constantFrom(0, 4096, MiB, MiB + 100, 3 * MiB - 1), fc.nat(5 * MiB));
  const len = fc.oneof(fc.constantFrom(MiB, MiB - 100, 2 * MiB + 4096, 4 * MiB), fc.integer({ min: 1, max: 3 * MiB }));
  return fc.oneof(
    { weight: 6, arbitrary: fc.record({ kind: fc.constant('write' as const), file, offset, len, seed: fc.nat() }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('truncate' as const), file, len: fc.nat(6 * MiB) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('punch' as const), file, offset, len }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('writeback' as const) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('racing' as const), file, offset, len, seed: fc.nat() }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('sync' as const) }) },
  );
}

function resize(d: Uint8Array, len: number): Uint8Array {
  if (len === d.length) return d;
  const out = new Uint8Array(len);
  out.set(d.subarray(0, Math.min(len, d.length)));
  return out;
}

async function withFile(fs: Ext4, p: string, f: (fh: Ext4WritableHandle) => Promise<void>): Promise<void> {
  const fh = await fs.open(p, 'r+') as Ext4WritableHandle;
  try { await f(fh); } finally { await fh.close(); }
}

for (const blockSize of [4096, 1024]) {
  test(`large writes read back exactly (bs=${blockSize})`, { timeout: 600_000 }, async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'ext4kit-large-'));
    try {
      await fc.assert(fc.asyncProperty(fc.array(opArb(), { minLength: 4, maxLength: 14 }), async (ops) => {
        const dev = new MemoryDevice(64 * MiB);
        await Ext4.mkfs(dev, { blockSize, timeSec: 1_700_000_000, deviceZeroed: true });
        const fs = await Ext4.open(dev);
        const model: Uint8Array[] = paths.map(() => new Uint8Array(0));
        for (const p of paths) await fs.writeFile(p, new Uint8Array(0));
        for (const [i, op] of ops.entries()) {
          try {
            if (op.kind === 'write' || op.kind === 'racing') {
              const data = pattern(op.seed, op.len);
              const write = withFile(fs, paths[op.file]!, async (fh) => { await fh.write(data, 0, data.length, op.offset); });
              // A writeback pass on either side of the write, running while it goes on.
              if (op.kind === 'racing') await Promise.all([fs.writebackPass(), write, fs.writebackPass()]);
              else await write;
              const m = resize(model[op.file]!, Math.max(model[op.file]!.length, op.offset + op.len));
              m.set(data, op.offset);
              model[op.file] = m;
            } else if (op.kind === 'truncate') {
              await fs.truncate(paths[op.file]!, op.len);
              model[op.file] = resize(model[op.file]!, op.len);
            } else if (op.kind === 'punch') {
              await withFile(fs, paths[op.file]!, (fh) => fs.fallocate(fh, { punchHole: true, keepSize: true }, op.offset, op.len));
              model[op.file]!.fill(0, op.offset, op.offset + op.len);
            } else if (op.kind === 'writeback') {
              await fs.writebackPass();
            } else {
              await fs.sync();
            }
            await fs.checkInvariants();
          } catch (e) {
            (e as Error).message = `step ${i} ${JSON.stringify(op)}: ${(e as Error).message}`;
            throw e;
          }
        }
        const check = async (f: Ext4, where: string): Promise<void> => {
          for (const [k, p] of paths.entries()) {
            const got = await f.readFile(p);
            assert.equal(got.length, model[k]!.length, `${where}: size of ${p}`);
            assert.ok(Buffer.from(got).equals(Buffer.from(model[k]!)), `${where}: contents of ${p}`);
          }
        };
        await check(fs, 'before close');
        await fs.close();
        const again = await Ext4.open(new MemoryDevice(dev.bytes.slice()), { readOnly: true });
        await check(again, 'after reopen');
        await again.close();
        if (haveE2fsprogs()) {
          const img = join(tmp, 'large.img');
          writeFileSync(img, dev.bytes);
          const r = await e2fsck(img);
          assert.equal(r.exitCode, 0, `e2fsck after ${JSON.stringify(ops)}:\n${r.output}`);
        }
      }), { numRuns: RUNS, endOnFailure: true });
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
}

test('a recycled page buffer never shows old bytes past the end of a write', async () => {
  const dev = new MemoryDevice(64 * MiB);
  await Ext4.mkfs(dev, { timeSec: 1_700_000_000, deviceZeroed: true });
  const fs = await Ext4.open(dev);
  // Two full runs of 0xee reach the disk: their buffers go back to the pool.
  await fs.writeFile('/old', new Uint8Array(2 * MiB).fill(0xee));
  await fs.sync();
  // Each new write ends 100 bytes into its last block, in a run that takes a recycled buffer.
  await fs.writeFile('/grown', new Uint8Array(MiB - 100).fill(1));
  await fs.truncate('/grown', MiB);
  await fs.writeFile('/gap', new Uint8Array(0));
  await withFile(fs, '/gap', async (fh) => {
    await fh.write(new Uint8Array(MiB - 100).fill(2), 0, MiB - 100, 0);
    await fh.write(new Uint8Array(10).fill(3), 0, 10, MiB + 50);
  });
  const expectGrown = new Uint8Array(MiB).fill(1, 0, MiB - 100);
  const expectGap = new Uint8Array(MiB + 60).fill(2, 0, MiB - 100).fill(3, MiB + 50);
  for (const when of ['cached', 'written']) {
    assert.ok(Buffer.from(await fs.readFile('/grown')).equals(expectGrown), `${when}: /grown`);
    assert.ok(Buffer.from(await fs.readFile('/gap')).equals(expectGap), `${when}: /gap`);
    await fs.sync();
  }
  await fs.close();
});
