import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  decodeInodeXattrs, decodeXattrBlock, encodeInodeXattrs, encodeXattrBlock, splitXattrName,
  xattrEntryHash, xattrBlockHash, xattrBlockChecksum, XATTR_MAGIC, type XattrEntry,
} from './xattr.ts';
import { Ext4Error } from '../errors/ext4-error.ts';
import { crc32cUpdate } from '../util/crc.ts';
import { u32, setU16, setU32, xorU8 } from '../util/bytes.ts';

const haveTools = spawnSync('mke2fs', ['-V']).status === 0 && spawnSync('debugfs', ['-V']).status === 0;
const skip = haveTools ? false : 'mke2fs/debugfs not installed';
const env = { ...process.env, E2FSPROGS_FAKE_TIME: '1700000000' };
const UUID = '0123abcd-4567-89ab-cdef-0123456789ab';
let dir = '';

function run(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { env, input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
}
function debugfs(img: string, req: string, write = false): string {
  return run('debugfs', [...(write ? ['-w'] : []), '-R', req, img]);
}
interface Img { bytes: Uint8Array; blockSize: number; inodeSize: number; csumSeed: number }
function loadImg(path: string): Img {
  const bytes = new Uint8Array(readFileSync(path));
  const sb = bytes.subarray(1024, 2048);
  const blockSize = 1024 << u32(sb, 0x18);
  const inodeSize = sb[0x58]! | (sb[0x59]! << 8);
  // metadata_csum seed: s_checksum_seed with INCOMPAT_CSUM_SEED, else crc32c(~0, s_uuid).
  const csumSeed = u32(sb, 0x60) & 0x2000 ? u32(sb, 0x270) : crc32cUpdate(0xffffffff, sb, 0x68, 0x78);
  return { bytes, blockSize, inodeSize, csumSeed };
}
function inodeOffset(img: string, path: string, blockSize: number): number {
  const out = debugfs(img, `imap ${path}`);
  const m = /located at block (\d+), offset 0x([0-9a-f]+)/.exec(out);
  assert.ok(m, out);
  return Number(m[1]) * blockSize + parseInt(m[2]!, 16);
}
function fileAcl(img: string, path: string): number {
  const m = /File ACL: (\d+)/.exec(debugfs(img, `stat ${path}`));
  assert.ok(m);
  return Number(m[1]);
}
function inodeOf(img: Img, off: number): { raw: Uint8Array; extra: number } {
  const raw = img.bytes.slice(off, off + img.inodeSize);
  return { raw, extra: raw[0x80]! | (raw[0x81]! << 8) };
}
const text = (s: string) => new TextEncoder().encode(s);
function expectErr(fn: () => unknown, code: string, detail: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof Ext4Error, `not an Ext4Error: ${String(e)}`);
    assert.equal(e.code, code);
    assert.equal(e.detail, detail);
    return true;
  });
}

// Image 1: 4 KiB blocks, 256-byte inodes, metadata_csum; four user/trusted attrs in the inode,
// the selinux one and a large value spill into an xattr block written by debugfs.
let img1 = '';
// Image 2: inline_data + ea_inode: system.data and an EA-inode entry in the inode.
let img2 = '';
const big = 'B'.repeat(700);

before(() => {
  if (!haveTools) return;
  dir = mkdtempSync(join(tmpdir(), 'ext4kit-xattr-'));
  writeFileSync(join(dir, 'hi.txt'), 'hi\n');
  writeFileSync(join(dir, 'big.txt'), big);
  writeFileSync(join(dir, 'huge.txt'), 'H'.repeat(3000));
  img1 = join(dir, 'a.img');
  run('mke2fs', ['-q', '-F', '-t', 'ext4', '-I', '256', '-b', '4096', '-U', UUID, '-E', 'hash_seed=' + UUID, img1, '8M']);
  run('debugfs', ['-w', img1, '-f', '-'], [
    `write ${join(dir, 'hi.txt')} f`,
    'ea_set /f user.x value',
    'ea_set /f user.abc 12345678',
    'ea_set /f trusted.t tvalue1',
    'ea_set /f security.selinux sys_u:obj',
    `ea_set -f ${join(dir, 'big.txt')} /f user.big`,
  ].join('\n') + '\n');
  img2 = join(dir, 'b.img');
  run('mke2fs', ['-q', '-F', '-t', 'ext4', '-I', '256', '-b', '1024', '-O', 'inline_data,ea_inode', '-U', UUID, img2, '8M']);
  run('debugfs', ['-w', img2, '-f', '-'], [
    `write ${join(dir, 'hi.txt')} s`,
    'ea_set /s user.a AAAA',
    `ea_set -f ${join(dir, 'huge.txt')} /s user.huge`,
  ].join('\n') + '\n');
});
after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

