// Codec of the request and reply headers (fuse_in_header, fuse_out_header): pure.
import { IN_HEADER_BYTES, OUT_HEADER_BYTES } from './protocol.ts';
import { ProtocolError, setU64, u32At, u64At } from './wire.ts';

export interface RequestHeader {
  lenBytes: number;
  opcode: number;
  /** Request id, echoed in the reply (a counter: a number, refused beyond 2^53). */
  unique: number;
  nodeId: number;
  uid: number;
  gid: number;
  pid: number;
}

export function decodeRequestHeader(buf: Uint8Array): RequestHeader {
  if (buf.length < IN_HEADER_BYTES) throw new ProtocolError(`request of ${buf.length} bytes is shorter than its header`);
  // Read in place (no Reader or DataView per request).
  const lenBytes = u32At(buf, 0);
  if (lenBytes !== buf.length) throw new ProtocolError(`request header says ${lenBytes} bytes, read returned ${buf.length}`);
  return { lenBytes, opcode: u32At(buf, 4), unique: u64At(buf, 8), nodeId: u64At(buf, 16), uid: u32At(buf, 24), gid: u32At(buf, 28), pid: u32At(buf, 32) };
}

/** One reply buffer: header then payload. `errno` > 0 means failure (sent negated). */
export function encodeReply(unique: number, errno: number, payload?: Uint8Array): Uint8Array {
  const out = new Uint8Array(OUT_HEADER_BYTES + (errno === 0 && payload ? payload.length : 0));
  const v = new DataView(out.buffer);
  v.setUint32(0, out.length, true);
  v.setInt32(4, -errno, true);
  setU64(v, 8, unique);
  if (errno === 0 && payload) out.set(payload, OUT_HEADER_BYTES);
  return out;
}

/**
 * encodeReply into `scratch` (a reused buffer, at least as large as the reply): the returned
 * view is valid until the next call with the same buffer.
 */
export function replyInto(scratch: DataView, unique: number, errno: number, payload?: Uint8Array): Uint8Array {
  const lenBytes = OUT_HEADER_BYTES + (errno === 0 && payload ? payload.length : 0);
  scratch.setUint32(0, lenBytes, true);
  scratch.setInt32(4, -errno, true);
  setU64(scratch, 8, unique);
  const out = new Uint8Array(scratch.buffer, scratch.byteOffset, lenBytes);
  if (errno === 0 && payload) out.set(payload, OUT_HEADER_BYTES);
  return out;
}

/** The header of a successful reply whose `payloadBytes` follow in the same writev (no copy). */
export function encodeReplyHeader(unique: number, payloadBytes: number): Uint8Array {
  const out = new Uint8Array(OUT_HEADER_BYTES);
  const v = new DataView(out.buffer);
  v.setUint32(0, OUT_HEADER_BYTES + payloadBytes, true);
  setU64(v, 8, unique);
  return out;
}

/** FUSE_NOTIFY_INVAL_INODE: an unsolicited message (unique 0, the code in the error field). */
const NOTIFY_INVAL_INODE = 2;

/** Tells the kernel that its cached attributes of `nodeId` are stale (no page cache range: offset -1). */
export function encodeNotifyInvalAttr(nodeId: number): Uint8Array {
  const out = new Uint8Array(OUT_HEADER_BYTES + 24);
  const v = new DataView(out.buffer);
  v.setUint32(0, out.length, true);
  v.setInt32(4, NOTIFY_INVAL_INODE, true);
  v.setBigUint64(16, BigInt(nodeId), true);
  v.setBigInt64(24, -1n, true);
  return out;
}

/** FUSE_NOTIFY_RETRIEVE: asks the kernel to send back cached pages of a node as a NOTIFY_REPLY request. */
const NOTIFY_RETRIEVE = 5;
export const NOTIFY_RETRIEVE_BYTES = OUT_HEADER_BYTES + 32;

/** A retrieve of `sizeBytes` from offset 0 of `nodeId` (0 bytes: the reply request carries no data). */
export function encodeNotifyRetrieve(nodeId: number, sizeBytes: number, notifyUnique = 0n): Uint8Array {
  const out = new Uint8Array(NOTIFY_RETRIEVE_BYTES);
  const v = new DataView(out.buffer);
  v.setUint32(0, out.length, true);
  v.setInt32(4, NOTIFY_RETRIEVE, true);
  v.setBigUint64(16, notifyUnique, true);
  v.setBigUint64(24, BigInt(nodeId), true);
  v.setUint32(40, sizeBytes, true);
  return out;
}
