// Read-side block mapping against images made by mke2fs and the kernel: iterateMappings vs
// `debugfs ex` / `stat` block lists, mapFileBlock vs `debugfs bmap`, and one test per check.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, openSync, readSync, writeSync, closeSync, ftruncateSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ext4Error } from '../errors/ext4-error.ts';
import { u16, u32, setU16, setU32 } from '../util/bytes.ts';
import { fileBlock, fsBlock, inodeNo, type FsBlock } from '../util/brand.ts';
import { fsCsumSeed, inodeCsumSeed } from '../format/checksum.ts';
import { decodeInode, EXTENTS_FL, type Inode } from '../format/inode.ts';
import { decodeExtentNode, encodeExtentNode } from '../format/extent.ts';
import { iterateMappings, mapFileBlock, type MapContext, type Mapping } from './read-map.ts';
import { HAVE_TOOLS, SKIP, run, debugfsBatch } from '../../test/support/e2fs-sync.ts';

const UUID = '9e2d7c41-0a5b-4c3d-8e6f-112233445566';

/** An image read through a file descriptor, with per-block overrides for mutation tests. */
class Img {
  readonly fd: number;
  readonly blockSize: number;
  readonly inodeSize: number;
  readonly blocksCount: number;
  readonly hugeFile: boolean;
  readonly fsSeed: number | undefined;
  readonly overrides = new Map<number, Uint8Array>();
  reads = 0;
  constructor(readonly path: string) {
    this.fd = openSync(path, 'r');
    const sb = this.readBytes(1024, 1024);
    const roCompat = u32(sb, 0x64);
    const incompat = u32(sb, 0x60);
    this.blockSize = 1024 << u32(sb, 0x18);
    this.inodeSize = u16(sb, 0x58);
    this.blocksCount = u32(sb, 0x4) + (incompat & 0x80 ? u32(sb, 0x150) * 2 ** 32 : 0);
    this.hugeFile = (roCompat & 8) !== 0;
    this.fsSeed = roCompat & 0x400 ? ((incompat & 0x2000) ? u32(sb, 0x270) : fsCsumSeed(sb.subarray(0x68, 0x78))) : undefined;
  }
  readBytes(off: number, len: number): Uint8Array {
    const b = new Uint8Array(len);
    readSync(this.fd, b, 0, len, off);
    return b;
  }
  block(b: number): Uint8Array {
    return this.overrides.get(b)?.slice() ?? this.readBytes(b * this.blockSize, this.blockSize);
  }
  inode(ino: number): Inode {
    const m = /located at block (\d+), offset 0x([0-9a-f]+)/.exec(debugfsBatch(this.path, [`imap <${ino}>`])[0]!)!;
    const raw = this.readBytes(Number(m[1]) * this.blockSize + parseInt(m[2]!, 16), this.inodeSize);
    return decodeInode(raw, { ino, inodeSize: this.inodeSize, fsCsumSeed: this.fsSeed, hugeFile: this.hugeFile, blockSize: this.blockSize });
  }
  ctx(ino: number, inode: Inode): MapContext {
    return {
      blockSize: this.blockSize, blocksCount: this.blocksCount, ino: inodeNo(ino),
      inodeSeed: this.fsSeed === undefined ? undefined : inodeCsumSeed(this.fsSeed, ino, inode.generation),
      readBlock: async (b: FsBlock) => { this.reads++; return this.block(b); },
    };
  }
  close(): void { closeSync(this.fd); }
}

async function collect(inode: Inode, ctx: MapContext): Promise<Mapping[]> {
  const out: Mapping[] = [];
  for await (const m of iterateMappings(inode, ctx)) out.push({ ...m });
  return out;
}

/** Leaf lines of `debugfs ex` as mappings. */
function parseExLeaves(o: string): Mapping[] {
  const out: Mapping[] = [];
  const re = /^[ \t]*(\d+)\/[ \t]*(\d+)[ \t]+\d+\/[ \t]*\d+[ \t]+(\d+)[ \t]*-[ \t]*\d+[ \t]+(\d+)(?:[ \t]*-[ \t]*\d+)?[ \t]+(\d+)[ \t]*(Uninit)?/gm;
  for (const m of o.matchAll(re)) {
    if (m[1] !== m[2]) continue;
    out.push({ fileBlock: fileBlock(+m[3]!), fsBlock: fsBlock(+m[4]!), countBlocks: +m[5]!, unwritten: m[6] !== undefined });
  }
  return out;
}

