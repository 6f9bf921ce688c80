// Encoders for the jbd2 log blocks ext4kit writes (journal.md §1.5–1.9): descriptor blocks with
// their tags, escaped copies, revoke blocks and commit blocks, with the v3 (crc32c) checksums or
// none. Big-endian throughout. The decoders live with replay (format/jbd2/).
import { crc32cUpdate } from '../util/crc.ts';
import { JBD2_MAGIC } from '../format/jbd2/superblock.ts';

export const JBD2_DESCRIPTOR_BLOCK = 1;
export const JBD2_COMMIT_BLOCK = 2;
export const JBD2_REVOKE_BLOCK = 5;
export const JBD2_FLAG_ESCAPE = 0x1;
export const JBD2_FLAG_SAME_UUID = 0x2;
export const JBD2_FLAG_LAST_TAG = 0x8;
const HEADER_BYTES = 12;
const UUID_BYTES = 16;
const REVOKE_HEADER_BYTES = 16;

/** How a log is written: block size, checksum v3 or none, 64-bit block numbers. */
export interface LogFormat {
  blockSize: number;
  csumV3: boolean;
  bit64: boolean;
  uuid: Uint8Array;
}

function setU32be(b: Uint8Array, off: number, v: number): void {
  b[off] = v >>> 24; b[off + 1] = (v >>> 16) & 0xff; b[off + 2] = (v >>> 8) & 0xff; b[off + 3] = v & 0xff;
}

function header(b: Uint8Array, type: number, tid: number): void {
  setU32be(b, 0, JBD2_MAGIC);
  setU32be(b, 4, type);
  setU32be(b, 8, tid >>> 0);
}

/** Checksum seed of every v3 log block: crc32c_raw(~0, uuid). */
export function logSeed(fmt: LogFormat): number {
  return crc32cUpdate(0xffffffff, fmt.uuid.subarray(0, 16));
}

export function tagBytes(fmt: LogFormat): number {
  return fmt.csumV3 ? 16 : fmt.bit64 ? 12 : 8;
}

const tailBytes = (fmt: LogFormat): number => (fmt.csumV3 ? 4 : 0);

/** Tags one descriptor block holds (the first tag is followed by the 16-byte UUID). */
export function tagsPerDescriptor(fmt: LogFormat): number {
  return Math.floor((fmt.blockSize - HEADER_BYTES - UUID_BYTES - tailBytes(fmt)) / tagBytes(fmt));
}

/** Revoke records one revoke block holds. */
export function recordsPerRevoke(fmt: LogFormat): number {
  return Math.floor((fmt.blockSize - REVOKE_HEADER_BYTES - tailBytes(fmt)) / (fmt.bit64 ? 8 : 4));
}

function setTail(fmt: LogFormat, b: Uint8Array, seed: number): void {
  if (!fmt.csumV3) return;
  const end = b.length - 4;
  setU32be(b, end, 0);
  setU32be(b, end, crc32cUpdate(seed, b));
}

/**
 * The logged form of a metadata block: the block itself (the caller's copy, not changed
 * afterwards), or a copy with the first 4 bytes zeroed when they are the jbd2 magic (the tag
 * then carries ESCAPE).
 */
export function escapeBlock(bytes: Uint8Array): { logged: Uint8Array; escaped: boolean } {
  const escaped = bytes[0] === 0xc0 && bytes[1] === 0x3b && bytes[2] === 0x39 && bytes[3] === 0x98;
  if (!escaped) return { logged: bytes, escaped };
  const logged = bytes.slice();
  logged.fill(0, 0, 4);
  return { logged, escaped };
}

/** A descriptor block for `tags` (fs block numbers and their logged copies, in log order). */
export function encodeDescriptor(fmt: LogFormat, tid: number, tags: ReadonlyArray<{ fsBlock: number; logged: Uint8Array; escaped: boolean }>): Uint8Array {
  const b = new Uint8Array(fmt.blockSize);
  header(b, JBD2_DESCRIPTOR_BLOCK, tid);
  const seed = logSeed(fmt);
  const tb = tagBytes(fmt);
  let off = HEADER_BYTES;
  const tidBytes = new Uint8Array(4);
  setU32be(tidBytes, 0, tid >>> 0);
  const tidSeed = fmt.csumV3 ? crc32cUpdate(seed, tidBytes) : 0;
  tags.forEach((t, i) => {
    let flags = 0;
    if (t.escaped) flags |= JBD2_FLAG_ESCAPE;
    if (i > 0) flags |= JBD2_FLAG_SAME_UUID;
    if (i === tags.length - 1) flags |= JBD2_FLAG_LAST_TAG;
    setU32be(b, off, t.fsBlock % 0x1_0000_0000);
    // Flags sit in bytes 6-7 for every tag format.
    b[off + 6] = (flags >>> 8) & 0xff; b[off + 7] = flags & 0xff;
    if (fmt.bit64) setU32be(b, off + 8, Math.floor(t.fsBlock / 0x1_0000_0000));
    if (fmt.csumV3) setU32be(b, off + 12, crc32cUpdate(tidSeed, t.logged));
    off += tb;
    if (i === 0) { b.set(fmt.uuid.subarray(0, 16), off); off += UUID_BYTES; }
  });
  setTail(fmt, b, seed);
  return b;
}

/** A revoke block listing `blocks`. */
export function encodeRevoke(fmt: LogFormat, tid: number, blocks: readonly number[]): Uint8Array {
  const b = new Uint8Array(fmt.blockSize);
  header(b, JBD2_REVOKE_BLOCK, tid);
  const rec = fmt.bit64 ? 8 : 4;
  let off = REVOKE_HEADER_BYTES;
  for (const blk of blocks) {
    if (fmt.bit64) { setU32be(b, off, Math.floor(blk / 0x1_0000_0000)); setU32be(b, off + 4, blk % 0x1_0000_0000); }
    else setU32be(b, off, blk);
    off += rec;
  }
  setU32be(b, 12, off);
  setTail(fmt, b, logSeed(fmt));
  return b;
}

/** A zero-padded commit block with its time and (v3) checksum. */
export function encodeCommit(fmt: LogFormat, tid: number, timeMs: number): Uint8Array {
  const b = new Uint8Array(fmt.blockSize);
  header(b, JBD2_COMMIT_BLOCK, tid);
  const sec = Math.floor(timeMs / 1000);
  setU32be(b, 0x30, Math.floor(sec / 0x1_0000_0000));
  setU32be(b, 0x34, sec % 0x1_0000_0000);
  setU32be(b, 0x38, (timeMs % 1000) * 1_000_000);
  if (fmt.csumV3) setU32be(b, 0x10, crc32cUpdate(logSeed(fmt), b));
  return b;
}
