import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  decodeJournalSuperblock, encodeJournalSuperblock, makeEmptyJournalSuperblock, journalSuperblockChecksum,
  JBD2_FEATURE_INCOMPAT_CSUM_V2, JBD2_FEATURE_INCOMPAT_CSUM_V3, JBD2_FEATURE_INCOMPAT_64BIT,
  JBD2_FEATURE_INCOMPAT_FAST_COMMIT, JBD2_FEATURE_COMPAT_CHECKSUM,
} from './superblock.ts';
import { Ext4Error } from '../../errors/ext4-error.ts';
import { u32, setU32be, uuidFromString, xorU8 } from '../../util/bytes.ts';

const haveTools = spawnSync('mke2fs', ['-V']).status === 0 && spawnSync('debugfs', ['-V']).status === 0;
const skip = haveTools ? false : 'mke2fs/debugfs not installed';
const env = { ...process.env, E2FSPROGS_FAKE_TIME: '1700000000' };
const UUID = '0123abcd-4567-89ab-cdef-0123456789ab';
let dir = '';

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { env, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
}
interface Journal { block: Uint8Array; blockSize: number; journalBlocks: number }
/** The journal inode's first block, read through `debugfs bmap <8> 0`. */
function readJournal(img: string): Journal {
  const all = new Uint8Array(readFileSync(img));
  const blockSize = 1024 << u32(all, 1024 + 0x18);
  const first = Number(run('debugfs', ['-R', 'bmap <8> 0', img]).trim());
  const size = /Size: (\d+)/.exec(run('debugfs', ['-R', 'stat <8>', img]));
  assert.ok(first > 0 && size);
  return { block: all.slice(first * blockSize, (first + 1) * blockSize), blockSize, journalBlocks: Number(size[1]) / blockSize };
}
function mkfs(name: string, args: string[]): string {
  const img = join(dir, name);
  run('mke2fs', ['-q', '-F', '-t', 'ext4', '-U', UUID, ...args, img, '64M']);
  return img;
}
function expectErr(fn: () => unknown, code: string, detail: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof Ext4Error, `not an Ext4Error: ${String(e)}`);
    assert.equal(e.code, code);
    assert.equal(e.detail, detail);
    return true;
  });
}

before(() => { if (haveTools) dir = mkdtempSync(join(tmpdir(), 'ext4kit-jsb-')); });
after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

const geometries: Array<{ name: string; args: string[]; fc?: number }> = [
  { name: '4k', args: ['-b', '4096'] },
  { name: '1k', args: ['-b', '1024'] },
  { name: '4k-nocsum', args: ['-b', '4096', '-O', '^metadata_csum'] },
  { name: '4k-bigger-journal', args: ['-b', '4096', '-J', 'size=8'] },
  { name: '4k-fast-commit', args: ['-b', '4096', '-O', 'fast_commit'], fc: 16 },
];

for (const g of geometries) {
  test(`mke2fs journal superblock (${g.name}) decodes and matches makeEmptyJournalSuperblock byte for byte`, { skip }, () => {
    const img = mkfs(`${g.name}.img`, g.args);
    const j = readJournal(img);
    const sb = decodeJournalSuperblock(j.block, { journalBlocks: j.journalBlocks, blockSize: j.blockSize, where: { inode: 8 } });
    assert.equal(sb.blockType, 4);
    assert.equal(sb.blockSize, j.blockSize);
    assert.equal(sb.maxLen, j.journalBlocks);
    assert.equal(sb.first, 1);
    assert.equal(sb.sequence, 1);
    assert.equal(sb.start, 0);
    assert.equal(sb.nrUsers, 1);
    assert.equal(sb.featureIncompat, 0);
    assert.equal(sb.numFcBlocks, g.fc ?? 0);
    assert.deepEqual(sb.uuid, uuidFromString(UUID));

    const made = makeEmptyJournalSuperblock({
      blockSize: j.blockSize, journalBlocks: j.journalBlocks, uuid: uuidFromString(UUID)!, fastCommitBlocks: g.fc,
    });
    const out = new Uint8Array(j.blockSize);
    encodeJournalSuperblock(made, out);
    assert.deepEqual(out, j.block); // the rest of the block is zero as well
    const again = new Uint8Array(j.blockSize).fill(0xee);
    encodeJournalSuperblock(sb, again);
    assert.deepEqual(again.subarray(0, 1024), j.block.subarray(0, 1024));
  });
}

test('kernel-mounted journal superblock: CSUM_V3 checksum verifies and re-encodes', { skip }, (t) => {
  const img = mkfs('k.img', ['-b', '4096']);
  const mnt = join(dir, 'mnt');
  mkdirSync(mnt, { recursive: true });
  if (spawnSync('mount', ['-o', 'loop', img, mnt]).status !== 0) { t.skip('loop mount not available'); return; }
  try { run('touch', [join(mnt, 'x')]); } finally { run('umount', [mnt]); }
  const j = readJournal(img);
  const sb = decodeJournalSuperblock(j.block, { journalBlocks: j.journalBlocks, blockSize: j.blockSize });
  assert.ok(sb.featureIncompat & JBD2_FEATURE_INCOMPAT_CSUM_V3);
  assert.equal(sb.checksumType, 4);
  assert.equal(sb.checksum, journalSuperblockChecksum(j.block));
  const out = new Uint8Array(1024);
  encodeJournalSuperblock(sb, out);
  assert.deepEqual(out, j.block.subarray(0, 1024));
  // The mounted form from makeEmptyJournalSuperblock, given what the kernel moved on.
  const made = makeEmptyJournalSuperblock({
    blockSize: j.blockSize, journalBlocks: j.journalBlocks, uuid: sb.uuid, sequence: sb.sequence, csumV3: true,
    bit64: (sb.featureIncompat & JBD2_FEATURE_INCOMPAT_64BIT) !== 0,
  });
  made.head = sb.head;
  made.featureIncompat = sb.featureIncompat;
  encodeJournalSuperblock(made, out);
  assert.deepEqual(out, j.block.subarray(0, 1024));
});

