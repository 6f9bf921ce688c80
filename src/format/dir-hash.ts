// Directory name hashes for htree directories: legacy, half-MD4 and TEA, each in the signed-char
// and unsigned-char flavour (Documentation/filesystems/ext4/directory.rst, "dirhash" table).

import { corrupt, unsupported, type Ext4ErrorWhere } from '../errors/ext4-error.ts';

export const DX_HASH_LEGACY = 0;
export const DX_HASH_HALF_MD4 = 1;
export const DX_HASH_TEA = 2;
export const DX_HASH_LEGACY_UNSIGNED = 3;
export const DX_HASH_HALF_MD4_UNSIGNED = 4;
export const DX_HASH_TEA_UNSIGNED = 5;
/** Casefolded + encrypted directories; needs a per-directory key, not supported here. */
export const DX_HASH_SIPHASH = 6;

/** The hash value reserved as the end-of-directory cookie (32-bit readdir positions). */
export const HTREE_EOF_32BIT = 0x7fffffff;

/** s_flags bits saying how the fs was created; the unsigned one shifts versions 0..2 to 3..5. */
export const EXT2_FLAGS_SIGNED_HASH = 0x0001;
export const EXT2_FLAGS_UNSIGNED_HASH = 0x0002;

/** Seed used when the superblock's s_hash_seed is all zero (the MD4 initial state). */
export const DEFAULT_HASH_SEED: readonly number[] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

export interface DirHash {
  /** Major hash, low bit always clear (the bit marks hash-collision continuation in the index). */
  hash: number;
  minorHash: number;
}

/**
 * The hash version to use for a directory: the dx_root stores 0..2, and the superblock's
 * "unsigned hash" flag selects the unsigned-char variant of the same algorithm.
 */
export function effectiveHashVersion(rootHashVersion: number, sFlags: number): number {
  if (rootHashVersion <= DX_HASH_TEA && (sFlags & EXT2_FLAGS_UNSIGNED_HASH) !== 0) return rootHashVersion + 3;
  return rootHashVersion;
}

/** Hashes `name` as ext4 does for htree lookups. Unknown versions are corrupt; SipHash is ENOTSUP. */
export function dirHash(
  name: Uint8Array,
  version: number,
  seed: Uint32Array | readonly number[],
  where?: Ext4ErrorWhere,
): DirHash {
  let hash: number;
  let minorHash = 0;
  switch (version) {
    case DX_HASH_LEGACY:
    case DX_HASH_LEGACY_UNSIGNED:
      hash = legacyHash(name, version === DX_HASH_LEGACY_UNSIGNED);
      break;
    case DX_HASH_HALF_MD4:
    case DX_HASH_HALF_MD4_UNSIGNED: {
      const st = initialState(seed);
      const unsigned = version === DX_HASH_HALF_MD4_UNSIGNED;
      const words = new Uint32Array(8);
      for (let pos = 0; pos < name.length; pos += 32) {
        packName(name, pos, words, 8, unsigned);
        halfMd4Transform(st, words);
      }
      hash = st[1]!;
      minorHash = st[2]!;
      break;
    }
    case DX_HASH_TEA:
    case DX_HASH_TEA_UNSIGNED: {
      const st = initialState(seed);
      const unsigned = version === DX_HASH_TEA_UNSIGNED;
      const words = new Uint32Array(4);
      for (let pos = 0; pos < name.length; pos += 16) {
        packName(name, pos, words, 4, unsigned);
        teaTransform(st, words);
      }
      hash = st[0]!;
      minorHash = st[1]!;
      break;
    }
    case DX_HASH_SIPHASH:
      throw unsupported('dir-hash-siphash', 'SipHash directory hashing (casefold + encryption) is not supported', where);
    default:
      throw corrupt('dir-hash-version', `unknown directory hash version ${version}`, where);
  }
  hash = (hash & ~1) >>> 0;
  // The largest even value would collide with the EOF position cookie; ext4 steps one below.
  if (hash === ((HTREE_EOF_32BIT << 1) >>> 0)) hash = ((HTREE_EOF_32BIT - 1) << 1) >>> 0;
  return { hash, minorHash: minorHash >>> 0 };
}

function initialState(seed: Uint32Array | readonly number[]): Uint32Array {
  const st = new Uint32Array(4);
  let any = false;
  for (let i = 0; i < 4; i++) {
    const w = (seed[i] ?? 0) >>> 0;
    st[i] = w;
    if (w !== 0) any = true;
  }
  if (!any) st.set(DEFAULT_HASH_SEED);
  return st;
}

const charValue = (b: number, unsigned: boolean): number => (unsigned || b < 0x80 ? b : b - 256);

/** The ext3 "dx_hack_hash": a two-register mix, one character at a time. */
function legacyHash(name: Uint8Array, unsigned: boolean): number {
  let h0 = 0x12a3fe2d;
  let h1 = 0x37abe8f9;
  for (let i = 0; i < name.length; i++) {
    let h = (h1 + (h0 ^ Math.imul(charValue(name[i]!, unsigned), 7152373))) >>> 0;
    if (h & 0x80000000) h = (h - 0x7fffffff) >>> 0;
    h1 = h0;
    h0 = h;
  }
  return (h0 << 1) >>> 0;
}