/** Data-block runs from the BLOCKS:/EXTENTS: list of `debugfs stat`, merged where contiguous. */
function parseStatBlocks(o: string): Mapping[] {
  const list = o.slice(o.search(/^(BLOCKS|EXTENTS):/m));
  const runs: Mapping[] = [];
  for (const m of list.matchAll(/\((\d+)(?:-(\d+))?(\[u\])?\):(\d+)(?:-(\d+))?/g)) {
    const l = +m[1]!;
    const n = (m[2] === undefined ? l : +m[2]) - l + 1;
    runs.push({ fileBlock: fileBlock(l), fsBlock: fsBlock(+m[4]!), countBlocks: n, unwritten: m[3] !== undefined });
  }
  return mergeRuns(runs);
}

function mergeRuns(ms: Mapping[]): Mapping[] {
  const out: Mapping[] = [];
  for (const m of ms) {
    const r = out[out.length - 1];
    if (r && r.unwritten === m.unwritten && r.fileBlock + r.countBlocks === m.fileBlock && r.fsBlock + r.countBlocks === m.fsBlock) {
      r.countBlocks += m.countBlocks;
    } else out.push({ ...m });
  }
  return out;
}

/** What mapFileBlock should say for `b`, from a verified mapping list. */
function expectedAt(ms: Mapping[], b: number): Mapping | undefined {
  for (const m of ms) {
    if (b >= m.fileBlock && b < m.fileBlock + m.countBlocks) {
      const skip = b - m.fileBlock;
      return { fileBlock: fileBlock(b), fsBlock: fsBlock(m.fsBlock + skip), countBlocks: m.countBlocks - skip, unwritten: m.unwritten };
    }
  }
  return undefined;
}

