// Model-based random tests of the write path: sequences of operations against an in-memory
// model, checkInvariants() after every step, then close(), e2fsck -fn, and a fresh read-only
// mount (plus debugfs) must read back exactly the model.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { writeFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ext4, MemoryDevice } from '../src/node.ts';
import { Ext4Error } from '../src/errors/ext4-error.ts';
import type { Ext4WritableHandle } from '../src/api/ext4.ts';
import { e2fsck, debugfs, haveE2fsprogs } from './support/oracles.ts';

const skip = haveE2fsprogs() ? false : 'e2fsprogs not installed';
const RUNS = Number(process.env.MODEL_RUNS ?? 6);
const tmp = mkdtempSync(join(tmpdir(), 'ext4kit-model-'));

type Op =
  | { kind: 'write'; file: number; offset: number; len: number; seed: number }
  | { kind: 'import'; file: number; len: number; seed: number; zeroBlocks: number[]; pieceBytes: number }
  | { kind: 'truncate'; file: number; len: number }
  | { kind: 'punch'; file: number; offset: number; len: number }
  | { kind: 'zero'; file: number; offset: number; len: number }
  | { kind: 'falloc'; file: number; offset: number; len: number; keep: boolean }
  | { kind: 'unlink'; file: number }
  | { kind: 'rename'; from: number; to: number }
  | { kind: 'link'; from: number; to: number }
  | { kind: 'mkdir'; dir: number }
  | { kind: 'rmdir'; dir: number }
  | { kind: 'symlink'; file: number; target: string }
  | { kind: 'fsync'; file: number }
  | { kind: 'sync' }
  | { kind: 'writeback' };

const FILES = 6;
const DIRS = 3;
const filePath = (i: number) => (i % 2 === 0 ? `/f${i}` : `/d${i % DIRS}/f${i}`);

function opArb(maxOffset: number): fc.Arbitrary<Op> {
  const file = fc.nat(FILES - 1);
  const offset = fc.oneof(fc.nat(maxOffset), fc.nat(8192), fc.constantFrom(0, 1023, 1024, 4095, 4096, 65536));
  const len = fc.oneof(fc.integer({ min: 1, max: 5000 }), fc.integer({ min: 1, max: 200_000 }));
  return fc.oneof(
    { weight: 8, arbitrary: fc.record({ kind: fc.constant('write' as const), file, offset, len, seed: fc.nat() }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('import' as const), file, len: fc.oneof(fc.nat(5000), fc.nat(200_000)), seed: fc.nat(), zeroBlocks: fc.array(fc.nat(60), { maxLength: 6 }), pieceBytes: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 70_000 })) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('truncate' as const), file, len: fc.oneof(fc.nat(maxOffset), fc.constant(0)) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('punch' as const), file, offset, len }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('zero' as const), file, offset, len }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('falloc' as const), file, offset, len, keep: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('unlink' as const), file }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('rename' as const), from: file, to: file }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('link' as const), from: file, to: file }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('mkdir' as const), dir: fc.nat(DIRS - 1) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('rmdir' as const), dir: fc.nat(DIRS - 1) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('symlink' as const), file, target: fc.oneof(fc.constant('short'), fc.constant('x'.repeat(300))) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('fsync' as const), file }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('sync' as const) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('writeback' as const) }) },
  );
}

function pattern(seed: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  let x = seed | 1;
  for (let i = 0; i < len; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; out[i] = x & 0xff; }
  return out;
}

/** The model: file contents by path (hard links share one buffer holder), dirs, symlinks. */
class Model {
  files = new Map<string, { data: Uint8Array }>();
  dirs = new Set<string>(['/']);
  links = new Map<string, string>();
  exists(p: string) { return this.files.has(p) || this.dirs.has(p) || this.links.has(p); }
  parentOk(p: string) { return this.dirs.has(p.slice(0, p.lastIndexOf('/')) || '/'); }
}

function resize(d: Uint8Array, len: number): Uint8Array {
  if (d.length === len) return d;
  const out = new Uint8Array(len);
  out.set(d.subarray(0, Math.min(len, d.length)));
  return out;
}

