// Block group descriptors, 32 bytes (classic) or s_desc_size bytes (64bit), with their
// checksums: crc16 under uninit_bg/gdt_csum, low 16 bits of crc32c under metadata_csum.
// Layout: kernel Documentation/filesystems/ext4/group_descr.rst.
import { badChecksum } from '../errors/ext4-error.ts';
import { u16, u32, setU16, setU32 } from '../util/bytes.ts';
import { crc16Update, crc32cUpdate } from '../util/crc.ts';

export const BG_FLAGS = { inodeUninit: 0x1, blockUninit: 0x2, itableZeroed: 0x4 } as const;
const bg_checksum = 0x1e;

export interface GroupDesc {
  blockBitmap: number;
  inodeBitmap: number;
  inodeTable: number;
  freeBlocksCount: number; // clusters under bigalloc
  freeInodesCount: number;
  usedDirsCount: number;
  flags: number;
  excludeBitmap: number;
  blockBitmapCsum: number;
  inodeBitmapCsum: number;
  itableUnused: number;
  checksum: number;
  /** A copy of the descriptor bytes so that reserved fields round-trip. */
  raw: Uint8Array;
}

/** [name, lo offset, lo width, hi offset, hi width]: the hi half exists only in 64-byte descriptors. */
const FIELDS = [
  ['blockBitmap', 0x0, 4, 0x20, 4], ['inodeBitmap', 0x4, 4, 0x24, 4], ['inodeTable', 0x8, 4, 0x28, 4],
  ['freeBlocksCount', 0xc, 2, 0x2c, 2], ['freeInodesCount', 0xe, 2, 0x2e, 2], ['usedDirsCount', 0x10, 2, 0x30, 2],
  ['flags', 0x12, 2, -1, 0], ['excludeBitmap', 0x14, 4, 0x34, 4], ['blockBitmapCsum', 0x18, 2, 0x38, 2],
  ['inodeBitmapCsum', 0x1a, 2, 0x3a, 2], ['itableUnused', 0x1c, 2, 0x32, 2], ['checksum', bg_checksum, 2, -1, 0],
] as const;

const rd = (b: Uint8Array, off: number, w: number) => (w === 2 ? u16(b, off) : u32(b, off));
const wr = (b: Uint8Array, off: number, w: number, v: number) => (w === 2 ? setU16(b, off, v) : setU32(b, off, v));

export function decodeGroupDesc(bytes: Uint8Array, descSize: number): GroupDesc {
  const raw = bytes.slice(0, descSize);
  const gd: Record<string, unknown> = { raw };
  for (const [name, lo, loW, hi, hiW] of FIELDS) {
    const loV = rd(raw, lo, loW);
    const hiV = hi >= 0 && descSize >= 64 ? rd(raw, hi, hiW) : 0;
    gd[name] = hiV * 2 ** (8 * loW) + loV;
  }
  return gd as unknown as GroupDesc;
}

export function encodeGroupDesc(gd: GroupDesc, out: Uint8Array, descSize: number): void {
  out.set(gd.raw.subarray(0, descSize));
  for (const [name, lo, loW, hi, hiW] of FIELDS) {
    const v = gd[name];
    const base = 2 ** (8 * loW);
    wr(out, lo, loW, v % base);
    if (hi >= 0 && descSize >= 64) wr(out, hi, hiW, Math.floor(v / base));
  }
}

export type GdCsumMode =
  | { kind: 'none' }
  | { kind: 'crc16'; uuid: Uint8Array }
  | { kind: 'crc32c'; fsSeed: number };

/** The checksum of one encoded descriptor, computed with its checksum field treated as zero. */
export function groupDescChecksum(bytes: Uint8Array, group: number, descSize: number, mode: GdCsumMode): number {
  const le = new Uint8Array(4);
  setU32(le, 0, group);
  if (mode.kind === 'crc32c') {
    let c = crc32cUpdate(mode.fsSeed, le);
    c = crc32cUpdate(c, bytes, 0, bg_checksum);
    c = crc32cUpdate(c, new Uint8Array(2));
    c = crc32cUpdate(c, bytes, bg_checksum + 2, descSize);
    return c & 0xffff;
  }
  if (mode.kind === 'crc16') {
    let c = crc16Update(0xffff, mode.uuid, 0, 16);
    c = crc16Update(c, le);
    c = crc16Update(c, bytes, 0, bg_checksum);
    if (descSize > 32) c = crc16Update(c, bytes, bg_checksum + 2, descSize);
    return c;
  }
  return 0;
}

export function verifyGroupDesc(bytes: Uint8Array, group: number, descSize: number, mode: GdCsumMode): void {
  if (mode.kind === 'none') return;
  if (groupDescChecksum(bytes, group, descSize, mode) !== u16(bytes, bg_checksum)) {
    throw badChecksum('group descriptor', { group });
  }
}

export function setGroupDescChecksum(bytes: Uint8Array, group: number, descSize: number, mode: GdCsumMode): void {
  if (mode.kind === 'none') return;
  setU16(bytes, bg_checksum, groupDescChecksum(bytes, group, descSize, mode));
}
