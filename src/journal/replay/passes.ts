// The three recovery passes over a jbd2 log (journal.md §2.3-2.5), pure over a block reader:
// SCAN finds the last complete transaction (checksums, stale blocks from an older log, failed
// commits), REVOKE collects the newest revoking tid per block, REPLAY picks the newest unrevoked
// logged copy of every block (un-escaped, tag checksums verified). Every loop is bounded by the
// log length; hostile input ends in an Ext4Error or a short, flagged replay.
import { Ext4Error, corrupt } from '../../errors/ext4-error.ts';
import { type JournalSuperblock, JBD2_MAGIC, JBD2_FEATURE_INCOMPAT_ASYNC_COMMIT, JBD2_FEATURE_INCOMPAT_FAST_COMMIT, JBD2_DEFAULT_FAST_COMMIT_BLOCKS } from '../../format/jbd2/superblock.ts';
import { decodeBlockHeader, JBD2_BLOCKTYPE, type JournalFormat } from '../../format/jbd2/header.ts';
import { decodeDescriptor, tagChecksumMatches, TAG_FLAG, type DescriptorTag } from '../../format/jbd2/descriptor.ts';
import { decodeRevoke } from '../../format/jbd2/revoke.ts';
import { decodeCommit, verifyCommitChecksum, JBD2_CRC32_CHKSUM, JBD2_CRC32_CHKSUM_SIZE } from '../../format/jbd2/commit.ts';
import { verifyBlockTail, tagBlockChecksum, crc32BeUpdate, CRC32_BE_INIT } from '../../format/jbd2/checksum.ts';
import { unescapeBlock } from '../../format/jbd2/escape.ts';

/** Reads journal block `j` (0 = the journal superblock). */
export type ReadJournalBlock = (j: number) => Promise<Uint8Array>;

/** `a` is after `b` in wrap-safe u32 tid order. */
export const tidAfter = (a: number, b: number): boolean => ((a - b) | 0) > 0;

interface LoggedGroup { tags: DescriptorTag[]; dataAt: number[] }
export interface ScannedTransaction {
  tid: number;
  /** Journal block of the transaction's first block. */
  firstBlock: number;
  groups: LoggedGroup[];
  /** Journal blocks of its revoke blocks (parsed in the revoke pass only, as jbd2 does). */
  revokeAt: number[];
}

export interface ScanResult {
  startTid: number;
  /** First tid not found complete: [startTid, endTid) are replayed. */
  endTid: number;
  transactions: ScannedTransaction[];
  /** A commit whose checksum failed without async commit: transactions before it are valid. */
  failedCommitTid: number | undefined;
  /** Journal block where the scan stopped. */
  headBlock: number;
}

/** The log area [first, logEnd): fast-commit blocks are excluded when the feature is on. */
export function logEndOf(jsb: JournalSuperblock): number {
  if (jsb.blockType === 4 && jsb.featureIncompat & JBD2_FEATURE_INCOMPAT_FAST_COMMIT) {
    return jsb.maxLen - (jsb.numFcBlocks || JBD2_DEFAULT_FAST_COMMIT_BLOCKS);
  }
  return jsb.maxLen;
}

