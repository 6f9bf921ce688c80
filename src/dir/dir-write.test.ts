import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  dirAddEntry, dirInit, dirIsEmpty, dirRemoveEntry, dirReplaceEntry, dirSetParent, type DirWriteEnv,
} from './dir-write.ts';
import { listDirectory, lookupName, type DirSource } from './dir-read.ts';
import { xorU8 } from '../util/bytes.ts';
import { decodeDirBlock, FT_DIR, FT_REG_FILE } from '../format/dirent.ts';
import { decodeDxNode, decodeDxRoot, type DxEntry } from '../format/htree.ts';
import {
  dirHash, effectiveHashVersion, DX_HASH_HALF_MD4, DX_HASH_TEA, EXT2_FLAGS_SIGNED_HASH, EXT2_FLAGS_UNSIGNED_HASH,
} from '../format/dir-hash.ts';
import { INDEX_FL, type Inode } from '../format/inode.ts';
import { decodeSuperblock, fsChecksumSeed, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE } from '../format/superblock.ts';
import { COMPAT, INCOMPAT } from '../format/features.ts';
import { inodeCsumSeed } from '../format/checksum.ts';
import { isExt4Error } from '../errors/ext4-error.ts';
import { type MetaTxn } from '../journal/transaction.ts';
import { type Mapping } from '../mapping/read-map.ts';
import { type FileBlock, type FsBlock } from '../util/brand.ts';

const SEED = [0x0f1e2d3c, 0x4b5a4968, 0x8776a5b4, 0xc3d2e1f0];
const DIR_INO = 11;
const PARENT_INO = 2;
const enc = new TextEncoder();
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const unhex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));

// ---- in-memory directory ------------------------------------------------------------------------

/** Map-backed metadata: reading a block never written is a bug in the code under test. */
class MemTxn implements MetaTxn {
  readonly blocks = new Map<number, Uint8Array>();
  /** With `transactional`, written blocks stay dirty (in-place edits apply) until commit() runs their finalizers. */
  private readonly dirty = new Map<number, ((bytes: Uint8Array) => void) | undefined>();
  transactional = false;
  constructor(readonly blockSize: number, private readonly fallback?: (b: number) => Uint8Array) {}
  commit(): void {
    for (const [b, f] of this.dirty) f?.(this.get(b));
    this.dirty.clear();
  }
  async read(b: FsBlock | number): Promise<Uint8Array> { return this.get(b); }
  async getWrite(b: FsBlock | number): Promise<Uint8Array> {
    const buf = this.get(b);
    this.blocks.set(b, buf);
    if (this.transactional && !this.dirty.has(b)) this.dirty.set(b, undefined);
    return buf;
  }
  getNew(b: FsBlock | number): Uint8Array {
    const buf = new Uint8Array(this.blockSize);
    this.blocks.set(b, buf);
    if (this.transactional) this.dirty.set(b, undefined);
    return buf;
  }
  forget(b: FsBlock | number): void { this.blocks.delete(b); this.dirty.delete(b); }
  /** Without `transactional`, every block counts as committed: finalizers (deferred checksums) run at once. */
  isDirty(b: FsBlock | number): boolean { return this.dirty.has(b); }
  onCommit(b: number, finalize: (bytes: Uint8Array) => void): void {
    if (this.transactional) this.dirty.set(b, finalize);
    else finalize(this.get(b));
  }
  private get(b: number): Uint8Array {
    const buf = this.blocks.get(b) ?? this.fallback?.(b);
    if (!buf) throw new Error(`read of unwritten block ${b}`);
    return buf;
  }
}

interface Cfg {
  blockSize: number;
  csum: boolean;
  dirIndex: boolean;
  hashVersion: number;
  largeDir?: boolean;
  filetype?: boolean;
  sbFlags?: number;
}

type TestEnv = DirWriteEnv & { phys: number[]; txn: MemTxn; flags: number };

function makeEnv(c: Cfg): TestEnv {
  const txn = new MemTxn(c.blockSize);
  const env: TestEnv = {
    ino: DIR_INO, blockSize: c.blockSize, filetype: c.filetype ?? true, metadataCsum: c.csum,
    inodeSeed: c.csum ? 0x5eed1234 : undefined, dirIndex: c.dirIndex, largeDir: c.largeDir ?? false,
    hashSeed: SEED, sbFlags: c.sbFlags ?? EXT2_FLAGS_UNSIGNED_HASH, defHashVersion: c.hashVersion, txn,
    phys: [], flags: 0x80000,
    blockCount: () => env.phys.length,
    mapBlock: async (fb) => env.phys[fb],
    // Physical blocks interleave with gaps so that file and fs block numbers never coincide.
    appendBlock: async () => { const p = 1000 + env.phys.length * 3; env.phys.push(p); return p; },
    getFlags: () => env.flags,
    setFlags: (f) => { env.flags = f; },
  };
  return env;
}

