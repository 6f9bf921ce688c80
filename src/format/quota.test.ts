import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync, writeFileSync, mkdirSync, chownSync, openSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeQuotaFile, decodeQuotaInfo, encodeQuotaFile, QUOTA_MAGIC, type QuotaType, type QuotaUsage } from './quota.ts';
import { Ext4Error } from '../errors/ext4-error.ts';
import { u32, setU16, setU32 } from '../util/bytes.ts';

const haveTools = ['mke2fs', 'debugfs', 'e2fsck'].every((t) => spawnSync(t, ['-V']).status === 0);
const skip = haveTools ? false : 'mke2fs/debugfs/e2fsck not installed';
const env = { ...process.env, E2FSPROGS_FAKE_TIME: '1700000000' };
let dir = '';
let img = '';

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { env, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
}
function fsck(image: string, fix = false): number {
  return spawnSync('e2fsck', [fix ? '-fy' : '-fn', image], { env }).status ?? -1;
}
/** Quota inode numbers from the superblock: s_usr/s_grp/s_prj_quota_inum. */
function quotaInodes(image: string): Record<QuotaType, number> {
  const sb = new Uint8Array(readFileSync(image)).subarray(1024, 2048);
  return { user: u32(sb, 0x240), group: u32(sb, 0x244), project: u32(sb, 0x26c) };
}
function dumpInode(image: string, ino: number): Uint8Array {
  const out = join(dir, `dump-${ino}.bin`);
  rmSync(out, { force: true });
  run('debugfs', ['-R', `dump <${ino}> ${out}`, image]);
  return new Uint8Array(readFileSync(out));
}
/** Overwrites the data blocks of inode `ino` with `data` (same length as the file). */
function writeInodeData(image: string, ino: number, data: Uint8Array): void {
  const sb = new Uint8Array(readFileSync(image)).subarray(1024, 2048);
  const bs = 1024 << u32(sb, 0x18);
  const blocks = run('debugfs', ['-R', `blocks <${ino}>`, image]).trim().split(/\s+/).map(Number);
  assert.equal(blocks.length, Math.ceil(data.length / bs));
  const fd = openSync(image, 'r+');
  try {
    blocks.forEach((b, i) => { writeSync(fd, data, i * bs, Math.min(bs, data.length - i * bs), b * bs); });
  } finally { closeSync(fd); }
}
function expectErr(fn: () => unknown, code: string, detail: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof Ext4Error, `not an Ext4Error: ${String(e)}`);
    assert.equal(e.code, code);
    assert.equal(e.detail, detail);
    return true;
  });
}

before(() => {
  if (!haveTools) return;
  dir = mkdtempSync(join(tmpdir(), 'ext4kit-quota-'));
  const src = join(dir, 'src');
  mkdirSync(src);
  // 45 files over owners spread across tree paths: more than one data block per type, ids
  // sharing and not sharing each tree level, and one above 2^31.
  for (let i = 0; i < 45; i++) {
    const uid = i < 30 ? 1000 + i * 7 : i < 44 ? i * 65536 + i : 200 * 16777216 + 5;
    const f = join(src, `f${i}`);
    writeFileSync(f, Buffer.alloc(i * 1000, 'x'));
    chownSync(f, uid, (i % 3) * 1000 + i);
  }
  img = join(dir, 'q.img');
  run('mke2fs', ['-q', '-F', '-t', 'ext4', '-O', 'quota,project', '-U', '0123abcd-4567-89ab-cdef-0123456789ab', '-d', src, img, '16M']);
  // mke2fs 1.47.0 computes quota before copying -d; e2fsck -fy rewrites the quota files afresh.
  fsck(img, true);
  assert.equal(fsck(img), 0);
});
after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

test('quota files written by e2fsprogs decode and re-encode byte for byte', { skip }, () => {
  const inos = quotaInodes(img);
  for (const type of ['user', 'group', 'project'] as const) {
    assert.ok(inos[type] > 0, type);
    const bytes = dumpInode(img, inos[type]);
    const usage = decodeQuotaFile(bytes, type, { inode: inos[type] });
    if (type === 'user') {
      assert.equal(usage.size, 46); // 45 owners + root
      assert.equal(usage.get(0)!.inodes, 2);
      assert.deepEqual(usage.get(200 * 16777216 + 5), { spaceBytes: 43 * 1024, inodes: 1 }); // 44000 bytes in 1 KiB blocks
      assert.ok(decodeQuotaInfo(bytes, type).blocks > 5);
    }
    if (type === 'project') assert.deepEqual([...usage.keys()], [0]);
    assert.deepEqual(encodeQuotaFile(type, usage), bytes, type);
  }
});

