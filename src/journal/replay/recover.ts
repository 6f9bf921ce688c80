// Journal recovery on open (journal.md §2): the one call the mount path makes before it builds
// a volume. A read-only open ('overlay') replays into an in-memory copy-on-write overlay, so the
// image is never written; a writable open ('write') replays to the image with a flush after the
// blocks, after the journal superblock and after the filesystem superblock. Everything is
// computed in memory first: a journal that fails validation leaves the image untouched (write
// mode throws; overlay mode shows the image unrecovered and says why).
import { type BlockDevice } from '../../device/block-device.ts';
import { OverlayDevice } from '../../device/overlay-device.ts';
import { Ext4Error, unsupported } from '../../errors/ext4-error.ts';
import {
  decodeSuperblock, validateSuperblock, superblockChecksum, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE, type Superblock,
} from '../../format/superblock.ts';
import { COMPAT, INCOMPAT, RO_COMPAT } from '../../format/features.ts';
import {
  decodeJournalSuperblock, encodeJournalSuperblock, JBD2_FEATURE_INCOMPAT_FAST_COMMIT, JBD2_DEFAULT_FAST_COMMIT_BLOCKS,
  type JournalSuperblock,
} from '../../format/jbd2/superblock.ts';
import { journalFormat } from '../../format/jbd2/header.ts';
import { u16, u32, setU16, setU32, hi32 } from '../../util/bytes.ts';
import { geometryOf, type Geometry } from '../../layout/geometry.ts';
import { mapJournalInode, journalOwns, journalBlockToFs, type JournalMap } from './journal-inode.ts';
import { scanLog, collectRevokes, planReplay, type ReadJournalBlock, type ScanResult } from './passes.ts';
import { readFastCommits, type FastCommitArea, type FcRecord } from './fast-commit.ts';
import { recountGroups } from './group-counts.ts';
import { emptyReport, type JournalReport, type JournalSummary } from './report.ts';

export type RecoverMode = 'overlay' | 'write';

export interface RecoverResult {
  /** The device to mount: the input device, or an overlay holding the recovered view. */
  device: BlockDevice;
  report: JournalReport;
  /**
   * Fast commits for the mount to apply on `device` (an overlay holding the full replay):
   * then, when `writeBack` is set (a writable open), to write the result to it, the journal
   * superblock's chunk (at `jsbOffsetBytes`) last.
   */
  fastCommit?: { records: FcRecord[]; writeBack: BlockDevice | undefined; jsbOffsetBytes: number };
}

const SB_STATE_VALID = 0x1;
const SB_STATE_ERRORS = 0x2;
const EINVAL = 22;
/** s_error_count .. end of s_last_error_func: restored from before the replay (e2fsprogs 6ab579ee). */
const ERROR_AREA = [0x194, 0x200] as const;

const FEATURE_NAMES: Array<[kind: 'compat' | 'incompat', bit: number, name: string]> = [
  ['compat', 0x1, 'journal_checksum'], ['incompat', 0x1, 'journal_incompat_revoke'], ['incompat', 0x2, 'journal_64bit'],
  ['incompat', 0x4, 'journal_async_commit'], ['incompat', 0x8, 'journal_checksum_v2'], ['incompat', 0x10, 'journal_checksum_v3'],
  ['incompat', 0x20, 'journal_fast_commit'],
];

/**
 * Replays the internal journal of the image on `device` if it needs recovery, and always
 * returns a summary of the journal (for info). `mode` 'write' writes the recovery to `device`;
 * 'overlay' never writes to it.
 */
export async function recoverJournal(device: BlockDevice, opts: { mode: RecoverMode }): Promise<RecoverResult> {
  return recover(device, opts.mode, false);
}

/**
 * The journal's summary and the state of its log (for info), read without changing anything.
 * A read-only open of a clean image skips this (no journal reads at open): call it on demand.
 */
export async function describeJournal(device: BlockDevice): Promise<JournalReport> {
  return (await recover(device, 'overlay', true)).report;
}

