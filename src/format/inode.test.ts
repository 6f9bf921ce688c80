// Inode codec against images made by mke2fs: decode every field and compare with debugfs,
// re-encode byte for byte, stamp checksums that e2fsck accepts, and one test per validation rule.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, rmSync, symlinkSync, linkSync, openSync, writeSync, closeSync, ftruncateSync, chownSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ext4Error } from '../errors/ext4-error.ts';
import { u16, u32, setU16, setU32 } from '../util/bytes.ts';
import { fsCsumSeed, inodeCsumSeed, le32 } from './checksum.ts';
import { crc32cUpdate } from '../util/crc.ts';
import {
  decodeInode, encodeInode, inodeChecksum, blankInode, isFastSymlink, fastSymlinkTarget,
  HUGE_FILE_FL, EXTENTS_FL, S_IFLNK, S_IFMT, S_IFREG, S_IFDIR, S_IFIFO, S_IFCHR,
  type Inode, type InodeCodecOptions,
} from './inode.ts';
import { HAVE_TOOLS, SKIP, run, debugfsBatch } from '../../test/support/e2fs-sync.ts';

const UUID = '0b4c3f8e-7d41-4b55-9a53-2c7f1f0e6a11';


interface Img {
  path: string;
  bytes: Uint8Array;
  blockSize: number;
  inodeSize: number;
  hugeFile: boolean;
  has64bit: boolean;
  fsSeed: number | undefined;
  uuidSeed: number;
}

function openImg(path: string): Img {
  const bytes = new Uint8Array(readFileSync(path));
  const sb = bytes.subarray(1024, 2048);
  const roCompat = u32(sb, 0x64);
  const incompat = u32(sb, 0x60);
  const uuidSeed = fsCsumSeed(sb.subarray(0x68, 0x78));
  const csum = (roCompat & 0x400) !== 0;
  return {
    path, bytes,
    blockSize: 1024 << u32(sb, 0x18),
    inodeSize: u32(sb, 0x4c) === 0 ? 128 : u16(sb, 0x58),
    hugeFile: (roCompat & 0x8) !== 0,
    has64bit: (incompat & 0x80) !== 0,
    fsSeed: csum ? ((incompat & 0x2000) ? u32(sb, 0x270) : uuidSeed) : undefined,
    uuidSeed,
  };
}

function opts(img: Img, ino: number): InodeCodecOptions {
  return { ino, inodeSize: img.inodeSize, fsCsumSeed: img.fsSeed, hugeFile: img.hugeFile, blockSize: img.blockSize, has64bit: img.has64bit };
}

function inodeOffsets(img: Img, inos: number[]): number[] {
  return debugfsBatch(img.path, inos.map((i) => `imap <${i}>`)).map((o) => {
    const m = /located at block (\d+), offset 0x([0-9a-f]+)/.exec(o);
    assert.ok(m, `imap output: ${o}`);
    return Number(m[1]) * img.blockSize + parseInt(m[2]!, 16);
  });
}

interface Made { dir: string; img: Img; names: Map<string, number> }

function buildTree(src: string): void {
  writeFileSync(join(src, 'small'), 'hello, world\n');
  mkdirSync(join(src, 'dir'));
  writeFileSync(join(src, 'dir', 'inner'), 'x'.repeat(5000));
  symlinkSync('short/target', join(src, 'fastlink'));
  symlinkSync('L'.repeat(100), join(src, 'slowlink'));
  linkSync(join(src, 'small'), join(src, 'hardlink'));
  spawnSync('mkfifo', [join(src, 'fifo')]);
  spawnSync('mknod', [join(src, 'null'), 'c', '1', '3']);
  writeFileSync(join(src, 'owned'), 'owned');
  chownSync(join(src, 'owned'), 70000, 123456);
  chmodSync(join(src, 'owned'), 0o4751);
  const fd = openSync(join(src, 'sparse'), 'w');
  ftruncateSync(fd, 5 * 2 ** 30);
  for (const off of [0, 2 ** 20, 2 ** 30, 4 * 2 ** 30 + 12345]) writeSync(fd, 'Z', off);
  closeSync(fd);
  writeFileSync(join(src, 'xattr'), 'x');
  spawnSync('setfattr', ['-n', 'user.big', '-v', 'v'.repeat(600), join(src, 'xattr')]);
}

const NAMES = ['small', 'dir', 'dir/inner', 'fastlink', 'slowlink', 'hardlink', 'fifo', 'null', 'owned', 'sparse', 'xattr'];

