// Fast commits (journal.md §3): the blocks after the jbd2 log hold compact logical deltas that
// ext4 wrote at fsync instead of whole blocks, for the transaction after the last full commit.
// Each block is a stream of little-endian TLVs {le16 tag, le16 len, value[len]} that never
// crosses a block. The stream starts with HEAD {le32 features (0), le32 tid}; a TAIL
// {le32 tid, le32 crc} closes each fast commit, its crc being crc32c (seed 0, no inversion)
// of every TLV byte since the previous TAIL (HEAD included) through the TAIL's tid. Only tags
// before the last TAIL with the right tid and crc count; stale blocks of earlier rounds fail
// the tid or crc check. This module reads and validates the area into a list of tags; the
// filesystem layer applies them (fs/fast-commit-replay.ts).
import { corrupt, unsupported } from '../../errors/ext4-error.ts';
import { u16, u32 } from '../../util/bytes.ts';
import { crc32cUpdate } from '../../util/crc.ts';
import { type JournalSuperblock, JBD2_FEATURE_INCOMPAT_FAST_COMMIT } from '../../format/jbd2/superblock.ts';
import { logEndOf, type ReadJournalBlock } from './passes.ts';

export const FC_TAG = { addRange: 1, delRange: 2, creat: 3, link: 4, unlink: 5, inode: 6, pad: 7, tail: 8, head: 9 } as const;
const TL_BYTES = 4;
const EXT_INIT_MAX_LEN = 32768;

/** One replayable fast-commit record, in log order (`invalid`: malformed or out of range). */
export type FcRecord = (
  | { kind: 'add-range'; ino: number; fileBlock: number; countBlocks: number; fsBlock: number; unwritten: boolean }
  | { kind: 'del-range'; ino: number; fileBlock: number; countBlocks: number }
  | { kind: 'creat' | 'link' | 'unlink'; parent: number; ino: number; name: Uint8Array }
  | { kind: 'inode'; ino: number; raw: Uint8Array }
) & { invalid?: true };

export interface FastCommitArea {
  /** Blocks of the area that hold tags for the expected tid (0: nothing to replay). */
  blocksUsed: number;
  /** Fast commits closed by a valid TAIL. */
  commits: number;
  /** Records of those commits, in order (HEAD, PAD and TAIL left out). */
  records: FcRecord[];
}

export interface FastCommitLimits {
  inodesCount: number;
  blocksCount: number;
  inodeSize: number;
}

const NONE: FastCommitArea = { blocksUsed: 0, commits: 0, records: [] };

/**
 * Reads the fast-commit area for transaction `tid` (the one after the last full commit).
 * Nothing to replay (no feature, no HEAD, a HEAD of another tid, no valid TAIL) gives 0 commits.
 * A HEAD with unknown features is ENOTSUP; a record that is malformed inside a checksummed
 * commit (bad length, inode or block out of range, name too long) is EUCLEAN. Every loop is
 * bounded by the area's size.
 */
export async function readFastCommits(read: ReadJournalBlock, jsb: JournalSuperblock, tid: number, limits: FastCommitLimits): Promise<FastCommitArea> {
  if (jsb.blockType !== 4 || !(jsb.featureIncompat & JBD2_FEATURE_INCOMPAT_FAST_COMMIT)) return NONE;
  const first = logEndOf(jsb) + 1;
  if (first >= jsb.maxLen) return NONE;
  let crc = 0;
  let pending: FcRecord[] = [];
  const out: FastCommitArea = { blocksUsed: 0, commits: 0, records: [] };
  let sawHead = false;
  for (let j = first; j < jsb.maxLen; j++) {
    const b = await read(j);
    let pos = 0;
    while (pos + TL_BYTES <= b.length) {
      const tag = u16(b, pos);
      const len = u16(b, pos + 2);
      const val = pos + TL_BYTES;
      if (val + len > b.length || !lengthFits(tag, len)) return out; // the kernel stops here too
      if (!sawHead) {
        if (tag !== FC_TAG.head) return out;
        if (u32(b, val) !== 0) throw unsupported('jbd2-fast-commit-features', `fast-commit area has unknown features 0x${u32(b, val).toString(16)}`);
        if (u32(b, val + 4) !== tid >>> 0) return out;
        sawHead = true;
      }
      if (tag === FC_TAG.tail) {
        crc = crc32cUpdate(crc, b, pos, val + 4);
        if (u32(b, val) !== tid >>> 0 || u32(b, val + 4) !== crc) return out;
        out.records.push(...pending);
        pending = [];
        out.commits++;
        out.blocksUsed = j - first + 1;
        crc = 0;
      } else {
        crc = crc32cUpdate(crc, b, pos, val + len);
        if (tag < FC_TAG.addRange || tag > FC_TAG.head) return out; // unknown tag: the end of what can be trusted
        if (tag !== FC_TAG.pad && tag !== FC_TAG.head) pending.push(decodeRecord(tag, b.subarray(val, val + len), limits));
        if (pending.length > 1 << 20) throw corrupt('jbd2-fast-commit-count', 'fast-commit area holds more than 2^20 records');
      }
      pos = val + len;
    }
  }
  return out;
}

