import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, readSync, closeSync, rmSync, symlinkSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  decodeDirBlock, encodeDirBlock, setDirBlockTail, dirBlockChecksum, direntRecLenFor, decodeRecLen, encodeRecLen,
  decodeInlineDir, decodeInlineDirHead, decodeInlineDirEntries, encodeInlineDirHead, encodeInlineDirEntries,
  DIR_TAIL_LEN, DIRENT_HEADER_LEN, FT_UNKNOWN, FT_REG_FILE, FT_DIR, FT_CHRDEV, FT_BLKDEV, FT_FIFO, FT_SOCK, FT_SYMLINK,
  type DirEntry,
} from './dirent.ts';
import { isExt4Error } from '../errors/ext4-error.ts';
import { setU16, setU32, u16, u32, xorU8 } from '../util/bytes.ts';
import { crc32cUpdate } from '../util/crc.ts';

const haveMke2fs = spawnSync('mke2fs', ['-V']).status === 0 && spawnSync('debugfs', ['-V']).status === 0;
const SKIP = 'mke2fs/debugfs (e2fsprogs) are not installed';
const ENV = { ...process.env, E2FSPROGS_FAKE_TIME: '1700000000', MKE2FS_CONFIG: '/etc/mke2fs.conf' };
const UUID = '5f0c2b8e-7a41-4d39-9c2e-1b7d3e6a9f10';
const HASH_SEED = 'a1b2c3d4-e5f6-4718-9a0b-c1d2e3f4a5b6';

let work = '';