async function expectReject(p: Promise<unknown>, code: string, detail: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof Ext4Error, `expected Ext4Error, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.equal(e.detail, detail, e.message);
    return true;
  });
}

function buildTree(src: string, bs: number): void {
  writeFileSync(join(src, 'small'), 'hello\n');
  let fd = openSync(join(src, 'frag'), 'w');
  const data = new Uint8Array(bs).fill(0x61);
  for (let i = 0; i < 400; i++) writeSync(fd, data, 0, bs, i * 2 * bs);
  closeSync(fd);
  fd = openSync(join(src, 'sparse'), 'w');
  ftruncateSync(fd, 5 * 2 ** 30);
  for (const off of [0, 2 ** 20, 100 * 2 ** 20, 2 ** 30, 4 * 2 ** 30 + 12345, 5 * 2 ** 30 - 1]) writeSync(fd, 'Z', off);
  closeSync(fd);
  writeFileSync(join(src, 'long'), new Uint8Array(6 << 20).fill(0x62));
  mkdirSync(join(src, 'dir'));
  for (let i = 0; i < 300; i++) writeFileSync(join(src, 'dir', `entry-with-a-longish-name-${i}`), '');
  symlinkSync('t', join(src, 'fastlink'));
  symlinkSync('S'.repeat(200), join(src, 'slowlink'));
  spawnSync('mkfifo', [join(src, 'fifo')]);
}
const FILES = ['small', 'frag', 'sparse', 'long', 'dir', 'slowlink', 'fastlink', 'fifo'];

const GEOMETRIES = [
  { name: 'ext4 4K metadata_csum', args: ['-t', 'ext4', '-b', '4096', '-O', 'metadata_csum'], extents: true },
  { name: 'ext4 1K metadata_csum', args: ['-t', 'ext4', '-b', '1024', '-O', 'metadata_csum'], extents: true },
  { name: 'ext4 1K no metadata_csum', args: ['-t', 'ext4', '-b', '1024', '-O', '^metadata_csum'], extents: true },
  { name: 'ext3 1K (block maps)', args: ['-t', 'ext3', '-b', '1024'], extents: false },
  { name: 'ext2 4K (block maps)', args: ['-t', 'ext2', '-b', '4096'], extents: false },
];

for (const g of GEOMETRIES) {
  describe(`read mapping on ${g.name}`, { skip: SKIP }, () => {
    let dir: string;
    let img: Img;
    const inos = new Map<string, number>();
    before(() => {
      dir = mkdtempSync(join(tmpdir(), 'ext4kit-map-'));
      const src = join(dir, 'src');
      mkdirSync(src);
      buildTree(src, Number(g.args[3]));
      const path = join(dir, 'fs.img');
      run('mke2fs', ['-q', ...g.args, '-U', UUID, '-E', `hash_seed=${UUID}`, '-d', src, '-F', path, '64M']);
      if (g.extents) {
        writeFileSync(join(dir, 'empty'), '');
        run('debugfs', ['-w', '-R', `write ${join(dir, 'empty')} prealloc`, path]);
        run('debugfs', ['-w', '-R', 'fallocate /prealloc 3 40', path]);
      }
      img = new Img(path);
      const names = g.extents ? [...FILES, 'prealloc'] : FILES;
      const outs = debugfsBatch(path, names.map((f) => `stat /${f}`));
      names.forEach((f, i) => { inos.set(f, Number(/Inode: (\d+)/.exec(outs[i]!)![1])); });
      if (g.name.startsWith('ext3') || g.name.startsWith('ext4')) inos.set('<journal>', 8);
      inos.set('<root>', 2);
      inos.set('<lost+found>', 11);
    });
    after(() => { img?.close(); if (dir) rmSync(dir, { recursive: true, force: true }); });

    test('iterateMappings lists exactly what debugfs lists', async () => {
      const names = [...inos.keys()];
      const exOut = debugfsBatch(img.path, names.map((n) => `ex <${inos.get(n)}>`));
      const statOut = debugfsBatch(img.path, names.map((n) => `stat <${inos.get(n)}>`));
      for (const [k, name] of names.entries()) {
        const ino = inos.get(name)!;
        const inode = img.inode(ino);
        const got = await collect(inode, img.ctx(ino, inode));
        if (inode.flags & EXTENTS_FL) assert.deepEqual(got, parseExLeaves(exOut[k]!), name);
        // The block list of `stat` is the oracle for block maps and a second one for extents.
        assert.deepEqual(mergeRuns(got), parseStatBlocks(statOut[k]!), name);
        if (['fastlink', 'fifo'].includes(name)) assert.equal(got.length, 0, name);
        if (['frag', 'sparse', 'long', 'dir', 'slowlink', 'small'].includes(name)) assert.ok(got.length > 0, name);
      }
    });

    test('the fixtures reach the deep parts of the format', async () => {
      const frag = img.inode(inos.get('frag')!);
      const sparse = img.inode(inos.get('sparse')!);
      if (g.extents) {
        const depth = u16(frag.iBlock, 6);
        assert.equal(depth, img.blockSize === 1024 ? 2 : 1);
        const pre = await collect(img.inode(inos.get('prealloc')!), img.ctx(inos.get('prealloc')!, img.inode(inos.get('prealloc')!)));
        assert.ok(pre.length > 0 && pre.every((m) => m.unwritten));
      } else {
        assert.notEqual(u32(sparse.iBlock, 14 * 4), 0, 'triple indirect block in use');
      }
      const ms = await collect(sparse, img.ctx(inos.get('sparse')!, sparse));
      assert.equal(ms[ms.length - 1]!.fileBlock, Math.floor((5 * 2 ** 30 - 1) / img.blockSize));
    });

    test('mapFileBlock agrees with the mapping list and with debugfs bmap', async () => {
      for (const name of ['frag', 'sparse', 'long', 'dir', 'small', ...(g.extents ? ['prealloc'] : [])]) {
        const ino = inos.get(name)!;
        const inode = img.inode(ino);
        const ctx = img.ctx(ino, inode);
        const ms = await collect(inode, ctx);
        const probes = new Set<number>([0, 1, 11, 12, 13, 267, 268, 1035, 1036, 2 ** 32 - 1]);
        for (const m of ms) {
          for (const b of [m.fileBlock - 1, m.fileBlock, m.fileBlock + (m.countBlocks >> 1), m.fileBlock + m.countBlocks - 1, m.fileBlock + m.countBlocks]) {
            if (b >= 0) probes.add(b);
          }
        }
        const list = [...probes].sort((a, b) => a - b);
        for (const b of list) assert.deepEqual(await mapFileBlock(inode, ctx, fileBlock(b)), expectedAt(ms, b), `${name} block ${b}`);
        // debugfs bmap on a sample (it prints 0 for a hole).
        const sample = list.filter((b) => b < 2 ** 32 - 1).filter((_, i) => i % Math.max(1, Math.floor(list.length / 40)) === 0);
        const outs = debugfsBatch(img.path, sample.map((b) => `bmap <${ino}> ${b}`));
        sample.forEach((b, i) => {
          const phys = Number(outs[i]!.trim().split(/\s+/)[0]);
          assert.equal(expectedAt(ms, b)?.fsBlock ?? 0, phys, `${name} bmap ${b}`);
        });
      }
    });

    test('a single lookup reads only the path it needs', async () => {
      for (const name of ['sparse', 'frag']) {
        const ino = inos.get(name)!;
        const inode = img.inode(ino);
        const ctx = img.ctx(ino, inode);
        const ms = await collect(inode, ctx);
        const last = ms[ms.length - 1]!;
        img.reads = 0;
        const m = await mapFileBlock(inode, ctx, last.fileBlock);
        assert.equal(m?.fsBlock, last.fsBlock);
        assert.ok(img.reads <= 3, `${name}: ${img.reads} reads`);
      }
    });

    if (g.extents) {
      describe('corrupt extent trees', () => {
        // Mutations go through block overrides; for metadata_csum the changed block is re-stamped
        // so that the structural check, not the checksum, is what fires.
        let ino: number;
        let inode: Inode;
        let ctx: MapContext;
        let seed: number | undefined;
        let rootDepth: number;
        let level1: number[];
        before(() => {
          ino = inos.get('frag')!;
          inode = img.inode(ino);
          ctx = img.ctx(ino, inode);
          seed = ctx.inodeSeed;
          const root = decodeExtentNode(inode.iBlock, { isRoot: true, blockSize: img.blockSize, where: {} });
          assert.equal(root.kind, 'index');
          rootDepth = root.depth;
          level1 = root.kind === 'index' ? root.indexes.map((x) => x.child) : [];
        });
        const restamp = (b: number, bytes: Uint8Array): void => {
          if (seed !== undefined) {
            const node = decodeExtentNode(bytes, { isRoot: false, blockSize: img.blockSize, where: {} });
            encodeExtentNode(node, bytes, { isRoot: false, blockSize: img.blockSize, inodeSeed: seed });
          }
          img.overrides.set(b, bytes);
        };
        const leafBlocks = async (): Promise<number[]> => {
          const out: number[] = [];
          const visit = (b: number): void => {
            const n = decodeExtentNode(img.block(b), { isRoot: false, blockSize: img.blockSize, where: {} });
            if (n.kind === 'leaf') out.push(b); else for (const x of n.indexes) visit(x.child);
          };
          level1.forEach(visit);
          return out;
        };
        const both = async (code: string, detail: string, probe = 0): Promise<void> => {
          await expectReject(collect(inode, ctx), code, detail);
          await expectReject(mapFileBlock(inode, ctx, fileBlock(probe)), code, detail);
        };
        const withRoot = (f: (b: Uint8Array) => void): Inode => { const i = { ...inode, iBlock: inode.iBlock.slice() }; f(i.iBlock); return i; };

        test('sound tree walks cleanly', async () => {
          img.overrides.clear();
          assert.ok((await collect(inode, ctx)).length >= 400);
        });

        test('bad magic in a leaf: extent-magic', async () => {
          img.overrides.clear();
          const [leaf] = await leafBlocks();
          const b = img.block(leaf!);
          setU16(b, 0, 0x1234);
          img.overrides.set(leaf!, b);
          await both('EUCLEAN', 'extent-magic');
          img.overrides.clear();
        });

        test('entries above max in a leaf: extent-entries', async () => {
          img.overrides.clear();
          const [leaf] = await leafBlocks();
          const b = img.block(leaf!);
          setU16(b, 2, u16(b, 4) + 1);
          img.overrides.set(leaf!, b);
          await both('EUCLEAN', 'extent-entries');
          img.overrides.clear();
        });

        test('root depth above 5: extent-depth', async () => {
          img.overrides.clear();
          const bad = withRoot((b) => setU16(b, 6, 6));
          await expectReject(collect(bad, ctx), 'EUCLEAN', 'extent-depth');
          await expectReject(mapFileBlock(bad, ctx, fileBlock(0)), 'EUCLEAN', 'extent-depth');
        });

        test('child depth not exactly one less: extent-depth', async () => {
          img.overrides.clear();
          const bad = withRoot((b) => setU16(b, 6, rootDepth + 1));
          await expectReject(collect(bad, ctx), 'EUCLEAN', 'extent-depth');
          await expectReject(mapFileBlock(bad, ctx, fileBlock(0)), 'EUCLEAN', 'extent-depth');
        });

        test('a child pointing to itself or an ancestor: extent-loop', async () => {
          img.overrides.clear();
          if (rootDepth >= 2) {
            const node = level1[0]!;
            const b = img.block(node);
            setU32(b, 12 + 4, node);
            setU16(b, 12 + 8, 0);
            restamp(node, b);
            // Itself at depth 1: refused as a loop before its (wrong) depth is even looked at.
            await both('EUCLEAN', 'extent-loop');
            img.overrides.clear();
          }
          // Two siblings sharing one child (a DAG, which a walk would revisit).
          const parent = rootDepth >= 2 ? level1[0]! : undefined;
          if (parent !== undefined) {
            const b = img.block(parent);
            setU32(b, 24 + 4, u32(b, 12 + 4));
            setU16(b, 24 + 8, u16(b, 12 + 8));
            restamp(parent, b);
          } else {
            // Depth 1: the root has two or more leaves; point the second at the first.
            const bad = withRoot((r) => { setU32(r, 24 + 4, u32(r, 12 + 4)); setU16(r, 24 + 8, u16(r, 12 + 8)); });
            await expectReject(collect(bad, ctx), 'EUCLEAN', 'extent-loop');
            return;
          }
          await expectReject(collect(inode, ctx), 'EUCLEAN', 'extent-loop');
          img.overrides.clear();
        });

        test('a child or an extent outside the filesystem, or at block 0: extent-out-of-range', async () => {
          img.overrides.clear();
          for (const child of [img.blocksCount, img.blocksCount + 1000, 0, 2 ** 48 - 1]) {
            const bad = withRoot((r) => { setU32(r, 12 + 4, child % 2 ** 32); setU16(r, 12 + 8, Math.floor(child / 2 ** 32)); });
            await expectReject(collect(bad, ctx), 'EUCLEAN', 'extent-out-of-range');
            await expectReject(mapFileBlock(bad, ctx, fileBlock(0)), 'EUCLEAN', 'extent-out-of-range');
          }
          const [leaf] = await leafBlocks();
          const b = img.block(leaf!);
          setU32(b, 12 + 8, img.blocksCount - 1);
          setU16(b, 12 + 4, 2);
          restamp(leaf!, b);
          await both('EUCLEAN', 'extent-out-of-range');
          img.overrides.clear();
        });

        test('an extent outside its parent key range: extent-key-range', async () => {
          img.overrides.clear();
          const leaves = await leafBlocks();
          const second = leaves[1]!;
          const b = img.block(second);
          setU32(b, 12, 0);
          restamp(second, b);
          await expectReject(collect(inode, ctx), 'EUCLEAN', 'extent-key-range');
          const firstKeyOfSecond = u32(img.readBytes(second * img.blockSize, img.blockSize), 12);
          await expectReject(mapFileBlock(inode, ctx, fileBlock(firstKeyOfSecond)), 'EUCLEAN', 'extent-key-range');
          img.overrides.clear();
        });

        test('random damage to the tree raises only Ext4Error and terminates', async () => {
          let r = 2463534242;
          const rnd = (n: number): number => { r ^= r << 13; r >>>= 0; r ^= r >>> 17; r ^= r << 5; r >>>= 0; return r % n; };
          const blocks = [...level1, ...(await leafBlocks())];
          for (let round = 0; round < 150; round++) {
            img.overrides.clear();
            let bad = inode;
            for (let k = 0; k < 1 + rnd(3); k++) {
              if (rnd(4) === 0) {
                bad = { ...bad, iBlock: bad.iBlock.slice() };
                bad.iBlock[rnd(60)] = rnd(256);
              } else {
                const blk = blocks[rnd(blocks.length)]!;
                const b = img.overrides.get(blk) ?? img.block(blk);
                const at = rnd(4) === 0 ? rnd(12) : 12 + rnd(img.blockSize - 12);
                b[at] = rnd(256);
                img.overrides.set(blk, b);
                if (rnd(2)) try { restamp(blk, b); } catch { /* undecodable: stays unstamped */ }
              }
            }
            for (const run of [() => collect(bad, ctx), () => mapFileBlock(bad, ctx, fileBlock(rnd(900)))]) {
              try { await run(); } catch (e) { assert.ok(e instanceof Ext4Error, String(e)); }
            }
          }
          img.overrides.clear();
        });

        if (g.args.includes('metadata_csum')) {
          test('a flipped bit in a leaf: EBADMSG extent-checksum', async () => {
            img.overrides.clear();
            const [leaf] = await leafBlocks();
            const b = img.block(leaf!);
            b[12 + 8] = b[12 + 8]! ^ 1;
            img.overrides.set(leaf!, b);
            await both('EBADMSG', 'extent-checksum');
            img.overrides.clear();
          });
        }
      });
    } else {
      describe('corrupt block maps', () => {
        let ino: number;
        let inode: Inode;
        let ctx: MapContext;
        before(() => {
          ino = inos.get('sparse')!;
          inode = img.inode(ino);
          ctx = img.ctx(ino, inode);
        });
        const withIBlock = (f: (b: Uint8Array) => void): Inode => { const i = { ...inode, iBlock: inode.iBlock.slice() }; f(i.iBlock); return i; };

        test('a direct pointer outside the filesystem: blockmap-out-of-range', async () => {
          const bad = withIBlock((b) => setU32(b, 0, img.blocksCount));
          await expectReject(collect(bad, ctx), 'EUCLEAN', 'blockmap-out-of-range');
          await expectReject(mapFileBlock(bad, ctx, fileBlock(0)), 'EUCLEAN', 'blockmap-out-of-range');
        });

        test('an indirect-block pointer outside the filesystem: blockmap-out-of-range', async () => {
          const bad = withIBlock((b) => setU32(b, 13 * 4, 0xffffffff));
          await expectReject(collect(bad, ctx), 'EUCLEAN', 'blockmap-out-of-range');
          const target = 12 + img.blockSize / 4 + 5;
          await expectReject(mapFileBlock(bad, ctx, fileBlock(target)), 'EUCLEAN', 'blockmap-out-of-range');
        });

        test('a pointer inside an indirect block outside the filesystem: blockmap-out-of-range', async () => {
          const tind = u32(inode.iBlock, 14 * 4);
          const b = img.block(tind);
          const slot = [...Array(img.blockSize / 4).keys()].find((i) => u32(b, i * 4) !== 0)!;
          setU32(b, slot * 4, img.blocksCount + 3);
          img.overrides.set(tind, b);
          await expectReject(collect(inode, ctx), 'EUCLEAN', 'blockmap-out-of-range');
          img.overrides.clear();
        });

        test('an indirect block reachable twice (a loop): blockmap-loop', async () => {
          const tind = u32(inode.iBlock, 14 * 4);
          const b = img.block(tind);
          const slot = [...Array(img.blockSize / 4).keys()].find((i) => u32(b, i * 4) === 0)!;
          setU32(b, slot * 4, tind);
          img.overrides.set(tind, b);
          await expectReject(collect(inode, ctx), 'EUCLEAN', 'blockmap-loop');
          img.overrides.clear();
          await collect(inode, ctx);
        });
      });
    }
  });
}

describe('special inodes map nothing', () => {
  test('inline data, fast symlinks and device inodes yield no mappings', { skip: SKIP }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ext4kit-inline-'));
    try {
      const src = join(dir, 'src');
      mkdirSync(src);
      writeFileSync(join(src, 'tiny'), 'inline bytes');
      symlinkSync('x', join(src, 'l'));
      spawnSync('mknod', [join(src, 'null'), 'c', '1', '3']);
      const path = join(dir, 'fs.img');
      run('mke2fs', ['-q', '-t', 'ext4', '-O', 'inline_data', '-d', src, '-F', path, '16M']);
      const img = new Img(path);
      try {
        for (const n of ['tiny', 'l', 'null']) {
          const ino = Number(/Inode: (\d+)/.exec(debugfsBatch(path, [`stat /${n}`])[0]!)![1]);
          const inode = img.inode(ino);
          assert.deepEqual(await collect(inode, img.ctx(ino, inode)), [], n);
          assert.equal(await mapFileBlock(inode, img.ctx(ino, inode), fileBlock(0)), undefined, n);
        }
      } finally {
        img.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

function loopMountWorks(): boolean {
  if (!HAVE_TOOLS) return false;
  const dir = mkdtempSync(join(tmpdir(), 'ext4kit-mnt-'));
  try {
    const img = join(dir, 'probe.img');
    run('mke2fs', ['-q', '-t', 'ext4', '-F', img, '4M']);
    mkdirSync(join(dir, 'm'));
    if (spawnSync('mount', ['-o', 'loop', img, join(dir, 'm')]).status !== 0) return false;
    spawnSync('umount', [join(dir, 'm')]);
    return true;
  } catch {
    return false;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('extent trees written by the kernel', { skip: !HAVE_TOOLS ? SKIP : loopMountWorks() ? false : 'loop mount unavailable' }, () => {
  test('32768-block extents, unwritten extents and punched holes map as debugfs says', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ext4kit-kmap-'));
    const path = join(dir, 'fs.img');
    const mnt = join(dir, 'm');
    try {
      // No backups and no journal leave whole groups free, so the kernel can lay down full-length extents.
      run('mke2fs', ['-q', '-t', 'ext4', '-b', '4096', '-O', '^has_journal,sparse_super2,metadata_csum', '-E', 'num_backup_sb=0', '-F', path, '512M']);
      mkdirSync(mnt);
      run('mount', ['-o', 'loop', path, mnt]);
      try {
        const chunk = new Uint8Array(1 << 20).fill(0x71);
        // Preallocate, then overwrite: conversion merges the written pieces up to 32768 blocks.
        run('fallocate', ['-l', '200M', join(mnt, 'big')]);
        let fd = openSync(join(mnt, 'big'), 'r+');
        for (let i = 0; i < 200; i++) writeSync(fd, chunk);
        closeSync(fd);
        run('fallocate', ['-l', '100M', join(mnt, 'pre')]);
        fd = openSync(join(mnt, 'holes'), 'w');
        for (let i = 0; i < 12; i++) writeSync(fd, chunk);
        closeSync(fd);
        for (let i = 0; i < 1200; i += 2) run('fallocate', ['-p', '-o', String(i * 4096), '-l', '4096', join(mnt, 'holes')]);
      } finally {
        run('umount', [mnt]);
      }
      const img = new Img(path);
      try {
        const names = ['big', 'pre', 'holes'];
        const inos = debugfsBatch(path, names.map((n) => `stat /${n}`)).map((o) => Number(/Inode: (\d+)/.exec(o)![1]));
        const exOut = debugfsBatch(path, inos.map((i) => `ex <${i}>`));
        const all: Mapping[][] = [];
        for (const [k, ino] of inos.entries()) {
          const inode = img.inode(ino);
          const got = await collect(inode, img.ctx(ino, inode));
          assert.deepEqual(got, parseExLeaves(exOut[k]!), names[k]);
          all.push(got);
          for (const m of got) {
            assert.deepEqual(await mapFileBlock(inode, img.ctx(ino, inode), m.fileBlock), m);
          }
        }
        // The kernel usually writes the 128 MiB file as full 32768-block extents, but a busy or
        // fragmented allocator may not; the comparison with debugfs above is what must hold.
        if (!all[0]!.some((m) => m.countBlocks === 32768 && !m.unwritten)) {
          process.stdout.write('# note: the kernel made no full-length extent this time\n');
        }
        assert.ok(all[0]!.every((m) => m.countBlocks <= 32768));
        assert.ok(all[1]!.length > 0 && all[1]!.every((m) => m.unwritten));
        assert.ok(u16(img.inode(inos[2]!).iBlock, 6) >= 1, 'punched file has an index root');
      } finally {
        img.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