test('in-inode xattrs from debugfs decode and re-encode byte for byte', { skip }, () => {
  const img = loadImg(img1);
  const { raw, extra } = inodeOf(img, inodeOffset(img1, '/f', img.blockSize));
  const entries = decodeInodeXattrs(raw, img.inodeSize, extra, { inode: 12 });
  assert.deepEqual(entries.map((e) => [e.fullName, new TextDecoder().decode(e.value)]), [
    ['user.x', 'value'], ['user.abc', '12345678'], ['trusted.t', 'tvalue1'],
  ]);
  assert.deepEqual(entries.map((e) => e.hash), [0, 0, 0]);
  const copy = raw.slice();
  copy.fill(0xee, 128 + extra);
  encodeInodeXattrs(entries, copy, img.inodeSize, extra);
  assert.deepEqual(copy, raw);
});

test('xattr block from debugfs: checksum, entry hashes, re-encode byte for byte', { skip }, () => {
  const img = loadImg(img1);
  const blk = fileAcl(img1, '/f');
  assert.ok(blk > 0);
  const block = img.bytes.slice(blk * img.blockSize, (blk + 1) * img.blockSize);
  const x = decodeXattrBlock(block, { blockNo: blk, csumSeed: img.csumSeed, where: { inode: 12 } });
  assert.equal(x.refcount, 1);
  assert.equal(x.blocks, 1);
  assert.deepEqual(x.entries.map((e) => e.fullName), ['user.big', 'security.selinux']);
  assert.equal(new TextDecoder().decode(x.entries[0]!.value), big);
  for (const e of x.entries) assert.equal(e.hash, xattrEntryHash(e.name, e.value));
  assert.equal(x.checksum, xattrBlockChecksum(block, blk, img.csumSeed));
  // e2fsprogs 1.47 leaves h_hash at 0; reproduce that by passing the decoded hash.
  const out = new Uint8Array(img.blockSize).fill(0xee);
  encodeXattrBlock([...x.entries].reverse(), out, { blockNo: blk, csumSeed: img.csumSeed, hash: x.hash });
  assert.deepEqual(out, block);
});

test('inline_data marker and EA-inode entries in the inode round-trip', { skip }, () => {
  const img = loadImg(img2);
  const { raw, extra } = inodeOf(img, inodeOffset(img2, '/s', img.blockSize));
  const entries = decodeInodeXattrs(raw, img.inodeSize, extra);
  assert.deepEqual(entries.map((e) => e.fullName), ['system.data', 'user.a', 'user.huge']);
  const [data, a, huge] = entries as [XattrEntry, XattrEntry, XattrEntry];
  assert.equal(data.nameIndex, 7);
  assert.equal(data.name, 'data');
  assert.equal(data.value.length, 0);
  assert.equal(new TextDecoder().decode(a.value), 'AAAA');
  assert.ok(huge.valueInum > 0);
  assert.equal(huge.value.length, 0);
  assert.ok(huge.valueSize > 0);
  assert.notEqual(huge.hash, 0);
  const copy = raw.slice();
  encodeInodeXattrs(entries, copy, img.inodeSize, extra);
  assert.deepEqual(copy, raw);
});

test('kernel-written xattr block (loop mount): computed h_hash, ACL entry with empty name', { skip }, (t) => {
  const img = join(dir, 'k.img');
  run('mke2fs', ['-q', '-F', '-t', 'ext4', '-I', '256', '-b', '4096', img, '8M']);
  const mnt = join(dir, 'mnt');
  mkdirSync(mnt, { recursive: true });
  if (spawnSync('mount', ['-o', 'loop', img, mnt]).status !== 0) { t.skip('loop mount not available'); return; }
  try {
    writeFileSync(join(mnt, 'f'), 'hi\n');
    const acl = Buffer.alloc(4 + 5 * 8);
    acl.writeUInt32LE(2, 0);
    [[1, 7, 0xffffffff], [2, 7, 1000], [4, 5, 0xffffffff], [0x10, 7, 0xffffffff], [0x20, 5, 0xffffffff]].forEach(([tag, perm, id], i) => {
      acl.writeUInt16LE(tag!, 4 + i * 8); acl.writeUInt16LE(perm!, 6 + i * 8); acl.writeUInt32LE(id!, 8 + i * 8);
    });
    const set = (name: string, hex: string) => run('setfattr', ['-n', name, '-v', '0x' + hex, join(mnt, 'f')]);
    set('user.x', Buffer.from('value').toString('hex'));
    set('user.abc', Buffer.from('12345678').toString('hex'));
    set('user.blk', Buffer.alloc(200, 'B').toString('hex'));
    set('user.blk2', Buffer.alloc(150, 'C').toString('hex'));
    set('system.posix_acl_access', acl.toString('hex'));
  } finally {
    run('umount', [mnt]);
  }
  const im = loadImg(img);
  const blk = fileAcl(img, '/f');
  const block = im.bytes.slice(blk * im.blockSize, (blk + 1) * im.blockSize);
  const x = decodeXattrBlock(block, { blockNo: blk, csumSeed: im.csumSeed });
  assert.deepEqual(x.entries.map((e) => e.fullName), ['user.blk', 'user.blk2', 'system.posix_acl_access']);
  assert.equal(x.entries[2]!.name, '');
  assert.notEqual(x.hash, 0);
  assert.equal(x.hash, xattrBlockHash(x.entries));
  const out = new Uint8Array(im.blockSize);
  encodeXattrBlock(x.entries, out, { blockNo: blk, csumSeed: im.csumSeed });
  assert.deepEqual(out, block);
});