test('an encoded file with limits is accepted by e2fsck and kept by its rewrite', { skip }, () => {
  const work = join(dir, 'limits.img');
  writeFileSync(work, readFileSync(img));
  const ino = quotaInodes(work).user;
  const usage = decodeQuotaFile(dumpInode(work, ino), 'user');
  const withLimits = new Map(usage);
  withLimits.set(1000, { ...usage.get(1000)!, softBytes: 4096 * 1024, hardBytes: 5000 * 1024, softInodes: 50, hardInodes: 100 });
  withLimits.set(1007, { ...usage.get(1007)!, hardBytes: 1 << 30 });
  const ours = encodeQuotaFile('user', withLimits);
  writeInodeData(work, ino, ours);
  assert.equal(fsck(work), 0);
  assert.deepEqual(dumpInode(work, ino), ours);

  // Now make one usage wrong: e2fsck -fy rewrites the file with the true usage, carrying our limits.
  const wrong = new Map(withLimits);
  wrong.set(1014, { ...usage.get(1014)!, inodes: 7 });
  writeInodeData(work, ino, encodeQuotaFile('user', wrong));
  assert.notEqual(fsck(work), 0);
  fsck(work, true);
  assert.equal(fsck(work), 0);
  const rewritten = dumpInode(work, ino);
  assert.deepEqual(decodeQuotaFile(rewritten, 'user'), withLimits);
  assert.deepEqual(rewritten, ours);
});

test('synthetic round trip: limits, grace times, sparse ids, full data blocks', () => {
  const usage = new Map<number, QuotaUsage>();
  for (let i = 0; i < 40; i++) usage.set(i * 3, { spaceBytes: i * 4096, inodes: i + 1 });
  usage.set(0xffffffff, { spaceBytes: 2 ** 40, inodes: 3, softBytes: 1024, hardBytes: 2048, softInodes: 1, hardInodes: 2, btime: 1700000000, itime: 1700000001 });
  usage.set(77, { spaceBytes: 0, inodes: 0 }); // empty: left out, as e2fsprogs deletes it
  const bytes = encodeQuotaFile('group', usage);
  usage.delete(77);
  assert.deepEqual(decodeQuotaFile(bytes, 'group'), usage);
  assert.equal(bytes.length % 1024, 0);
  // Limits round up to whole quota blocks.
  const r = decodeQuotaFile(encodeQuotaFile('user', new Map([[5, { spaceBytes: 1, inodes: 1, hardBytes: 1 }]])), 'user');
  assert.equal(r.get(5)!.hardBytes, 1024);
  const empty = encodeQuotaFile('project', new Map());
  assert.equal(empty.length, 2048);
  assert.equal(decodeQuotaFile(empty, 'project').size, 0);
});

// Mutation fixture: ids 0, 1 and 70000 → root(1) → tree blocks 2,3,4 → data 5; 70000 → 6,7 → data 5.
function fixture(): Uint8Array {
  return encodeQuotaFile('user', new Map([
    [0, { spaceBytes: 4096, inodes: 2 }], [1, { spaceBytes: 1024, inodes: 1 }], [70000, { spaceBytes: 1, inodes: 1 }],
  ]));
}
const blk = (n: number, off = 0) => n * 1024 + off;

