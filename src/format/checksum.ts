// Checksum seeds shared by the metadata_csum structures (checksums.rst): the filesystem seed
// derived from the UUID (or s_checksum_seed), and the per-inode seed that folds in the inode
// number and generation, which extent blocks, directory blocks and inodes all start from.
import { crc32cUpdate } from '../util/crc.ts';

/** The four little-endian bytes of a u32, as fed to crc32c. */
export function le32(n: number): Uint8Array {
  const v = n >>> 0;
  return new Uint8Array([v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff]);
}

/** crc32c of the 16-byte filesystem UUID from ~0: the seed when metadata_csum_seed is off. */
export function fsCsumSeed(uuid: Uint8Array): number {
  return crc32cUpdate(~0 >>> 0, uuid, 0, Math.min(16, uuid.length));
}

/** The per-inode seed: the fs seed extended by le32(inode number) then le32(generation). */
export function inodeCsumSeed(fsSeed: number, ino: number, generation: number): number {
  // One scratch array, not two fresh ones: every inode, extent and directory block write asks.
  const b = seedScratch;
  const i = ino >>> 0;
  const g = generation >>> 0;
  b[0] = i; b[1] = i >>> 8; b[2] = i >>> 16; b[3] = i >>> 24;
  b[4] = g; b[5] = g >>> 8; b[6] = g >>> 16; b[7] = g >>> 24;
  return crc32cUpdate(fsSeed >>> 0, b);
}

const seedScratch = new Uint8Array(8);
