// Extent node codec against trees made by mke2fs/debugfs: decode every node and compare with
// `debugfs ex`, verify tail checksums, re-encode byte for byte, one test per validation rule.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, rmSync, openSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ext4Error } from '../errors/ext4-error.ts';
import { u16, u32, setU16, setU32 } from '../util/bytes.ts';
import { fileBlock, fsBlock } from '../util/brand.ts';
import { fsCsumSeed, inodeCsumSeed } from './checksum.ts';
import { decodeInode, type Inode } from './inode.ts';
import {
  decodeExtentNode, encodeExtentNode, extentBlockChecksum, extentTailOffset, extentNodeCapacity,
  EXT4_EXT_MAGIC, type ExtentNode, type ExtentLeafNode,
} from './extent.ts';
import { SKIP, run, debugfsBatch } from '../../test/support/e2fs-sync.ts';

const UUID = '5a1c8e3e-2f6b-4e0a-8c1d-7b9e0f123456';

interface Img { path: string; bytes: Uint8Array; blockSize: number; inodeSize: number; hugeFile: boolean; fsSeed: number | undefined }
function openImg(path: string): Img {
  const bytes = new Uint8Array(readFileSync(path));
  const sb = bytes.subarray(1024, 2048);
  const roCompat = u32(sb, 0x64);
  const incompat = u32(sb, 0x60);
  return {
    path, bytes, blockSize: 1024 << u32(sb, 0x18), inodeSize: u16(sb, 0x58), hugeFile: (roCompat & 8) !== 0,
    fsSeed: roCompat & 0x400 ? ((incompat & 0x2000) ? u32(sb, 0x270) : fsCsumSeed(sb.subarray(0x68, 0x78))) : undefined,
  };
}
function readInode(img: Img, ino: number): Inode {
  const m = /located at block (\d+), offset 0x([0-9a-f]+)/.exec(debugfsBatch(img.path, [`imap <${ino}>`])[0]!)!;
  const off = Number(m[1]) * img.blockSize + parseInt(m[2]!, 16);
  return decodeInode(img.bytes.subarray(off, off + img.inodeSize), {
    ino, inodeSize: img.inodeSize, fsCsumSeed: img.fsSeed, hugeFile: img.hugeFile, blockSize: img.blockSize,
  });
}
const block = (img: Img, b: number): Uint8Array => img.bytes.subarray(b * img.blockSize, (b + 1) * img.blockSize);