test('splitXattrName maps prefixes to indices', () => {
  assert.deepEqual(splitXattrName('user.foo'), { nameIndex: 1, name: 'foo' });
  assert.deepEqual(splitXattrName('system.posix_acl_access'), { nameIndex: 2, name: '' });
  assert.deepEqual(splitXattrName('system.posix_acl_default'), { nameIndex: 3, name: '' });
  assert.deepEqual(splitXattrName('trusted.t'), { nameIndex: 4, name: 't' });
  assert.deepEqual(splitXattrName('security.selinux'), { nameIndex: 6, name: 'selinux' });
  assert.deepEqual(splitXattrName('system.data'), { nameIndex: 7, name: 'data' });
  assert.deepEqual(splitXattrName('system.richacl'), { nameIndex: 8, name: '' });
  assert.deepEqual(splitXattrName('other.x'), { nameIndex: 0, name: 'other.x' });
});

// Synthetic fixtures for mutation tests: one block and one 256-byte inode with two entries.
function synthBlock(): Uint8Array {
  const b = new Uint8Array(1024);
  encodeXattrBlock([
    { nameIndex: 1, name: 'a', value: text('one') },
    { nameIndex: 1, name: 'bb', value: text('second value') },
  ], b, { blockNo: 77, csumSeed: 0x12345678 });
  return b;
}
const INODE_EXTRA = 32;
const FIRST = 128 + INODE_EXTRA + 4;
function synthInode(): Uint8Array {
  const b = new Uint8Array(256);
  encodeInodeXattrs([
    { nameIndex: 1, name: 'a', value: text('one') },
    { nameIndex: 6, name: 'zz', value: text('2') },
  ], b, 256, INODE_EXTRA);
  return b;
}
const reseal = (b: Uint8Array) => setU32(b, 16, xattrBlockChecksum(b, 77, 0x12345678));

test('synthetic fixtures decode cleanly', () => {
  const x = decodeXattrBlock(synthBlock(), { blockNo: 77, csumSeed: 0x12345678 });
  assert.deepEqual(x.entries.map((e) => e.fullName), ['user.a', 'user.bb']);
  assert.equal(x.hash, xattrBlockHash(x.entries));
  assert.deepEqual(decodeInodeXattrs(synthInode(), 256, INODE_EXTRA).map((e) => e.fullName), ['user.a', 'security.zz']);
  assert.deepEqual(decodeInodeXattrs(new Uint8Array(256), 256, INODE_EXTRA), []);
  assert.deepEqual(decodeInodeXattrs(new Uint8Array(128), 128, 0), []);
});

