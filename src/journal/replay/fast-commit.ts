// Detects fast-commit data (journal.md §3): the area after the log holds TLVs starting with a
// HEAD tag {le16 tag 9, le16 len, le32 features 0, le32 tid}. ext4kit does not replay them; it
// only reports whether there are any for the transaction after the log.
import { u16, u32 } from '../../util/bytes.ts';
import { type JournalSuperblock, JBD2_FEATURE_INCOMPAT_FAST_COMMIT } from '../../format/jbd2/superblock.ts';
import { logEndOf, type ReadJournalBlock } from './passes.ts';

const FC_TAG_HEAD = 9;
const FC_TAG_MAX = 9;

/** Blocks of the fast-commit area in use for `tid` (0 when the area is empty, stale or absent). */
export async function fastCommitBlocksFor(read: ReadJournalBlock, jsb: JournalSuperblock, tid: number): Promise<number> {
  if (jsb.blockType !== 4 || !(jsb.featureIncompat & JBD2_FEATURE_INCOMPAT_FAST_COMMIT)) return 0;
  const first = logEndOf(jsb) + 1;
  if (first >= jsb.maxLen) return 0;
  const head = await read(first);
  if (u16(head, 0) !== FC_TAG_HEAD || u16(head, 2) < 8 || u32(head, 4) !== 0 || u32(head, 8) !== tid >>> 0) return 0;
  let n = 1;
  for (let j = first + 1; j < jsb.maxLen; j++, n++) {
    const b = await read(j);
    const tag = u16(b, 0);
    if (tag === 0 || tag > FC_TAG_MAX || 4 + u16(b, 2) > b.length) break;
  }
  return n;
}