function make(args: string[], size = '64M', after?: (img: string) => void): Made {
  const dir = mkdtempSync(join(tmpdir(), 'ext4kit-inode-'));
  const src = join(dir, 'src');
  mkdirSync(src);
  buildTree(src);
  const path = join(dir, 'fs.img');
  run('mke2fs', ['-q', ...args, '-U', UUID, '-E', `hash_seed=${UUID}`, '-d', src, '-F', path, size]);
  after?.(path);
  const img = openImg(path);
  const names = new Map<string, number>();
  const outs = debugfsBatch(path, NAMES.map((n) => `stat /${n}`));
  NAMES.forEach((n, i) => {
    const m = /Inode: (\d+)/.exec(outs[i]!);
    if (m) names.set(n, Number(m[1]));
  });
  return { dir, img, names };
}

interface Stat {
  type: string; perm: number; flags: number; generation: number; uid: number; gid: number; project: number | undefined;
  size: number; fileAcl: number; links: number; blockcount: number;
  times: Record<string, [number, number | undefined]>; extra: number | undefined; checksum: number | undefined;
}

function parseStat(o: string): Stat {
  const need = (re: RegExp): RegExpExecArray => { const m = re.exec(o); assert.ok(m, `${re} in ${o}`); return m; };
  const head = need(/Type: (.+?)\s+Mode:\s+(\d+)\s+Flags: 0x([0-9a-f]+)/);
  const ug = need(/User:\s+(\d+)\s+Group:\s+(\d+)(?:\s+Project:\s+(\d+))?\s+Size: (\d+)/);
  const times: Stat['times'] = {};
  for (const m of o.matchAll(/^\s*(ctime|atime|mtime|crtime|dtime): 0x([0-9a-f]+)(?::([0-9a-f]+))?/gm)) {
    times[m[1]!] = [parseInt(m[2]!, 16), m[3] === undefined ? undefined : parseInt(m[3], 16)];
  }
  const extra = /Size of extra inode fields: (\d+)/.exec(o);
  const csum = /Inode checksum: 0x([0-9a-f]+)/.exec(o);
  return {
    type: head[1]!, perm: parseInt(head[2]!, 8), flags: parseInt(head[3]!, 16),
    generation: Number(need(/Generation: (\d+)/)[1]),
    uid: Number(ug[1]), gid: Number(ug[2]), project: ug[3] === undefined ? undefined : Number(ug[3]), size: Number(ug[4]),
    fileAcl: Number(need(/File ACL: (\d+)/)[1]),
    links: Number(need(/Links: (\d+)/)[1]), blockcount: Number(need(/Blockcount: (\d+)/)[1]),
    times, extra: extra ? Number(extra[1]) : undefined, checksum: csum ? parseInt(csum[1]!, 16) : undefined,
  };
}

const TYPE_OF: Record<string, number> = {
  regular: S_IFREG, directory: S_IFDIR, symlink: S_IFLNK, FIFO: S_IFIFO, 'character special': S_IFCHR,
};

function expectCode(fn: () => unknown, code: string, detail: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof Ext4Error, `expected Ext4Error, got ${String(e)}`);
    assert.equal(e.code, code);
    assert.equal(e.detail, detail);
    return true;
  });
}

const GEOMETRIES: { name: string; args: string[]; after?: (img: string) => void }[] = [
  { name: 'ext4 4K metadata_csum', args: ['-t', 'ext4', '-b', '4096', '-O', 'metadata_csum'] },
  { name: 'ext4 1K no metadata_csum', args: ['-t', 'ext4', '-b', '1024', '-O', '^metadata_csum'] },
  {
    name: 'ext4 4K metadata_csum_seed, UUID changed afterwards', args: ['-t', 'ext4', '-O', 'metadata_csum,metadata_csum_seed'],
    after: (img) => { run('tune2fs', ['-U', '6d0f6f4e-1111-4222-8333-944455556666', img]); },
  },
  { name: 'ext4 128-byte inodes metadata_csum', args: ['-t', 'ext4', '-I', '128', '-O', 'metadata_csum'] },
  { name: 'ext2 1K', args: ['-t', 'ext2', '-b', '1024'] },
];

