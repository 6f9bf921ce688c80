import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryDevice } from '../device/memory-device.ts';
import { mkfs } from '../mkfs/mkfs.ts';
import { Volume } from './volume.ts';
import { Ext4Error } from '../errors/ext4-error.ts';
import { decodeSuperblock, SUPERBLOCK_OFFSET } from '../format/superblock.ts';
import { geometryOf, descriptorBlock } from '../layout/geometry.ts';
import { setGroupDescChecksum } from '../format/group-desc.ts';
import { setU32, setU16 } from '../util/bytes.ts';

async function image(features?: string): Promise<Uint8Array> {
  const dev = new MemoryDevice(16 << 20);
  await mkfs(dev, { blockSize: 1024, timeSec: 1_700_000_000, deviceZeroed: true, ...(features ? { features } : {}) });
  return dev.bytes;
}

/** Mutates group g's descriptor through `f`, then re-stamps its checksum so that only `f` is wrong. */
function mutateGd(bytes: Uint8Array, g: number, f: (d: Uint8Array) => void): Uint8Array {
  const out = bytes.slice();
  const geo = geometryOf(decodeSuperblock(out.subarray(SUPERBLOCK_OFFSET, SUPERBLOCK_OFFSET + 1024)));
  const off = descriptorBlock(geo, Math.floor(g / geo.descPerBlock)) * geo.blockSize + (g % geo.descPerBlock) * geo.descSize;
  const d = out.subarray(off, off + geo.descSize);
  f(d);
  setGroupDescChecksum(d, g, geo.descSize, geo.gdCsum);
  return out;
}

async function expectOpenError(bytes: Uint8Array, code: string, detail: string) {
  await assert.rejects(Volume.open(new MemoryDevice(bytes, { readOnly: true })),
    (e: unknown) => e instanceof Ext4Error && e.code === code && e.detail === detail);
}

test('group descriptor validation: one mutation per check', async () => {
  const base = await image();
  await Volume.open(new MemoryDevice(base.slice(), { readOnly: true }));
  await expectOpenError(mutateGd(base, 1, (d) => setU32(d, 0x0, 0)), 'EUCLEAN', 'group-desc-block-bitmap');
  await expectOpenError(mutateGd(base, 1, (d) => setU32(d, 0x4, 0xfffffff0)), 'EUCLEAN', 'group-desc-inode-bitmap');
  await expectOpenError(mutateGd(base, 0, (d) => setU32(d, 0x8, 16 * 1024 - 3)), 'EUCLEAN', 'group-desc-inode-table');
  await expectOpenError(mutateGd(base, 1, (d) => setU16(d, 0xe, 0xffff)), 'EUCLEAN', 'group-desc-counts');
  const badSum = base.slice();
  const geo = geometryOf(decodeSuperblock(badSum.subarray(SUPERBLOCK_OFFSET, SUPERBLOCK_OFFSET + 1024)));
  badSum[descriptorBlock(geo, 0) * geo.blockSize + 0x10]! ^= 1;
  await expectOpenError(badSum, 'EBADMSG', 'group descriptor-checksum');
});

test('without flex_bg, group tables must lie inside their group', async () => {
  const base = await image('^flex_bg');
  await Volume.open(new MemoryDevice(base.slice(), { readOnly: true }));
  await expectOpenError(mutateGd(base, 1, (d) => setU32(d, 0x0, 300)), 'EUCLEAN', 'group-desc-not-in-group');
});

test('a truncated image is refused before any read past its end', async () => {
  const base = await image();
  await expectOpenError(base.slice(0, 2048), 'EUCLEAN', 'superblock-blocks-count');
  await expectOpenError(base.slice(0, 1500), 'EUCLEAN', 'device-too-small');
});

test('unknown ro_compat features force a read-only open; unknown incompat refuse it', async () => {
  const base = await image('^metadata_csum');
  const ro = base.slice();
  setU32(ro, SUPERBLOCK_OFFSET + 0x64, (ro[SUPERBLOCK_OFFSET + 0x64]! | (ro[SUPERBLOCK_OFFSET + 0x65]! << 8)) | 0x40000000);
  const vol = await Volume.open(new MemoryDevice(ro));
  assert.equal(vol.readOnly, true);
  assert.match(vol.forcedReadOnly ?? '', /FEATURE_R30/);
  const inc = base.slice();
  setU32(inc, SUPERBLOCK_OFFSET + 0x60, 0x2 | 0x40 | 0x100000);
  await assert.rejects(Volume.open(new MemoryDevice(inc)), (e: unknown) => e instanceof Ext4Error && e.code === 'ENOTSUP' && /FEATURE_I20/.test(e.message));
});
