// The jbd2 log writer for writable mounts with has_journal (journal.md §4): each commit writes
// the transaction's revoke records, descriptors and escaped copies to the log, flushes, writes
// the commit block and flushes again; the commit is then durable. Checkpointing is lazy, as in
// jbd2: committed blocks stay in the log (their newest copies pinned in the block cache, so
// readers see them) and go to their home locations only when the log runs short of space, when
// too many are pinned, and at sync()/close (then a flush, and only after it may the journal
// superblock's tail move or the log space be reused). Nothing reaches its home location before
// its newest copy is durable in the log.
import { Ext4Error } from '../errors/ext4-error.ts';
import { type BlockDevice, writeChunks } from '../device/block-device.ts';
import type { BlockCache } from '../cache/block-cache.ts';
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

/**
 * Where a commit's blocks go: in place (no log), or through the jbd2 log first. The journal pins
 * each committed block in the block cache; a sink that `keepsBlocks` (not yet home when commit
 * resolves) unpins them itself once they are home.
 */
export interface CommitSink {
  commit(snap: CommitSnapshot): Promise<void>;
  readonly keepsBlocks?: boolean;
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

export interface Jbd2LogStats {
  commits: number;
  /** Metadata blocks copied into the log. */
  loggedBlocks: number;
  revokes: number;
  flushes: number;
  checkpoints: number;
  /** Metadata blocks written to their home locations by checkpoints. */
  homeBlocks: number;
}

/** Checkpoint before more than this many distinct committed blocks wait in memory (16 MiB of 4 KiB blocks). */
const MAX_PINNED_BLOCKS = 4096;

export class Jbd2Log implements CommitSink {
  /** Committed blocks stay pinned until a checkpoint writes them home. */
  readonly keepsBlocks = true;
  private tid: number;
  private head: number;
  private lastCommitMs = 0;
  private started = false;
  /** Committed transactions not yet checkpointed (the log is empty when 0). */
  private liveTransactions = 0;
  /** Newest committed copy of every block not yet written home. */
  private readonly pending = new Map<number, Uint8Array>();
  /** Commits and checkpoints run one at a time. */
  private serial: Promise<void> = Promise.resolve();
  readonly stats: Jbd2LogStats = { commits: 0, loggedBlocks: 0, revokes: 0, flushes: 0, checkpoints: 0, homeBlocks: 0 };
  /**
   * Test hook: a deliberately broken commit protocol, to show the crash harness catches it.
   * 'home-first' writes blocks home before the log; 'no-commit-flush' skips the flush between
   * the log copies and the commit block; 'early-checkpoint' writes blocks home after their log
   * copies but before the commit block is durable; 'no-revoke' writes no revoke records;
   * 'wrap-no-jsb-flush' restarts the log over old transactions before the log superblock that
   * stops naming them is durable.
   */
  brokenForTest: 'home-first' | 'no-commit-flush' | 'early-checkpoint' | 'no-revoke' | 'wrap-no-jsb-flush' | undefined;

  private constructor(
    private readonly device: BlockDevice,
    private readonly fmt: LogFormat,
    private readonly jsb: JournalSuperblock,
    /** fs block of each journal block. */
    private readonly map: Float64Array,
    /** Where the journal pinned committed copies; unpinned here once home (or revoked). */
    private readonly cache: BlockCache,
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
    blockSize: number; lengthBlocks: number; map: Float64Array; uuid: Uint8Array; metadataCsum: boolean; bit64: boolean; cache: BlockCache;
  }): Promise<Jbd2Log> {
    const where = { structure: 'journal superblock', block: opts.map[0] };
    const raw = await device.read(opts.map[0]! * opts.blockSize, JBD2_SUPERBLOCK_SIZE);
    const jsb = decodeJournalSuperblock(raw, { journalBlocks: opts.lengthBlocks, blockSize: opts.blockSize, where });
    if (jsb.featureRoCompat !== 0 || (jsb.featureIncompat & ~KNOWN_INCOMPAT) !== 0) {
      throw new Ext4Error('ENOTSUP', `journal has unknown features (incompat 0x${jsb.featureIncompat.toString(16)}, ro_compat 0x${jsb.featureRoCompat.toString(16)})`, { detail: 'jbd2-features' });
    }
    if (jsb.nrUsers > 1) throw new Ext4Error('ENOTSUP', `journal shared by ${jsb.nrUsers} filesystems`, { detail: 'jbd2-users' });
    const fmt: LogFormat = { blockSize: opts.blockSize, csumV3: opts.metadataCsum, bit64: opts.bit64, uuid: opts.uuid.slice(0, 16) };
    return new Jbd2Log(device, fmt, jsb, opts.map, opts.cache);
  }