function sourceOf(env: TestEnv): DirSource {
  return {
    ino: env.ino, inode: { flags: env.flags, iBlock: new Uint8Array(60) } as unknown as Inode,
    blockSize: env.blockSize, filetype: env.filetype, metadataCsum: env.metadataCsum, inodesCount: 1 << 30,
    inodeSeed: env.inodeSeed, dirIndex: env.dirIndex, largeDir: env.largeDir, hashSeed: env.hashSeed,
    sbFlags: env.sbFlags,
    mappings: async () => env.phys.map((p, i): Mapping => ({ fileBlock: i as FileBlock, fsBlock: p as FsBlock, countBlocks: 1, unwritten: false })),
    readBlock: (b) => env.txn.read(b),
    inlineData: async () => undefined,
  };
}

interface Model { names: Map<string, { ino: number; ft: number }>; removed: Set<string> }

async function listed(env: TestEnv): Promise<Map<string, { ino: number; ft: number }>> {
  const out = new Map<string, { ino: number; ft: number }>();
  for await (const e of listDirectory(sourceOf(env))) {
    const k = hex(e.name);
    assert.ok(!out.has(k), `name ${k} listed twice`);
    out.set(k, { ino: e.ino, ft: e.fileType });
  }
  return out;
}

async function checkListing(env: TestEnv, m: Model): Promise<void> {
  const got = await listed(env);
  const dotFt = env.filetype ? FT_DIR : 0;
  assert.deepEqual(got.get(hex(enc.encode('.'))), { ino: env.ino, ft: dotFt });
  assert.deepEqual(got.get(hex(enc.encode('..'))), { ino: PARENT_INO, ft: dotFt });
  assert.equal(got.size, m.names.size + 2, 'listing size');
  for (const [k, v] of m.names) {
    assert.deepEqual(got.get(k), { ino: v.ino, ft: env.filetype ? v.ft : 0 }, `listing of ${k}`);
  }
}

async function checkLookups(env: TestEnv, m: Model, keys: Iterable<string>): Promise<void> {
  const src = sourceOf(env);
  for (const k of keys) {
    const r = await lookupName(src, unhex(k));
    const v = m.names.get(k);
    if (v) assert.equal(r?.ino, v.ino, `lookup of ${k.slice(0, 40)} (len ${k.length / 2})`);
    else assert.equal(r, undefined, `lookup of removed ${k.slice(0, 40)}`);
  }
}

interface Shape { levels: number; leaves: number; continued: number }

/**
 * Decodes every block with checksums verified; for an htree, walks the index: each block is
 * reached exactly once, index hashes are ordered, and every leaf entry hashes into its range.
 */
async function checkStructure(env: TestEnv): Promise<Shape> {
  const n = env.phys.length;
  const seed = env.inodeSeed;
  const leafOpts = { blockSize: env.blockSize, filetype: env.filetype, metadataCsum: env.metadataCsum, ...(seed !== undefined ? { csumInodeSeed: seed } : {}) };
  const dx = { ...leafOpts, largeDir: env.largeDir, dirBlocks: n };
  if (!(env.flags & INDEX_FL)) {
    for (let fb = 0; fb < n; fb++) decodeDirBlock(await env.txn.read(env.phys[fb]!), leafOpts);
    return { levels: -1, leaves: n, continued: 0 };
  }
  const root = decodeDxRoot(await env.txn.read(env.phys[0]!), dx);
  const version = effectiveHashVersion(root.hashVersion, env.sbFlags);
  const seen = new Set<number>([0]);
  const shape: Shape = { levels: root.indirectLevels, leaves: 0, continued: 0 };
  const walk = async (entries: DxEntry[], level: number, lo: number, hi: number): Promise<void> => {
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      const elo = i === 0 ? lo : e.hash;
      const ehi = i + 1 < entries.length ? entries[i + 1]!.hash : hi;
      if (i > 0) {
        assert.ok(e.hash >= lo && e.hash >= entries[i - 1]!.hash && (i === 1 || e.hash >= entries[i - 1]!.hash), 'index order');
        if (e.hash & 1) shape.continued++;
      }
      assert.ok(!seen.has(e.block), `block ${e.block} referenced twice`);
      seen.add(e.block);
      const buf = await env.txn.read(env.phys[e.block]!);
      if (level < root.indirectLevels) {
        await walk(decodeDxNode(buf, dx).entries, level + 1, elo, ehi);
      } else {
        shape.leaves++;
        for (const d of decodeDirBlock(buf, leafOpts).entries) {
          if (!d.inode) continue;
          const h = dirHash(d.name, version, env.hashSeed).hash;
          assert.ok(h >= ((elo & ~1) >>> 0) && h < ehi, `leaf ${e.block}: hash ${h.toString(16)} outside [${elo.toString(16)}, ${ehi.toString(16)})`);
        }
      }
    }
  };
  await walk(root.entries, 0, 0, 2 ** 32);
  assert.equal(seen.size, n, 'every directory block is in the tree');
  return shape;
}