/** Applies `op` to the filesystem and the model; errors expected by the model are tolerated. */
async function apply(fs: Ext4, m: Model, op: Op): Promise<void> {
  const expectErr = async (fn: () => Promise<unknown>, ok: boolean) => {
    try { await fn(); } catch (e) {
      if (!ok && e instanceof Ext4Error) return false;
      throw e;
    }
    if (!ok) throw new Error(`${JSON.stringify(op)} succeeded but the model expected an error`);
    return true;
  };
  switch (op.kind) {
    case 'write': {
      const p = filePath(op.file);
      const ok = m.parentOk(p) && !m.dirs.has(p) && !m.links.has(p);
      if (!ok) return;
      const data = pattern(op.seed, op.len);
      const fh = await fs.open(p, 'r+', 0o644).catch(async (e) => {
        if (e instanceof Ext4Error && e.code === 'ENOENT') return fs.open(p, 'w', 0o644);
        throw e;
      }) as Ext4WritableHandle;
      try {
        await fh.write(data, 0, data.length, op.offset);
      } catch (e) {
        await fh.close();
        if (e instanceof Ext4Error && (e.code === 'ENOSPC' || e.code === 'EDQUOT')) { if (!m.files.has(p)) m.files.set(p, { data: new Uint8Array(0) }); return; }
        throw e;
      }
      await fh.close();
      const f = m.files.get(p) ?? { data: new Uint8Array(0) };
      f.data = resize(f.data, Math.max(f.data.length, op.offset + op.len));
      f.data.set(data, op.offset);
      m.files.set(p, f);
      return;
    }
    case 'import': {
      // A whole new file in one call (allocated at once); zeroed 1 KiB blocks become holes.
      const p = filePath(op.file);
      const data = pattern(op.seed, op.len);
      for (const z of op.zeroBlocks) data.fill(0, z * 1024, (z + 1) * 1024);
      const ok = m.parentOk(p) && !m.exists(p);
      try {
        // pieceBytes > 0: the contents arrive in pieces of that size (any size: not whole blocks).
        const step = op.pieceBytes;
        async function* pieces(): AsyncGenerator<Uint8Array> {
          for (let at = 0; at < data.length; at += step) yield data.slice(at, at + step);
        }
        await fs.importFile(p, step ? pieces() : data, { mode: 0o640, uid: 0, gid: 0, mtime: { sec: 1_700_000_000, nsec: 5 }, sparse: true });
      } catch (e) {
        if (ok && e instanceof Ext4Error && (e.code === 'ENOSPC' || e.code === 'EDQUOT')) { m.files.set(p, { data: new Uint8Array(0) }); return; }
        if (!ok && e instanceof Ext4Error) return;
        throw e;
      }
      if (!ok) throw new Error(`${JSON.stringify(op)} succeeded but the model expected an error`);
      const st = await fs.stat(p);
      assert.equal(st.mtimeMs, 1_700_000_000_000);
      assert.equal(st.mode & 0o7777, 0o640);
      m.files.set(p, { data });
      return;
    }
    case 'truncate': {
      const p = filePath(op.file);
      const f = m.files.get(p);
      await expectErr(() => fs.truncate(p, op.len), !!f);
      if (f) f.data = resize(f.data, op.len);
      return;
    }
    case 'punch': case 'zero': case 'falloc': {
      const p = filePath(op.file);
      const f = m.files.get(p);
      if (!f) return;
      const fh = await fs.open(p, 'r+') as Ext4WritableHandle;
      try {
        const mode = op.kind === 'punch' ? 0x3 : op.kind === 'zero' ? 0x10 : op.keep ? 0x1 : 0;
        await fh.fallocate(mode, op.offset, op.len);
      } catch (e) {
        if (e instanceof Ext4Error && (e.code === 'ENOSPC' || e.code === 'EDQUOT')) {
          if (op.kind === 'zero') {
            // Zero-range may have punched before failing to allocate: the range reads as zeros.
            const end = Math.min(f.data.length, op.offset + op.len);
            if (op.offset < end) f.data.fill(0, op.offset, end);
          }
          return;
        }
        throw e;
      } finally { await fh.close(); }
      const end = op.offset + op.len;
      if (op.kind === 'punch') { if (op.offset < f.data.length) f.data.fill(0, op.offset, Math.min(end, f.data.length)); }
      else if (op.kind === 'zero') { f.data = resize(f.data, Math.max(f.data.length, end)); f.data.fill(0, op.offset, end); }
      else if (!op.keep) f.data = resize(f.data, Math.max(f.data.length, end));
      return;
    }
    case 'unlink': {
      const p = filePath(op.file);
      const ok = m.files.has(p) || m.links.has(p);
      await expectErr(() => fs.unlink(p), ok);
      m.files.delete(p); m.links.delete(p);
      return;
    }
    case 'rename': {
      const a = filePath(op.from), b = filePath(op.to);
      const ok = (m.files.has(a) || m.links.has(a)) && m.parentOk(b) && !m.dirs.has(b);
      if (!(await expectErr(() => fs.rename(a, b), ok))) return;
      // POSIX: renaming one hard link onto another of the same file does nothing.
      if (a === b || (m.files.has(a) && m.files.get(a) === m.files.get(b))) return;
      const f = m.files.get(a), l = m.links.get(a);
      m.files.delete(b); m.links.delete(b); m.files.delete(a); m.links.delete(a);
      if (f) m.files.set(b, f); if (l !== undefined) m.links.set(b, l);
      return;
    }
    case 'link': {
      const a = filePath(op.from), b = filePath(op.to);
      // link(2) does not follow a symlink: it hard-links the symlink itself.
      const ok = (m.files.has(a) || m.links.has(a)) && m.parentOk(b) && !m.exists(b);
      if (!(await expectErr(() => fs.link(a, b), ok))) return;
      if (m.files.has(a)) m.files.set(b, m.files.get(a)!); else m.links.set(b, m.links.get(a)!);
      return;
    }
    case 'mkdir': {
      const p = `/d${op.dir}`;
      if (!(await expectErr(() => fs.mkdir(p), !m.exists(p)))) return;
      m.dirs.add(p);
      return;
    }
    case 'rmdir': {
      const p = `/d${op.dir}`;
      const empty = ![...m.files.keys(), ...m.links.keys()].some((k) => k.startsWith(p + '/'));
      if (!(await expectErr(() => fs.rmdir(p), m.dirs.has(p) && empty))) return;
      m.dirs.delete(p);
      return;
    }
    case 'symlink': {
      const p = filePath(op.file);
      if (!(await expectErr(() => fs.symlink(op.target, p), m.parentOk(p) && !m.exists(p)))) return;
      m.links.set(p, op.target);
      return;
    }
    case 'fsync': {
      const p = filePath(op.file);
      if (!m.files.has(p)) return;
      const fh = await fs.open(p, 'r+') as Ext4WritableHandle;
      try { await fh.sync(); } finally { await fh.close(); }
      return;
    }
    case 'sync': await fs.sync(); return;
    case 'writeback': await fs.writebackPass(); return;
  }
}