function expectCode(fn: () => unknown, code: string, detail: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof Ext4Error, `expected Ext4Error, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.equal(e.detail, detail, e.message);
    return true;
  });
}

/** One line of `debugfs ex`: level/depth, logical start..end, physical start, length, uninit. */
interface ExLine { level: number; depth: number; lstart: number; lend: number; pstart: number; len: number; uninit: boolean }
function parseEx(o: string): ExLine[] {
  const out: ExLine[] = [];
  for (const m of o.matchAll(/^[ \t]*(\d+)\/[ \t]*(\d+)[ \t]+\d+\/[ \t]*\d+[ \t]+(\d+)[ \t]*-[ \t]*(\d+)[ \t]+(\d+)(?:[ \t]*-[ \t]*\d+)?[ \t]+(\d+)[ \t]*(Uninit)?/gm)) {
    out.push({ level: +m[1]!, depth: +m[2]!, lstart: +m[3]!, lend: +m[4]!, pstart: +m[5]!, len: +m[6]!, uninit: m[7] !== undefined });
  }
  return out;
}

interface Visited { node: ExtentNode; bytes: Uint8Array; isRoot: boolean; level: number }
/** Depth-first walk in `debugfs ex` order, decoding (and verifying) every node. */
function walk(img: Img, ino: number, inode: Inode): { lines: ExLine[]; nodes: Visited[] } {
  const seed = img.fsSeed === undefined ? undefined : inodeCsumSeed(img.fsSeed, ino, inode.generation);
  const lines: ExLine[] = [];
  const nodes: Visited[] = [];
  const root = decodeExtentNode(inode.iBlock, { isRoot: true, blockSize: img.blockSize, where: { inode: ino } });
  const depth = root.depth;
  const visit = (node: ExtentNode, bytes: Uint8Array, isRoot: boolean, level: number): void => {
    nodes.push({ node, bytes, isRoot, level });
    if (node.kind === 'leaf') {
      for (const e of node.extents) {
        lines.push({ level, depth, lstart: e.fileBlock, lend: e.fileBlock + e.countBlocks - 1, pstart: e.fsBlock, len: e.countBlocks, uninit: e.unwritten });
      }
      return;
    }
    for (const x of node.indexes) {
      const childBytes = block(img, x.child);
      const child = decodeExtentNode(childBytes, { isRoot: false, blockSize: img.blockSize, inodeSeed: seed, where: { inode: ino, block: x.child } });
      // debugfs prints an index's range as its subtree's span; only the start and child are compared.
      lines.push({ level, depth, lstart: x.fileBlock, lend: -1, pstart: x.child, len: 0, uninit: false });
      visit(child, childBytes, false, level + 1);
    }
  };
  visit(root, inode.iBlock, true, 0);
  return { lines, nodes };
}

function buildTree(src: string, bs: number): void {
  // 400 one-block extents: depth 1 with 4 KiB blocks (> 4 root slots), depth 2 with 1 KiB (> 4 * 84).
  let fd = openSync(join(src, 'frag'), 'w');
  const data = new Uint8Array(bs).fill(0x61);
  for (let i = 0; i < 400; i++) writeSync(fd, data, 0, bs, i * 2 * bs);
  closeSync(fd);
  // A long contiguous run, split by mke2fs at group metadata.
  fd = openSync(join(src, 'long'), 'w');
  const chunk = new Uint8Array(1 << 20).fill(0x62);
  for (let i = 0; i < (bs === 1024 ? 40 : 140); i++) writeSync(fd, chunk);
  closeSync(fd);
  writeFileSync(join(src, 'prealloc'), '');
  writeFileSync(join(src, 'small'), 'tiny');
}

const GEOMETRIES = [
  { name: 'ext4 4K metadata_csum', args: ['-b', '4096', '-O', 'metadata_csum'], size: '256M' },
  { name: 'ext4 1K metadata_csum', args: ['-b', '1024', '-O', 'metadata_csum'], size: '96M' },
  { name: 'ext4 1K no metadata_csum', args: ['-b', '1024', '-O', '^metadata_csum'], size: '96M' },
];
const FILES = ['frag', 'long', 'prealloc', 'small'];

for (const g of GEOMETRIES) {
  describe(`extent codec on ${g.name}`, { skip: SKIP }, () => {
    let dir: string;
    let img: Img;
    const inos = new Map<string, number>();
    before(() => {
      dir = mkdtempSync(join(tmpdir(), 'ext4kit-extent-'));
      const src = join(dir, 'src');
      mkdirSync(src);
      const bs = Number(g.args[1]);
      buildTree(src, bs);
      const path = join(dir, 'fs.img');
      run('mke2fs', ['-q', '-t', 'ext4', ...g.args, '-U', UUID, '-d', src, '-F', path, g.size]);
      run('debugfs', ['-w', '-R', 'fallocate /prealloc 5 104', path]);
      img = openImg(path);
      const outs = debugfsBatch(path, FILES.map((f) => `stat /${f}`));
      FILES.forEach((f, i) => { inos.set(f, Number(/Inode: (\d+)/.exec(outs[i]!)![1])); });
    });
    after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

    test('every node decodes (checksums verified) and matches debugfs ex', () => {
      const exOut = debugfsBatch(img.path, FILES.map((f) => `ex /${f}`));
      FILES.forEach((f, i) => {
        const ino = inos.get(f)!;
        const { lines } = walk(img, ino, readInode(img, ino));
        const want = parseEx(exOut[i]!);
        assert.equal(lines.length, want.length, f);
        lines.forEach((l, k) => {
          const w = want[k]!;
          assert.equal(l.level, w.level, `${f} line ${k}`);
          assert.equal(l.depth, w.depth, `${f} line ${k}`);
          assert.equal(l.lstart, w.lstart, `${f} line ${k}`);
          assert.equal(l.pstart, w.pstart, `${f} line ${k}`);
          if (w.level === w.depth) {
            assert.equal(l.lend, w.lend, `${f} line ${k}`);
            assert.equal(l.len, w.len, `${f} line ${k}`);
            assert.equal(l.uninit, w.uninit, `${f} line ${k}`);
          }
        });
      });
    });

    test('the fixtures cover depth >= 1, long and unwritten extents', () => {
      const frag = walk(img, inos.get('frag')!, readInode(img, inos.get('frag')!));
      const depth = frag.nodes[0]!.node.depth;
      assert.equal(depth, img.blockSize === 1024 ? 2 : 1);
      const long = walk(img, inos.get('long')!, readInode(img, inos.get('long')!));
      assert.ok(long.lines.length >= 2 && long.lines.some((l) => l.len > 8000));
      const pre = walk(img, inos.get('prealloc')!, readInode(img, inos.get('prealloc')!));
      assert.ok(pre.lines.length > 0 && pre.lines.every((l) => l.uninit));
      assert.equal(pre.lines.reduce((a, l) => a + l.len, 0), 100);
    });

    test('re-encoding reproduces every node byte for byte, including the tail checksum', () => {
      for (const f of FILES) {
        const ino = inos.get(f)!;
        const inode = readInode(img, ino);
        const seed = img.fsSeed === undefined ? undefined : inodeCsumSeed(img.fsSeed, ino, inode.generation);
        for (const v of walk(img, ino, inode).nodes) {
          const o = { isRoot: v.isRoot, blockSize: img.blockSize, inodeSeed: seed };
          // Scramble what the encoder owns (header, live entries except ei_unused, tail); it must restore it.
          const scrambled = v.bytes.slice();
          const count = v.node.kind === 'leaf' ? v.node.extents.length : v.node.indexes.length;
          for (let i = 0; i < 12; i++) scrambled[i] = scrambled[i]! ^ 0x5a;
          for (let e = 0; e < count; e++) {
            for (let i = 0; i < 12; i++) if (v.node.kind === 'leaf' || i < 10) scrambled[12 + 12 * e + i] ^= 0x33;
          }
          if (!v.isRoot && seed !== undefined) for (let i = 0; i < 4; i++) scrambled[extentTailOffset(v.node.max) + i] ^= 0xff;
          encodeExtentNode(v.node, scrambled, o);
          assert.deepEqual(scrambled, v.bytes, `${f} node at level ${v.level}`);
          if (!v.isRoot && seed !== undefined) {
            assert.equal(u32(v.bytes, extentTailOffset(v.node.max)), extentBlockChecksum(v.bytes, v.node.max, seed));
          }
        }
      }
    });

    test('a leaf or index block with one flipped bit is EBADMSG extent-checksum (metadata_csum only)', { skip: g.args.includes('^metadata_csum') }, () => {
      const ino = inos.get('frag')!;
      const inode = readInode(img, ino);
      const seed = inodeCsumSeed(img.fsSeed!, ino, inode.generation);
      for (const v of walk(img, ino, inode).nodes.filter((n) => !n.isRoot)) {
        for (const at of [9, 12 + 5, extentTailOffset(v.node.max) - 1, extentTailOffset(v.node.max)]) {
          const b = v.bytes.slice();
          b[at] = b[at]! ^ 0x01;
          expectCode(() => decodeExtentNode(b, { isRoot: false, blockSize: img.blockSize, inodeSeed: seed, where: { inode: ino } }), 'EBADMSG', 'extent-checksum');
        }
        // Unused entry slots are covered too.
        const count = v.node.kind === 'leaf' ? v.node.extents.length : v.node.indexes.length;
        if (count < v.node.max) {
          const b = v.bytes.slice();
          b[12 + 12 * count] ^= 0xff;
          expectCode(() => decodeExtentNode(b, { isRoot: false, blockSize: img.blockSize, inodeSeed: seed, where: { inode: ino } }), 'EBADMSG', 'extent-checksum');
        }
        // Another inode's seed does not verify.
        expectCode(() => decodeExtentNode(v.bytes, { isRoot: false, blockSize: img.blockSize, inodeSeed: inodeCsumSeed(img.fsSeed!, ino + 1, inode.generation), where: {} }), 'EBADMSG', 'extent-checksum');
      }
    });

    test('mutations of a real leaf block: one error per rule', () => {
      const ino = inos.get('frag')!;
      const nodes = walk(img, ino, readInode(img, ino)).nodes;
      const leaf = nodes.find((n) => !n.isRoot && n.node.kind === 'leaf')!;
      const bs = img.blockSize;
      const dec = (b: Uint8Array) => decodeExtentNode(b, { isRoot: false, blockSize: bs, where: { inode: ino } });
      const mut = (f: (b: Uint8Array) => void): Uint8Array => { const b = leaf.bytes.slice(); f(b); return b; };
      expectCode(() => dec(mut((b) => setU16(b, 0, 0xf30b))), 'EUCLEAN', 'extent-magic');
      expectCode(() => dec(mut((b) => setU16(b, 4, 0))), 'EUCLEAN', 'extent-max');
      expectCode(() => dec(mut((b) => setU16(b, 4, extentNodeCapacity(false, bs) + 1))), 'EUCLEAN', 'extent-max');
      expectCode(() => dec(mut((b) => setU16(b, 2, u16(b, 4) + 1))), 'EUCLEAN', 'extent-entries');
      expectCode(() => dec(mut((b) => setU16(b, 6, 6))), 'EUCLEAN', 'extent-depth');
      expectCode(() => dec(mut((b) => setU16(b, 12 + 4, 0))), 'EUCLEAN', 'extent-len');
      expectCode(() => dec(mut((b) => setU32(b, 12 + 12, u32(b, 12)))), 'EUCLEAN', 'extent-order');
      expectCode(() => dec(mut((b) => setU32(b, 12 + 12, u32(b, 12) - 1 >>> 0))), 'EUCLEAN', 'extent-order');
      expectCode(() => dec(mut((b) => { setU16(b, 2, 1); setU32(b, 12, 0xffffffff); setU16(b, 16, 2); })), 'EUCLEAN', 'extent-range');
      expectCode(() => dec(leaf.bytes.subarray(0, bs - 1)), 'EUCLEAN', 'extent-truncated');
      dec(leaf.bytes);
    });

    test('mutations of a real index node: one error per rule', () => {
      const ino = inos.get('frag')!;
      const nodes = walk(img, ino, readInode(img, ino)).nodes;
      const idx = nodes.find((n) => n.node.kind === 'index' && n.node.indexes.length >= 2)!;
      const size = idx.isRoot ? 60 : img.blockSize;
      const dec = (b: Uint8Array) => decodeExtentNode(b, { isRoot: idx.isRoot, blockSize: img.blockSize, where: { inode: ino } });
      const mut = (f: (b: Uint8Array) => void): Uint8Array => { const b = idx.bytes.slice(0, size); f(b); return b; };
      expectCode(() => dec(mut((b) => setU32(b, 12 + 12, u32(b, 12)))), 'EUCLEAN', 'extent-index-order');
      expectCode(() => dec(mut((b) => setU16(b, 2, 0))), 'EUCLEAN', 'extent-empty-index');
      dec(idx.bytes.slice(0, size));
    });
  });
}

describe('extent codec rules (synthetic nodes)', () => {
  const leafOf = (...ex: [number, number, number, boolean][]): ExtentLeafNode => ({
    kind: 'leaf', depth: 0, max: 4, generation: 0,
    extents: ex.map(([l, n, p, u]) => ({ fileBlock: fileBlock(l), countBlocks: n, fsBlock: fsBlock(p), unwritten: u })),
  });

  test('ee_len: 32768 is initialized, above it unwritten (ifork.rst)', () => {
    const b = new Uint8Array(60);
    encodeExtentNode(leafOf([0, 32768, 1000, false], [32768, 32767, 2 ** 40 + 5, true], [70000, 1, 7, true]), b, { isRoot: true, blockSize: 4096 });
    assert.equal(u16(b, 0), EXT4_EXT_MAGIC);
    assert.equal(u16(b, 12 + 4), 0x8000);
    assert.equal(u16(b, 24 + 4), 0xffff);
    assert.equal(u16(b, 24 + 6), 0x100);
    assert.equal(u32(b, 24 + 8), 5);
    assert.equal(u16(b, 36 + 4), 0x8001);
    const n = decodeExtentNode(b, { isRoot: true, blockSize: 4096, where: {} });
    assert.deepEqual(n, leafOf([0, 32768, 1000, false], [32768, 32767, 2 ** 40 + 5, true], [70000, 1, 7, true]));
  });

  test('root rules: eh_max above 4 is extent-max, magic checked', () => {
    const b = new Uint8Array(60);
    encodeExtentNode(leafOf(), b, { isRoot: true, blockSize: 4096 });
    setU16(b, 4, 5);
    expectCode(() => decodeExtentNode(b, { isRoot: true, blockSize: 4096, where: {} }), 'EUCLEAN', 'extent-max');
    expectCode(() => decodeExtentNode(new Uint8Array(60), { isRoot: true, blockSize: 4096, where: {} }), 'EUCLEAN', 'extent-magic');
    expectCode(() => decodeExtentNode(new Uint8Array(59), { isRoot: true, blockSize: 4096, where: {} }), 'EUCLEAN', 'extent-truncated');
  });

  test('block capacity leaves room for the tail: 84 entries in 1 KiB, 340 in 4 KiB', () => {
    assert.equal(extentNodeCapacity(false, 1024), 84);
    assert.equal(extentNodeCapacity(false, 4096), 340);
    assert.equal(extentNodeCapacity(false, 65536), 5460);
    for (const bs of [1024, 2048, 4096, 65536]) assert.ok(extentTailOffset(extentNodeCapacity(false, bs)) + 4 <= bs);
  });

  test('hostile bytes raise only Ext4Error, and what decodes re-encodes to the same bytes', () => {
    let s = 987654321;
    const rnd = (): number => { s = (s * 1664525 + 1013904223) >>> 0; return s; };
    for (let n = 0; n < 5000; n++) {
      const isRoot = n % 2 === 0;
      const b = new Uint8Array(isRoot ? 60 : 1024);
      for (let i = 0; i < b.length; i++) b[i] = rnd() & 0xff;
      setU16(b, 0, EXT4_EXT_MAGIC);
      if (n % 3) setU16(b, 6, rnd() % 3);
      if (n % 5) setU16(b, 4, 1 + (rnd() % (isRoot ? 4 : 84)));
      if (n % 7) setU16(b, 2, rnd() % 3);
      try {
        const node = decodeExtentNode(b, { isRoot, blockSize: 1024, inodeSeed: n % 11 ? undefined : 0, where: {} });
        const out = b.slice();
        encodeExtentNode(node, out, { isRoot, blockSize: 1024 });
        assert.deepEqual(out, b);
      } catch (e) {
        assert.ok(e instanceof Ext4Error, String(e));
      }
    }
  });
});
