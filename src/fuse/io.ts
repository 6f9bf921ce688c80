// Codecs of the file I/O messages: OPEN/CREATE, READ, WRITE, RELEASE, FLUSH, FSYNC,
// FALLOCATE, LSEEK. Pure.
import { Reader, Writer } from './wire.ts';

export interface OpenIn { flags: number }
export function decodeOpenIn(body: Uint8Array): OpenIn {
  return { flags: new Reader(body).u32() };
}

export interface CreateIn { flags: number; mode: number; umask: number; nameBytes: Uint8Array }
export function decodeCreateIn(body: Uint8Array): CreateIn {
  const r = new Reader(body);
  const flags = r.u32(), mode = r.u32(), umask = r.u32();
  r.skip(4);
  return { flags, mode, umask, nameBytes: r.cstr() };
}

export const OPEN_OUT_BYTES = 16;
export function encodeOpenOut(fh: number, openFlags: number): Uint8Array {
  return new Writer(OPEN_OUT_BYTES).u64(fh).u32(openFlags).u32(0).bytes;
}

/** READ and READDIR share fuse_read_in. */
export interface ReadIn { fh: number; offset: number; sizeBytes: number; flags: number }
export function decodeReadIn(body: Uint8Array): ReadIn {
  const r = new Reader(body);
  const fh = r.u64(), offset = r.u64(), sizeBytes = r.u32();
  r.skip(4 + 8);
  return { fh, offset, sizeBytes, flags: r.u32() };
}

export interface WriteIn { fh: number; offset: number; data: Uint8Array; writeFlags: number }
const WRITE_IN_BYTES = 40;
export function decodeWriteIn(body: Uint8Array): WriteIn {
  const r = new Reader(body);
  const fh = r.u64(), offset = r.u64(), sizeBytes = r.u32(), writeFlags = r.u32();
  r.pos = WRITE_IN_BYTES;
  return { fh, offset, data: r.take(sizeBytes), writeFlags };
}
export function encodeWriteOut(sizeBytes: number): Uint8Array {
  return new Writer(8).u32(sizeBytes).u32(0).bytes;
}

/** RELEASE, RELEASEDIR, FLUSH and FSYNC start with the handle. */
export function decodeFh(body: Uint8Array): number {
  return new Reader(body).u64();
}

export interface FsyncIn { fh: number; dataOnly: boolean }
export function decodeFsyncIn(body: Uint8Array): FsyncIn {
  const r = new Reader(body);
  const fh = r.u64();
  return { fh, dataOnly: (r.u32() & 1) !== 0 };
}

export interface FallocateIn { fh: number; offset: number; lenBytes: number; mode: number }
export function decodeFallocateIn(body: Uint8Array): FallocateIn {
  const r = new Reader(body);
  return { fh: r.u64(), offset: r.u64(), lenBytes: r.u64(), mode: r.u32() };
}

export interface LseekIn { fh: number; offset: number; whence: number }
export function decodeLseekIn(body: Uint8Array): LseekIn {
  const r = new Reader(body);
  return { fh: r.u64(), offset: r.u64(), whence: r.u32() };
}
export function encodeLseekOut(offset: number): Uint8Array {
  return new Writer(8).u64(offset).bytes;
}

export function decodeAccessIn(body: Uint8Array): number {
  return new Reader(body).u32();
}