/**
 * Packs up to `nWords * 4` name bytes starting at `pos` into big-endian-ish accumulated words.
 * Unfilled word positions hold a pad pattern made from the remaining length, so that names
 * differing only in length hash differently.
 */
function packName(name: Uint8Array, pos: number, out: Uint32Array, nWords: number, unsigned: boolean): void {
  const remaining = name.length - pos;
  // Built from the whole remaining length, not only its low byte.
  let pad = ((remaining >>> 0) | ((remaining >>> 0) << 8)) >>> 0;
  pad = (pad | (pad << 16)) >>> 0;
  const n = Math.min(remaining, nWords * 4);
  let acc = pad;
  let w = 0;
  for (let i = 0; i < n; i++) {
    acc = (charValue(name[pos + i]!, unsigned) + (acc << 8)) >>> 0;
    if ((i & 3) === 3) {
      out[w++] = acc;
      acc = pad;
    }
  }
  if (w < nWords) out[w++] = acc;
  while (w < nWords) out[w++] = pad;
}

const rol = (x: number, s: number): number => ((x << s) | (x >>> (32 - s))) >>> 0;
const fF = (x: number, y: number, z: number): number => z ^ (x & (y ^ z));
const fG = (x: number, y: number, z: number): number => ((x & y) + ((x ^ y) & z)) >>> 0;
const fH = (x: number, y: number, z: number): number => x ^ y ^ z;
const K2 = 0x5a827999;
const K3 = 0x6ed9eba1;

/** MD4 cut down to three rounds of eight steps over eight input words. */
function halfMd4Transform(st: Uint32Array, x: Uint32Array): void {
  let a = st[0]!, b = st[1]!, c = st[2]!, d = st[3]!;
  const x0 = x[0]!, x1 = x[1]!, x2 = x[2]!, x3 = x[3]!, x4 = x[4]!, x5 = x[5]!, x6 = x[6]!, x7 = x[7]!;

  a = rol((a + fF(b, c, d) + x0) >>> 0, 3);
  d = rol((d + fF(a, b, c) + x1) >>> 0, 7);
  c = rol((c + fF(d, a, b) + x2) >>> 0, 11);
  b = rol((b + fF(c, d, a) + x3) >>> 0, 19);
  a = rol((a + fF(b, c, d) + x4) >>> 0, 3);
  d = rol((d + fF(a, b, c) + x5) >>> 0, 7);
  c = rol((c + fF(d, a, b) + x6) >>> 0, 11);
  b = rol((b + fF(c, d, a) + x7) >>> 0, 19);

  a = rol((a + fG(b, c, d) + x1 + K2) >>> 0, 3);
  d = rol((d + fG(a, b, c) + x3 + K2) >>> 0, 5);
  c = rol((c + fG(d, a, b) + x5 + K2) >>> 0, 9);
  b = rol((b + fG(c, d, a) + x7 + K2) >>> 0, 13);
  a = rol((a + fG(b, c, d) + x0 + K2) >>> 0, 3);
  d = rol((d + fG(a, b, c) + x2 + K2) >>> 0, 5);
  c = rol((c + fG(d, a, b) + x4 + K2) >>> 0, 9);
  b = rol((b + fG(c, d, a) + x6 + K2) >>> 0, 13);

  a = rol((a + fH(b, c, d) + x3 + K3) >>> 0, 3);
  d = rol((d + fH(a, b, c) + x7 + K3) >>> 0, 9);
  c = rol((c + fH(d, a, b) + x2 + K3) >>> 0, 11);
  b = rol((b + fH(c, d, a) + x6 + K3) >>> 0, 15);
  a = rol((a + fH(b, c, d) + x1 + K3) >>> 0, 3);
  d = rol((d + fH(a, b, c) + x5 + K3) >>> 0, 9);
  c = rol((c + fH(d, a, b) + x0 + K3) >>> 0, 11);
  b = rol((b + fH(c, d, a) + x4 + K3) >>> 0, 15);

  st[0] = st[0]! + a;
  st[1] = st[1]! + b;
  st[2] = st[2]! + c;
  st[3] = st[3]! + d;
}

const TEA_DELTA = 0x9e3779b9;

/** Sixteen TEA cycles keyed by four input words, mixed into the first two state words. */
function teaTransform(st: Uint32Array, k: Uint32Array): void {
  let sum = 0;
  let b0 = st[0]!, b1 = st[1]!;
  const a = k[0]!, b = k[1]!, c = k[2]!, d = k[3]!;
  for (let n = 0; n < 16; n++) {
    sum = (sum + TEA_DELTA) >>> 0;
    b0 = (b0 + ((((b1 << 4) + a) ^ (b1 + sum) ^ ((b1 >>> 5) + b)) >>> 0)) >>> 0;
    b1 = (b1 + ((((b0 << 4) + c) ^ (b0 + sum) ^ ((b0 >>> 5) + d)) >>> 0)) >>> 0;
  }
  st[0] = st[0]! + b0;
  st[1] = st[1]! + b1;
}