for (const g of GEOMETRIES) {
  describe(`inode codec on ${g.name}`, { skip: SKIP }, () => {
    let made: Made;
    let inos: number[];
    let offsets: number[];
    before(() => {
      made = make(g.args, '64M', g.after);
      inos = [1, 2, 7, 8, 11, ...made.names.values()];
      offsets = inodeOffsets(made.img, inos);
    });
    after(() => { if (made) rmSync(made.dir, { recursive: true, force: true }); });

    test('every field matches debugfs stat', () => {
      const { img } = made;
      const stats = debugfsBatch(img.path, inos.map((i) => `stat <${i}>`)).map(parseStat);
      inos.forEach((ino, k) => {
        const raw = img.bytes.subarray(offsets[k]!, offsets[k]! + img.inodeSize);
        const inode = decodeInode(raw, opts(img, ino));
        const s = stats[k]!;
        const what = `inode ${ino}`;
        if (TYPE_OF[s.type] !== undefined) assert.equal(inode.mode & S_IFMT, TYPE_OF[s.type], what);
        assert.equal(inode.mode & 0o7777, s.perm, what);
        assert.equal(inode.flags, s.flags, what);
        assert.equal(inode.generation, s.generation, what);
        assert.equal(inode.uid, s.uid, what);
        assert.equal(inode.gid, s.gid, what);
        assert.equal(inode.sizeBytes, s.size, what);
        assert.equal(inode.fileAcl, s.fileAcl, what);
        assert.equal(inode.linksCount, s.links, what);
        if (!(inode.flags & HUGE_FILE_FL)) assert.equal(inode.blocks512, s.blockcount, what);
        if (s.project !== undefined) assert.equal(inode.projectId, s.project, what);
        assert.equal(inode.extraIsize, s.extra ?? 0, what);
        if (img.fsSeed !== undefined) assert.equal(inode.checksum, s.checksum, what);
        for (const [name, [lo, extra]] of Object.entries(s.times)) {
          if (name === 'dtime') { assert.equal(inode.dtime, lo, what); continue; }
          const t = inode[name as 'ctime' | 'atime' | 'mtime' | 'crtime'];
          assert.ok(t, `${what} ${name}`);
          assert.equal(t.sec, (lo | 0) + (extra === undefined ? 0 : (extra & 3) * 2 ** 32), `${what} ${name}`);
          assert.equal(t.nsec, extra === undefined ? 0 : extra >>> 2, `${what} ${name}`);
        }
        if (s.times.crtime === undefined) assert.equal(inode.crtime, undefined, what);
      });
    });

    test('the fixture exercises 32-bit ids, an xattr block, a 5 GiB size and the right seed', () => {
      const { img, names } = made;
      const get = (name: string): Inode => {
        const ino = names.get(name)!;
        const [off] = inodeOffsets(img, [ino]);
        return decodeInode(img.bytes.subarray(off!, off! + img.inodeSize), opts(img, ino));
      };
      const owned = get('owned');
      assert.equal(owned.uid, 70000);
      assert.equal(owned.gid, 123456);
      assert.equal(owned.mode, S_IFREG | 0o4751);
      assert.notEqual(get('xattr').fileAcl, 0);
      assert.equal(get('sparse').sizeBytes, 5 * 2 ** 30);
      assert.equal(get('small').linksCount, 2);
      if (g.after) assert.notEqual(img.fsSeed, img.uuidSeed);
    });

    test('re-encoding reproduces every inode byte for byte, and writes every decoded field', () => {
      const { img } = made;
      inos.forEach((ino, k) => {
        const orig = img.bytes.slice(offsets[k]!, offsets[k]! + img.inodeSize);
        const inode = decodeInode(orig, opts(img, ino));
        const out = new Uint8Array(img.inodeSize);
        encodeInode(inode, out, opts(img, ino));
        assert.deepEqual(out, orig, `inode ${ino} re-encoded`);

        // Scramble every byte the encoder owns in `raw`; encoding must restore all of them.
        const owned = ownedRanges(img, inode);
        const scrambled = orig.slice();
        for (const [a, b] of owned) for (let i = a; i < b; i++) scrambled[i] = scrambled[i]! ^ 0xa5;
        const out2 = new Uint8Array(img.inodeSize);
        encodeInode({ ...inode, raw: scrambled }, out2, opts(img, ino));
        assert.deepEqual(out2, orig, `inode ${ino} encoded over scrambled raw`);
      });
    });

    test('fast and slow symlinks are told apart', () => {
      const { img, names } = made;
      const [fast, slow] = ['fastlink', 'slowlink'].map((n) => {
        const ino = names.get(n)!;
        const [off] = inodeOffsets(img, [ino]);
        return decodeInode(img.bytes.subarray(off!, off! + img.inodeSize), opts(img, ino));
      });
      assert.equal(isFastSymlink(fast!, { clusterSize: img.blockSize }), true);
      assert.equal(new TextDecoder().decode(fastSymlinkTarget(fast!)), 'short/target');
      assert.equal(isFastSymlink(slow!, { clusterSize: img.blockSize }), false);
      assert.equal(slow!.sizeBytes, 100);
    });

    if (g.args.includes('metadata_csum')) {
      test('a changed inode stamped by encodeInode passes e2fsck and reads back in debugfs', () => {
        const { img, names } = made;
        const ino = names.get('small')!;
        const [off] = inodeOffsets(img, [ino]);
        const inode = decodeInode(img.bytes.subarray(off!, off! + img.inodeSize), opts(img, ino));
        const copy = img.bytes.slice();
        encodeInode({ ...inode, uid: 424242, gid: 77, mode: (inode.mode & S_IFMT) | 0o600 }, copy.subarray(off!, off! + img.inodeSize), opts(img, ino));
        const path2 = join(made.dir, 'changed.img');
        writeFileSync(path2, copy);
        const fsck = spawnSync('e2fsck', ['-fn', path2], { encoding: 'utf8' });
        assert.equal(fsck.status, 0, fsck.stdout + fsck.stderr);
        const s = parseStat(debugfsBatch(path2, [`stat <${ino}>`])[0]!);
        assert.equal(s.uid, 424242);
        assert.equal(s.gid, 77);
        assert.equal(s.perm, 0o600);
      });

      test('the checksum covers the whole record: one flipped bit is EBADMSG', () => {
        const { img, names } = made;
        const ino = names.get('small')!;
        const [off] = inodeOffsets(img, [ino]);
        for (const at of [0, 0x28, 0x7e, img.inodeSize - 1]) {
          const raw = img.bytes.slice(off!, off! + img.inodeSize);
          raw[at] = raw[at]! ^ 1;
          expectCode(() => decodeInode(raw, opts(img, ino)), 'EBADMSG', 'inode-checksum');
        }
        // The same bytes decode when no verification is asked for.
        const raw = img.bytes.slice(off!, off! + img.inodeSize);
        raw[0x7e] = raw[0x7e]! ^ 1;
        decodeInode(raw, { ...opts(img, ino), fsCsumSeed: undefined });
      });

      test('an all-zero record (lazily initialized table) is accepted', () => {
        const inode = decodeInode(new Uint8Array(made.img.inodeSize), opts(made.img, 99));
        assert.equal(inode.mode, 0);
      });
    }
  });
}

