import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, readSync, closeSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  decodeDxRoot, decodeDxNode, encodeDxRoot, encodeDxNode, newDxRoot, dxRootLimit, dxNodeLimit, dxChecksum,
  dxFindEntry, setDxTail, DX_ROOT_COUNT_OFFSET, DX_NODE_COUNT_OFFSET, DX_ENTRY_SIZE,
  type DxEntry, type DxOpts, type DxRoot,
} from './htree.ts';
import { decodeDirBlock, encodeDirBlock } from './dirent.ts';
import { dirHash, effectiveHashVersion, DX_HASH_HALF_MD4 } from './dir-hash.ts';
import { isExt4Error } from '../errors/ext4-error.ts';
import { setU16, setU32, u16, u32, xorU8 } from '../util/bytes.ts';
import { crc32cUpdate } from '../util/crc.ts';

const haveMke2fs = ['mke2fs', 'debugfs', 'e2fsck'].every((c) => spawnSync(c, ['-V']).status === 0) &&
  spawnSync('tune2fs', ['-l', '/dev/null']).error === undefined;
const SKIP = 'mke2fs/debugfs/e2fsck (e2fsprogs) are not installed';
const ENV = { ...process.env, E2FSPROGS_FAKE_TIME: '1700000000' };
const UUID = '0d9c8b7a-6f5e-4d3c-8b2a-19f8e7d6c5b4';
const HASH_SEED = '7e3a1f90-2b4c-4d5e-8f60-718293a4b5c6';

let work = '';