/** The lengths the kernel checks before the crc (ADD_RANGE, TAIL, HEAD), and the fixed minimums of the others. */
function lengthFits(tag: number, len: number): boolean {
  switch (tag) {
    case FC_TAG.addRange: return len === 16;
    case FC_TAG.tail: return len >= 8;
    case FC_TAG.head: return len === 8;
    default: return true;
  }
}

/**
 * Decodes one record. Records are decoded before their TAIL is checked, and stale bytes after
 * the last valid TAIL must not fail the open: a malformed record is only flagged `invalid`
 * here, and `assertRecordsValid` rejects it if its commit turns out to be valid.
 */
function decodeRecord(tag: number, v: Uint8Array, limits: FastCommitLimits): FcRecord {
  let rec: FcRecord | undefined;
  if (tag === FC_TAG.addRange) {
    const rawLen = u16(v, 8);
    const unwritten = rawLen > EXT_INIT_MAX_LEN;
    rec = { kind: 'add-range', ino: u32(v, 0), fileBlock: u32(v, 4), countBlocks: unwritten ? rawLen - EXT_INIT_MAX_LEN : rawLen, fsBlock: u16(v, 10) * 2 ** 32 + u32(v, 12), unwritten };
  } else if (tag === FC_TAG.delRange && v.length >= 12) {
    rec = { kind: 'del-range', ino: u32(v, 0), fileBlock: u32(v, 4), countBlocks: u32(v, 8) };
  } else if ((tag === FC_TAG.creat || tag === FC_TAG.link || tag === FC_TAG.unlink) && v.length >= 8) {
    rec = { kind: tag === FC_TAG.creat ? 'creat' : tag === FC_TAG.link ? 'link' : 'unlink', parent: u32(v, 0), ino: u32(v, 4), name: v.slice(8) };
  } else if (tag === FC_TAG.inode && v.length >= 4 + 128) {
    rec = { kind: 'inode', ino: u32(v, 0), raw: v.slice(4) };
  }
  if (!rec) return { kind: 'del-range', ino: 0, fileBlock: 0, countBlocks: 0, invalid: true };
  return checkRecord(rec, limits) ? rec : { ...rec, invalid: true };
}

/** Whether a record's numbers are inside the filesystem (checked again when applied). */
function checkRecord(r: FcRecord, l: FastCommitLimits): boolean {
  const inoOk = (i: number) => i >= 1 && i <= l.inodesCount;
  switch (r.kind) {
    case 'add-range':
      return inoOk(r.ino) && r.countBlocks > 0 && r.fsBlock + r.countBlocks <= l.blocksCount && r.fileBlock + r.countBlocks <= 2 ** 32;
    case 'del-range':
      return inoOk(r.ino) && r.fileBlock + r.countBlocks <= 2 ** 32;
    case 'inode':
      return inoOk(r.ino) && r.raw.length <= l.inodeSize;
    default:
      return inoOk(r.ino) && inoOk(r.parent) && validName(r.name);
  }
}

/** A directory entry name: 1..255 bytes, no NUL or '/', not '.' or '..'. */
function validName(n: Uint8Array): boolean {
  if (n.length < 1 || n.length > 255 || n.includes(0) || n.includes(0x2f)) return false;
  return !(n[0] === 0x2e && (n.length === 1 || (n.length === 2 && n[1] === 0x2e)));
}

/** Throws EUCLEAN for the first record of a validated commit whose numbers are out of range. */
export function assertRecordsValid(area: FastCommitArea): void {
  for (const r of area.records) {
    if (r.invalid) {
      throw corrupt('jbd2-fast-commit-record', `fast-commit ${r.kind} record for inode ${r.ino} is out of range or malformed`);
    }
  }
}