async function recover(device: BlockDevice, requested: RecoverMode, describe: boolean): Promise<RecoverResult> {
  const report = emptyReport();
  const unchanged = { device, report };
  let sb: Superblock;
  let mode: RecoverMode = requested;
  try {
    sb = decodeSuperblock(await device.read(SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE));
    validateSuperblock(sb, device.sizeBytes);
    // An image that would stay read-only for another reason (unknown ro_compat features) is
    // recovered in memory only, as Linux refuses to mount it writable at all.
    const otherwise = validateSuperblock({ ...sb, featureIncompat: sb.featureIncompat & ~INCOMPAT.needs_recovery }, device.sizeBytes);
    if (otherwise.forceReadOnly !== undefined) mode = 'overlay';
  } catch {
    return unchanged; // the volume open reports the superblock's problem
  }
  const recover = (sb.featureIncompat & INCOMPAT.needs_recovery) !== 0;
  if (!(sb.featureCompat & COMPAT.has_journal)) return unchanged; // needs_recovery alone keeps the image read-only
  // A read-only open of a clean image reads nothing more (a browser over HTTP pays per request).
  if (!recover && mode === 'overlay' && !describe) return unchanged;
  const geo = geometryOf(sb);
  if (geo.blocksCount * geo.blockSize > device.sizeBytes) return unchanged;
  const fail = (e: unknown): RecoverResult => {
    if (!(e instanceof Ext4Error)) throw e;
    if (mode === 'write' && recover) throw e;
    report.error = `journal recovery not possible: ${e.message}`;
    if (recover) report.warnings.push(`${report.error}; showing the filesystem as it is on disk (run e2fsck or mount it with Linux to replay)`);
    return unchanged;
  };

  let jmap: JournalMap;
  let jsb: JournalSuperblock;
  let read: ReadJournalBlock;
  try {
    jmap = await mapJournalInode(device, sb, geo);
    read = async (j: number) => {
      return device.read(journalBlockToFs(jmap, j) * geo.blockSize, geo.blockSize);
    };
    jsb = decodeJournalSuperblock(await read(0), { journalBlocks: jmap.countBlocks, blockSize: geo.blockSize, where: { inode: jmap.ino } });
    report.summary = summarize(jsb, jmap, geo);
    if (jsb.blockType === 4 && jsb.featureIncompat & ~0x3f) {
      throw unsupported('jbd2-incompat', `journal has unknown incompat features 0x${(jsb.featureIncompat & ~0x3f).toString(16)}`);
    }
    if (jsb.nrUsers > 1) throw unsupported('jbd2-shared', `journal is shared by ${jsb.nrUsers} filesystems`);
  } catch (e) {
    return fail(e);
  }
  report.needsRecovery = recover && jsb.start !== 0;

  // Scan the log even when no replay is due: info shows how many transactions it holds.
  let scan: ScanResult | undefined;
  if (jsb.start !== 0) {
    try {
      scan = await scanLog(read, jsb, journalFormat(jsb));
    } catch (e) {
      return fail(e);
    }
    report.transactions = scan.transactions.length;
    report.startTid = scan.startTid;
    report.endTid = scan.endTid;
    report.headBlock = scan.headBlock;
  }
  let fc: FastCommitArea;
  try {
    fc = await readFastCommits(read, jsb, scan?.endTid ?? ((jsb.sequence + 1) >>> 0), { inodesCount: geo.inodesCount, blocksCount: geo.blocksCount, inodeSize: geo.inodeSize });
  } catch (e) {
    return fail(e);
  }
  report.summary.fastCommitBlocksUsed = fc.blocksUsed;
  const fcUsed = fc.commits > 0 ? fc.blocksUsed : 0;

  if (!recover && jsb.errno !== 0) {
    // An aborted journal with nothing to replay: the filesystem has errors (e2fsck and Linux
    // move s_errno into the superblock's error flag).
    report.warnings.push(`journal was aborted (s_errno ${jsb.errno}): the filesystem is marked as having errors`);
    const target = mode === 'write' && !device.readOnly ? device : new OverlayDevice(device, Math.max(geo.blockSize, 4096));
    try {
      await finishRecovery(target, geo, jmap, jsb, sb, undefined, true);
    } catch (e) {
      return fail(e);
    }
    return { device: target, report };
  }
  if (!recover) {
    // Linux discards a log the filesystem does not ask to recover; a writable open does the same.
    if (mode === 'write' && scan && !device.readOnly) {
      await writeJournalSuperblock(device, geo, jmap, { ...jsb, start: 0, sequence: (scan.endTid + 1) >>> 0 });
      await device.flush();
      report.warnings.push('journal held data although needs_recovery was clear; it was discarded as Linux does');
    }
    return unchanged;
  }
  // Fast commits are applied by the mount (fs/fast-commit-replay.ts) on top of the full replay,
  // which then goes to an overlay first even for a writable open; the mount writes the result
  // home. Not on bigalloc or quota filesystems (the replay does not keep their accounting).
  const fcApplicable = fcUsed > 0 && scan !== undefined &&
    !(sb.featureRoCompat & (RO_COMPAT.bigalloc | RO_COMPAT.quota)) && !(sb.featureIncompat & INCOMPAT.inline_data);
  if (fcUsed > 0 && !fcApplicable) {
    report.fastCommitNotApplied = true;
    if (mode === 'write') {
      throw unsupported('jbd2-fast-commit', 'journal holds fast commits, which ext4kit cannot replay: open read-only, or replay with e2fsck or a kernel mount');
    }
    report.warnings.push(`journal holds ${fcUsed} fast-commit block(s) that were not applied: the read-only view lacks the last fsync'd changes (e2fsck or a kernel mount replays them)`);
  }
  let target: BlockDevice = device;
  if (mode === 'overlay' || device.readOnly || fcApplicable) target = new OverlayDevice(device, overlayChunkBytes(geo.blockSize));
  try {
    const errorsFound = scan ? await replay(read, scan, jsb, jmap, geo, report, target, mode) : false;
    await finishRecovery(target, geo, jmap, jsb, sb, scan, errorsFound);
  } catch (e) {
    return fail(e);
  }
  report.applied = target === device || (fcApplicable && mode === 'write' && !device.readOnly) ? 'on-disk' : 'in-memory';
  const after = decodeSuperblock(await target.read(SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE));
  if (after.lastOrphan !== 0 || after.featureRoCompat & RO_COMPAT.orphan_present) {
    report.orphansPending = true; // the mount releases them (into memory when read-only)
  }
  if (fcApplicable) {
    report.fastCommits = fc.commits;
    const writeBack = mode === 'write' && !device.readOnly ? device : undefined;
    return { device: target, report, fastCommit: { records: fc.records, writeBack, jsbOffsetBytes: journalBlockToFs(jmap, 0) * geo.blockSize } };
  }
  return { device: target, report };
}

