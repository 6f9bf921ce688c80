// jbd2 checksums: the v1 per-transaction crc32 (MSB-first, "crc32_be"), and the v2/v3 crc32c
// checksums of descriptor/revoke tails, commit blocks and logged data blocks (tags). All are
// stored big-endian; v2 tags keep only the low 16 bits.
import { crc32cUpdate } from '../../util/crc.ts';
import { u32be, setU32be } from '../../util/bytes.ts';

const CRC32_BE_TABLE: Uint32Array = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 24;
    for (let k = 0; k < 8; k++) c = c & 0x80000000 ? (c << 1) ^ 0x04c11db7 : c << 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** MSB-first CRC-32 (poly 0x04C11DB7), no inversion: the COMPAT_CHECKSUM transaction crc. */
export function crc32BeUpdate(crc: number, bytes: Uint8Array, start = 0, end = bytes.length): number {
  let c = crc >>> 0;
  for (let i = start; i < end; i++) c = ((c << 8) ^ CRC32_BE_TABLE[((c >>> 24) ^ bytes[i]!) & 0xff]!) >>> 0;
  return c >>> 0;
}

/** Initial value of the v1 transaction crc. */
export const CRC32_BE_INIT = 0xffffffff;

/** Seed of v2/v3 block checksums: crc32c_raw(~0, journal uuid). */
export function journalCsumSeed(uuid: Uint8Array): number {
  return crc32cUpdate(0xffffffff, uuid, 0, 16);
}

/** Checksum of a descriptor or revoke block: the whole block with its last 4 bytes as zero. */
export function blockTailChecksum(seed: number, block: Uint8Array): number {
  const n = block.length;
  return crc32cUpdate(crc32cUpdate(seed, block, 0, n - 4), new Uint8Array(4));
}

export function verifyBlockTail(seed: number, block: Uint8Array): boolean {
  return u32be(block, block.length - 4) === blockTailChecksum(seed, block);
}

export function setBlockTail(seed: number, block: Uint8Array): void {
  setU32be(block, block.length - 4, blockTailChecksum(seed, block));
}

/** crc32c of a logged data block (as stored in the log, i.e. escaped) for transaction `tid`. */
export function tagBlockChecksum(seed: number, tid: number, logged: Uint8Array): number {
  const t = new Uint8Array(4);
  setU32be(t, 0, tid >>> 0);
  return crc32cUpdate(crc32cUpdate(seed, t), logged);
}