/** PASS_SCAN from s_start / s_sequence (the caller checked s_start != 0). */
export async function scanLog(read: ReadJournalBlock, jsb: JournalSuperblock, f: JournalFormat): Promise<ScanResult> {
  const logEnd = logEndOf(jsb);
  const logLen = logEnd - jsb.first;
  const next = (p: number) => (p + 1 >= logEnd ? jsb.first : p + 1);
  const async = jsb.blockType === 4 && (jsb.featureIncompat & JBD2_FEATURE_INCOMPAT_ASYNC_COMMIT) !== 0;
  const out: ScanResult = { startTid: jsb.sequence, endTid: jsb.sequence, transactions: [], failedCommitTid: undefined, headBlock: jsb.start };
  let pos = jsb.start;
  let tid = jsb.sequence;
  let lastTime = 0;
  let suspect = false;
  let v1 = CRC32_BE_INIT;
  let cur: ScannedTransaction = { tid, firstBlock: pos, groups: [], revokeAt: [] };
  let visited = 0;
  const where = (j: number) => ({ block: j });
  for (;;) {
    // A log holds at most logLen blocks. Exactly full after a commit (the kernel may fill its log
    // to the last block) is the end; a transaction still open there means the log is corrupt.
    if (visited >= logLen) {
      if (cur.groups.length === 0 && cur.revokeAt.length === 0) break;
      throw corrupt('jbd2-log-loop', `journal log runs past its ${logLen} blocks without ending`);
    }
    const at = pos;
    const b = await read(at);
    const h = decodeBlockHeader(b);
    if (h.magic !== JBD2_MAGIC || h.sequence !== tid) break;
    if (h.blockType === JBD2_BLOCKTYPE.descriptor) {
      const d = decodeDescriptor(b, f, where(at));
      if (d.tailOk === false) suspect = true;
      if (f.csumVersion === 1 && !suspect) v1 = crc32BeUpdate(v1, b);
      const dataAt: number[] = [];
      pos = next(pos); visited++;
      for (let i = 0; i < d.tags.length; i++) {
        if (visited >= logLen) throw corrupt('jbd2-log-loop', `journal descriptor at block ${at} tags more blocks than the log holds`);
        if (f.csumVersion === 1 && !suspect) v1 = crc32BeUpdate(v1, await read(pos));
        dataAt.push(pos);
        pos = next(pos); visited++;
      }
      cur.groups.push({ tags: d.tags, dataAt });
      continue;
    }
    if (h.blockType === JBD2_BLOCKTYPE.revoke) {
      if (f.csumVersion >= 2 && !verifyBlockTail(f.csumSeed, b)) suspect = true;
      cur.revokeAt.push(at);
      pos = next(pos); visited++;
      continue;
    }
    if (h.blockType !== JBD2_BLOCKTYPE.commit) break;
    const c = decodeCommit(b, where(at));
    const t = c.commitSec;
    if (suspect) {
      if (t >= lastTime) {
        throw new Ext4Error('EBADMSG', `journal transaction ${tid}: a descriptor or revoke block has a bad checksum`, { detail: 'jbd2-stale-or-corrupt', where: where(at) });
      }
      break; // stale blocks of an older log: the log ends here
    }
    let ok: boolean;
    if (f.csumVersion >= 2) ok = verifyCommitChecksum(f, b);
    else if (f.csumVersion === 1) {
      ok = (c.chksumType === JBD2_CRC32_CHKSUM && c.chksumSize === JBD2_CRC32_CHKSUM_SIZE && c.chksum === v1) ||
        (c.chksumType === 0 && c.chksumSize === 0 && c.chksum === 0);
    } else ok = true;
    if (!ok) {
      if (f.csumVersion >= 2 && t < lastTime) break; // stale
      if (!async) out.failedCommitTid = tid;
      break;
    }
    lastTime = t;
    out.transactions.push(cur);
    pos = next(pos); visited++;
    tid = (tid + 1) >>> 0;
    v1 = CRC32_BE_INIT;
    cur = { tid, firstBlock: pos, groups: [], revokeAt: [] };
  }
  out.endTid = tid;
  out.headBlock = pos;
  return out;
}

/** PASS_REVOKE: fs block → newest tid that revoked it. A bad r_count is EUCLEAN. */
export async function collectRevokes(read: ReadJournalBlock, scan: ScanResult, f: JournalFormat): Promise<Map<number, number>> {
  const revoked = new Map<number, number>();
  for (const t of scan.transactions) {
    for (const at of t.revokeAt) {
      for (const b of decodeRevoke(await read(at), f, { block: at }).fsBlocks) {
        const prev = revoked.get(b);
        if (prev === undefined || tidAfter(t.tid, prev)) revoked.set(b, t.tid);
      }
    }
  }
  return revoked;
}

/** Test-only switches that put known bugs back, so tests can show they catch them. */
export const replayTestHooks: { ignoreRevokes?: boolean } = {};

export interface ReplayPlan {
  /** New contents of every replayed filesystem block. */
  blocks: Map<number, Uint8Array>;
  /** Logged copies not replayed because a revoke hid them. */
  revokedCopies: number;
  /** Filesystem blocks whose logged copy failed its tag checksum (skipped). */
  tagChecksumErrors: number[];
}

/**
 * PASS_REPLAY: the newest unrevoked copy of each block. `isValidTarget` rejects blocks outside
 * the filesystem or inside the journal (EUCLEAN jbd2-tag-range).
 */
export async function planReplay(read: ReadJournalBlock, scan: ScanResult, f: JournalFormat, revoked: Map<number, number>,
  isValidTarget: (fsBlock: number) => boolean): Promise<ReplayPlan> {
  const plan: ReplayPlan = { blocks: new Map(), revokedCopies: 0, tagChecksumErrors: [] };
  for (const t of scan.transactions) {
    for (const g of t.groups) {
      for (let i = 0; i < g.tags.length; i++) {
        const tag = g.tags[i]!;
        const b = tag.fsBlock;
        if (!isValidTarget(b)) throw corrupt('jbd2-tag-range', `journal transaction ${t.tid} logs block ${b}, outside the filesystem or inside the journal`, { block: g.dataAt[i] });
        const r = replayTestHooks.ignoreRevokes ? undefined : revoked.get(b);
        if (r !== undefined && !tidAfter(t.tid, r)) { plan.revokedCopies++; continue; }
        const logged = await read(g.dataAt[i]!);
        if (f.csumVersion >= 2 && !tagChecksumMatches(f, tag, tagBlockChecksum(f.csumSeed, t.tid, logged))) {
          plan.tagChecksumErrors.push(b);
          continue;
        }
        plan.blocks.set(b, unescapeBlock(logged, (tag.flags & TAG_FLAG.escape) !== 0));
      }
    }
  }
  return plan;
}