/** Chunk size of recovery overlays (the mount stacks its own on top with the same size). */
function overlayChunkBytes(blockSize: number): number {
  return Math.max(blockSize, 4096);
}

function summarize(jsb: JournalSuperblock, jmap: JournalMap, geo: Geometry): JournalSummary {
  const v2 = jsb.blockType === 4;
  const features = FEATURE_NAMES.filter(([k, bit]) => v2 && ((k === 'compat' ? jsb.featureCompat : jsb.featureIncompat) & bit)).map(([, , n]) => n);
  const fc = v2 && jsb.featureIncompat & JBD2_FEATURE_INCOMPAT_FAST_COMMIT ? (jsb.numFcBlocks || JBD2_DEFAULT_FAST_COMMIT_BLOCKS) : 0;
  const fmt = journalFormat(jsb);
  return {
    inode: jmap.ino, sizeBytes: jmap.countBlocks * geo.blockSize, countBlocks: jsb.maxLen, version: v2 ? 2 : 1, features,
    checksum: fmt.csumVersion >= 2 ? 'crc32c' : fmt.csumVersion === 1 ? 'crc32' : 'none',
    sequence: jsb.sequence, start: jsb.start, errno: jsb.errno, fastCommitBlocks: fc, fastCommitBlocksUsed: 0,
  };
}

