// Device numbers of character and block device inodes, kept in i_block as ext4 does: a device
// whose major and minor both fit in 8 bits takes the old 16-bit form (major << 8 | minor) in
// i_block[0]; any other takes Linux's 32-bit form (minor bits 0-7, major bits 8-19, minor bits
// 8-19 at 20-31) in i_block[1], with i_block[0] zero. Numbers are Linux's dev_t as stat(2)
// reports it (the same 32-bit form for every major < 4096 and minor < 2^20).
import { setU32, u32 } from '../util/bytes.ts';

export function majorOf(rdev: number): number { return (rdev >>> 8) & 0xfff; }
export function minorOf(rdev: number): number { return (rdev & 0xff) | ((rdev >>> 12) & 0xfff00); }

/** dev_t from major and minor (major < 4096, minor < 2^20). */
export function makeDeviceNumber(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & 0xfff00) << 12)) >>> 0;
}

/** Stores `rdev` in a device inode's i_block (the rest of i_block is cleared). */
export function encodeDeviceNumber(iBlock: Uint8Array, rdev: number): void {
  const major = majorOf(rdev);
  const minor = minorOf(rdev);
  iBlock.fill(0);
  if (major < 256 && minor < 256) setU32(iBlock, 0, (major << 8) | minor);
  else setU32(iBlock, 4, makeDeviceNumber(major, minor));
}

/** The device number a device inode's i_block holds, in either form. */
export function decodeDeviceNumber(iBlock: Uint8Array): number {
  const old = u32(iBlock, 0);
  if (old !== 0) return makeDeviceNumber((old >>> 8) & 0xff, old & 0xff);
  const v = u32(iBlock, 4);
  return makeDeviceNumber(majorOf(v), minorOf(v));
}
