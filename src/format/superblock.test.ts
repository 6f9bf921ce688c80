import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeSuperblock, encodeSuperblock, validateSuperblock, SUPERBLOCK_OFFSET } from './superblock.ts';
import { decodeGroupDesc, encodeGroupDesc, verifyGroupDesc } from './group-desc.ts';
import { geometryOf, descriptorBlock } from '../layout/geometry.ts';
import { Ext4Error } from '../errors/ext4-error.ts';
import { setU32, setU16, xorU8 } from '../util/bytes.ts';

const haveMke2fs = (() => { try { execFileSync('mke2fs', ['-V'], { stdio: 'ignore' }); return true; } catch { return false; } })();
const skip = haveMke2fs ? false : 'mke2fs not installed';

function mkimg(args: string[], size: string): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), 'ext4kit-sb-'));
  const img = join(dir, 'img');
  execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', ...args, img, size], { env: { ...process.env, E2FSPROGS_FAKE_TIME: '1700000000' } });
  return new Uint8Array(readFileSync(img));
}

const GEOMETRIES: Array<[string, string[], string]> = [
  ['4k default', ['-b', '4096'], '64M'],
  ['1k default', ['-b', '1024'], '32M'],
  ['4k bigalloc 16', ['-b', '4096', '-O', 'bigalloc', '-C', '65536'], '128M'],
  ['1k bigalloc 4, metadata_csum_seed', ['-b', '1024', '-O', 'bigalloc,metadata_csum_seed', '-C', '4096'], '32M'],
  ['no csum, no 64bit', ['-b', '4096', '-O', '^metadata_csum,^64bit,uninit_bg'], '64M'],
  ['meta_bg', ['-b', '1024', '-O', 'meta_bg,^resize_inode'], '64M'],
];

for (const [name, args, size] of GEOMETRIES) {
  test(`superblock and group descriptors round-trip: ${name}`, { skip }, () => {
    const img = mkimg(args, size);
    const sbBytes = img.subarray(SUPERBLOCK_OFFSET, SUPERBLOCK_OFFSET + 1024);
    const sb = decodeSuperblock(sbBytes);
    assert.deepEqual(validateSuperblock(sb, img.length), { forceReadOnly: undefined });
    assert.deepEqual(encodeSuperblock(sb), sbBytes);
    const geo = geometryOf(sb);
    assert.equal(geo.blocksCount * geo.blockSize, img.length);
    let freeClusters = 0;
    for (let g = 0; g < geo.groupCount; g++) {
      const blk = descriptorBlock(geo, Math.floor(g / geo.descPerBlock));
      const off = blk * geo.blockSize + (g % geo.descPerBlock) * geo.descSize;
      const bytes = img.subarray(off, off + geo.descSize);
      verifyGroupDesc(bytes, g, geo.descSize, geo.gdCsum);
      const gd = decodeGroupDesc(bytes, geo.descSize);
      const out = new Uint8Array(geo.descSize);
      encodeGroupDesc(gd, out, geo.descSize);
      assert.deepEqual(out, bytes);
      freeClusters += gd.freeBlocksCount;
    }
    assert.equal(freeClusters * geo.clusterRatio, sb.freeBlocksCount);
  });
}

function expectCode(fn: () => unknown, code: string, detail?: string) {
  assert.throws(fn, (e: unknown) => e instanceof Ext4Error && e.code === code && (detail === undefined || e.detail === detail));
}

test('superblock validation: one mutation per check', { skip }, () => {
  const img = mkimg(['-b', '4096', '-O', '^metadata_csum'], '16M');
  const base = img.slice(SUPERBLOCK_OFFSET, SUPERBLOCK_OFFSET + 1024);
  const mutate = (f: (b: Uint8Array) => void) => { const b = base.slice(); f(b); return decodeSuperblock(b); };
  const cases: Array<[string, (b: Uint8Array) => void, string, string]> = [
    ['magic', (b) => setU16(b, 0x38, 0x1234), 'EUCLEAN', 'superblock-magic'],
    ['revision', (b) => setU32(b, 0x4c, 7), 'ENOTSUP', 'superblock-revision'],
    ['unknown incompat', (b) => setU32(b, 0x60, 0x80000000 | 0x2), 'ENOTSUP', 'incompat-feature'],
    ['block size', (b) => setU32(b, 0x18, 9), 'EUCLEAN', 'superblock-block-size'],
    ['blocks per group', (b) => setU32(b, 0x20, 0), 'EUCLEAN', 'superblock-blocks-per-group'],
    ['clusters per group', (b) => setU32(b, 0x24, 12345 * 8), 'EUCLEAN', 'superblock-clusters-per-group'],
    ['first data block', (b) => setU32(b, 0x14, 5), 'EUCLEAN', 'superblock-first-data-block'],
    ['blocks count', (b) => setU32(b, 0x4, 0), 'EUCLEAN', 'superblock-blocks-count'],
    ['inodes per group', (b) => setU32(b, 0x28, 0), 'EUCLEAN', 'superblock-inodes-per-group'],
    ['inodes count', (b) => setU32(b, 0x0, 0xffffff00), 'EUCLEAN', 'superblock-inodes-count'],
    ['inode size', (b) => setU16(b, 0x58, 100), 'EUCLEAN', 'superblock-inode-size'],
    ['first ino', (b) => setU32(b, 0x54, 3), 'EUCLEAN', 'superblock-first-ino'],
    ['desc size', (b) => { setU32(b, 0x60, (b[0x60]! | (b[0x61]! << 8) | 0x80)); setU16(b, 0xfe, 48); }, 'EUCLEAN', 'superblock-desc-size'],
    ['flex bg', (b) => { b[0x174] = 40; }, 'EUCLEAN', 'superblock-flex-bg'],
    ['free blocks', (b) => setU32(b, 0xc, 0xfffffff0), 'EUCLEAN', 'superblock-free-blocks'],
    ['journal dev', (b) => setU32(b, 0x60, 0x8 | 0x2), 'ENOTSUP', 'journal-dev'],
  ];
  for (const [what, f, code, detail] of cases) {
    expectCode(() => validateSuperblock(mutate(f), img.length), code, detail);
    void what;
  }
  const ro = validateSuperblock(mutate((b) => setU32(b, 0x64, (b[0x64]! | (b[0x65]! << 8)) | 0x40000000)), img.length);
  assert.match(ro.forceReadOnly ?? '', /unknown ro_compat features: FEATURE_R30/);
});

test('superblock checksum mismatch is EBADMSG', { skip }, () => {
  const img = mkimg(['-b', '4096'], '16M');
  const b = img.slice(SUPERBLOCK_OFFSET, SUPERBLOCK_OFFSET + 1024);
  xorU8(b, 0x78, 1); // volume name byte
  expectCode(() => validateSuperblock(decodeSuperblock(b), img.length), 'EBADMSG', 'superblock-checksum');
  b[0x175] = 2;
  expectCode(() => validateSuperblock(decodeSuperblock(b), img.length), 'EUCLEAN', 'superblock-checksum-type');
});