/** The three passes, then the replayed blocks written in block order and flushed. Returns whether errors were found. */
async function replay(read: ReadJournalBlock, scan: ScanResult, jsb: JournalSuperblock, jmap: JournalMap, geo: Geometry,
  report: JournalReport, target: BlockDevice, mode: RecoverMode): Promise<boolean> {
  const fmt = journalFormat(jsb);
  const revoked = await collectRevokes(read, scan, fmt);
  const plan = await planReplay(read, scan, fmt, revoked, (b) => Number.isSafeInteger(b) && b < geo.blocksCount && !journalOwns(jmap, b));
  report.revokeRecords = revoked.size;
  report.revokedCopies = plan.revokedCopies;
  report.replayedBlocks = plan.blocks.size;
  report.failedCommitTid = scan.failedCommitTid;
  report.tagChecksumErrors = plan.tagChecksumErrors;
  const errors = scan.failedCommitTid !== undefined || plan.tagChecksumErrors.length > 0;
  if (errors) {
    const what = scan.failedCommitTid !== undefined
      ? `journal transaction ${scan.failedCommitTid} was corrupt (bad commit checksum); replay stopped before it`
      : `journal checksum error in ${plan.tagChecksumErrors.length} logged block(s), which were skipped`;
    if (mode === 'write') {
      throw new Ext4Error('EBADMSG', `${what}: run e2fsck to recover this image`, { detail: scan.failedCommitTid !== undefined ? 'jbd2-commit-corrupt' : 'jbd2-tag-csum' });
    }
    report.warnings.push(`${what}; the filesystem is marked as having errors in the read-only view`);
  }
  const sorted = [...plan.blocks.keys()].sort((a, b) => a - b);
  for (const b of sorted) await target.write(b * geo.blockSize, plan.blocks.get(b)!);
  await target.flush();
  return errors;
}

async function writeJournalSuperblock(device: BlockDevice, geo: Geometry, jmap: JournalMap, jsb: JournalSuperblock): Promise<void> {
  const off = journalBlockToFs(jmap, 0) * geo.blockSize;
  const bytes = await device.read(off, 1024);
  encodeJournalSuperblock(jsb, bytes);
  await device.write(off, bytes);
}

/** Empties the log, then fixes the filesystem superblock: flags, error area, free counts (§2.6). */
async function finishRecovery(target: BlockDevice, geo: Geometry, jmap: JournalMap, jsb: JournalSuperblock, before: Superblock,
  scan: ScanResult | undefined, errorsFound: boolean): Promise<void> {
  const endTid = scan?.endTid ?? jsb.sequence;
  await writeJournalSuperblock(target, geo, jmap, {
    ...jsb, start: 0, sequence: scan ? (endTid + 1) >>> 0 : jsb.sequence,
    featureIncompat: jsb.blockType === 4 ? jsb.featureIncompat & ~JBD2_FEATURE_INCOMPAT_FAST_COMMIT : jsb.featureIncompat,
    // A journal abort (s_errno) becomes the filesystem's error flag below, as e2fsck does.
    errno: scan?.failedCommitTid !== undefined ? -EINVAL : 0,
  });
  await target.flush();

  const raw = await target.read(SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE);
  const old = before.raw;
  raw.set(old.subarray(ERROR_AREA[0], ERROR_AREA[1]), ERROR_AREA[0]);
  let state = u16(raw, 0x3a) | (u16(old, 0x3a) & SB_STATE_ERRORS);
  if (errorsFound || jsb.errno !== 0) state = (state | SB_STATE_ERRORS) & ~SB_STATE_VALID;
  setU16(raw, 0x3a, state);
  setU32(raw, 0x60, u32(raw, 0x60) & ~INCOMPAT.needs_recovery);
  // Linux does not journal the superblock's free counters: recompute them from the descriptors.
  const { freeClusters, freeInodes, groupsFixed } = await recountGroups(target, geo);
  if (groupsFixed > 0) await target.flush();
  const freeBlocks = freeClusters * geo.clusterRatio;
  setU32(raw, 0x0c, freeBlocks >>> 0);
  if (u32(raw, 0x60) & INCOMPAT['64bit']) setU32(raw, 0x158, hi32(freeBlocks));
  setU32(raw, 0x10, freeInodes);
  if (u32(raw, 0x64) & RO_COMPAT.metadata_csum) setU32(raw, 0x3fc, superblockChecksum(raw));
  await target.write(SUPERBLOCK_OFFSET, raw);
  await target.flush();
}