// ---- names --------------------------------------------------------------------------------------

function sanitize(b: Uint8Array): Uint8Array {
  const out = b.map((x) => (x === 0 ? 1 : x === 0x2f ? 0x5f : x));
  if (out.every((x) => x === 0x2e) && out.length <= 2) return new Uint8Array([...out, 0x41]);
  return out;
}

const collisionCache = new Map<string, Uint8Array[][]>();

/** Pairs of distinct names of `len` bytes with equal hashes, found by the birthday bound. */
function collisions(version: number, seed: readonly number[], len: number, tries = 1 << 18): Uint8Array[][] {
  const key = `${version}/${seed.join(',')}/${len}/${tries}`;
  const hit = collisionCache.get(key);
  if (hit) return hit;
  const seen = new Map<number, Uint8Array>();
  const out: Uint8Array[][] = [];
  const prefix = 'c'.repeat(len - 8);
  for (let i = 0; i < tries; i++) {
    const name = enc.encode(prefix + i.toString(36).padStart(8, '0'));
    const h = dirHash(name, version, seed).hash;
    const prev = seen.get(h);
    if (prev) out.push([prev, name]);
    else seen.set(h, name);
  }
  collisionCache.set(key, out);
  return out;
}

const nameArb = fc.oneof(
  { weight: 3, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 255 }) },
  { weight: 3, arbitrary: fc.uint8Array({ minLength: 180, maxLength: 255 }) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 6 }) },
).map(sanitize);

type Op =
  | { kind: 'add'; name: Uint8Array; ino: number; ft: number }
  | { kind: 'collide'; pick: number; ino: number }
  | { kind: 'remove'; pick: number }
  | { kind: 'replace'; pick: number; ino: number; ft: number }
  | { kind: 'removeMissing'; name: Uint8Array };

const inoArb = fc.integer({ min: 12, max: 4_000_000 });
const ftArb = fc.integer({ min: 1, max: 7 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 10, arbitrary: fc.record({ kind: fc.constant('add' as const), name: nameArb, ino: inoArb, ft: ftArb }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('collide' as const), pick: fc.nat(), ino: inoArb }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('remove' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('replace' as const), pick: fc.nat(), ino: inoArb, ft: ftArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('removeMissing' as const), name: nameArb }) },
);

async function applyOp(env: TestEnv, m: Model, op: Op, collide: Uint8Array[]): Promise<string[]> {
  const keys = [...m.names.keys()];
  switch (op.kind) {
    case 'add':
    case 'collide': {
      const name = op.kind === 'add' ? op.name : collide[op.pick % collide.length]!;
      const ft = op.kind === 'add' ? op.ft : FT_REG_FILE;
      const k = hex(name);
      if (m.names.has(k)) return [k];
      await dirAddEntry(env, name, op.ino, ft);
      m.names.set(k, { ino: op.ino, ft });
      m.removed.delete(k);
      return [k];
    }
    case 'remove': {
      if (!keys.length) return [];
      const k = keys[op.pick % keys.length]!;
      const r = await dirRemoveEntry(env, unhex(k));
      const v = m.names.get(k)!;
      assert.deepEqual(r, { ino: v.ino, fileType: env.filetype ? v.ft : 0 });
      m.names.delete(k);
      m.removed.add(k);
      return [k];
    }
    case 'replace': {
      if (!keys.length) return [];
      const k = keys[op.pick % keys.length]!;
      const old = await dirReplaceEntry(env, unhex(k), op.ino, op.ft);
      assert.equal(old, m.names.get(k)!.ino);
      m.names.set(k, { ino: op.ino, ft: op.ft });
      return [k];
    }
    case 'removeMissing': {
      const k = hex(op.name);
      if (m.names.has(k)) return [];
      assert.equal(await dirRemoveEntry(env, op.name), undefined);
      return [k];
    }
  }
}

async function newDir(c: Cfg): Promise<{ env: TestEnv; m: Model }> {
  const env = makeEnv(c);
  await dirInit(env, DIR_INO, PARENT_INO);
  return { env, m: { names: new Map(), removed: new Set() } };
}

// ---- model tests --------------------------------------------------------------------------------

const configs: Cfg[] = [];
for (const blockSize of [1024, 4096]) {
  for (const csum of [false, true]) {
    configs.push({ blockSize, csum, dirIndex: false, hashVersion: DX_HASH_HALF_MD4 });
    for (const hashVersion of [DX_HASH_HALF_MD4, DX_HASH_TEA]) configs.push({ blockSize, csum, dirIndex: true, hashVersion });
  }
}
configs.push({ blockSize: 1024, csum: false, dirIndex: true, hashVersion: DX_HASH_TEA, filetype: false, sbFlags: EXT2_FLAGS_SIGNED_HASH });