function run(cmd: string, args: string[], okStatus: number[] = [0]): Buffer {
  const r = spawnSync(cmd, args, { env: ENV, maxBuffer: 256 << 20 });
  if (!okStatus.includes(r.status ?? -1)) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr?.toString()}`);
  return r.stdout;
}
const debugfs = (img: string, cmd: string): string => run('debugfs', ['-R', cmd, img]).toString('latin1');

function readAt(path: string, pos: number, len: number): Uint8Array {
  const fd = openSync(path, 'r');
  try {
    const b = new Uint8Array(len);
    assert.equal(readSync(fd, b, 0, len, pos), len);
    return b;
  } finally {
    closeSync(fd);
  }
}

interface Image {
  path: string; blockSize: number; csum: boolean; filetype: boolean; largeDir: boolean;
  fsSeed: number; hashSeed: number[]; sFlags: number; defHashVersion: number;
}

function openImage(path: string): Image {
  const sb = readAt(path, 1024, 1024);
  const incompat = u32(sb, 0x60);
  return {
    path,
    blockSize: 1024 << u32(sb, 0x18),
    csum: (u32(sb, 0x64) & 0x400) !== 0,
    filetype: (incompat & 0x2) !== 0,
    largeDir: (incompat & 0x4000) !== 0,
    fsSeed: (incompat & 0x2000) !== 0 ? u32(sb, 0x270) : crc32cUpdate(0xffffffff, sb, 0x68, 0x78),
    hashSeed: [0, 1, 2, 3].map((i) => u32(sb, 0xec + 4 * i)),
    defHashVersion: sb[0xfc]!,
    sFlags: u32(sb, 0x160),
  };
}

function le32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  setU32(b, 0, n);
  return b;
}

interface Dir { img: Image; ino: number; seed: number | undefined; blocks: Uint8Array[]; phys: number[] }
function readDir(img: Image, path: string): Dir {
  const stat = debugfs(img.path, `stat ${path}`);
  const ino = Number(/Inode: (\d+)/.exec(stat)![1]);
  const gen = Number(/Generation: (\d+)/.exec(stat)![1]);
  assert.ok(parseInt(/Flags: 0x([0-9a-f]+)/.exec(stat)![1]!, 16) & 0x1000, `${path} is indexed (EXT4_INDEX_FL)`);
  const phys = debugfs(img.path, `blocks ${path}`).trim().split(/\s+/).map(Number);
  const seed = img.csum ? crc32cUpdate(crc32cUpdate(img.fsSeed, le32(ino)), le32(gen)) : undefined;
  return { img, ino, seed, phys, blocks: phys.map((p) => readAt(img.path, p * img.blockSize, img.blockSize)) };
}

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const images: Record<string, Image> = {};

before(() => {
  if (!haveMke2fs) return;
  work = mkdtempSync(join(tmpdir(), 'ext4kit-htree-'));
  const src = join(work, 'src');
  mkdirSync(join(src, 'big'), { recursive: true });
  mkdirSync(join(src, 'deep'));
  const r = rng(0x47);
  // Names with bytes >= 0x80 make the signed and unsigned hash variants disagree.
  for (let i = 0; i < 3000; i++) {
    const extra = Array.from({ length: Math.floor(r() * 12) }, () => (r() < 0.5 ? 0x80 + Math.floor(r() * 0x80) : 0x61 + Math.floor(r() * 26)));
    writeFileSync(Buffer.concat([Buffer.from(join(src, 'big') + `/f${i}_`), Buffer.from(extra)]), '');
  }
  // Long names: few records per 1 KiB leaf, so the index needs a second level.
  for (let i = 0; i < 800; i++) writeFileSync(join(src, 'deep', `n${i}_${'x'.repeat(180 + (i % 60))}`), '');

  const mk = (name: string, mkfsArgs: string[], hashAlg?: string, sflags?: number): void => {
    const path = join(work, name);
    run('mke2fs', ['-q', '-F', '-t', 'ext4', '-U', UUID, '-E', `hash_seed=${HASH_SEED}`, ...mkfsArgs, '-d', src, path, '64M']);
    if (hashAlg !== undefined) run('tune2fs', ['-E', `hash_alg=${hashAlg}`, path]);
    if (sflags !== undefined) run('debugfs', ['-w', '-R', `ssv flags ${sflags}`, path]);
    // mke2fs -d writes linear directories; e2fsck -D indexes them.
    run('e2fsck', ['-fyD', path], [0, 1]);
    images[name] = openImage(path);
  };
  mk('csum4k-md4.img', ['-b', '4096']);
  mk('csum1k-md4.img', ['-b', '1024']);
  mk('nocsum1k-tea-noft.img', ['-b', '1024', '-O', '^metadata_csum,^filetype'], 'tea');
  mk('csum4k-legacy-unsigned.img', ['-b', '4096'], 'legacy', 2);
  mk('csum1k-tea-unsigned-largedir.img', ['-b', '1024', '-O', 'large_dir'], 'tea', 2);
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** debugfs `htree` root dump: version, levels, count, limit, checksum and entries. */
function debugfsRoot(img: Image, path: string): { hashVersion: number; levels: number; count: number; limit: number; checksum?: number; entries: DxEntry[] } {
  const out = debugfs(img.path, `htree ${path}`);
  const head = out.slice(0, out.indexOf('\n\n'));
  const num = (re: RegExp): number => Number(re.exec(head)![1]);
  const cs = /Checksum: 0x([0-9a-f]+)/.exec(head);
  const entries = [...head.matchAll(/Entry #\d+: Hash 0x([0-9a-f]+), block (\d+)/g)].map((m) => ({ hash: parseInt(m[1]!, 16), block: Number(m[2]) }));
  const res = {
    hashVersion: num(/Hash Version: (\d+)/), levels: num(/Indirect levels: (\d+)/),
    count: num(/\(count\): (\d+)/), limit: num(/\(limit\): (\d+)/), entries,
  };
  return cs ? { ...res, checksum: parseInt(cs[1]!, 16) } : res;
}

const optsFor = (d: Dir): DxOpts => ({
  blockSize: d.img.blockSize, filetype: d.img.filetype, csumInodeSeed: d.seed, largeDir: d.img.largeDir,
  dirBlocks: d.blocks.length, where: { inode: d.ino },
});

/** Index bytes past `count` entries and outside the tail carry nothing; e2fsck leaves them zero. */
function unusedIndexIsZero(block: Uint8Array, countOffset: number, csum: boolean): boolean {
  const count = u16(block, countOffset + 2);
  const limit = u16(block, countOffset);
  const end = csum ? countOffset + limit * DX_ENTRY_SIZE : block.length;
  return block.subarray(countOffset + count * DX_ENTRY_SIZE, end).every((b) => b === 0);
}

/** Index blocks re-encode from scratch when their unused bytes are zero, else in place over a scribbled copy. */
function checkReencode(block: Uint8Array, countOffset: number, csum: boolean, encode: (out: Uint8Array, keepSlack: boolean) => void, what: string): boolean {
  if (unusedIndexIsZero(block, countOffset, csum)) {
    const fresh = new Uint8Array(block.length).fill(0x5a);
    encode(fresh, false);
    assert.deepEqual(fresh, block, `${what}: re-encode from scratch`);
    return true;
  }
  const copy = block.slice();
  copy.fill(0xa5, 0, countOffset + u16(block, countOffset + 2) * DX_ENTRY_SIZE);
  if (csum) copy.fill(0xa5, countOffset + u16(block, countOffset) * DX_ENTRY_SIZE, countOffset + u16(block, countOffset) * DX_ENTRY_SIZE + 8);
  encode(copy, true);
  assert.deepEqual(copy, block, `${what}: in-place re-encode`);
  return false;
}

/** Everything we can check about one real htree directory; returns a one-line summary. */
function checkHtreeDir(name: string, img: Image, path: string): string {
      let stale = 0;
      const d = readDir(img, path);
      const opts = optsFor(d);
      const root = decodeDxRoot(d.blocks[0]!, opts);
      const ref = debugfsRoot(img, path);
      assert.equal(root.hashVersion, ref.hashVersion);
      assert.equal(root.hashVersion, img.defHashVersion);
      assert.equal(root.indirectLevels, ref.levels);
      assert.equal(root.entries.length, ref.count);
      assert.equal(root.limit, ref.limit);
      assert.equal(root.checksum, ref.checksum);
      assert.deepEqual(root.entries, ref.entries);
      assert.equal(root.limit, dxRootLimit(img.blockSize, img.csum));
      assert.equal(root.dotInode, d.ino);
      if (path === '/deep' && img.blockSize === 1024) assert.equal(root.indirectLevels, 1, `${name}: two-level index`);

      if (!checkReencode(d.blocks[0]!, DX_ROOT_COUNT_OFFSET, img.csum, (out, keepSlack) => encodeDxRoot(root, out, { ...opts, keepSlack }), `${name} ${path} dx_root`)) stale++;

      // Walk the index; leaves[i] = [first hash covered, logical block].
      const leaves: { hash: number; block: number }[] = [];
      const indexBlocks = new Set<number>([0]);
      const walk = (entries: DxEntry[], level: number, lowHash: number): void => {
        entries.forEach((e, i) => {
          const hash = i === 0 ? lowHash : e.hash;
          if (level === root.indirectLevels) {
            leaves.push({ hash, block: e.block });
            return;
          }
          indexBlocks.add(e.block);
          const block = d.blocks[e.block]!;
          const node = decodeDxNode(block, opts);
          assert.equal(node.limit, dxNodeLimit(img.blockSize, img.csum));
          if (!checkReencode(block, DX_NODE_COUNT_OFFSET, img.csum, (out, keepSlack) => encodeDxNode(node, out, { ...opts, keepSlack }), `${name} ${path} dx_node ${e.block}`)) stale++;
          walk(node.entries, level + 1, hash);
        });
      };
      walk(root.entries, 0, 0);
      assert.equal(indexBlocks.size + leaves.length, d.blocks.length, 'index + leaves cover the directory');

      const version = effectiveHashVersion(root.hashVersion, img.sFlags);
      if (name.includes('unsigned')) assert.equal(version, root.hashVersion + 3);
      let names = 0;
      for (const [li, leaf] of leaves.entries()) {
        const leafBlock = d.blocks[leaf.block]!;
        const { entries, hasTail } = decodeDirBlock(leafBlock, {
          blockSize: img.blockSize, filetype: img.filetype, csumInodeSeed: d.seed, where: { inode: d.ino, block: leaf.block },
        });
        // Leaves re-encode in place over a copy with headers, names and tail scribbled over.
        const copy = leafBlock.slice();
        for (const e of entries) copy.fill(0xa5, e.offset, e.offset + 8 + e.nameLen);
        if (hasTail) copy.fill(0xa5, img.blockSize - 12);
        encodeDirBlock(entries, copy, {
          blockSize: img.blockSize, filetype: img.filetype, csumInodeSeed: d.seed, metadataCsum: hasTail, keepSlack: true,
        });
        assert.deepEqual(copy, leafBlock, `${name} ${path}: leaf ${leaf.block} re-encode`);
        for (const e of entries) {
          if (e.inode === 0) continue;
          names++;
          const h = dirHash(e.name, version, img.hashSeed).hash;
          // Lookup: follow the last index entry whose hash <= h at every level.
          let ents = root.entries;
          for (let level = 0; level < root.indirectLevels; level++) ents = decodeDxNode(d.blocks[ents[dxFindEntry(ents, h)]!.block]!, opts).entries;
          const target = ents[dxFindEntry(ents, h)]!.block;
          let j = leaves.findIndex((l) => l.block === target);
          // Collisions continue into following leaves whose index hash is h with the low bit set.
          while (j < li && (leaves[j + 1]!.hash & ~1) >>> 0 === h) j++;
          assert.equal(j, li, `${name} ${path}: '${Buffer.from(e.name).toString('latin1')}' hash 0x${h.toString(16)} found in leaf ${leaf.block}, index points at ${target}`);
          assert.ok(h >= leaf.hash, 'hash not below the leaf start');
        }
      }
      const lsCount = debugfs(img.path, `ls -p ${path}`).split('\n').filter((l) => l.startsWith('/') && !l.startsWith('/0/')).length;
      assert.equal(names + 2, lsCount, `${name} ${path}: every name is in a leaf`);
      return `${name} ${path}: hash v${version}, ${root.indirectLevels + 1} index level(s), ${indexBlocks.size} index + ${leaves.length} leaf blocks (${stale} index blocks with stale slots), ${names} names placed`;
}

test('real htree directories (e2fsck -D): decode, debugfs agreement, byte-exact re-encode, hash placement', (t) => {
  if (!haveMke2fs) return t.skip(SKIP);
  for (const [name, img] of Object.entries(images)) {
    for (const path of ['/big', '/deep']) t.diagnostic(checkHtreeDir(name, img, path));
  }
});

test('kernel-written htree directories (loop mount): same checks', (t) => {
  if (!haveMke2fs) return t.skip(SKIP);
  const path = join(work, 'kernel.img');
  run('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', '1024', '-U', UUID, '-E', `hash_seed=${HASH_SEED}`, path, '64M']);
  const mnt = join(work, 'mnt');
  mkdirSync(mnt, { recursive: true });
  if (spawnSync('mount', ['-o', 'loop', path, mnt]).status !== 0) return t.skip('loop mount is not available here');
  try {
    // The kernel indexes a directory when it outgrows one block and splits leaves and index
    // nodes as it grows; deleting leaves holes and stale bytes behind.
    mkdirSync(join(mnt, 'k'));
    const r = rng(11);
    const names = Array.from({ length: 6000 }, (_, i) => `k${i}_${'y'.repeat(Math.floor(r() * 120))}`);
    for (const n of names) writeFileSync(join(mnt, 'k', n), '');
    for (let i = 0; i < names.length; i += 7) rmSync(join(mnt, 'k', names[i]!));
  } finally {
    spawnSync('umount', [mnt]);
  }
  run('e2fsck', ['-fn', path]);
  t.diagnostic(checkHtreeDir('kernel.img', openImage(path), '/k'));
});

test('synthetic roots and nodes round-trip, including 64 KiB blocks and large_dir', () => {
  for (const blockSize of [1024, 4096, 65536]) {
    for (const csum of [false, true]) {
      const seed = csum ? 0xdeadbeef : undefined;
      const root = newDxRoot(12, 2, DX_HASH_HALF_MD4, 1, blockSize, csum);
      root.indirectLevels = 2;
      root.entries.push({ hash: 0x1000, block: 2 }, { hash: 0x1000, block: 3 }, { hash: 0x80000000, block: 4 });
      const block = new Uint8Array(blockSize);
      const opts = { blockSize, metadataCsum: csum, csumInodeSeed: seed, largeDir: true };
      encodeDxRoot(root, block, opts);
      assert.equal(u16(block, 16), blockSize - 12, "'..' covers the block");
      const back = decodeDxRoot(block, opts);
      const want: DxRoot = { ...root };
      if (csum) {
        want.checksum = u32(block, DX_ROOT_COUNT_OFFSET + root.limit * 8 + 4);
        want.tailReserved = 0;
      }
      assert.deepEqual(back, want);

      const node = { limit: dxNodeLimit(blockSize, csum), entries: [{ hash: 0, block: 7 }, { hash: 0x20, block: 8 }] };
      const nb = new Uint8Array(blockSize);
      encodeDxNode(node, nb, opts);
      assert.equal(u16(nb, 4), blockSize === 65536 ? 65535 : blockSize, 'fake rec_len');
      const nback = decodeDxNode(nb, opts);
      assert.deepEqual(nback.entries, node.entries);
      if (csum) {
        const copy = nb.slice();
        setU32(copy, DX_NODE_COUNT_OFFSET + node.limit * 8 + 4, 0);
        setDxTail(copy, 'node', seed!);
        assert.deepEqual(copy, nb);
        assert.equal(nback.checksum, dxChecksum(nb, DX_NODE_COUNT_OFFSET, 2, node.limit, seed!));
      }
    }
  }
  const es = [{ hash: 0, block: 1 }, { hash: 10, block: 2 }, { hash: 10, block: 3 }, { hash: 20, block: 4 }];
  assert.deepEqual([0, 9, 10, 11, 19, 20, 0xffffffff].map((h) => dxFindEntry(es, h)), [0, 0, 2, 2, 2, 3, 3]);
});

// ---- mutation tests: one per validation rule -------------------------------------------

function sampleRoot(): { block: Uint8Array; opts: DxOpts } {
  const root = newDxRoot(11, 2, DX_HASH_HALF_MD4, 1, 1024, true);
  root.entries.push({ hash: 0x100, block: 2 }, { hash: 0x200, block: 3 });
  const block = new Uint8Array(1024);
  const opts: DxOpts = { blockSize: 1024, csumInodeSeed: 0x4242, dirBlocks: 4, where: { inode: 11 } };
  encodeDxRoot(root, block, opts);
  return { block, opts };
}
function sampleNode(): { block: Uint8Array; opts: DxOpts } {
  const block = new Uint8Array(1024);
  const opts: DxOpts = { blockSize: 1024, csumInodeSeed: 0x4242, dirBlocks: 4, where: { inode: 11 } };
  encodeDxNode({ limit: dxNodeLimit(1024, true), entries: [{ hash: 0, block: 1 }, { hash: 0x300, block: 2 }] }, block, opts);
  return { block, opts };
}

function expectErr(fn: () => unknown, code: 'EUCLEAN' | 'EBADMSG', detail: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isExt4Error(e), `expected Ext4Error, got ${String(e)}`);
    assert.equal(e.code, code);
    assert.equal(e.detail, detail);
    assert.equal(e.where.inode, 11);
    return true;
  });
}
/** Mutate, then either expect `detail`, or with `seedOk` fix the checksum first so only the rule fires. */
function mutRoot(f: (b: Uint8Array) => void, detail: string, extra: Partial<DxOpts> = {}): void {
  const { block, opts } = sampleRoot();
  f(block);
  expectErr(() => decodeDxRoot(block, { ...opts, ...extra }), 'EUCLEAN', detail);
}
function mutNode(f: (b: Uint8Array) => void, detail: string, extra: Partial<DxOpts> = {}): void {
  const { block, opts } = sampleNode();
  f(block);
  expectErr(() => decodeDxNode(block, { ...opts, ...extra }), 'EUCLEAN', detail);
}

test('samples decode cleanly', () => {
  const r = sampleRoot();
  assert.equal(decodeDxRoot(r.block, r.opts).entries.length, 3);
  const n = sampleNode();
  assert.equal(decodeDxNode(n.block, n.opts).entries.length, 2);
});

test("mutation: '.' record → EUCLEAN dx-root-dot", () => {
  mutRoot((b) => setU16(b, 4, 16), 'dx-root-dot');
  mutRoot((b) => { b[8] = 0x41; }, 'dx-root-dot');
});
test("mutation: '..' record → EUCLEAN dx-root-dotdot", () => {
  mutRoot((b) => setU16(b, 16, 1000), 'dx-root-dotdot');
  mutRoot((b) => { b[18] = 3; }, 'dx-root-dotdot');
});
test('mutation: reserved_zero → EUCLEAN dx-root-reserved', () => mutRoot((b) => setU32(b, 24, 1), 'dx-root-reserved'));
test('mutation: info_length → EUCLEAN dx-root-info-length', () => mutRoot((b) => { b[29] = 9; }, 'dx-root-info-length'));
test('mutation: hash version → EUCLEAN dx-root-hash-version', () => {
  mutRoot((b) => { b[28] = 7; }, 'dx-root-hash-version');
  mutRoot((b) => { b[28] = 4; }, 'dx-root-hash-version'); // unsigned variants are never stored
});
test('mutation: unimplemented flag → EUCLEAN dx-root-flags', () => mutRoot((b) => { b[31] = 1; }, 'dx-root-flags'));
test('mutation: indirect_levels → EUCLEAN dx-root-levels', () => {
  mutRoot((b) => { b[30] = 2; }, 'dx-root-levels');
  mutRoot((b) => { b[30] = 3; }, 'dx-root-levels', { largeDir: true });
  const { block, opts } = sampleRoot();
  block[30] = 2;
  // With large_dir two indirect levels are legal; the changed header then fails its checksum.
  expectErr(() => decodeDxRoot(block, { ...opts, largeDir: true }), 'EBADMSG', 'htree-checksum');
});
test('mutation: limit → EUCLEAN dx-limit', () => {
  mutRoot((b) => setU16(b, 32, u16(b, 32) + 1), 'dx-limit');
  mutRoot(() => {}, 'dx-limit', { metadataCsum: false, csumInodeSeed: undefined }); // csum layout read as non-csum
  mutNode((b) => setU16(b, 8, u16(b, 8) - 1), 'dx-limit');
});
test('mutation: count → EUCLEAN dx-count', () => {
  mutRoot((b) => setU16(b, 34, 0), 'dx-count');
  mutRoot((b) => setU16(b, 34, u16(b, 32) + 1), 'dx-count');
  mutNode((b) => setU16(b, 10, 0), 'dx-count');
});
test('mutation: hashes out of order → EUCLEAN dx-hash-order', () => {
  mutRoot((b) => setU32(b, 40 + 8, 0x50), 'dx-hash-order');
});
test('mutation: index block outside the directory → EUCLEAN dx-block-range', () => {
  mutRoot((b) => setU32(b, 40 + 12, 9), 'dx-block-range');
  mutRoot(() => {}, 'dx-block-range', { dirBlocks: 3 });
  mutNode((b) => setU32(b, 12, 0), 'dx-block-range');
});
test('mutation: dx_node fake inode → EUCLEAN dx-node-inode', () => mutNode((b) => setU32(b, 0, 5), 'dx-node-inode'));
test('mutation: dx_node fake rec_len → EUCLEAN dx-node-rec-len', () => mutNode((b) => setU16(b, 4, 1012), 'dx-node-rec-len'));
test('mutation: wrong checksum → EBADMSG htree-checksum', () => {
  for (const [sample, dec] of [[sampleRoot, decodeDxRoot], [sampleNode, decodeDxNode]] as const) {
    const { block, opts } = sample();
    const countOff = dec === decodeDxRoot ? DX_ROOT_COUNT_OFFSET : DX_NODE_COUNT_OFFSET;
    const b1 = block.slice();
    xorU8(b1, countOff + 8 + 4, 1); // a used entry's block number
    expectErr(() => dec(b1, opts), 'EBADMSG', 'htree-checksum');
    const b2 = block.slice();
    xorU8(b2, countOff + u16(block, countOff) * 8, 1); // the tail's reserved word is covered too
    expectErr(() => dec(b2, opts), 'EBADMSG', 'htree-checksum');
    const b3 = block.slice();
    xorU8(b3, countOff + u16(block, countOff + 2) * 8, 1); // an unused slot is not covered
    dec(b3, opts);
    expectErr(() => dec(block, { ...opts, csumInodeSeed: 1 }), 'EBADMSG', 'htree-checksum');
  }
});

test('hostile bytes: random corruption only ever throws Ext4Error', () => {
  const r = rng(5);
  for (const sample of [sampleRoot, sampleNode]) {
    const { block, opts } = sample();
    for (let i = 0; i < 20000; i++) {
      const b = block.slice();
      const n = 1 + Math.floor(r() * 4);
      for (let k = 0; k < n; k++) b[Math.floor(r() * (r() < 0.9 ? 64 : 1024))] = Math.floor(r() * 256);
      for (const o of [opts, { blockSize: 1024 }, { blockSize: 1024, filetype: false, largeDir: true }]) {
        for (const dec of [decodeDxRoot, decodeDxNode]) {
          try { dec(b, o); } catch (e) { if (!isExt4Error(e)) throw e; }
        }
      }
    }
  }
});
