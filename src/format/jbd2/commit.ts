// Commit blocks: header, h_chksum_type (u8), h_chksum_size (u8), 2 bytes padding, h_chksum[8]
// (be32; [0] holds the v1 transaction crc32 or the v2/v3 block crc32c), h_commit_sec (be64),
// h_commit_nsec (be32); the rest of the block is zero.
import { assert, type Ext4ErrorWhere } from '../../errors/ext4-error.ts';
import { u32be, setU32be, hi32 } from '../../util/bytes.ts';
import { crc32cUpdate } from '../../util/crc.ts';
import { JBD2_BLOCKTYPE, encodeBlockHeader, expectHeader, type JournalFormat } from './header.ts';

const CHKSUM_TYPE = 0xc;
const CHKSUM_SIZE = 0xd;
const CHKSUM0 = 0x10;
const COMMIT_SEC = 0x30;
const COMMIT_NSEC = 0x38;
/** h_chksum_type for the v1 (COMPAT_CHECKSUM) crc32. */
export const JBD2_CRC32_CHKSUM = 1;
export const JBD2_CRC32_CHKSUM_SIZE = 4;

export interface CommitBlock {
  sequence: number;
  chksumType: number;
  chksumSize: number;
  /** h_chksum[0]. */
  chksum: number;
  /** h_commit_sec (as stored; may exceed 2^53 for hostile input, then it is approximate). */
  commitSec: number;
  commitNsec: number;
}

export function decodeCommit(block: Uint8Array, where?: Ext4ErrorWhere): CommitBlock {
  const h = expectHeader(block, JBD2_BLOCKTYPE.commit, 'commit', where);
  return {
    sequence: h.sequence, chksumType: block[CHKSUM_TYPE]!, chksumSize: block[CHKSUM_SIZE]!,
    chksum: u32be(block, CHKSUM0),
    commitSec: u32be(block, COMMIT_SEC) * 0x1_0000_0000 + u32be(block, COMMIT_SEC + 4),
    commitNsec: u32be(block, COMMIT_NSEC),
  };
}

/** The v2/v3 commit checksum: crc32c over the block with h_chksum[0] as zero. */
export function commitBlockChecksum(seed: number, block: Uint8Array): number {
  let c = crc32cUpdate(seed, block, 0, CHKSUM0);
  c = crc32cUpdate(c, new Uint8Array(4));
  return crc32cUpdate(c, block, CHKSUM0 + 4, block.length);
}

export function verifyCommitChecksum(f: JournalFormat, block: Uint8Array): boolean {
  return u32be(block, CHKSUM0) === commitBlockChecksum(f.csumSeed, block);
}

/**
 * A zero-padded commit block for `sequence`. With v2/v3 the block checksum is filled in; with
 * v1 (COMPAT_CHECKSUM) `v1Crc` (the running crc32_be of the transaction) is stored as type 1/size 4.
 */
export function encodeCommit(f: JournalFormat, sequence: number, t: { sec: number; nsec: number; v1Crc?: number }): Uint8Array {
  assert(Number.isSafeInteger(t.sec) && t.sec >= 0 && t.nsec >= 0 && t.nsec < 1e9, 'commit time');
  const block = new Uint8Array(f.blockSize);
  encodeBlockHeader(block, JBD2_BLOCKTYPE.commit, sequence);
  setU32be(block, COMMIT_SEC, hi32(t.sec));
  setU32be(block, COMMIT_SEC + 4, t.sec >>> 0);
  setU32be(block, COMMIT_NSEC, t.nsec);
  if (f.csumVersion >= 2) setU32be(block, CHKSUM0, commitBlockChecksum(f.csumSeed, block));
  else if (f.csumVersion === 1) {
    assert(t.v1Crc !== undefined, 'v1 commit needs the transaction crc');
    block[CHKSUM_TYPE] = JBD2_CRC32_CHKSUM;
    block[CHKSUM_SIZE] = JBD2_CRC32_CHKSUM_SIZE;
    setU32be(block, CHKSUM0, t.v1Crc >>> 0);
  }
  return block;
}
