// Codec of the INIT handshake (fuse_init_in / fuse_init_out): pure.
import { Reader, Writer } from './wire.ts';

export interface InitIn { major: number; minor: number; maxReadaheadBytes: number; flags: number }

export function decodeInitIn(body: Uint8Array): InitIn {
  const r = new Reader(body);
  return { major: r.u32(), minor: r.u32(), maxReadaheadBytes: r.u32(), flags: r.u32() };
}

export interface InitOut {
  major: number;
  minor: number;
  maxReadaheadBytes: number;
  flags: number;
  maxBackground: number;
  congestionThreshold: number;
  maxWriteBytes: number;
  timeGranNs: number;
  maxPages: number;
}

export const INIT_OUT_BYTES = 64;

export function encodeInitOut(o: InitOut): Uint8Array {
  const w = new Writer(INIT_OUT_BYTES);
  w.u32(o.major).u32(o.minor).u32(o.maxReadaheadBytes).u32(o.flags)
    .u16(o.maxBackground).u16(o.congestionThreshold).u32(o.maxWriteBytes).u32(o.timeGranNs)
    .u16(o.maxPages);
  return w.bytes;
}
