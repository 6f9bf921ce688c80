// The jbd2 log writer for writable mounts with has_journal (journal.md §4): each commit writes
// the transaction's revoke records, descriptors and escaped copies to the log, flushes, writes
// the commit block, flushes, and only then writes the blocks home (eager checkpoint) and moves
// on. Nothing reaches its home location before its newest copy is durable in the log. The home
// writes are made durable by the next commit's first flush (two flushes per commit, not three),
// so until then the log superblock keeps pointing at that transaction: recovery replays at most
// the last two, and the log is reset (wrap, unmount) only after a flush.
import { Ext4Error } from '../errors/ext4-error.ts';
import { type BlockDevice, writeChunks } from '../device/block-device.ts';
import {
  decodeJournalSuperblock, encodeJournalSuperblock, type JournalSuperblock, JBD2_SUPERBLOCK_V2, JBD2_CRC32C_CHKSUM,
  JBD2_FEATURE_INCOMPAT_REVOKE, JBD2_FEATURE_INCOMPAT_64BIT, JBD2_FEATURE_INCOMPAT_CSUM_V3, JBD2_FEATURE_INCOMPAT_CSUM_V2,
  JBD2_FEATURE_INCOMPAT_FAST_COMMIT, JBD2_FEATURE_INCOMPAT_ASYNC_COMMIT, JBD2_SUPERBLOCK_SIZE,
} from '../format/jbd2/superblock.ts';
import {
  encodeCommit, encodeDescriptor, encodeRevoke, escapeBlock, recordsPerRevoke, tagsPerDescriptor, type LogFormat,
} from './jbd2-blocks.ts';

/** What one commit hands the log: finalized copies of the changed blocks, and revoked blocks. */
export interface CommitSnapshot {
  blocks: ReadonlyArray<{ block: number; bytes: Uint8Array }>;
  revokes: readonly number[];
}

/** Where a commit's blocks go: in place (no log), or through the jbd2 log first. */
export interface CommitSink {
  commit(snap: CommitSnapshot): Promise<void>;
}

const KNOWN_INCOMPAT = JBD2_FEATURE_INCOMPAT_REVOKE | JBD2_FEATURE_INCOMPAT_64BIT | JBD2_FEATURE_INCOMPAT_CSUM_V2 |
  JBD2_FEATURE_INCOMPAT_CSUM_V3 | JBD2_FEATURE_INCOMPAT_FAST_COMMIT | JBD2_FEATURE_INCOMPAT_ASYNC_COMMIT;

/** Writes `blocks` (sorted by block) in runs of adjacent blocks. */
export async function writeHome(device: BlockDevice, blockSize: number, blocks: ReadonlyArray<{ block: number; bytes: Uint8Array }>): Promise<void> {
  const sorted = [...blocks].sort((a, b) => a.block - b.block);
  const writes: Array<Promise<void>> = [];
  for (let i = 0; i < sorted.length;) {
    let j = i + 1;
    while (j < sorted.length && sorted[j]!.block === sorted[j - 1]!.block + 1 && j - i < 256) j++;
    writes.push(writeChunks(device, sorted[i]!.block * blockSize, sorted.slice(i, j).map((b) => b.bytes)));
    i = j;
  }
  await settleAll(writes);
}

async function settleAll(writes: Array<Promise<void>>): Promise<void> {
  const results = await Promise.allSettled(writes);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}

/** The previous behaviour for filesystems without a journal: blocks written in place. */
export class InPlaceSink implements CommitSink {
  constructor(private readonly device: BlockDevice, private readonly blockSize: number) {}
  async commit(snap: CommitSnapshot): Promise<void> {
    await writeHome(this.device, this.blockSize, snap.blocks);
  }
}

export interface Jbd2LogStats { commits: number; loggedBlocks: number; revokes: number; flushes: number }

export class Jbd2Log implements CommitSink {
  private tid: number;
  private head: number;
  private lastCommitMs = 0;
  private started = false;
  /** The last committed transaction, while its home writes may not be durable yet. */
  private homePending: { start: number; tid: number } | undefined;
  readonly stats: Jbd2LogStats = { commits: 0, loggedBlocks: 0, revokes: 0, flushes: 0 };
  /**
   * Test hook: a deliberately broken commit protocol, to show the crash harness catches it.
   * 'home-first' writes blocks home before the log; 'no-commit-flush' skips the flush between
   * the log copies and the commit block; 'jsb-skips-pending' points the log superblock at the
   * new transaction although the previous one's home writes are not durable yet.
   */
  brokenForTest: 'home-first' | 'no-commit-flush' | 'jsb-skips-pending' | undefined;

