// Little-endian cursor over a request body and a builder for reply bodies: the only byte
// helpers the FUSE codecs use. Pure.

/** A malformed request from the kernel: the session answers EINVAL, never crashes. */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
}

const TWO_32 = 0x1_0000_0000;
/** The largest high half of a 64-bit value that still fits in a double exactly (2^53 - 1). */
const HI_SAFE_MAX = 0x1f_ffff;

/** Writes the integer `x` (|x| < 2^53) as a little-endian 64-bit two's-complement value. */
export function setU64(v: DataView, pos: number, x: number): void {
  v.setUint32(pos, x >>> 0, true);
  v.setUint32(pos + 4, Math.floor(x / TWO_32) >>> 0, true);
}

/** The little-endian u32 at `pos` of `b` (the caller checked the bounds). */
export function u32At(b: Uint8Array, pos: number): number {
  return (b[pos]! | b[pos + 1]! << 8 | b[pos + 2]! << 16 | b[pos + 3]! << 24) >>> 0;
}

/** The little-endian u64 at `pos` of `b` as a number; ProtocolError beyond 2^53 (the caller checked the bounds). */
export function u64At(b: Uint8Array, pos: number): number {
  const hi = u32At(b, pos + 4);
  if (hi > HI_SAFE_MAX) throw new ProtocolError(`64-bit field 0x${hi.toString(16)}${u32At(b, pos).toString(16).padStart(8, '0')} is beyond 2^53`);
  return hi * TWO_32 + u32At(b, pos);
}

/** Reads fields in place from the request's bytes (no DataView: one of these per request). */
export class Reader {
  constructor(readonly bytes: Uint8Array, public pos = 0) {}
  private need(n: number): void {
    if (this.pos + n > this.bytes.length) throw new ProtocolError(`request body too short (${this.bytes.length} bytes, need ${this.pos + n})`);
  }
  u32(): number { this.need(4); const x = u32At(this.bytes, this.pos); this.pos += 4; return x; }
  /** An unsigned 64-bit field, read as two 32-bit halves (no BigInt per field: this runs several times per request). */
  u64(): number {
    this.need(8);
    const x = u64At(this.bytes, this.pos);
    this.pos += 8;
    return x;
  }
  /** A signed 64-bit field (times before 1970); beyond ±2^53 it is rounded like Number(bigint). */
  i64(): number {
    this.need(8);
    const lo = u32At(this.bytes, this.pos);
    const hi = u32At(this.bytes, this.pos + 4) | 0;
    this.pos += 8;
    return hi * TWO_32 + lo;
  }
  skip(n: number): void { this.need(n); this.pos += n; }
  /** A NUL-terminated name (bytes without the NUL). */
  cstr(): Uint8Array {
    const end = this.bytes.indexOf(0, this.pos);
    if (end < 0) throw new ProtocolError('name is not NUL-terminated');
    const s = this.bytes.subarray(this.pos, end);
    this.pos = end + 1;
    return s;
  }
  rest(): Uint8Array { const s = this.bytes.subarray(this.pos); this.pos = this.bytes.length; return s; }
  take(n: number): Uint8Array { this.need(n); const s = this.bytes.subarray(this.pos, this.pos + n); this.pos += n; return s; }
}

/** Writes `x` as a little-endian u32 at `pos` of `b`. */
function putU32(b: Uint8Array, pos: number, x: number): void {
  b[pos] = x; b[pos + 1] = x >>> 8; b[pos + 2] = x >>> 16; b[pos + 3] = x >>> 24;
}

/** Builds a reply body in place (no DataView: one of these per reply). */
export class Writer {
  readonly bytes: Uint8Array;
  pos = 0;
  constructor(lenBytes: number) {
    this.bytes = new Uint8Array(lenBytes);
  }
  u16(x: number): this { this.bytes[this.pos] = x; this.bytes[this.pos + 1] = x >>> 8; this.pos += 2; return this; }
  u32(x: number): this { putU32(this.bytes, this.pos, x >>> 0); this.pos += 4; return this; }
  /** A 64-bit field; a negative number is stored as its two's complement (as BigInt.asUintN would). */
  u64(x: number | bigint): this {
    if (typeof x !== 'bigint') return this.i64(x);
    const u = BigInt.asUintN(64, x);
    putU32(this.bytes, this.pos, Number(u & 0xffff_ffffn));
    putU32(this.bytes, this.pos + 4, Number(u >> 32n));
    this.pos += 8;
    return this;
  }
  i64(x: number): this {
    putU32(this.bytes, this.pos, x >>> 0);
    putU32(this.bytes, this.pos + 4, Math.floor(x / TWO_32) >>> 0);
    this.pos += 8;
    return this;
  }
  bytesAt(b: Uint8Array): this { this.bytes.set(b, this.pos); this.pos += b.length; return this; }
  skip(n: number): this { this.pos += n; return this; }
}