for (const c of configs) {
  const label = `${c.blockSize}B csum=${c.csum} dirIndex=${c.dirIndex} hash=${c.hashVersion}${c.filetype === false ? ' nofiletype' : ''}`;
  test(`model: random add/remove/replace (${label})`, async () => {
    const version = effectiveHashVersion(c.hashVersion, c.sbFlags ?? EXT2_FLAGS_UNSIGNED_HASH);
    const collide = collisions(version, SEED, 200).flat();
    let sawIndexed = false;
    let sawContinued = false;
    await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: c.blockSize === 1024 ? 260 : 500, size: 'max' }), async (ops) => {
      const { env, m } = await newDir(c);
      for (const op of ops) {
        const touched = await applyOp(env, m, op, collide);
        await checkListing(env, m);
        const sample = [...m.names.keys()].filter((_, i) => i % 29 === ops.length % 29);
        await checkLookups(env, m, [...touched, ...sample.slice(0, 6)]);
        if ((await checkStructure(env)).continued > 0) sawContinued = true;
        assert.equal(await dirIsEmpty(env), m.names.size === 0);
      }
      await checkLookups(env, m, [...m.names.keys(), ...m.removed]);
      if (!c.dirIndex) assert.equal(env.flags & INDEX_FL, 0);
      if (env.flags & INDEX_FL) sawIndexed = true;
    }), { numRuns: c.blockSize === 1024 ? 10 : 5, seed: 0x5eed + c.blockSize + (c.csum ? 1 : 0) + c.hashVersion * 7 });
    if (c.dirIndex) assert.ok(sawIndexed, 'some run converted the directory into an htree');
    if (c.dirIndex && c.filetype !== false) assert.ok(sawContinued, 'some leaf split landed inside a run of equal hashes');
  });
}

// ---- targeted tests -----------------------------------------------------------------------------

test('dirInit writes . and .. with a tail; dirSetParent rewrites .. in linear and htree dirs', async () => {
  for (const csum of [false, true]) {
    const { env, m } = await newDir({ blockSize: 1024, csum, dirIndex: true, hashVersion: DX_HASH_HALF_MD4 });
    const d = decodeDirBlock(await env.txn.read(env.phys[0]!), { blockSize: 1024, filetype: true, metadataCsum: csum, ...(csum ? { csumInodeSeed: env.inodeSeed! } : {}) });
    assert.equal(d.hasTail, csum);
    assert.deepEqual(d.entries.map((e) => [e.inode, e.recLen, e.fileType]), [[DIR_INO, 12, FT_DIR], [PARENT_INO, 1024 - 12 - (csum ? 12 : 0), FT_DIR]]);
    assert.equal(await dirIsEmpty(env), true);
    await dirSetParent(env, 77);
    assert.equal((await lookupName(sourceOf(env), enc.encode('..')))?.ino, 77);
    for (let i = 0; i < 40; i++) {
      const name = enc.encode(`entry-${i}-${'z'.repeat(60)}`);
      await dirAddEntry(env, name, 100 + i, FT_REG_FILE);
      m.names.set(hex(name), { ino: 100 + i, ft: FT_REG_FILE });
    }
    assert.ok(env.flags & INDEX_FL);
    await dirSetParent(env, PARENT_INO);
    await checkListing(env, m);
    await checkStructure(env);
    assert.equal(await dirIsEmpty(env), false);
    for (const k of [...m.names.keys()]) {
      await dirRemoveEntry(env, unhex(k));
      m.names.delete(k);
    }
    assert.equal(await dirIsEmpty(env), true);
    await checkListing(env, m);
  }
});

test('errors: replace of a missing name is ENOENT, . and .. are refused, dirs are not shrunk', async () => {
  const { env } = await newDir({ blockSize: 1024, csum: true, dirIndex: true, hashVersion: DX_HASH_TEA });
  await assert.rejects(dirReplaceEntry(env, enc.encode('nope'), 12, 1), (e) => isExt4Error(e) && e.code === 'ENOENT');
  await assert.rejects(dirRemoveEntry(env, enc.encode('..')), (e) => isExt4Error(e) && e.code === 'EINVAL');
  await dirAddEntry(env, enc.encode('a'), 12, 1);
  assert.equal(await dirRemoveEntry(env, enc.encode('b')), undefined);
  assert.deepEqual(await dirRemoveEntry(env, enc.encode('a')), { ino: 12, fileType: 1 });
  assert.equal(env.phys.length, 1);
  // A corrupted checksum is reported, not overwritten.
  xorU8(await env.txn.getWrite(env.phys[0]!), 30, 1);
  await assert.rejects(dirAddEntry(env, enc.encode('c'), 13, 1), (e) => isExt4Error(e) && e.code === 'EBADMSG');
});