  private constructor(
    private readonly device: BlockDevice,
    private readonly fmt: LogFormat,
    private readonly jsb: JournalSuperblock,
    /** fs block of each journal block. */
    private readonly map: Float64Array,
  ) {
    // A log left non-empty with needs_recovery clear is discarded, as Linux does; the jump in
    // tid keeps its old blocks from ever matching the sequence recovery expects.
    this.tid = (jsb.start !== 0 ? jsb.sequence + 0x10000 : jsb.sequence + 1) >>> 0;
    this.head = jsb.head >= jsb.first && jsb.head < jsb.maxLen ? jsb.head : jsb.first;
  }

  /**
   * Opens the log of an internal journal. `map(i)` is the fs block of journal block i (the
   * journal inode's mapping, which the caller has checked covers `lengthBlocks`).
   */
  static async open(device: BlockDevice, opts: {
    blockSize: number; lengthBlocks: number; map: Float64Array; uuid: Uint8Array; metadataCsum: boolean; bit64: boolean;
  }): Promise<Jbd2Log> {
    const where = { structure: 'journal superblock', block: opts.map[0] };
    const raw = await device.read(opts.map[0]! * opts.blockSize, JBD2_SUPERBLOCK_SIZE);
    const jsb = decodeJournalSuperblock(raw, { journalBlocks: opts.lengthBlocks, blockSize: opts.blockSize, where });
    if (jsb.featureRoCompat !== 0 || (jsb.featureIncompat & ~KNOWN_INCOMPAT) !== 0) {
      throw new Ext4Error('ENOTSUP', `journal has unknown features (incompat 0x${jsb.featureIncompat.toString(16)}, ro_compat 0x${jsb.featureRoCompat.toString(16)})`, { detail: 'jbd2-features' });
    }
    if (jsb.nrUsers > 1) throw new Ext4Error('ENOTSUP', `journal shared by ${jsb.nrUsers} filesystems`, { detail: 'jbd2-users' });
    const fmt: LogFormat = { blockSize: opts.blockSize, csumV3: opts.metadataCsum, bit64: opts.bit64, uuid: opts.uuid.slice(0, 16) };
    return new Jbd2Log(device, fmt, jsb, opts.map);
  }

  /** Log blocks: [first, maxLen) (fast-commit blocks are given back to the log). */
  get logBlocks(): number { return this.jsb.maxLen - this.jsb.first; }
  /** Largest transaction (in changed blocks) the filesystem should let build up: ¼ of the log, as jbd2. */
  get maxTransactionBlocks(): number { return Math.floor(this.logBlocks / 4); }
  get nextTid(): number { return this.tid; }

  private async flush(): Promise<void> {
    this.stats.flushes++;
    await this.device.flush();
  }

  private async writeJsb(start: number, sequence = this.tid): Promise<void> {
    const s = this.jsb;
    s.blockType = JBD2_SUPERBLOCK_V2;
    s.start = start;
    s.sequence = sequence;
    s.head = this.head;
    s.errno = 0;
    // The rest of journal block 0 is unused (zero).
    const block = new Uint8Array(this.fmt.blockSize);
    encodeJournalSuperblock(s, block);
    await this.device.write(this.map[0]! * this.fmt.blockSize, block);
  }

