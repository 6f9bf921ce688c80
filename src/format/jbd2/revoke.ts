// Revoke blocks: header, be32 r_count (bytes used, header included), then filesystem block
// numbers (be64 with 64BIT, else be32), and with v2/v3 a tail checksum. A revoke in transaction T
// hides logged copies of those blocks in T and every earlier transaction.
import { assert, corrupt, type Ext4ErrorWhere } from '../../errors/ext4-error.ts';
import { u32be, setU32be, hi32 } from '../../util/bytes.ts';
import { JBD2_BLOCKTYPE, encodeBlockHeader, expectHeader, tailBytes, type JournalFormat } from './header.ts';
import { setBlockTail, verifyBlockTail } from './checksum.ts';

/** Header (12) + r_count (4). */
export const REVOKE_HEADER_BYTES = 16;

export interface RevokeBlock {
  sequence: number;
  /** r_count as stored. */
  countBytes: number;
  fsBlocks: number[];
  tailOk: boolean | undefined;
}

const recordBytes = (f: JournalFormat): number => (f.bit64 ? 8 : 4);

/** Decodes a revoke block; an r_count outside [16, blocksize − tail] is EUCLEAN (jbd2-revoke-count). */
export function decodeRevoke(block: Uint8Array, f: JournalFormat, where?: Ext4ErrorWhere): RevokeBlock {
  assert(block.length === f.blockSize, 'revoke block size');
  const h = expectHeader(block, JBD2_BLOCKTYPE.revoke, 'revoke', where);
  const countBytes = u32be(block, 12);
  const max = f.blockSize - tailBytes(f);
  if (countBytes < REVOKE_HEADER_BYTES || countBytes > max) {
    throw corrupt('jbd2-revoke-count', `journal revoke block r_count ${countBytes} outside ${REVOKE_HEADER_BYTES}..${max}`, where);
  }
  const rec = recordBytes(f);
  const fsBlocks: number[] = [];
  for (let off = REVOKE_HEADER_BYTES; off + rec <= countBytes; off += rec) {
    fsBlocks.push(rec === 8 ? u32be(block, off) * 0x1_0000_0000 + u32be(block, off + 4) : u32be(block, off));
  }
  return { sequence: h.sequence, countBytes, fsBlocks, tailOk: f.csumVersion >= 2 ? verifyBlockTail(f.csumSeed, block) : undefined };
}

/** Records one revoke block holds. */
export function revokeCapacity(f: JournalFormat): number {
  return Math.floor((f.blockSize - tailBytes(f) - REVOKE_HEADER_BYTES) / recordBytes(f));
}

/** Revoke blocks (as many as needed) listing `fsBlocks` for transaction `sequence`. */
export function encodeRevokeBlocks(f: JournalFormat, sequence: number, fsBlocks: readonly number[]): Uint8Array[] {
  const cap = revokeCapacity(f);
  const rec = recordBytes(f);
  const out: Uint8Array[] = [];
  for (let i = 0; i < fsBlocks.length; i += cap) {
    const part = fsBlocks.slice(i, i + cap);
    const block = new Uint8Array(f.blockSize);
    encodeBlockHeader(block, JBD2_BLOCKTYPE.revoke, sequence);
    setU32be(block, 12, REVOKE_HEADER_BYTES + part.length * rec);
    part.forEach((b, k) => {
      assert(Number.isSafeInteger(b) && b >= 0 && (f.bit64 || b <= 0xffffffff), `revoked block ${b}`);
      const off = REVOKE_HEADER_BYTES + k * rec;
      if (rec === 8) { setU32be(block, off, hi32(b)); setU32be(block, off + 4, b >>> 0); } else setU32be(block, off, b >>> 0);
    });
    if (f.csumVersion >= 2) setBlockTail(f.csumSeed, block);
    out.push(block);
  }
  return out;
}
