// Codecs of attribute messages: fuse_attr inside fuse_attr_out / fuse_entry_out, and the
// GETATTR / SETATTR requests. Pure.
import { Reader, Writer } from './wire.ts';

/** What the kernel needs to know of an inode (struct fuse_attr). Times are seconds + ns. */
export interface NodeAttr {
  ino: number;
  sizeBytes: number;
  /** st_blocks: 512-byte units. */
  blocks512: number;
  atimeSec: number; atimeNsec: number;
  mtimeSec: number; mtimeNsec: number;
  ctimeSec: number; ctimeNsec: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  blksizeBytes: number;
}

export const ATTR_BYTES = 88;
export const ATTR_OUT_BYTES = 16 + ATTR_BYTES;
export const ENTRY_OUT_BYTES = 40 + ATTR_BYTES;

function putAttr(w: Writer, a: NodeAttr): void {
  w.u64(a.ino).u64(a.sizeBytes).u64(a.blocks512)
    .i64(a.atimeSec).i64(a.mtimeSec).i64(a.ctimeSec)
    .u32(a.atimeNsec).u32(a.mtimeNsec).u32(a.ctimeNsec)
    .u32(a.mode).u32(a.nlink).u32(a.uid).u32(a.gid).u32(a.rdev).u32(a.blksizeBytes).u32(0);
}

/** Cache lifetimes, split as the protocol wants them. */
export interface Validity { seconds: number; nanoseconds: number }

export function encodeAttrOut(a: NodeAttr, valid: Validity): Uint8Array {
  const w = new Writer(ATTR_OUT_BYTES);
  w.u64(valid.seconds).u32(valid.nanoseconds).u32(0);
  putAttr(w, a);
  return w.bytes;
}

/** fuse_entry_out; nodeId 0 with a positive entry validity is a cached negative lookup. */
export function encodeEntryOut(nodeId: number, generation: number, a: NodeAttr | undefined, entryValid: Validity, attrValid: Validity): Uint8Array {
  const w = new Writer(ENTRY_OUT_BYTES);
  entryOutInto(w, nodeId, generation, a, entryValid, attrValid);
  return w.bytes;
}

export function entryOutInto(w: Writer, nodeId: number, generation: number, a: NodeAttr | undefined, entryValid: Validity, attrValid: Validity): void {
  w.u64(nodeId).u64(generation).u64(entryValid.seconds).u64(attrValid.seconds)
    .u32(entryValid.nanoseconds).u32(attrValid.nanoseconds);
  if (a) putAttr(w, a); else w.skip(ATTR_BYTES);
}

export interface GetattrIn { fh: number | undefined }

export function decodeGetattrIn(body: Uint8Array): GetattrIn {
  if (body.length < 16) return { fh: undefined };
  const r = new Reader(body);
  const flags = r.u32();
  r.skip(4);
  const fh = r.u64();
  return { fh: flags & 1 ? fh : undefined };
}

/** fuse_setattr_in: `valid` says which of the other fields apply (FATTR_*). */
export interface SetattrIn {
  valid: number;
  fh: number;
  sizeBytes: number;
  atimeSec: number; mtimeSec: number; ctimeSec: number;
  atimeNsec: number; mtimeNsec: number; ctimeNsec: number;
  mode: number;
  uid: number;
  gid: number;
}

export function decodeSetattrIn(body: Uint8Array): SetattrIn {
  const r = new Reader(body);
  const valid = r.u32();
  r.skip(4);
  const fh = r.u64();
  const sizeBytes = r.u64();
  r.skip(8); // lock_owner
  const atimeSec = r.i64(), mtimeSec = r.i64(), ctimeSec = r.i64();
  const atimeNsec = r.u32(), mtimeNsec = r.u32(), ctimeNsec = r.u32();
  const mode = r.u32();
  r.skip(4);
  const uid = r.u32(), gid = r.u32();
  return { valid, fh, sizeBytes, atimeSec, mtimeSec, ctimeSec, atimeNsec, mtimeNsec, ctimeNsec, mode, uid, gid };
}