  /**
   * Before the first commit of a mount (the log is empty): the features ext4kit writes with
   * (CSUM_V3 iff metadata_csum, 64BIT iff the fs is 64bit, REVOKE; fast commits off so the log
   * runs to s_maxlen), written with s_start = 0. The caller flushes (with needs_recovery).
   */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    const s = this.jsb;
    s.featureCompat = 0;
    s.featureIncompat = JBD2_FEATURE_INCOMPAT_REVOKE | (this.fmt.bit64 ? JBD2_FEATURE_INCOMPAT_64BIT : 0) |
      (this.fmt.csumV3 ? JBD2_FEATURE_INCOMPAT_CSUM_V3 : 0);
    s.checksumType = this.fmt.csumV3 ? JBD2_CRC32C_CHKSUM : 0;
    s.checksum = 0;
    await this.writeJsb(0);
  }

  /** Maps consecutive journal blocks [pos, pos+n) to device writes (fs-contiguous runs). */
  private async writeLog(pos: number, blocks: readonly Uint8Array[]): Promise<void> {
    const bs = this.fmt.blockSize;
    const writes: Array<Promise<void>> = [];
    for (let i = 0; i < blocks.length;) {
      let j = i + 1;
      while (j < blocks.length && this.map[pos + j]! === this.map[pos + j - 1]! + 1 && j - i < 256) j++;
      writes.push(writeChunks(this.device, this.map[pos + i]! * bs, blocks.slice(i, j)));
      i = j;
    }
    await settleAll(writes);
  }

  async commit(snap: CommitSnapshot): Promise<void> {
    if (snap.blocks.length === 0 && snap.revokes.length === 0) return;
    if (!this.started) await this.start();
    const fmt = this.fmt;
    const perRevoke = recordsPerRevoke(fmt);
    const perDesc = tagsPerDescriptor(fmt);
    const revokeBlocks = Math.ceil(snap.revokes.length / perRevoke);
    const descBlocks = Math.ceil(snap.blocks.length / perDesc);
    const need = revokeBlocks + descBlocks + snap.blocks.length + 1;
    if (need > this.logBlocks - 1) {
      throw new Ext4Error('EIO', `transaction of ${snap.blocks.length} blocks does not fit the ${this.logBlocks}-block journal`, { detail: 'jbd2-transaction-too-large' });
    }
    if (this.brokenForTest === 'home-first') await writeHome(this.device, fmt.blockSize, snap.blocks);
    // No wrap inside a transaction: start over at s_first, after making the empty log durable
    // (the previous transaction is checkpointed), so no older transaction is overwritten while
    // the log superblock still points at it.
    if (this.head + need > this.jsb.maxLen) {
      await this.settleHome();
      this.head = this.jsb.first;
      await this.writeJsb(0);
      await this.flush();
    }
    const tid = this.tid;
    const out: Uint8Array[] = [];
    for (let i = 0; i < snap.revokes.length; i += perRevoke) out.push(encodeRevoke(fmt, tid, snap.revokes.slice(i, i + perRevoke)));
    for (let i = 0; i < snap.blocks.length; i += perDesc) {
      const group = snap.blocks.slice(i, i + perDesc).map((b) => ({ fsBlock: b.block, ...escapeBlock(b.bytes) }));
      out.push(encodeDescriptor(fmt, tid, group));
      for (const g of group) out.push(g.logged);
    }
    const start = this.head;
    // Recovery starts at the previous transaction while its home writes may still be in flight
    // (it lies just before this one: no wrap since, a wrap settles them first).
    const first = this.brokenForTest === 'jsb-skips-pending' ? undefined : this.homePending;
    await this.writeJsb(first?.start ?? start, first?.tid ?? tid);
    await this.writeLog(start, out);
    if (this.brokenForTest !== 'no-commit-flush') await this.flush();
    // That flush also made the previous transaction's home writes durable.
    this.homePending = undefined;
    this.lastCommitMs = Math.max(Date.now(), this.lastCommitMs);
    await this.writeLog(start + out.length, [encodeCommit(fmt, tid, this.lastCommitMs)]);
    await this.flush();
    // Durable in the log: fsync/sync may return once the caller sees this resolve; the
    // checkpoint follows at once (eager), so the log holds only this transaction.
    await writeHome(this.device, fmt.blockSize, snap.blocks);
    this.homePending = { start, tid };
    this.head = start + need;
    this.tid = (tid + 1) >>> 0;
    this.stats.commits++;
    this.stats.loggedBlocks += snap.blocks.length;
    this.stats.revokes += snap.revokes.length;
  }

  /** Makes the last transaction's home writes durable, so the log may forget it. */
  private async settleHome(): Promise<void> {
    if (!this.homePending) return;
    await this.flush();
    this.homePending = undefined;
  }

  /** Unmount: everything is checkpointed; the log is marked empty (s_start 0) and made durable. */
  async close(): Promise<void> {
    if (!this.started) return;
    await this.settleHome();
    await this.writeJsb(0);
    await this.flush();
  }
}