  /** Log blocks: [first, maxLen) (fast-commit blocks are given back to the log). */
  get logBlocks(): number { return this.jsb.maxLen - this.jsb.first; }
  /** Largest transaction (in changed blocks) the filesystem should let build up: ¼ of the log, as jbd2. */
  get maxTransactionBlocks(): number { return Math.floor(this.logBlocks / 4); }
  get nextTid(): number { return this.tid; }

  /** Device flushes issued so far, and the newest one completed (each covers writes completed before it was issued). */
  private flushIssued = 0;
  private flushDone = 0;
  private readonly flushesInFlight = new Map<number, Promise<void>>();

  private async flush(): Promise<void> {
    const seq = ++this.flushIssued;
    this.stats.flushes++;
    const p = this.device.flush();
    this.flushesInFlight.set(seq, p);
    try {
      await p;
      this.flushDone = Math.max(this.flushDone, seq);
    } finally {
      this.flushesInFlight.delete(seq);
    }
  }

  /** A ticket for flushAfter: writes completed before this call are covered by later flushes. */
  get flushTicket(): number { return this.flushIssued; }

  /**
   * Makes every write completed before `ticket` was taken durable, sharing a device flush
   * issued since (a commit's, or another fsync's) instead of issuing one per caller.
   */
  async flushAfter(ticket: number): Promise<void> {
    if (this.flushDone > ticket) return;
    for (const [seq, p] of this.flushesInFlight) if (seq > ticket) return p;
    await this.flush();
  }

  private async writeJsb(start: number): Promise<void> {
    const s = this.jsb;
    s.blockType = JBD2_SUPERBLOCK_V2;
    s.start = start;
    s.sequence = this.tid;
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

  /** Runs `fn` after every earlier commit and checkpoint of this log has finished. */
  private run<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.serial.then(fn);
    this.serial = p.then(() => undefined, () => undefined);
    return p;
  }

  /** Blocks committed to the log and not yet written home. */
  get pendingBlocks(): number { return this.pending.size; }

  commit(snap: CommitSnapshot): Promise<void> {
    if (snap.blocks.length === 0 && snap.revokes.length === 0) return Promise.resolve();
    return this.run(() => this.commitNow(snap));
  }