// Mutation fixture: a CSUM_V3 superblock of a 1024-block journal.
function fixture(mut?: (b: Uint8Array) => void, reseal = true): Uint8Array {
  const b = new Uint8Array(1024);
  encodeJournalSuperblock(makeEmptyJournalSuperblock({ blockSize: 4096, journalBlocks: 2048, csumV3: true }), b);
  if (mut) {
    mut(b);
    if (reseal) setU32be(b, 0xfc, journalSuperblockChecksum(b));
  }
  return b;
}
const decode = (b: Uint8Array, opts = {}) => decodeJournalSuperblock(b, opts);

test('mutation fixture decodes and its checksum is crc32c(~0) over the block', () => {
  const sb = decode(fixture(), { journalBlocks: 2048, blockSize: 4096 });
  assert.equal(sb.checksumType, 4);
  assert.notEqual(sb.checksum, 0);
});
test('mutation: short buffer', () => expectErr(() => decode(fixture().slice(0, 512)), 'EUCLEAN', 'jbd2-sb-size'));
test('mutation: magic', () => expectErr(() => decode(fixture((b) => { xorU8(b, 0, 1); })), 'EUCLEAN', 'jbd2-sb-magic'));
test('mutation: block type', () => expectErr(() => decode(fixture((b) => setU32be(b, 4, 1))), 'EUCLEAN', 'jbd2-sb-blocktype'));
test('mutation: block size', () => {
  expectErr(() => decode(fixture((b) => setU32be(b, 0xc, 3000))), 'EUCLEAN', 'jbd2-sb-blocksize');
  expectErr(() => decode(fixture(), { blockSize: 1024 }), 'EUCLEAN', 'jbd2-sb-blocksize');
});
test('mutation: maxlen', () => {
  expectErr(() => decode(fixture((b) => setU32be(b, 0x10, 100))), 'EUCLEAN', 'jbd2-sb-maxlen');
  expectErr(() => decode(fixture(), { journalBlocks: 2000 }), 'EUCLEAN', 'jbd2-sb-maxlen');
});
test('mutation: s_first', () => {
  expectErr(() => decode(fixture((b) => setU32be(b, 0x14, 0))), 'EUCLEAN', 'jbd2-sb-first');
  expectErr(() => decode(fixture((b) => setU32be(b, 0x14, 2048))), 'EUCLEAN', 'jbd2-sb-first');
});
test('mutation: s_start', () => expectErr(() => decode(fixture((b) => setU32be(b, 0x1c, 5000))), 'EUCLEAN', 'jbd2-sb-start'));
test('mutation: nr_users', () => expectErr(() => decode(fixture((b) => setU32be(b, 0x40, 49))), 'EUCLEAN', 'jbd2-sb-nr-users'));
test('mutation: fast-commit area too large', () => {
  expectErr(() => decode(fixture((b) => {
    setU32be(b, 0x28, JBD2_FEATURE_INCOMPAT_CSUM_V3 | JBD2_FEATURE_INCOMPAT_FAST_COMMIT);
    setU32be(b, 0x54, 1500);
  })), 'EUCLEAN', 'jbd2-sb-fc-blocks');
});
test('mutation: two checksum versions', () => {
  expectErr(() => decode(fixture((b) => setU32be(b, 0x28, JBD2_FEATURE_INCOMPAT_CSUM_V2 | JBD2_FEATURE_INCOMPAT_CSUM_V3))), 'EUCLEAN', 'jbd2-sb-csum-version');
  expectErr(() => decode(fixture((b) => setU32be(b, 0x24, JBD2_FEATURE_COMPAT_CHECKSUM))), 'EUCLEAN', 'jbd2-sb-csum-version');
});
test('mutation: checksum type', () => expectErr(() => decode(fixture((b) => { b[0x50] = 1; })), 'EUCLEAN', 'jbd2-sb-checksum-type'));
test('mutation: checksum', () => {
  expectErr(() => decode(fixture((b) => { b[0x200] = 1; }, false)), 'EBADMSG', 'jbd2-superblock-checksum');
});
test('v1 superblocks skip the v2-only checks', () => {
  const sb = decode(fixture((b) => { setU32be(b, 4, 3); setU32be(b, 0x40, 1000); }, false));
  assert.equal(sb.blockType, 3);
});
test('hostile bytes only ever raise Ext4Error', () => {
  let seed = 3;
  const rnd = () => { seed = (seed * 1103515245 + 12345) >>> 0; return seed >>> 16; };
  for (let n = 0; n < 2000; n++) {
    const b = fixture();
    for (let k = 0; k < 1 + (n % 5); k++) b[rnd() % 0x100] = rnd() & 0xff;
    if (n % 2) setU32be(b, 0xfc, journalSuperblockChecksum(b));
    try { decode(b); } catch (e) { assert.ok(e instanceof Ext4Error, String(e)); }
  }
});