test('mutation: block magic', () => {
  const b = synthBlock(); xorU8(b, 0, 1);
  expectErr(() => decodeXattrBlock(b, { blockNo: 77 }), 'EUCLEAN', 'xattr-block-magic');
});
test('mutation: block h_blocks != 1', () => {
  const b = synthBlock(); setU32(b, 8, 2);
  expectErr(() => decodeXattrBlock(b, { blockNo: 77 }), 'EUCLEAN', 'xattr-block-count');
});
test('mutation: block checksum', () => {
  const b = synthBlock(); xorU8(b, 1000, 1);
  expectErr(() => decodeXattrBlock(b, { blockNo: 77, csumSeed: 0x12345678 }), 'EBADMSG', 'xattr-block-checksum');
  expectErr(() => decodeXattrBlock(synthBlock(), { blockNo: 78, csumSeed: 0x12345678 }), 'EBADMSG', 'xattr-block-checksum');
  const err = (() => { try { decodeXattrBlock(b, { blockNo: 77, csumSeed: 0x12345678, where: { inode: 5 } }); } catch (e) { return e as Ext4Error; } return undefined; })();
  assert.deepEqual(err?.where, { inode: 5, block: 77 });
});
test('mutation: entry table without terminator runs out of the block', () => {
  const b = new Uint8Array(64);
  setU32(b, 0, XATTR_MAGIC); setU32(b, 8, 1);
  for (let p = 32; p < 64; p += 4) b[p] = 1; // name_len 1 entries forever
  expectErr(() => decodeXattrBlock(b, { blockNo: 1 }), 'EUCLEAN', 'xattr-entry-bounds');
  const i = synthInode(); i[FIRST] = 200; // name runs past the inode
  expectErr(() => decodeInodeXattrs(i, 256, INODE_EXTRA), 'EUCLEAN', 'xattr-entry-bounds');
});
test('mutation: empty name outside the ACL indices', () => {
  const b = synthBlock(); b[32] = 0; b[33] = 1; reseal(b);
  // name_len 0 shifts the following entry; the check fires on this entry first.
  expectErr(() => decodeXattrBlock(b, { blockNo: 77, csumSeed: 0x12345678 }), 'EUCLEAN', 'xattr-name-len');
});
test('mutation: value beyond the area', () => {
  const b = synthBlock(); setU32(b, 32 + 8, 5000); reseal(b);
  expectErr(() => decodeXattrBlock(b, { blockNo: 77, csumSeed: 0x12345678 }), 'EUCLEAN', 'xattr-value-bounds');
  const i = synthInode(); setU16(i, FIRST + 2, 0xfff0);
  expectErr(() => decodeInodeXattrs(i, 256, INODE_EXTRA), 'EUCLEAN', 'xattr-value-bounds');
});
test('mutation: value overlapping the entry table', () => {
  const b = synthBlock(); setU16(b, 32 + 2, 32); reseal(b);
  expectErr(() => decodeXattrBlock(b, { blockNo: 77, csumSeed: 0x12345678 }), 'EUCLEAN', 'xattr-value-overlap');
  const i = synthInode(); setU16(i, FIRST + 2, 4);
  expectErr(() => decodeInodeXattrs(i, 256, INODE_EXTRA), 'EUCLEAN', 'xattr-value-overlap');
});
test('mutation: misaligned value offset', () => {
  const b = synthBlock(); setU16(b, 32 + 2, 1000 - 2); reseal(b);
  expectErr(() => decodeXattrBlock(b, { blockNo: 77, csumSeed: 0x12345678 }), 'EUCLEAN', 'xattr-value-align');
});
test('mutation: i_extra_isize that does not fit or is unaligned', () => {
  expectErr(() => decodeInodeXattrs(synthInode(), 256, 130), 'EUCLEAN', 'xattr-extra-isize');
  expectErr(() => decodeInodeXattrs(synthInode(), 256, 30), 'EUCLEAN', 'xattr-extra-isize');
});
test('in-inode area without magic holds no xattrs', () => {
  const i = synthInode(); xorU8(i, 128 + INODE_EXTRA, 1);
  assert.deepEqual(decodeInodeXattrs(i, 256, INODE_EXTRA), []);
});

test('hostile bytes only ever raise Ext4Error', () => {
  let seed = 1;
  const rnd = () => { seed = (seed * 1103515245 + 12345) >>> 0; return seed >>> 16; };
  for (let n = 0; n < 3000; n++) {
    const b = n % 2 ? synthBlock() : synthInode();
    for (let k = 0; k < 1 + (n % 6); k++) b[rnd() % b.length] = rnd() & 0xff;
    try {
      if (n % 2) decodeXattrBlock(b, { blockNo: 77 }); else decodeInodeXattrs(b, 256, INODE_EXTRA);
    } catch (e) {
      assert.ok(e instanceof Ext4Error, String(e));
    }
  }
});

test('encoders refuse what does not fit', () => {
  const b = new Uint8Array(1024);
  assert.throws(() => encodeXattrBlock([{ nameIndex: 1, name: 'v', value: new Uint8Array(1000) }], b, { blockNo: 1 }),
    (e: unknown) => e instanceof Ext4Error && e.code === 'ENOSPC');
  assert.throws(() => encodeInodeXattrs([{ nameIndex: 1, name: 'v', value: new Uint8Array(80) }], new Uint8Array(256), 256, 32),
    (e: unknown) => e instanceof Ext4Error && e.code === 'ENOSPC');
  assert.throws(() => encodeInodeXattrs([{ nameIndex: 1, name: 'x'.repeat(256), value: new Uint8Array(0) }], new Uint8Array(256), 256, 32),
    (e: unknown) => e instanceof Ext4Error && e.code === 'ERANGE');
});