/** Whether this process can loop-mount an ext4 image (root, loop devices, ext4 driver). */
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

describe('timestamps written by the kernel', { skip: !HAVE_TOOLS ? SKIP : loopMountWorks() ? false : 'loop mount unavailable' }, () => {
  test('times beyond 2038 and before 1970 decode to what was set', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ext4kit-ktime-'));
    const path = join(dir, 'fs.img');
    const mnt = join(dir, 'm');
    try {
      run('mke2fs', ['-q', '-t', 'ext4', '-O', 'metadata_csum', '-U', UUID, '-F', path, '16M']);
      mkdirSync(mnt);
      run('mount', ['-o', 'loop', path, mnt]);
      try {
        writeFileSync(join(mnt, 'future'), 'f');
        run('touch', ['-m', '-d', '2040-01-02 03:04:05.123456789 UTC', join(mnt, 'future')]);
        run('touch', ['-a', '-d', '2300-01-01 00:00:01.000000007 UTC', join(mnt, 'future')]);
        writeFileSync(join(mnt, 'past'), 'p');
        run('touch', ['-m', '-d', '1960-06-07 08:09:10.5 UTC', join(mnt, 'past')]);
      } finally {
        run('umount', [mnt]);
      }
      const img = openImg(path);
      const get = (name: string): Inode => {
        const ino = Number(/Inode: (\d+)/.exec(debugfsBatch(path, [`stat /${name}`])[0]!)![1]);
        const [off] = inodeOffsets(img, [ino]);
        return decodeInode(img.bytes.subarray(off!, off! + img.inodeSize), opts(img, ino));
      };
      const future = get('future');
      assert.deepEqual(future.mtime, { sec: Date.UTC(2040, 0, 2, 3, 4, 5) / 1000, nsec: 123456789 });
      assert.deepEqual(future.atime, { sec: Date.UTC(2300, 0, 1, 0, 0, 1) / 1000, nsec: 7 });
      assert.deepEqual(get('past').mtime, { sec: Date.UTC(1960, 5, 7, 8, 9, 10) / 1000, nsec: 500000000 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** Byte ranges encodeInode writes for this geometry. */
function ownedRanges(img: Img, inode: Inode): [number, number][] {
  const r: [number, number][] = [[0x00, 0x70], [0x78, 0x7c]];
  if (img.hugeFile) r.push([0x74, 0x76]);
  if (img.has64bit) r.push([0x76, 0x78]);
  if (img.fsSeed !== undefined) r.push([0x7c, 0x7e]);
  if (img.inodeSize > 128) {
    r.push([0x80, 0x82]);
    if (img.fsSeed !== undefined && inode.extraIsize >= 4) r.push([0x82, 0x84]);
    r.push([0x84, 128 + inode.extraIsize]);
  }
  return r;
}

describe('inode codec rules (synthetic records)', () => {
  const base = (): InodeCodecOptions => ({ ino: 12, inodeSize: 256, fsCsumSeed: undefined, hugeFile: true, blockSize: 4096 });

  test('extended timestamps use the epoch bits and nanoseconds (inodes.rst table)', () => {
    const cases: [number, number, number][] = [
      // sec, expected i_[acm]time bits, expected epoch bits
      [-0x80000000, 0x80000000, 0], [-1, 0xffffffff, 0], [0, 0, 0], [0x7fffffff, 0x7fffffff, 0],
      [0x80000000, 0x80000000, 1], [0xffffffff, 0xffffffff, 1], [0x100000000, 0, 1], [0x17fffffff, 0x7fffffff, 1],
      [0x180000000, 0x80000000, 2], [0x27fffffff, 0x7fffffff, 2], [0x280000000, 0x80000000, 3], [0x37fffffff, 0x7fffffff, 3],
    ];
    for (const [sec, lo, epoch] of cases) {
      const inode = blankInode(256);
      inode.ctime = { sec, nsec: 999999999 };
      const b = new Uint8Array(256);
      encodeInode(inode, b, base());
      assert.equal(u32(b, 0x0c), lo, `sec ${sec}`);
      assert.equal(u32(b, 0x84), ((999999999 << 2) | epoch) >>> 0, `sec ${sec}`);
      assert.deepEqual(decodeInode(b, base()).ctime, { sec, nsec: 999999999 });
    }
  });

  test('timestamps clamp to what the record holds', () => {
    const small = blankInode(128);
    small.mtime = { sec: 2 ** 33, nsec: 5 };
    const b = new Uint8Array(128);
    encodeInode(small, b, { ...base(), inodeSize: 128 });
    const d = decodeInode(b, { ...base(), inodeSize: 128 });
    assert.deepEqual(d.mtime, { sec: 0x7fffffff, nsec: 0 });
    assert.equal(d.crtime, undefined);
    assert.equal(d.extraIsize, 0);
  });

  test('i_blocks units follow huge_file and HUGE_FILE_FL', () => {
    const b = new Uint8Array(256);
    setU32(b, 0x1c, 3);
    setU16(b, 0x74, 1);
    assert.equal(decodeInode(b, { ...base(), hugeFile: false }).blocks512, 3);
    assert.equal(decodeInode(b, base()).blocks512, 2 ** 32 + 3);
    setU32(b, 0x20, HUGE_FILE_FL);
    const huge = decodeInode(b, base());
    assert.equal(huge.blocks512, (2 ** 32 + 3) * 8);
    const out = new Uint8Array(256);
    encodeInode(huge, out, base());
    assert.deepEqual(out, b);
  });

  test('i_extra_isize that overflows the record is EUCLEAN inode-extra-isize', () => {
    const b = new Uint8Array(256);
    setU16(b, 0x80, 132);
    expectCode(() => decodeInode(b, base()), 'EUCLEAN', 'inode-extra-isize');
    setU16(b, 0x80, 128);
    decodeInode(b, base());
  });

  test('i_extra_isize not a multiple of 4 is EUCLEAN inode-extra-isize-align', () => {
    const b = new Uint8Array(256);
    setU16(b, 0x80, 30);
    expectCode(() => decodeInode(b, base()), 'EUCLEAN', 'inode-extra-isize-align');
  });

  test('a record shorter than the inode size is EUCLEAN inode-truncated', () => {
    expectCode(() => decodeInode(new Uint8Array(200), base()), 'EUCLEAN', 'inode-truncated');
  });

  test('a size above 2^53 is ENOTSUP inode-size-too-large', () => {
    const b = new Uint8Array(256);
    setU32(b, 0x6c, 0x00300000);
    expectCode(() => decodeInode(b, base()), 'ENOTSUP', 'inode-size-too-large');
  });

  test('checksum: seeds, lo-only form for small i_extra_isize, and stamping', () => {
    const seed = fsCsumSeed(new Uint8Array(16).fill(7));
    assert.equal(seed, crc32cUpdate(0xffffffff, new Uint8Array(16).fill(7)));
    assert.equal(inodeCsumSeed(seed, 12, 0xdeadbeef), crc32cUpdate(crc32cUpdate(seed, le32(12)), le32(0xdeadbeef)));
    const o = { ...base(), fsCsumSeed: seed };
    for (const extra of [0, 4, 32]) {
      const inode = blankInode(256, extra);
      inode.mode = S_IFREG | 0o644;
      inode.generation = 99;
      const b = new Uint8Array(256);
      encodeInode(inode, b, o);
      const c = inodeChecksum(b, { ino: 12, inodeSize: 256, fsCsumSeed: seed });
      if (extra < 4) assert.ok(c <= 0xffff);
      assert.equal(decodeInode(b, o).checksum, c);
      b[200] = b[200]! ^ 0x10;
      expectCode(() => decodeInode(b, o), 'EBADMSG', 'inode-checksum');
    }
  });

  test('shareBytes: raw and iBlock are views of the record, every field the same as a copying decode', () => {
    const seed = fsCsumSeed(new Uint8Array(16).fill(3));
    const o = { ...base(), fsCsumSeed: seed };
    const inode = blankInode(256, 32);
    inode.mode = S_IFREG | 0o640;
    inode.sizeBytes = 12345;
    inode.mtime = { sec: 1_700_000_000, nsec: 123_456_789 };
    inode.iBlock.fill(0xab);
    // The record at offset 256 of a larger buffer, as in an inode-table block.
    const table = new Uint8Array(1024);
    const rec = table.subarray(256, 512);
    encodeInode(inode, rec, o);
    const copied = decodeInode(rec, o);
    const shared = decodeInode(rec, { ...o, shareBytes: true });
    assert.deepEqual(shared, copied);
    assert.equal(shared.raw.buffer, table.buffer);
    assert.equal(shared.raw.byteOffset, 256);
    assert.equal(shared.iBlock.byteOffset, 256 + 0x28);
    assert.notEqual(copied.raw.buffer, table.buffer);
    rec[200] = rec[200]! ^ 0x10;
    expectCode(() => decodeInode(rec, { ...o, shareBytes: true }), 'EBADMSG', 'inode-checksum');
  });

  test('fast symlink with a bad length is EUCLEAN symlink-fast-length', () => {
    const inode = blankInode(256);
    inode.mode = S_IFLNK | 0o777;
    inode.iBlock.set(new TextEncoder().encode('abc'));
    inode.sizeBytes = 3;
    assert.equal(isFastSymlink(inode, { clusterSize: 4096 }), true);
    assert.equal(new TextDecoder().decode(fastSymlinkTarget(inode)), 'abc');
    inode.sizeBytes = 60;
    expectCode(() => fastSymlinkTarget(inode), 'EUCLEAN', 'symlink-fast-length');
    inode.sizeBytes = 5;
    expectCode(() => fastSymlinkTarget(inode), 'EUCLEAN', 'symlink-fast-length');
    inode.blocks512 = 8;
    inode.flags = EXTENTS_FL;
    assert.equal(isFastSymlink(inode, { clusterSize: 4096 }), false);
    inode.fileAcl = 1234;
    assert.equal(isFastSymlink(inode, { clusterSize: 4096 }), true);
  });

  test('hostile bytes raise only Ext4Error', () => {
    let seed = 12345;
    const rnd = (): number => { seed = (seed * 1103515245 + 12345) >>> 0; return seed; };
    for (let n = 0; n < 3000; n++) {
      const b = new Uint8Array(256);
      for (let i = 0; i < 256; i++) b[i] = rnd() & 0xff;
      if (n % 2) setU16(b, 0x80, (rnd() % 40) * 4 % 129);
      try {
        const d = decodeInode(b, { ...base(), fsCsumSeed: n % 3 ? undefined : 1 });
        const out = new Uint8Array(256);
        encodeInode(d, out, base());
        assert.deepEqual(out, b);
      } catch (e) {
        assert.ok(e instanceof Ext4Error, String(e));
      }
    }
  });
});
