// The 12-byte header every jbd2 log block starts with (descriptor, commit, superblock, revoke),
// big-endian, and the per-journal format the other block codecs need (tag size, 64-bit block
// numbers, which checksum version).
import { corrupt, type Ext4ErrorWhere } from '../../errors/ext4-error.ts';
import { u32be, setU32be } from '../../util/bytes.ts';
import {
  JBD2_MAGIC, JBD2_FEATURE_COMPAT_CHECKSUM, JBD2_FEATURE_INCOMPAT_64BIT, JBD2_FEATURE_INCOMPAT_CSUM_V2,
  JBD2_FEATURE_INCOMPAT_CSUM_V3, type JournalSuperblock,
} from './superblock.ts';
import { journalCsumSeed } from './checksum.ts';

export const JBD2_HEADER_SIZE = 12;

export const JBD2_BLOCKTYPE = {
  descriptor: 1, commit: 2, superblockV1: 3, superblockV2: 4, revoke: 5,
} as const;

export interface BlockHeader {
  magic: number;
  blockType: number;
  /** h_sequence: the transaction id (tid) the block belongs to. */
  sequence: number;
}

export function decodeBlockHeader(bytes: Uint8Array): BlockHeader {
  return { magic: u32be(bytes, 0), blockType: u32be(bytes, 4), sequence: u32be(bytes, 8) };
}

export function encodeBlockHeader(bytes: Uint8Array, blockType: number, sequence: number): void {
  setU32be(bytes, 0, JBD2_MAGIC);
  setU32be(bytes, 4, blockType);
  setU32be(bytes, 8, sequence >>> 0);
}

/** True when the block starts with the jbd2 magic (a log block, or a data block needing escape). */
export const hasJbd2Magic = (bytes: Uint8Array): boolean => bytes.length >= 4 && u32be(bytes, 0) === JBD2_MAGIC;

export type JournalCsumVersion = 0 | 1 | 2 | 3;

/** What the block codecs need to know about a journal, derived from its superblock features. */
export interface JournalFormat {
  blockSize: number;
  /** 64BIT: tags carry t_blocknr_high and revoke records are 8 bytes. */
  bit64: boolean;
  /** 0 none, 1 COMPAT_CHECKSUM (crc32 per transaction), 2 CSUM_V2, 3 CSUM_V3. */
  csumVersion: JournalCsumVersion;
  /** crc32c_raw(~0, s_uuid): seed of every v2/v3 block checksum. */
  csumSeed: number;
}

export function journalFormat(sb: JournalSuperblock): JournalFormat {
  const inc = sb.blockType === 4 ? sb.featureIncompat : 0;
  const compat = sb.blockType === 4 ? sb.featureCompat : 0;
  const csumVersion: JournalCsumVersion = inc & JBD2_FEATURE_INCOMPAT_CSUM_V3 ? 3
    : inc & JBD2_FEATURE_INCOMPAT_CSUM_V2 ? 2 : compat & JBD2_FEATURE_COMPAT_CHECKSUM ? 1 : 0;
  return {
    blockSize: sb.blockSize, bit64: (inc & JBD2_FEATURE_INCOMPAT_64BIT) !== 0, csumVersion,
    csumSeed: journalCsumSeed(sb.uuid),
  };
}

/** Bytes of one descriptor tag: 16 with v3; else 12, +2 with v2, −4 without 64BIT. */
export function tagBytes(f: Pick<JournalFormat, 'bit64' | 'csumVersion'>): number {
  if (f.csumVersion === 3) return 16;
  let n = 12;
  if (f.csumVersion === 2) n += 2;
  if (!f.bit64) n -= 4;
  return n;
}

/** Bytes at the end of descriptor and revoke blocks holding their checksum (v2/v3), else 0. */
export const tailBytes = (f: Pick<JournalFormat, 'csumVersion'>): number => (f.csumVersion >= 2 ? 4 : 0);

/** Checks that a block is a jbd2 block of `type` for transaction `tid` (used by decoders). */
export function expectHeader(bytes: Uint8Array, type: number, what: string, where?: Ext4ErrorWhere): BlockHeader {
  const h = decodeBlockHeader(bytes);
  if (h.magic !== JBD2_MAGIC || h.blockType !== type) {
    throw corrupt(`jbd2-${what}-header`, `journal ${what} block has magic 0x${h.magic.toString(16)} type ${h.blockType}`, where);
  }
  return h;
}
