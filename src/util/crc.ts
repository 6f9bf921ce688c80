// CRC32C (Castagnoli, reflected, polynomial 0x82F63B78) as ext4 uses it: the kernel's raw
// crc32c with no final inversion, seeded with ~0 or a previous value; and CRC16 (ANSI,
// reflected 0xA001) for the old uninit_bg group-descriptor checksum.

const CRC32C_TABLE: Uint32Array[] = (() => {
  const tables: Uint32Array[] = [];
  const t0 = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t0[i] = c >>> 0;
  }
  tables.push(t0);
  for (let t = 1; t < 16; t++) {
    const prev = tables[t - 1]!;
    const cur = new Uint32Array(256);
    for (let i = 0; i < 256; i++) cur[i] = (prev[i]! >>> 8) ^ t0[prev[i]! & 0xff]!;
    tables.push(cur);
  }
  return tables;
})();

/** The 16 tables back to back (table t at t * 256), for slicing-by-16 over 32-bit words. */
const FLAT = (() => {
  const f = new Uint32Array(16 * 256);
  for (const [i, t] of CRC32C_TABLE.entries()) f.set(t, i * 256);
  return f;
})();

/** Word loads read bytes in host order; the word path is for little-endian hosts only. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
/** Below this many bytes a typed-array view costs more than it saves. */
const WORD_MIN_BYTES = 64;

/**
 * Raw CRC32C update (no pre/post inversion), the building block of every ext4 checksum:
 * ext4 starts from ~0 (or the fs seed) and stores the running value as is. Long inputs are
 * processed 16 bytes at a time from aligned 32-bit words (slicing-by-16: ~2x the speed of
 * slicing-by-8 over single bytes).
 */
export function crc32cUpdate(crc: number, bytes: Uint8Array, start = 0, end = bytes.length): number {
  const t0 = CRC32C_TABLE[0]!;
  let c = crc >>> 0;
  let i = start;
  if (LITTLE_ENDIAN && end - start >= WORD_MIN_BYTES) {
    for (; (bytes.byteOffset + i) & 3; i++) c = t0[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
    const words = ((end - i) >>> 4) * 4;
    const w = new Uint32Array(bytes.buffer, bytes.byteOffset + i, words);
    const F = FLAT;
    for (let k = 0; k < words; k += 4) {
      const a = c ^ w[k]!;
      const b = w[k + 1]!;
      const d = w[k + 2]!;
      const e = w[k + 3]!;
      c = F[3840 + (a & 0xff)]! ^ F[3584 + ((a >>> 8) & 0xff)]! ^ F[3328 + ((a >>> 16) & 0xff)]! ^ F[3072 + (a >>> 24)]! ^
        F[2816 + (b & 0xff)]! ^ F[2560 + ((b >>> 8) & 0xff)]! ^ F[2304 + ((b >>> 16) & 0xff)]! ^ F[2048 + (b >>> 24)]! ^
        F[1792 + (d & 0xff)]! ^ F[1536 + ((d >>> 8) & 0xff)]! ^ F[1280 + ((d >>> 16) & 0xff)]! ^ F[1024 + (d >>> 24)]! ^
        F[768 + (e & 0xff)]! ^ F[512 + ((e >>> 8) & 0xff)]! ^ F[256 + ((e >>> 16) & 0xff)]! ^ F[e >>> 24]!;
    }
    i += words * 4;
  } else {
    const [, t1, t2, t3, t4, t5, t6, t7] = CRC32C_TABLE as [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array];
    for (; i + 8 <= end; i += 8) {
      const a = c ^ (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24));
      c = t7[a & 0xff]! ^ t6[(a >>> 8) & 0xff]! ^ t5[(a >>> 16) & 0xff]! ^ t4[a >>> 24]! ^
        t3[bytes[i + 4]!]! ^ t2[bytes[i + 5]!]! ^ t1[bytes[i + 6]!]! ^ t0[bytes[i + 7]!]!;
    }
  }
  for (; i < end; i++) c = t0[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return c >>> 0;
}

/** Standard CRC32C (init ~0, final xor ~0), for tests against published vectors. */
export function crc32c(bytes: Uint8Array): number {
  return (~crc32cUpdate(0xffffffff, bytes)) >>> 0;
}

const CRC16_TABLE = (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xa001 : c >>> 1;
    t[i] = c;
  }
  return t;
})();

export function crc16Update(crc: number, bytes: Uint8Array, start = 0, end = bytes.length): number {
  let c = crc & 0xffff;
  for (let i = start; i < end; i++) c = (c >>> 8) ^ CRC16_TABLE[(c ^ bytes[i]!) & 0xff]!;
  return c;
}
