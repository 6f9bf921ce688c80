// Codec of the request and reply headers (fuse_in_header, fuse_out_header): pure.
import { IN_HEADER_BYTES, OUT_HEADER_BYTES } from './protocol.ts';
import { ProtocolError } from './wire.ts';

export interface RequestHeader {
  lenBytes: number;
  opcode: number;
  /** Request id, echoed in the reply. */
  unique: bigint;
  nodeId: number;
  uid: number;
  gid: number;
  pid: number;
}

export function decodeRequestHeader(buf: Uint8Array): RequestHeader {
  if (buf.length < IN_HEADER_BYTES) throw new ProtocolError(`request of ${buf.length} bytes is shorter than its header`);
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const lenBytes = v.getUint32(0, true);
  if (lenBytes !== buf.length) throw new ProtocolError(`request header says ${lenBytes} bytes, read returned ${buf.length}`);
  return {
    lenBytes, opcode: v.getUint32(4, true), unique: v.getBigUint64(8, true),
    nodeId: Number(v.getBigUint64(16, true)), uid: v.getUint32(24, true), gid: v.getUint32(28, true),
    pid: v.getUint32(32, true),
  };
}

/** One reply buffer: header then payload. `errno` > 0 means failure (sent negated). */
export function encodeReply(unique: bigint, errno: number, payload?: Uint8Array): Uint8Array {
  const out = new Uint8Array(OUT_HEADER_BYTES + (errno === 0 && payload ? payload.length : 0));
  const v = new DataView(out.buffer);
  v.setUint32(0, out.length, true);
  v.setInt32(4, -errno, true);
  v.setBigUint64(8, unique, true);
  if (errno === 0 && payload) out.set(payload, OUT_HEADER_BYTES);
  return out;
}

/** The header of a successful reply whose `payloadBytes` follow in the same writev (no copy). */
export function encodeReplyHeader(unique: bigint, payloadBytes: number): Uint8Array {
  const out = new Uint8Array(OUT_HEADER_BYTES);
  const v = new DataView(out.buffer);
  v.setUint32(0, OUT_HEADER_BYTES + payloadBytes, true);
  v.setBigUint64(8, unique, true);
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