test('insertions into blocks already changed in the transaction (in place) give the same bytes as decoded ones', async () => {
  await fc.assert(fc.asyncProperty(
    fc.record({
      blockSize: fc.constantFrom(1024, 4096), csum: fc.boolean(), dirIndex: fc.boolean(),
      names: fc.uniqueArray(fc.string({ minLength: 1, maxLength: 40 }).filter((n) => !n.includes('/') && n !== '.' && n !== '..'), { minLength: 1, maxLength: 300 }),
      removeEvery: fc.integer({ min: 0, max: 7 }),
    }),
    async ({ blockSize, csum, dirIndex, names, removeEvery }) => {
      const run = async (transactional: boolean) => {
        const env = makeEnv({ blockSize, csum, dirIndex, hashVersion: DX_HASH_HALF_MD4 });
        env.txn.transactional = transactional;
        await dirInit(env, DIR_INO, PARENT_INO);
        for (let i = 0; i < names.length; i++) {
          await dirAddEntry(env, enc.encode(names[i]!), 100 + i, FT_REG_FILE);
          // Deletions leave holes that later insertions (in place or not) must fill the same way.
          if (removeEvery && i % removeEvery === removeEvery - 1) await dirRemoveEntry(env, enc.encode(names[i - 1]!));
          if (transactional && i % 97 === 96) env.txn.commit();
        }
        env.txn.commit();
        return env.phys.map((p) => hex(env.txn.blocks.get(p)!));
      };
      assert.deepEqual(await run(true), await run(false));
    },
  ), { numRuns: 60 });
});

test('linear directories append blocks when dir_index is off, and keep them first-fit', async () => {
  const { env, m } = await newDir({ blockSize: 1024, csum: true, dirIndex: false, hashVersion: DX_HASH_HALF_MD4 });
  for (let i = 0; i < 30; i++) {
    const name = enc.encode(`${i}`.padEnd(250, 'q'));
    await dirAddEntry(env, name, 20 + i, FT_REG_FILE);
    m.names.set(hex(name), { ino: 20 + i, ft: FT_REG_FILE });
  }
  assert.equal(env.phys.length, 10); // three 260-byte records per block, beside '.'/'..' in block 0
  const first = [...m.names.keys()][0]!;
  await dirRemoveEntry(env, unhex(first));
  m.names.delete(first);
  const again = enc.encode('x'.repeat(240));
  await dirAddEntry(env, again, 99, FT_REG_FILE);
  m.names.set(hex(again), { ino: 99, ft: FT_REG_FILE });
  assert.equal(env.phys.length, 10, 'the freed slot in block 0 was reused');
  await checkListing(env, m);
  await checkStructure(env);
});

test('an htree left behind on a filesystem without dir_index is written linearly and loses INDEX_FL', async () => {
  const { env, m } = await newDir({ blockSize: 1024, csum: false, dirIndex: true, hashVersion: DX_HASH_HALF_MD4 });
  for (let i = 0; i < 60; i++) {
    const name = enc.encode(`h${i}`.padEnd(100, 'h'));
    await dirAddEntry(env, name, 30 + i, FT_REG_FILE);
    m.names.set(hex(name), { ino: 30 + i, ft: FT_REG_FILE });
  }
  assert.ok(env.flags & INDEX_FL);
  env.dirIndex = false;
  const name = enc.encode('late');
  await dirAddEntry(env, name, 7, FT_REG_FILE);
  m.names.set(hex(name), { ino: 7, ft: FT_REG_FILE });
  assert.equal(env.flags & INDEX_FL, 0);
  await checkListing(env, m);
  await checkLookups(env, m, m.names.keys());
});

test('casefolded directories stay linear (their names hash differently)', async () => {
  const env = makeEnv({ blockSize: 1024, csum: true, dirIndex: true, hashVersion: DX_HASH_HALF_MD4 });
  env.flags |= 0x40000000;
  await dirInit(env, DIR_INO, PARENT_INO);
  for (let i = 0; i < 20; i++) await dirAddEntry(env, enc.encode(`c${i}`.padEnd(200, 'c')), 40 + i, FT_REG_FILE);
  assert.equal(env.flags & INDEX_FL, 0);
  assert.ok(env.phys.length > 1);
  await checkStructure(env);
});

test('64 KiB blocks: conversion and leaf splits with whole-block rec_len encodings', async () => {
  for (const csum of [false, true]) {
    const { env, m } = await newDir({ blockSize: 65536, csum, dirIndex: true, hashVersion: DX_HASH_HALF_MD4 });
    for (let i = 0; i < 1500; i++) {
      const name = enc.encode(`n${i}-`.padEnd(100 + (i % 150), 'w'));
      await dirAddEntry(env, name, 12 + i, FT_REG_FILE);
      m.names.set(hex(name), { ino: 12 + i, ft: FT_REG_FILE });
      if (i % 3 === 0) {
        const k = hex(name);
        await dirRemoveEntry(env, unhex(k));
        m.names.delete(k);
      }
    }
    const shape = await checkStructure(env);
    assert.ok(shape.leaves >= 3);
    await checkListing(env, m);
    await checkLookups(env, m, m.names.keys());
  }
});

