// Descriptor blocks: a header, then one tag per logged block (the copies follow the descriptor
// in tag order), a 16-byte UUID after every tag without SAME_UUID, LAST_TAG on the final tag,
// and with checksums v2/v3 a 4-byte tail checksum. Tag layouts (flags always in bytes 6-7):
//   none/v1: blocknr(4) 0(2) flags(2) [blocknr_high(4) if 64BIT]            8 or 12 bytes
//   v2:      blocknr(4) csum16(2) flags(2) [blocknr_high(4)] unused(2)       10 or 14 bytes
//   v3:      blocknr(4) flags(4, be32) blocknr_high(4) csum32(4)             16 bytes
import { assert, type Ext4ErrorWhere } from '../../errors/ext4-error.ts';
import { u16be, u32be, setU16be, setU32be, hi32 } from '../../util/bytes.ts';
import { JBD2_BLOCKTYPE, JBD2_HEADER_SIZE, encodeBlockHeader, expectHeader, tagBytes, tailBytes, type JournalFormat } from './header.ts';
import { setBlockTail, verifyBlockTail } from './checksum.ts';

export const TAG_FLAG = { escape: 0x1, sameUuid: 0x2, deleted: 0x4, lastTag: 0x8 } as const;
const UUID_BYTES = 16;

export interface DescriptorTag {
  /** Filesystem block the logged copy belongs to (64-bit only with the 64BIT feature). */
  fsBlock: number;
  flags: number;
  /** v2: low 16 bits of the block checksum; v3: the full 32 bits; otherwise 0. */
  checksum: number;
}

export interface Descriptor {
  sequence: number;
  tags: DescriptorTag[];
  /** v2/v3: whether the tail checksum matched; undefined without block checksums. */
  tailOk: boolean | undefined;
}

/**
 * Decodes the tags of a descriptor block. Tags are read while a whole tag fits before the tail,
 * stopping after LAST_TAG; the count is therefore bounded by the block size.
 */
export function decodeDescriptor(block: Uint8Array, f: JournalFormat, where?: Ext4ErrorWhere): Descriptor {
  assert(block.length === f.blockSize, 'descriptor block size');
  const h = expectHeader(block, JBD2_BLOCKTYPE.descriptor, 'descriptor', where);
  const tb = tagBytes(f);
  const limit = f.blockSize - tailBytes(f);
  const tags: DescriptorTag[] = [];
  let off = JBD2_HEADER_SIZE;
  while (off + tb <= limit) {
    const lo = u32be(block, off);
    const flags = u16be(block, off + 6);
    const hi = f.bit64 ? u32be(block, off + 8) : 0;
    const checksum = f.csumVersion === 3 ? u32be(block, off + 12) : f.csumVersion === 2 ? u16be(block, off + 4) : 0;
    tags.push({ fsBlock: hi * 0x1_0000_0000 + lo, flags, checksum });
    off += tb;
    if (!(flags & TAG_FLAG.sameUuid)) off += UUID_BYTES;
    if (flags & TAG_FLAG.lastTag) break;
  }
  return { sequence: h.sequence, tags, tailOk: f.csumVersion >= 2 ? verifyBlockTail(f.csumSeed, block) : undefined };
}

/** Tags one descriptor block holds when the first tag carries a UUID and the rest SAME_UUID. */
export function descriptorCapacity(f: JournalFormat): number {
  return Math.floor((f.blockSize - JBD2_HEADER_SIZE - tailBytes(f) - UUID_BYTES) / tagBytes(f));
}

/**
 * Builds a descriptor block for `tags` (at most descriptorCapacity). The first tag is followed by
 * `uuid` (zeros by default, as Linux writes); later tags get SAME_UUID; the last gets LAST_TAG.
 * Callers pass ESCAPE in `flags` for escaped copies; other flag bits are set here.
 */
export function encodeDescriptor(f: JournalFormat, sequence: number, tags: readonly DescriptorTag[], uuid?: Uint8Array): Uint8Array {
  assert(tags.length >= 1 && tags.length <= descriptorCapacity(f), `descriptor holds 1..${descriptorCapacity(f)} tags`);
  const block = new Uint8Array(f.blockSize);
  encodeBlockHeader(block, JBD2_BLOCKTYPE.descriptor, sequence);
  const tb = tagBytes(f);
  let off = JBD2_HEADER_SIZE;
  tags.forEach((t, i) => {
    assert(Number.isSafeInteger(t.fsBlock) && t.fsBlock >= 0 && (f.bit64 || t.fsBlock <= 0xffffffff), `tag block ${t.fsBlock}`);
    let flags = t.flags & TAG_FLAG.escape;
    if (i > 0) flags |= TAG_FLAG.sameUuid;
    if (i === tags.length - 1) flags |= TAG_FLAG.lastTag;
    setU32be(block, off, t.fsBlock >>> 0);
    setU16be(block, off + 6, flags);
    if (f.bit64) setU32be(block, off + 8, hi32(t.fsBlock));
    if (f.csumVersion === 3) setU32be(block, off + 12, t.checksum >>> 0);
    else if (f.csumVersion === 2) setU16be(block, off + 4, t.checksum & 0xffff);
    off += tb;
    if (i === 0) {
      if (uuid) block.set(uuid.subarray(0, UUID_BYTES), off);
      off += UUID_BYTES;
    }
  });
  if (f.csumVersion >= 2) setBlockTail(f.csumSeed, block);
  return block;
}

/** Whether a tag's stored checksum matches `computed` (v2 compares the low 16 bits). */
export function tagChecksumMatches(f: JournalFormat, tag: DescriptorTag, computed: number): boolean {
  if (f.csumVersion === 3) return tag.checksum === computed >>> 0;
  if (f.csumVersion === 2) return tag.checksum === (computed & 0xffff);
  return true;
}