  private async commitNow(snap: CommitSnapshot): Promise<void> {
    if (!this.started) await this.start();
    const fmt = this.fmt;
    const revokes = this.brokenForTest === 'no-revoke' ? [] : snap.revokes;
    const perRevoke = recordsPerRevoke(fmt);
    const perDesc = tagsPerDescriptor(fmt);
    const revokeBlocks = Math.ceil(revokes.length / perRevoke);
    const descBlocks = Math.ceil(snap.blocks.length / perDesc);
    const need = revokeBlocks + descBlocks + snap.blocks.length + 1;
    if (need > this.logBlocks - 1) {
      throw new Ext4Error('EIO', `transaction of ${snap.blocks.length} blocks does not fit the ${this.logBlocks}-block journal`, { detail: 'jbd2-transaction-too-large' });
    }
    if (this.brokenForTest === 'home-first') await writeHome(this.device, fmt.blockSize, snap.blocks);
    // No wrap inside a transaction: when the rest of the log is too short, every committed
    // transaction goes home first (and is flushed), and the log starts over at s_first. The log
    // is never filled to its last block (as jbd2 keeps free space): a scan of a completely full
    // log would come round to its start. Too many pinned blocks also checkpoint (memory).
    const wrap = this.head + need >= this.jsb.maxLen;
    if (wrap || this.pending.size + snap.blocks.length > MAX_PINNED_BLOCKS) await this.checkpointNow();
    if (wrap) {
      // The log superblock must stop naming the old transactions before their blocks are
      // overwritten (a torn overwrite would otherwise be replayed as theirs).
      this.head = this.jsb.first;
      await this.writeJsb(this.head);
      if (this.brokenForTest !== 'wrap-no-jsb-flush') await this.flush();
    }
    // (The journal pinned the blocks in the cache at its snapshot; a revoked block's older
    // pending copy is dropped.)
    for (const r of snap.revokes) this.unpinPending(r);
    const tid = this.tid;
    const out: Uint8Array[] = [];
    for (let i = 0; i < revokes.length; i += perRevoke) out.push(encodeRevoke(fmt, tid, revokes.slice(i, i + perRevoke)));
    for (let i = 0; i < snap.blocks.length; i += perDesc) {
      const group = snap.blocks.slice(i, i + perDesc).map((b) => ({ fsBlock: b.block, ...escapeBlock(b.bytes) }));
      out.push(encodeDescriptor(fmt, tid, group));
      for (const g of group) out.push(g.logged);
    }
    const start = this.head;
    // An empty log gets its tail here, flushed with the copies before the commit record. Until
    // then the jsb may still name checkpointed transactions: replaying those again is harmless,
    // and where this one overwrote them the tid no longer matches and the scan ends.
    if (this.liveTransactions === 0 && !wrap) await this.writeJsb(start);
    await this.writeLog(start, out);
    if (this.brokenForTest !== 'no-commit-flush') await this.flush();
    if (this.brokenForTest === 'early-checkpoint') await writeHome(this.device, fmt.blockSize, snap.blocks);
    this.lastCommitMs = Math.max(Date.now(), this.lastCommitMs);
    await this.writeLog(start + out.length, [encodeCommit(fmt, tid, this.lastCommitMs)]);
    await this.flush();
    // Durable in the log: fsync/sync may return once the caller sees this resolve. The blocks
    // wait for a checkpoint; a revoked block's older copy must never go home (it may be reused).
    for (const r of snap.revokes) this.pending.delete(r);
    for (const b of snap.blocks) this.pending.set(b.block, b.bytes);
    this.liveTransactions++;
    this.head = start + need;
    this.tid = (tid + 1) >>> 0;
    this.stats.commits++;
    this.stats.loggedBlocks += snap.blocks.length;
    this.stats.revokes += revokes.length;
  }

  private unpinPending(block: number): void {
    const bytes = this.pending.get(block);
    if (bytes) this.cache.unpin(block, bytes);
  }

  /**
   * Writes every committed block home and flushes: afterwards the log holds nothing that is
   * needed (the caller writes the journal superblock, or the next commit does).
   */
  private async checkpointNow(): Promise<void> {
    if (this.liveTransactions === 0) return;
    const blocks = [...this.pending].map(([block, bytes]) => ({ block, bytes }));
    await writeHome(this.device, this.fmt.blockSize, blocks);
    await this.flush();
    for (const b of blocks) {
      this.cache.unpin(b.block, b.bytes);
      if (this.pending.get(b.block) === b.bytes) this.pending.delete(b.block);
    }
    this.liveTransactions = 0;
    this.stats.checkpoints++;
    this.stats.homeBlocks += blocks.length;
  }

  /**
   * Checkpoints every committed transaction and marks the log empty (s_start 0) (sync()). The
   * log superblock is not flushed here: until it is, a crash replays transactions whose blocks
   * are already home (harmless: nothing freed since can have been reused before a later commit,
   * which moves the tail durably), and the next commit starts past them, or flushes it before
   * it overwrites them (wrap).
   */
  checkpoint(): Promise<void> {
    return this.run(async () => {
      if (this.liveTransactions === 0) return;
      await this.checkpointNow();
      await this.writeJsb(0);
    });
  }

  /** Unmount: everything is checkpointed; the log is marked empty (s_start 0) and made durable. */
  close(): Promise<void> {
    return this.run(async () => {
      if (!this.started) return;
      await this.checkpointNow();
      await this.writeJsb(0);
      await this.flush();
    });
  }
}
