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

export class Reader {
  private readonly v: DataView;
  constructor(readonly bytes: Uint8Array, public pos = 0) {
    this.v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  private need(n: number): void {
    if (this.pos + n > this.bytes.length) throw new ProtocolError(`request body too short (${this.bytes.length} bytes, need ${this.pos + n})`);
  }
  u32(): number { this.need(4); const x = this.v.getUint32(this.pos, true); this.pos += 4; return x; }
  /** An unsigned 64-bit field, read as two 32-bit halves (no BigInt per field: this runs several times per request). */
  u64(): number {
    this.need(8);
    const lo = this.v.getUint32(this.pos, true);
    const hi = this.v.getUint32(this.pos + 4, true);
    this.pos += 8;
    if (hi > HI_SAFE_MAX) throw new ProtocolError(`64-bit field 0x${hi.toString(16)}${lo.toString(16).padStart(8, '0')} is beyond 2^53`);
    return hi * TWO_32 + lo;
  }
  /** A signed 64-bit field (times before 1970); beyond ±2^53 it is rounded like Number(bigint). */
  i64(): number {
    this.need(8);
    const lo = this.v.getUint32(this.pos, true);
    const hi = this.v.getInt32(this.pos + 4, true);
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

export class Writer {
  readonly bytes: Uint8Array;
  private readonly v: DataView;
  pos = 0;
  constructor(lenBytes: number) {
    this.bytes = new Uint8Array(lenBytes);
    this.v = new DataView(this.bytes.buffer);
  }
  u16(x: number): this { this.v.setUint16(this.pos, x, true); this.pos += 2; return this; }
  u32(x: number): this { this.v.setUint32(this.pos, x >>> 0, true); this.pos += 4; return this; }
  /** A 64-bit field; a negative number is stored as its two's complement (as BigInt.asUintN would). */
  u64(x: number | bigint): this {
    if (typeof x === 'bigint') this.v.setBigUint64(this.pos, BigInt.asUintN(64, x), true);
    else setU64(this.v, this.pos, x);
    this.pos += 8;
    return this;
  }
  i64(x: number): this { setU64(this.v, this.pos, x); this.pos += 8; return this; }
  bytesAt(b: Uint8Array): this { this.bytes.set(b, this.pos); this.pos += b.length; return this; }
  skip(n: number): this { this.pos += n; return this; }
}