test('mutation fixture decodes', () => {
  const f = fixture();
  assert.equal(decodeQuotaInfo(f, 'user').blocks, 8);
  assert.deepEqual([...decodeQuotaFile(f, 'user').keys()], [0, 1, 70000]);
});
test('mutation: file too short', () => expectErr(() => decodeQuotaFile(fixture().slice(0, 1500), 'user'), 'EUCLEAN', 'quota-file-size'));
test('mutation: magic / wrong type', () => {
  expectErr(() => decodeQuotaFile(fixture(), 'group'), 'EUCLEAN', 'quota-magic');
  const f = fixture(); setU32(f, 0, QUOTA_MAGIC.user ^ 1);
  expectErr(() => decodeQuotaFile(f, 'user'), 'EUCLEAN', 'quota-magic');
});
test('mutation: version', () => {
  const f = fixture(); setU32(f, 4, 7);
  expectErr(() => decodeQuotaFile(f, 'user'), 'EUCLEAN', 'quota-version');
  setU32(f, 4, 0);
  expectErr(() => decodeQuotaFile(f, 'user'), 'ENOTSUP', 'quota-version');
});
test('mutation: dqi_blocks beyond the file', () => {
  const f = fixture(); setU32(f, 20, 9);
  expectErr(() => decodeQuotaFile(f, 'user'), 'EUCLEAN', 'quota-info-blocks');
});
test('mutation: free list head beyond dqi_blocks', () => {
  const f = fixture(); setU32(f, 28, 8);
  expectErr(() => decodeQuotaFile(f, 'user'), 'EUCLEAN', 'quota-info-free');
});
test('mutation: tree reference out of range', () => {
  const f = fixture(); setU32(f, blk(1), 8);
  expectErr(() => decodeQuotaFile(f, 'user'), 'EUCLEAN', 'quota-tree-ref');
  const g = fixture(); setU32(g, blk(2), 1); // back to the root
  expectErr(() => decodeQuotaFile(g, 'user'), 'EUCLEAN', 'quota-tree-ref');
});
test('mutation: tree block reached twice / used as data', () => {
  const f = fixture(); setU32(f, blk(1, 4 * 9), 2); // a second root slot points at block 2
  expectErr(() => decodeQuotaFile(f, 'user'), 'EUCLEAN', 'quota-tree-shared');
  const g = fixture(); setU32(g, blk(4, 4 * 2), 3); // leaf points at a tree block
  expectErr(() => decodeQuotaFile(g, 'user'), 'EUCLEAN', 'quota-tree-shared');
});
test('mutation: data block entry count', () => {
  const f = fixture(); setU16(f, blk(5, 8), 15);
  expectErr(() => decodeQuotaFile(f, 'user'), 'EUCLEAN', 'quota-data-entries');
});
test('mutation: dquot off its tree path', () => {
  const f = fixture(); setU32(f, blk(5, 16 + 72), 2); // id 1 rewritten as id 2
  expectErr(() => decodeQuotaFile(f, 'user'), 'EUCLEAN', 'quota-entry-misplaced');
});
test('mutation: referenced id missing from its data block', () => {
  const f = fixture(); f.fill(0, blk(5, 16 + 72), blk(5, 16 + 144));
  expectErr(() => decodeQuotaFile(f, 'user'), 'EUCLEAN', 'quota-entry-missing');
});
test('mutation: duplicate id in a data block', () => {
  const f = fixture(); f.copyWithin(blk(5, 16 + 72), blk(5, 16), blk(5, 16 + 72));
  setU32(f, blk(4, 4), 0); // drop the leaf for id 1 so the copy of id 0 is the only anomaly
  expectErr(() => decodeQuotaFile(f, 'user'), 'EUCLEAN', 'quota-duplicate-id');
});
test('mutation: 64-bit value above 2^53', () => {
  const f = fixture(); setU32(f, blk(5, 16 + 48 + 4), 0xffffffff);
  expectErr(() => decodeQuotaFile(f, 'user'), 'EUCLEAN', 'quota-value-range');
});
test('a tree whose every slot points at one block cannot blow up', () => {
  const f = new Uint8Array(4 * 1024);
  f.set(fixture().subarray(0, 32));
  setU32(f, 20, 4);
  setU32(f, 28, 0);
  for (let i = 0; i < 256; i++) { setU32(f, blk(1, i * 4), 2); setU32(f, blk(2, i * 4), 3); setU32(f, blk(3, i * 4), 2); }
  expectErr(() => decodeQuotaFile(f, 'user'), 'EUCLEAN', 'quota-tree-shared');
});
test('hostile bytes only ever raise Ext4Error', () => {
  let seed = 7;
  const rnd = () => { seed = (seed * 1103515245 + 12345) >>> 0; return seed >>> 16; };
  for (let n = 0; n < 3000; n++) {
    const f = fixture();
    for (let k = 0; k < 1 + (n % 8); k++) {
      const pos = n % 3 === 0 ? rnd() % 32 : rnd() % f.length;
      f[pos] = n % 2 ? rnd() & 0xff : (rnd() % 10);
    }
    try { decodeQuotaFile(f, 'user'); } catch (e) { assert.ok(e instanceof Ext4Error, String(e)); }
  }
});
test('a file whose last block is short reads it zero-filled', () => {
  const f = fixture();
  assert.deepEqual(decodeQuotaFile(f.slice(0, f.length - 100), 'user'), decodeQuotaFile(f, 'user'));
});