test('hash collisions: runs split across leaves get the continuation bit and stay findable', async () => {
  for (const hashVersion of [DX_HASH_HALF_MD4, DX_HASH_TEA]) {
    const { env, m } = await newDir({ blockSize: 1024, csum: true, dirIndex: true, hashVersion });
    const version = effectiveHashVersion(hashVersion, EXT2_FLAGS_UNSIGNED_HASH);
    const pairs = collisions(version, SEED, 250);
    assert.ok(pairs.length >= 8);
    let continued = 0;
    let ino = 12;
    // Three 250-byte names fill a 1 KiB leaf, so splits fall between colliding names often.
    for (let round = 0; round < 4; round++) {
      for (const [a, b] of pairs) {
        for (const name of [a!, b!]) {
          const k = hex(name);
          if (m.names.has(k)) {
            await dirRemoveEntry(env, name);
            m.names.delete(k);
            m.removed.add(k);
          } else {
            await dirAddEntry(env, name, ino, FT_REG_FILE);
            m.names.set(k, { ino: ino++, ft: FT_REG_FILE });
          }
        }
        const filler = enc.encode(`f${round}-${ino}`.padEnd(240, 'f'));
        await dirAddEntry(env, filler, ino, FT_REG_FILE);
        m.names.set(hex(filler), { ino: ino++, ft: FT_REG_FILE });
        continued = Math.max(continued, (await checkStructure(env)).continued);
      }
      await checkLookups(env, m, [...m.names.keys(), ...m.removed]);
    }
    await checkListing(env, m);
    assert.ok(continued > 0, 'some split landed inside a run of equal hashes');
  }
});

test('1 KiB blocks, 20000 entries: the htree grows a second level and every name is found', async () => {
  const { env, m } = await newDir({ blockSize: 1024, csum: true, dirIndex: true, hashVersion: DX_HASH_HALF_MD4 });
  for (let i = 0; i < 20000; i++) {
    const name = enc.encode(`file-${i}-${'x'.repeat(i % 40)}`);
    await dirAddEntry(env, name, 12 + i, FT_REG_FILE);
    m.names.set(hex(name), { ino: 12 + i, ft: FT_REG_FILE });
  }
  const shape = await checkStructure(env);
  assert.equal(shape.levels, 1);
  await checkListing(env, m);
  await checkLookups(env, m, m.names.keys());
});

test('a full two-level index is ENOSPC dir-full without changes; largedir allows a third level', async () => {
  const { env, m } = await newDir({ blockSize: 1024, csum: true, dirIndex: true, hashVersion: DX_HASH_TEA });
  let i = 0;
  let err: unknown;
  const nameOf = (n: number) => enc.encode(`${n.toString(36)}-`.padEnd(255, 'L'));
  for (; i < 200_000; i++) {
    try {
      await dirAddEntry(env, nameOf(i), 12 + i, FT_REG_FILE);
    } catch (e) {
      err = e;
      break;
    }
    m.names.set(hex(nameOf(i)), { ino: 12 + i, ft: FT_REG_FILE });
  }
  assert.ok(isExt4Error(err) && err.code === 'ENOSPC' && err.detail === 'dir-full', String(err));
  const blocks = env.phys.length;
  const before = new Map([...env.txn.blocks].map(([b, buf]) => [b, hex(buf)]));
  await assert.rejects(dirAddEntry(env, nameOf(i), 12 + i, FT_REG_FILE), (e) => isExt4Error(e) && e.code === 'ENOSPC');
  assert.equal(env.phys.length, blocks);
  for (const [b, buf] of env.txn.blocks) assert.equal(hex(buf), before.get(b), `block ${b} changed by a failed insert`);
  assert.equal((await checkStructure(env)).levels, 1);
  env.largeDir = true;
  await dirAddEntry(env, nameOf(i), 12 + i, FT_REG_FILE);
  m.names.set(hex(nameOf(i)), { ino: 12 + i, ft: FT_REG_FILE });
  for (let j = 1; j < 300; j++) {
    await dirAddEntry(env, nameOf(i + j), 12 + i + j, FT_REG_FILE);
    m.names.set(hex(nameOf(i + j)), { ino: 12 + i + j, ft: FT_REG_FILE });
  }
  assert.equal((await checkStructure(env)).levels, 2);
  await checkListing(env, m);
  await checkLookups(env, m, m.names.keys());
});

// ---- real images --------------------------------------------------------------------------------

const haveTools = ['mke2fs', 'debugfs', 'e2fsck'].every((c) => spawnSync(c, ['-V']).status === 0);
const SKIP = 'e2fsprogs (mke2fs/debugfs/e2fsck) not installed';
const ENV = { ...process.env, E2FSPROGS_FAKE_TIME: '1700000000', LC_ALL: 'C' };
let work = '';