function run(cmd: string, args: string[]): Buffer {
  const r = spawnSync(cmd, args, { env: ENV, maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr?.toString()}`);
  return r.stdout;
}
const debugfs = (img: string, cmd: string): Buffer => run('debugfs', ['-R', cmd, img]);

interface Image { path: string; blockSize: number; csum: boolean; filetype: boolean; fsSeed: number; inodesCount: number }

function openImage(path: string): Image {
  const sb = readAt(path, 1024, 1024);
  const blockSize = 1024 << u32(sb, 0x18);
  const incompat = u32(sb, 0x60);
  const roCompat = u32(sb, 0x64);
  const csum = (roCompat & 0x400) !== 0;
  const fsSeed = (incompat & 0x2000) !== 0 ? u32(sb, 0x270) : crc32cUpdate(0xffffffff, sb, 0x68, 0x78);
  return { path, blockSize, csum, filetype: (incompat & 0x2) !== 0, fsSeed, inodesCount: u32(sb, 0) };
}

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

function le32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  setU32(b, 0, n);
  return b;
}
function inodeSeed(img: Image, ino: number, gen: number): number {
  return crc32cUpdate(crc32cUpdate(img.fsSeed, le32(ino)), le32(gen));
}

interface DirInfo { ino: number; gen: number; blocks: number[] }
function dirInfo(img: Image, path: string): DirInfo {
  const stat = debugfs(img.path, `stat ${path}`).toString();
  const ino = Number(/Inode: (\d+)/.exec(stat)![1]);
  const gen = Number(/Generation: (\d+)/.exec(stat)![1]);
  const blocks = debugfs(img.path, `blocks ${path}`).toString().trim().split(/\s+/).filter(Boolean).map(Number);
  return { ino, gen, blocks };
}

/** `ls -p` lines: /inode/mode/uid/gid/name/size/ ; names are raw bytes and never contain '/'. */
function lsP(img: Image, path: string): { ino: number; mode: number; name: string }[] {
  const out = debugfs(img.path, `ls -p ${path}`);
  const res: { ino: number; mode: number; name: string }[] = [];
  for (const line of out.toString('latin1').split('\n')) {
    if (!line.startsWith('/')) continue;
    const f = line.split('/');
    if (f[1] === '0') continue; // DIRENT_FLAG_INCLUDE_EMPTY shows empty records; we compare live ones
    res.push({ ino: Number(f[1]), mode: parseInt(f[2]!, 8), name: f[5]! });
  }
  return res;
}

const MODE_TO_FT: Record<number, number> = {
  0o10: FT_REG_FILE, 0o04: FT_DIR, 0o02: FT_CHRDEV, 0o06: FT_BLKDEV, 0o01: FT_FIFO, 0o14: FT_SOCK, 0o12: FT_SYMLINK,
};
const latin1 = (b: Uint8Array): string => Buffer.from(b).toString('latin1');

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

/** Names of every length 1..255, ASCII, UTF-8 and raw high bytes (never '/', NUL or '\n'). */
function makeNames(r: () => number, n: number): Buffer[] {
  const seen = new Set<string>();
  const out: Buffer[] = [];
  while (out.length < n) {
    const len = out.length < 255 ? out.length + 1 : 1 + Math.floor(r() * (r() < 0.8 ? 24 : 255));
    const bytes: number[] = [];
    const kind = out.length % 3;
    while (bytes.length < len) {
      if (kind === 0) bytes.push(0x61 + Math.floor(r() * 26));
      else if (kind === 1) bytes.push(...Buffer.from(['é', 'ß', '日', 'x', 'Ω', '_'][Math.floor(r() * 6)]!));
      else bytes.push(r() < 0.5 ? 0x80 + Math.floor(r() * 0x80) : 0x30 + Math.floor(r() * 10));
    }
    const name = Buffer.from(bytes.slice(0, len));
    const key = name.toString('latin1');
    if (key === '.' || key === '..' || seen.has(key)) continue;
    seen.add(key);
    out.push(name);
  }
  return out;
}

const images: Record<string, Image> = {};

before(() => {
  if (!haveMke2fs) return;
  work = mkdtempSync(join(tmpdir(), 'ext4kit-dirent-'));
  const src = join(work, 'src');
  mkdirSync(join(src, 'big'), { recursive: true });
  mkdirSync(join(src, 'types', 'subdir'), { recursive: true });
  mkdirSync(join(src, 'empty'));
  const r = rng(0xe4);
  for (const name of makeNames(r, 1500)) writeFileSync(Buffer.concat([Buffer.from(join(src, 'big') + '/'), name]), '');
  for (let i = 0; i < 200; i++) writeFileSync(join(src, 'big', `del_${i}`), '');
  writeFileSync(join(src, 'types', 'regular'), 'x');
  symlinkSync('regular', join(src, 'types', 'symlink'));
  run('mkfifo', [join(src, 'types', 'fifo')]);
  spawnSync('mknod', [join(src, 'types', 'chardev'), 'c', '1', '3']);
  spawnSync('mknod', [join(src, 'types', 'blockdev'), 'b', '7', '200']);
  spawnSync('python3', ['-c', `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(join(src, 'types', 'socket'))})`]);

  const rmCmds = Array.from({ length: 200 }, (_, i) => (i % 3 === 0 ? `rm /big/del_${i}\n` : '')).join('');
  writeFileSync(join(work, 'rm.cmds'), rmCmds);
  const mk = (name: string, args: string[], size: string): void => {
    const path = join(work, name);
    run('mke2fs', ['-q', '-F', '-t', 'ext4', '-U', UUID, '-E', `hash_seed=${HASH_SEED}`, ...args, '-d', src, path, size]);
    // Deleting entries leaves inode-0 records and merged rec_lens with stale names in the slack.
    run('debugfs', ['-w', '-f', join(work, 'rm.cmds'), path]);
    images[name] = openImage(path);
  };
  mk('csum4k.img', ['-b', '4096'], '32M');
  mk('csum1k.img', ['-b', '1024'], '32M');
  mk('nocsum1k.img', ['-b', '1024', '-O', '^metadata_csum'], '32M');
  mk('nofiletype1k.img', ['-b', '1024', '-O', '^filetype'], '32M');
  mk('csumseed4k.img', ['-b', '4096', '-O', 'metadata_csum_seed'], '32M');
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Bytes of a record after its name: carry no information, may hold stale names. */
function slackIsZero(block: Uint8Array, entries: DirEntry[]): boolean {
  for (const e of entries) {
    for (let i = e.offset + DIRENT_HEADER_LEN + e.nameLen; i < e.offset + e.recLen; i++) if (block[i] !== 0) return false;
  }
  return true;
}

test('decodes real directory blocks, matches debugfs, re-encodes byte for byte', (t) => {
  if (!haveMke2fs) return t.skip(SKIP);
  for (const [name, img] of Object.entries(images)) {
    let blocksSeen = 0, exactFresh = 0, withStaleSlack = 0, deleted = 0;
    for (const dir of ['/', '/big', '/types', '/empty', '/lost+found', '/types/subdir']) {
      const info = dirInfo(img, dir);
      const seed = img.csum ? inodeSeed(img, info.ino, info.gen) : undefined;
      const live: string[] = [];
      const types = new Map<string, number>();
      for (const [lblk, pblk] of info.blocks.entries()) {
        const block = readAt(img.path, pblk * img.blockSize, img.blockSize);
        const where = { inode: info.ino, block: pblk };
        const d = decodeDirBlock(block, {
          blockSize: img.blockSize, filetype: img.filetype, csumInodeSeed: seed, inodesCount: img.inodesCount, where,
        });
        blocksSeen++;
        assert.equal(d.hasTail, img.csum, `${name} ${dir} block ${lblk}: tail iff metadata_csum`);
        if (seed !== undefined) assert.equal(d.checksum, dirBlockChecksum(block, seed));
        for (const e of d.entries) {
          assert.equal(e.name.length, e.nameLen);
          if (e.inode === 0) {
            deleted++;
            continue;
          }
          live.push(`${e.inode}/${latin1(e.name)}`);
          types.set(latin1(e.name), e.fileType);
        }
        // Whole-block encode from the decoded records alone.
        const fresh = new Uint8Array(img.blockSize);
        encodeDirBlock(d.entries, fresh, { blockSize: img.blockSize, filetype: img.filetype, csumInodeSeed: seed, metadataCsum: d.hasTail });
        if (slackIsZero(block, d.entries)) {
          assert.deepEqual(fresh, block, `${name} ${dir} block ${lblk}: fresh re-encode`);
          exactFresh++;
        } else {
          withStaleSlack++;
          // In-place encode over a copy whose headers, names and tail were scribbled over.
          const copy = block.slice();
          for (const e of d.entries) copy.fill(0xa5, e.offset, e.offset + DIRENT_HEADER_LEN + e.nameLen);
          if (d.hasTail) copy.fill(0xa5, img.blockSize - DIR_TAIL_LEN);
          encodeDirBlock(d.entries, copy, {
            blockSize: img.blockSize, filetype: img.filetype, csumInodeSeed: seed, metadataCsum: d.hasTail, keepSlack: true,
          });
          assert.deepEqual(copy, block, `${name} ${dir} block ${lblk}: keepSlack re-encode`);
          // The fresh encoding is still a valid block with the same records.
          const again = decodeDirBlock(fresh, { blockSize: img.blockSize, filetype: img.filetype, csumInodeSeed: seed });
          assert.deepEqual(again.entries, d.entries);
        }
      }
      const want = lsP(img, dir);
      assert.deepEqual(live.sort(), want.map((w) => `${w.ino}/${w.name}`).sort(), `${name} ${dir}: entries vs debugfs ls -p`);
      for (const w of want) {
        const expected = img.filetype ? MODE_TO_FT[w.mode >> 12] : FT_UNKNOWN;
        assert.equal(types.get(w.name), expected, `${name} ${dir}/${w.name}: file type`);
      }
    }
    t.diagnostic(`${name}: ${blocksSeen} blocks, ${exactFresh} identical from scratch, ${withStaleSlack} with stale slack, ${deleted} deleted records`);
    assert.ok(blocksSeen > 10 && exactFresh > 0, `${name}: ${blocksSeen} blocks, ${exactFresh} exact`);
    assert.ok(withStaleSlack > 0 && deleted > 0, `${name}: the rm pass must leave stale slack (${withStaleSlack}) and deleted records (${deleted})`);
  }
});

test('64 KiB blocks: a whole-block rec_len is stored as 65535 and round-trips', (t) => {
  if (!haveMke2fs) return t.skip(SKIP);
  const src = join(work, 'src64');
  mkdirSync(join(src, 'd'), { recursive: true });
  // '.' and '..' take 24 bytes; 4094 records of 16 bytes fill the rest, so the 4095th file is
  // alone in the second block with a record covering all 65536 bytes.
  for (let i = 1; i <= 4095; i++) writeFileSync(join(src, 'd', `f_${String(i).padStart(5, '0')}`), '');
  const path = join(work, 'b64.img');
  run('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', '65536', '-O', '^metadata_csum', '-N', '5000', '-U', UUID, '-d', src, path, '128M']);
  const img = openImage(path);
  const info = dirInfo(img, '/d');
  assert.equal(info.blocks.length, 2);
  let names = 0;
  for (const pblk of info.blocks) {
    const block = readAt(path, pblk * img.blockSize, img.blockSize);
    const d = decodeDirBlock(block, { blockSize: 65536, filetype: true });
    names += d.entries.filter((e) => e.inode !== 0).length;
    const fresh = new Uint8Array(65536);
    encodeDirBlock(d.entries, fresh, { blockSize: 65536, filetype: true });
    assert.deepEqual(fresh, block);
    if (pblk === info.blocks[1]) {
      assert.equal(u16(block, 4), 65535);
      assert.equal(d.entries.length, 1);
      assert.equal(d.entries[0]!.recLen, 65536);
    }
  }
  assert.equal(names, 4095 + 2);
});

test('rec_len encoding for large blocks', () => {
  assert.equal(decodeRecLen(65535, 65536), 65536);
  assert.equal(decodeRecLen(0, 65536), 65536);
  assert.equal(decodeRecLen(12, 65536), 12);
  assert.equal(encodeRecLen(65536, 65536), 65535);
  assert.equal(encodeRecLen(65536 + 4, 131072), 4 | 1);
  assert.equal(decodeRecLen(encodeRecLen(131072 - 12, 131072), 131072), 131072 - 12);
  assert.equal(encodeRecLen(131072, 131072), 0);
  assert.equal(decodeRecLen(0, 4096), 0);
  assert.deepEqual([0, 1, 4, 5, 255].map(direntRecLenFor), [8, 12, 12, 16, 264]);
});

test('inline-data directories: i_block part and the system.data continuation', (t) => {
  if (!haveMke2fs) return t.skip(SKIP);
  const src = join(work, 'srcinline');
  mkdirSync(join(src, 'small'), { recursive: true });
  writeFileSync(join(src, 'small', 'a'), '');
  writeFileSync(join(src, 'small', 'café'), '');
  const path = join(work, 'inline.img');
  run('mke2fs', ['-q', '-F', '-t', 'ext4', '-O', 'inline_data', '-I', '256', '-U', UUID, '-d', src, path, '16M']);
  // The kernel spills a growing inline directory into the system.data xattr; e2fsprogs does not.
  const mnt = join(work, 'mnt');
  mkdirSync(mnt);
  const mounted = spawnSync('mount', ['-o', 'loop', path, mnt]).status === 0;
  if (mounted) {
    try {
      for (let i = 1; i <= 4; i++) writeFileSync(join(mnt, 'small', `kfile_${i}`), '');
    } finally {
      spawnSync('umount', [mnt]);
    }
  }
  const img = openImage(path);
  const stat = debugfs(path, 'stat /small').toString();
  assert.match(stat, /Flags: 0x10000000/, 'directory is inline');
  const ino = Number(/Inode: (\d+)/.exec(stat)![1]);
  const imap = debugfs(path, 'imap /small').toString();
  const m = /located at block (\d+), offset 0x([0-9a-f]+)/.exec(imap)!;
  const inode = readAt(path, Number(m[1]) * img.blockSize + parseInt(m[2]!, 16), 256);
  const iblock = inode.slice(0x28, 0x28 + 60);
  const valueFile = join(work, 'system.data');
  run('debugfs', ['-R', `ea_get -f ${valueFile} /small system.data`, path]);
  const value = new Uint8Array(readFileSync(valueFile));

  const dec = decodeInlineDir(iblock, { filetype: true, xattrValue: value, inodesCount: img.inodesCount, where: { inode: ino } });
  assert.equal(dec.parent, 2);
  const live = [...dec.entries, ...dec.xattrEntries].filter((e) => e.inode !== 0).map((e) => `${e.inode}/${latin1(e.name)}`);
  const want = lsP(img, '/small').filter((w) => w.name !== '.' && w.name !== '..').map((w) => `${w.ino}/${w.name}`);
  assert.deepEqual(live.sort(), want.sort());
  if (mounted) assert.ok(dec.xattrEntries.some((e) => e.inode !== 0), 'kernel spilled entries into system.data');
  else t.diagnostic('loop mount unavailable: system.data part only checked when empty');

  const head = decodeInlineDirHead(iblock, { filetype: true });
  assert.equal(head.entries[0]!.offset, 4);
  const iblock2 = new Uint8Array(60).fill(0xee);
  encodeInlineDirHead(head, iblock2, { filetype: true, keepSlack: true });
  assert.deepEqual(decodeInlineDirHead(iblock2, { filetype: true }), head);
  const iblock3 = new Uint8Array(60);
  encodeInlineDirHead(head, iblock3, { filetype: true });
  assert.ok(slackIsZero(iblock, head.entries), 'i_block slack is clean');
  assert.deepEqual(iblock3, iblock);
  const value2 = new Uint8Array(value.length);
  encodeInlineDirEntries(decodeInlineDirEntries(value, { filetype: true }), value2, { filetype: true });
  assert.ok(slackIsZero(value, dec.xattrEntries), 'system.data slack is clean');
  assert.deepEqual(value2, value);
  t.diagnostic(`inline dir: ${dec.entries.length} records in i_block, ${dec.xattrEntries.length} in system.data (${value.length} bytes)`);
  assert.deepEqual(decodeInlineDirEntries(new Uint8Array(0), { filetype: true }), []);
});

// ---- mutation tests: one per validation rule ---------------------------------------------

/** A 1 KiB block with '.', '..', 'hello', 'x' and a checksum tail, seed 0x1234. */
function sampleBlock(opts: { filetype?: boolean } = {}): { block: Uint8Array; entries: DirEntry[] } {
  const filetype = opts.filetype ?? true;
  const mk = (inode: number, name: string, fileType: number, recLen?: number): DirEntry => {
    const n = new TextEncoder().encode(name);
    return { inode, name: n, nameLen: n.length, fileType: filetype ? fileType : 0, recLen: recLen ?? direntRecLenFor(n.length), offset: 0 };
  };
  const entries = [mk(11, '.', FT_DIR), mk(2, '..', FT_DIR), mk(12, 'hello', FT_REG_FILE), mk(0, '', 0, 24)];
  const used = entries.reduce((s, e) => s + e.recLen, 0);
  entries.push(mk(13, 'x', FT_SYMLINK, 1024 - DIR_TAIL_LEN - used));
  let off = 0;
  for (const e of entries) { e.offset = off; off += e.recLen; }
  const block = new Uint8Array(1024);
  encodeDirBlock(entries, block, { blockSize: 1024, filetype, csumInodeSeed: 0x1234 });
  return { block, entries };
}

function expectCorrupt(fn: () => unknown, code: 'EUCLEAN' | 'EBADMSG', detail: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isExt4Error(e), `expected Ext4Error, got ${String(e)}`);
    assert.equal(e.code, code);
    assert.equal(e.detail, detail);
    assert.equal(e.where.inode, 11);
    return true;
  });
}

const OPTS = { blockSize: 1024, filetype: true, csumInodeSeed: 0x1234, inodesCount: 100, where: { inode: 11, block: 5 } } as const;

test('sample block decodes and verifies', () => {
  const { block, entries } = sampleBlock();
  const d = decodeDirBlock(block, OPTS);
  assert.deepEqual(d.entries, entries);
  assert.equal(d.hasTail, true);
  const copy = block.slice();
  setU32(copy, 1024 - 4, 0);
  setDirBlockTail(copy, 0x1234);
  assert.deepEqual(copy, block);
});

test('mutation: rec_len not a multiple of 4 → EUCLEAN dirent-rec-len-align', () => {
  const { block } = sampleBlock();
  setU16(block, 12 + 4, 14);
  expectCorrupt(() => decodeDirBlock(block, OPTS), 'EUCLEAN', 'dirent-rec-len-align');
});

test('mutation: rec_len below 12 → EUCLEAN dirent-rec-len-min', () => {
  const { block } = sampleBlock();
  setU16(block, 12 + 4, 8);
  expectCorrupt(() => decodeDirBlock(block, OPTS), 'EUCLEAN', 'dirent-rec-len-min');
  setU16(block, 12 + 4, 0);
  expectCorrupt(() => decodeDirBlock(block, OPTS), 'EUCLEAN', 'dirent-rec-len-min');
});

test('mutation: rec_len past the block end → EUCLEAN dirent-rec-len-overrun', () => {
  const { block } = sampleBlock();
  setU16(block, 12 + 4, 2048);
  expectCorrupt(() => decodeDirBlock(block, OPTS), 'EUCLEAN', 'dirent-rec-len-overrun');
});

test('mutation: record header crossing the region end → EUCLEAN dirent-rec-len-overrun', () => {
  const value = new Uint8Array(16);
  setU32(value, 0, 12);
  setU16(value, 4, 12);
  value[6] = 1;
  expectCorrupt(() => decodeInlineDirEntries(value, { filetype: true, where: { inode: 11 } }), 'EUCLEAN', 'dirent-rec-len-overrun');
});

test('mutation: name_len larger than the record → EUCLEAN dirent-name-len', () => {
  const { block } = sampleBlock();
  block[24 + 6] = 9; // 'hello' record is 16 bytes: 8 + 9 does not fit
  expectCorrupt(() => decodeDirBlock(block, OPTS), 'EUCLEAN', 'dirent-name-len');
});

test('mutation: 16-bit name_len above 255 without filetype → EUCLEAN dirent-name-len', () => {
  const { block } = sampleBlock({ filetype: false });
  assert.equal(decodeDirBlock(block, { ...OPTS, filetype: false }).entries[2]!.nameLen, 5);
  setU16(block, 24 + 6, 0x105);
  expectCorrupt(() => decodeDirBlock(block, { ...OPTS, filetype: false }), 'EUCLEAN', 'dirent-name-len');
});

test('mutation: inode number beyond s_inodes_count → EUCLEAN dirent-inode-range', () => {
  const { block } = sampleBlock();
  setU32(block, 24, 101);
  expectCorrupt(() => decodeDirBlock(block, OPTS), 'EUCLEAN', 'dirent-inode-range');
  expectCorrupt(() => decodeInlineDirHead(Uint8Array.from({ length: 60 }, (_, i) => (i === 0 ? 200 : 0)),
    { filetype: true, inodesCount: 100, where: { inode: 11 } }), 'EUCLEAN', 'dirent-inode-range');
});

test('mutation: missing checksum tail under metadata_csum → EUCLEAN dirent-tail-missing', () => {
  const { block } = sampleBlock();
  setU16(block, 40 + 24 + 4, u16(block, 40 + 24 + 4) + DIR_TAIL_LEN); // last record swallows the tail
  expectCorrupt(() => decodeDirBlock(block, OPTS), 'EUCLEAN', 'dirent-tail-missing');
  assert.equal(decodeDirBlock(block, { blockSize: 1024, filetype: true }).hasTail, false);
  const { block: b2 } = sampleBlock();
  b2[1024 - 12 + 7] = 0; // tail's 0xDE marker gone
  expectCorrupt(() => decodeDirBlock(b2, { ...OPTS, csumInodeSeed: undefined, metadataCsum: true }), 'EUCLEAN', 'dirent-tail-missing');
});

test('mutation: wrong leaf checksum → EBADMSG dirent-checksum', () => {
  const { block } = sampleBlock();
  xorU8(block, 24 + 8, 1); // one name bit
  expectCorrupt(() => decodeDirBlock(block, OPTS), 'EBADMSG', 'dirent-checksum');
  assert.equal(decodeDirBlock(block, { ...OPTS, csumInodeSeed: undefined }).hasTail, true, 'no seed: not verified');
  const { block: b2 } = sampleBlock();
  expectCorrupt(() => decodeDirBlock(b2, { ...OPTS, csumInodeSeed: 0x1235 }), 'EBADMSG', 'dirent-checksum');
});

test('mutation: inline i_block shorter than 60 bytes → EUCLEAN inline-dir-size', () => {
  expectCorrupt(() => decodeInlineDirHead(new Uint8Array(40), { filetype: true, where: { inode: 11 } }), 'EUCLEAN', 'inline-dir-size');
});

test('hostile bytes: random corruption of real-looking blocks only ever throws Ext4Error', () => {
  const r = rng(99);
  const { block } = sampleBlock();
  for (let i = 0; i < 20000; i++) {
    const b = block.slice();
    const n = 1 + Math.floor(r() * 6);
    for (let k = 0; k < n; k++) b[Math.floor(r() * (r() < 0.8 ? 96 : 1024))] = Math.floor(r() * 256);
    for (const opts of [OPTS, { blockSize: 1024, filetype: false }, { blockSize: 1024, filetype: true, metadataCsum: true }]) {
      try {
        decodeDirBlock(b, opts);
      } catch (e) {
        if (!isExt4Error(e)) throw e;
      }
    }
    try {
      decodeInlineDir(b.subarray(0, 60), { filetype: true, xattrValue: b.subarray(60, 60 + Math.floor(r() * 200)) });
    } catch (e) {
      if (!isExt4Error(e)) throw e;
    }
  }
  for (let i = 0; i < 2000; i++) {
    const b = Uint8Array.from({ length: 1024 }, () => Math.floor(r() * 256));
    try { decodeDirBlock(b, OPTS); } catch (e) { if (!isExt4Error(e)) throw e; }
  }
});