async function verify(fs: Ext4, m: Model, where: string): Promise<void> {
  for (const [p, f] of m.files) {
    const got = await fs.readFile(p);
    assert.equal(got.length, f.data.length, `${where}: size of ${p}`);
    assert.ok(Buffer.from(got).equals(Buffer.from(f.data)), `${where}: contents of ${p}`);
  }
  for (const [p, t] of m.links) assert.equal(await fs.readlink(p), t, `${where}: symlink ${p}`);
  for (const d of m.dirs) assert.ok((await fs.stat(d)).isDirectory(), `${where}: dir ${d}`);
}

const GEOMETRIES = [
  { blockSize: 1024, ratio: 1, quota: false }, { blockSize: 4096, ratio: 1, quota: false },
  { blockSize: 1024, ratio: 4, quota: false }, { blockSize: 4096, ratio: 4, quota: true },
  { blockSize: 1024, ratio: 16, quota: true }, { blockSize: 4096, ratio: 16, quota: false },
  { blockSize: 1024, ratio: 1, quota: true }, { blockSize: 4096, ratio: 1, quota: true },
];

for (const g of GEOMETRIES) {
  const name = `bs=${g.blockSize} ratio=${g.ratio}${g.quota ? ' quota' : ''}`;
  test(`random operation sequences keep the invariants and read back exactly: ${name}`, { skip, timeout: 600_000 }, async () => {
    const size = g.blockSize * g.ratio >= 16384 ? 48 << 20 : 24 << 20;
    const features = [g.ratio > 1 ? 'bigalloc' : '', g.quota ? 'quota' : ''].filter(Boolean).join(',');
    let seqNo = 0;
    const seed = process.env.MODEL_SEED ? Number(process.env.MODEL_SEED) : undefined;
    await fc.assert(fc.asyncProperty(fc.array(opArb(300_000), { minLength: 5, maxLength: 40 }), async (ops) => {
      try { await runSequence(ops); } catch (e) {
        // fast-check reports the message; keep the failing step and the stack in it.
        throw new Error(`${(e as Error).message}\n${(e as Error).stack ?? ''}`);
      }
    }), { numRuns: RUNS, endOnFailure: true, includeErrorInReport: true, ...(seed !== undefined ? { seed } : {}) });

    async function runSequence(ops: Op[]): Promise<void> {
      const dev = new MemoryDevice(size);
      await Ext4.mkfs(dev, { blockSize: g.blockSize, ...(g.ratio > 1 ? { clusterBytes: g.blockSize * g.ratio } : {}), ...(features ? { features } : {}), timeSec: 1_700_000_000, deviceZeroed: true });
      const fs = await Ext4.open(dev);
      const m = new Model();
      for (const [i, op] of ops.entries()) {
        try {
          await apply(fs, m, op);
          await fs.checkInvariants();
        } catch (e) {
          (e as Error).message = `step ${i} ${JSON.stringify(op)}: ${(e as Error).message}`;
          throw e;
        }
      }
      await verify(fs, m, 'before close');
      await fs.close();
      const img = join(tmp, `model-${seqNo++}.img`);
      writeFileSync(img, dev.bytes);
      const r = await e2fsck(img);
      assert.equal(r.exitCode, 0, `e2fsck after ${JSON.stringify(ops)}:\n${r.output}`);
      const again = await Ext4.open(new MemoryDevice(readFileSync(img)), { readOnly: true });
      await verify(again, m, 'after reopen');
      await again.close();
      for (const [p, f] of m.files) {
        const out = join(tmp, 'dump');
        await debugfs(img, `dump ${p} ${out}`);
        assert.ok(readFileSync(out).equals(Buffer.from(f.data)), `debugfs dump of ${p}`);
      }
      rmSync(img);
    }
  });
}
