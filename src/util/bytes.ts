// Little-endian field access on Uint8Array. Callers check lengths at codec entry; these
// helpers never allocate views per call beyond one DataView per buffer region.

export function dv(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export const u8 = (b: Uint8Array, off: number): number => b[off]!;
export const u16 = (b: Uint8Array, off: number): number => b[off]! | (b[off + 1]! << 8);
export const u32 = (b: Uint8Array, off: number): number =>
  (b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16) | (b[off + 3]! << 24)) >>> 0;
export const u16be = (b: Uint8Array, off: number): number => (b[off]! << 8) | b[off + 1]!;
export const u32be = (b: Uint8Array, off: number): number =>
  ((b[off]! << 24) | (b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]!) >>> 0;

/** Joins a hi:lo pair into a number; values above 2^53 cannot be represented exactly. */
export function hiLo(hi: number, lo: number): number {
  return hi * 0x1_0000_0000 + lo;
}
export const u64 = (b: Uint8Array, off: number): number => hiLo(u32(b, off + 4), u32(b, off));
export const u64be = (b: Uint8Array, off: number): number => hiLo(u32be(b, off), u32be(b, off + 4));

export function setU8(b: Uint8Array, off: number, v: number): void { b[off] = v & 0xff; }
/** Flips the bits of `mask` in byte `off` (tests corrupting a structure on purpose). */
export function xorU8(b: Uint8Array, off: number, mask: number): void {
  const v = b[off];
  if (v === undefined) throw new RangeError(`byte ${off} outside a ${b.length}-byte buffer`);
  b[off] = v ^ mask;
}
export function setU16(b: Uint8Array, off: number, v: number): void {
  b[off] = v & 0xff; b[off + 1] = (v >>> 8) & 0xff;
}
export function setU32(b: Uint8Array, off: number, v: number): void {
  b[off] = v & 0xff; b[off + 1] = (v >>> 8) & 0xff; b[off + 2] = (v >>> 16) & 0xff; b[off + 3] = (v >>> 24) & 0xff;
}
export function setU16be(b: Uint8Array, off: number, v: number): void {
  b[off] = (v >>> 8) & 0xff; b[off + 1] = v & 0xff;
}
export function setU32be(b: Uint8Array, off: number, v: number): void {
  b[off] = (v >>> 24) & 0xff; b[off + 1] = (v >>> 16) & 0xff; b[off + 2] = (v >>> 8) & 0xff; b[off + 3] = v & 0xff;
}
export const hi32 = (v: number): number => Math.floor(v / 0x1_0000_0000) >>> 0;
export function setU64(b: Uint8Array, off: number, v: number): void {
  setU32(b, off, v % 0x1_0000_0000); setU32(b, off + 4, hi32(v));
}
export function setU64be(b: Uint8Array, off: number, v: number): void {
  setU32be(b, off, hi32(v)); setU32be(b, off + 4, v % 0x1_0000_0000);
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: false });
const utf8Encoder = new TextEncoder();
export const decodeUtf8 = (b: Uint8Array): string => utf8Decoder.decode(b);
export const encodeUtf8 = (s: string): Uint8Array => utf8Encoder.encode(s);

/** A NUL-padded fixed-width string field. */
export function decodeCString(b: Uint8Array, off: number, len: number): string {
  let end = off;
  while (end < off + len && b[end] !== 0) end++;
  return decodeUtf8(b.subarray(off, end));
}
export function encodeCString(b: Uint8Array, off: number, len: number, s: string): void {
  b.fill(0, off, off + len);
  b.set(encodeUtf8(s).subarray(0, len), off);
}

export function isAllZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** 16-byte UUID <-> canonical text form. */
export function uuidToString(b: Uint8Array): string {
  const h = Array.from(b.subarray(0, 16), (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
export function uuidFromString(s: string): Uint8Array | undefined {
  const h = s.replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(h)) return undefined;
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) out[i] = parseInt(h.slice(i * 2, i * 2 + 2), 16);
  return out;
}