before(() => { work = mkdtempSync(join(tmpdir(), 'ext4kit-dirwrite-')); });
after(() => { if (work) rmSync(work, { recursive: true, force: true }); });

function run(cmd: string, args: string[], ok: number[] = [0]): string {
  const r = spawnSync(cmd, args, { env: ENV, maxBuffer: 256 << 20 });
  if (!ok.includes(r.status ?? -1)) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr?.toString()}${r.stdout?.toString()}`);
  return r.stdout.toString();
}
const debugfs = (img: string, req: string) => run('debugfs', ['-R', req, img]);

interface ImageCase { blockSize: number; features: string; hashAlg: 'half_md4' | 'tea'; preBlocks: number; adds: number; minLevels: number }

async function imageCase(ic: ImageCase): Promise<Shape> {
  const img = join(work, `img-${ic.blockSize}-${ic.hashAlg}-${ic.features}.img`);
  const size = 64 << 20;
  writeFileSync(img, new Uint8Array(0));
  run('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', String(ic.blockSize), '-O', ic.features,
    '-U', '4b1d0e5a-7c3f-4e2a-9d61-0123456789ab', '-E', 'hash_seed=0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0', img, `${size / 1024}k`]);
  const cmds = ['mkdir d', 'write /dev/null t1', 'write /dev/null t2', `ssv def_hash_version ${ic.hashAlg}`];
  for (let i = 1; i < ic.preBlocks; i++) cmds.push('expand_dir d');
  writeFileSync(join(work, 'cmds'), cmds.join('\n') + '\n');
  run('debugfs', ['-w', '-f', join(work, 'cmds'), img]);

  const fd = openSync(img, 'r+');
  try {
    const raw = new Uint8Array(SUPERBLOCK_SIZE);
    readSync(fd, raw, 0, SUPERBLOCK_SIZE, SUPERBLOCK_OFFSET);
    const sb = decodeSuperblock(raw);
    const bs = ic.blockSize;
    const stat = debugfs(img, 'stat d');
    const ino = Number(/Inode: (\d+)/.exec(stat)![1]);
    const generation = Number(/Generation: (\d+)/.exec(stat)![1]);
    const t1 = Number(/Inode: (\d+)/.exec(debugfs(img, 'stat t1'))![1]);
    const t2 = Number(/Inode: (\d+)/.exec(debugfs(img, 'stat t2'))![1]);
    const phys = debugfs(img, 'blocks d').trim().split(/\s+/).map(Number);
    assert.equal(phys.length, ic.preBlocks);
    const csum = (sb.featureRoCompat & 0x400) !== 0;
    const txn = new MemTxn(bs, (b) => {
      const buf = new Uint8Array(bs);
      readSync(fd, buf, 0, bs, b * bs);
      return buf;
    });
    let count = 1;
    const env: TestEnv = {
      ino, blockSize: bs, filetype: (sb.featureIncompat & INCOMPAT.filetype) !== 0, metadataCsum: csum,
      inodeSeed: csum ? inodeCsumSeed(fsChecksumSeed(sb), ino, generation) : undefined,
      dirIndex: (sb.featureCompat & COMPAT.dir_index) !== 0, largeDir: (sb.featureIncompat & INCOMPAT.large_dir) !== 0,
      hashSeed: sb.hashSeed, sbFlags: sb.flags, defHashVersion: sb.defHashVersion, txn,
      get phys() { return phys.slice(0, count); },
      flags: 0x80000,
      blockCount: () => count,
      mapBlock: async (fb) => (fb < count ? phys[fb] : undefined),
      appendBlock: async () => {
        assert.ok(count < phys.length, 'pre-allocated directory blocks exhausted');
        return phys[count++]!;
      },
      getFlags: () => env.flags,
      setFlags: (f) => { env.flags = f; },
    };
    await dirSetParent(env, 2);

    // Entries point at t1 / t2 so that e2fsck's link counts can be made to agree.
    const m: Model = { names: new Map(), removed: new Set() };
    const version = effectiveHashVersion(sb.defHashVersion, sb.flags);
    const coll = collisions(version, sb.hashSeed, 200).slice(0, 12).flat();
    let rng = 12345;
    const rand = (n: number) => { rng = (Math.imul(rng, 1103515245) + 12345) >>> 0; return (rng >>> 8) % n; };
    const alnum = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.';
    const randomName = () => {
      const len = rand(3) === 0 ? 1 + rand(255) : 150 + rand(106);
      let s = '';
      for (let i = 0; i < len; i++) s += alnum[rand(alnum.length)];
      return s === '.' || s === '..' ? s + 'x' : s;
    };
    for (let i = 0; i < ic.adds; i++) {
      const r = rand(10);
      const keys = [...m.names.keys()];
      if (r < 2 && keys.length) {
        const k = keys[rand(keys.length)]!;
        await dirRemoveEntry(env, unhex(k));
        m.names.delete(k);
        m.removed.add(k);
      } else if (r < 3 && keys.length) {
        const k = keys[rand(keys.length)]!;
        const to = m.names.get(k)!.ino === t1 ? t2 : t1;
        await dirReplaceEntry(env, unhex(k), to, FT_REG_FILE);
        m.names.set(k, { ino: to, ft: FT_REG_FILE });
      } else {
        const name = i % 7 === 0 && coll.length ? coll.pop()! : enc.encode(randomName());
        const k = hex(name);
        if (m.names.has(k)) continue;
        const target = rand(2) ? t1 : t2;
        await dirAddEntry(env, name, target, FT_REG_FILE);
        m.names.set(k, { ino: target, ft: FT_REG_FILE });
      }
    }
    const shape = await checkStructure(env);
    await checkListing(env, m);
    await checkLookups(env, m, [...m.names.keys(), ...m.removed]);

    for (const [b, buf] of txn.blocks) writeSync(fd, buf, 0, bs, b * bs);
    closeSync(fd);
    const links = (t: number) => 1 + [...m.names.values()].filter((v) => v.ino === t).length;
    const fix = [`sif t1 links_count ${links(t1)}`, `sif t2 links_count ${links(t2)}`];
    if (count < phys.length) fix.push(`punch d ${count} ${phys.length - 1}`);
    fix.push(`sif d size ${count * bs}`, `sif d flags 0x${env.flags.toString(16)}`);
    writeFileSync(join(work, 'fix'), fix.join('\n') + '\n');
    run('debugfs', ['-w', '-f', join(work, 'fix'), img]);

    const fsck = spawnSync('e2fsck', ['-fn', img], { env: ENV });
    assert.equal(fsck.status, 0, `e2fsck -fn:\n${fsck.stdout}${fsck.stderr}`);
    const ls = debugfs(img, 'ls -p d').split('\n').filter((l) => l.startsWith('/')).map((l) => {
      const f = l.split('/');
      return { ino: Number(f[1]), name: f.slice(5, f.length - 2).join('/') };
    }).filter((e) => e.ino !== 0); // debugfs also prints unused records (a leaf's deleted first entry)
    const want = new Map([...m.names].map(([k, v]) => [Buffer.from(unhex(k)).toString('latin1'), v.ino]));
    want.set('.', ino);
    want.set('..', 2);
    assert.deepEqual(ls.filter((e) => !want.has(e.name)).map((e) => e.name + ' ' + e.ino), []);
    assert.equal(ls.length, want.size);
    for (const e of ls) assert.equal(want.get(e.name), e.ino, `debugfs ls: ${e.name}`);
    if (env.flags & INDEX_FL) {
      // htree_dump reads every index and leaf block through libext2fs, which verifies checksums
      // and reports failures on stderr.
      const ht = spawnSync('debugfs', ['-R', 'htree d', img], { env: ENV, maxBuffer: 256 << 20 });
      assert.equal(ht.status, 0);
      assert.match(ht.stdout.toString(), /Number of entries \(count\)/);
      // Without metadata_csum debugfs 1.47 still tries to checksum the root and says so (it does
      // the same for htrees built by e2fsck -D).
      const quirk = /does not have space for checksum while calculating checksum for htree root/;
      assert.deepEqual(ht.stderr.toString().split('\n').filter((l) => l && !/^debugfs \d/.test(l) && (csum || !quirk.test(l))), []);
    }
    if (ic.features !== '^dir_index') {
      assert.ok(shape.levels >= ic.minLevels, `the htree has ${shape.levels + 1} index levels`);
      assert.ok(shape.continued > 0, 'a leaf split landed inside a run of colliding names');
    }
    return shape;
  } finally {
    try { closeSync(fd); } catch { /* closed already */ }
  }
}

test('real image, 1 KiB, metadata_csum, half_md4: e2fsck -fn is clean and debugfs agrees', { skip: !haveTools && SKIP }, async () => {
  await imageCase({ blockSize: 1024, features: 'metadata_csum', hashAlg: 'half_md4', preBlocks: 700, adds: 900, minLevels: 1 });
});

test('real image, 4 KiB, no metadata_csum, tea: e2fsck -fn is clean and debugfs agrees', { skip: !haveTools && SKIP }, async () => {
  await imageCase({ blockSize: 4096, features: '^metadata_csum', hashAlg: 'tea', preBlocks: 120, adds: 2500, minLevels: 0 });
});

test('real image, 1 KiB, linear (no dir_index): e2fsck -fn is clean', { skip: !haveTools && SKIP }, async () => {
  await imageCase({ blockSize: 1024, features: '^dir_index', hashAlg: 'half_md4', preBlocks: 300, adds: 500, minLevels: -1 });
});
