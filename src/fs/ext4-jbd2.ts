// The only place journal handles are started. Each operation kind asks for a credit estimate
// (the metadata blocks it may dirty) instead of one flat budget; the superblock is written
// through a handle like any other metadata block. The journal object is handed in, so a jbd2
// implementation replaces the write-back one without touching this module's callers.
// With has_journal the write-back journal commits through the jbd2 log (journal/jbd2-log.ts):
// needs_recovery is set on the first write and cleared at close, after the log is emptied
// (checkpointed; sync() checkpoints too, commits alone leave their blocks in the log).
import { Ext4Error } from '../errors/ext4-error.ts';
import { encodeSuperblock, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE, SB_STATE } from '../format/superblock.ts';
import { COMPAT, INCOMPAT } from '../format/features.ts';
import type { Handle, Journal } from '../journal/transaction.ts';
import { Jbd2Log } from '../journal/jbd2-log.ts';
import { mapJournalInode } from '../journal/replay/journal-inode.ts';
import type { Volume } from './volume.ts';
import { nowSec } from './clock.ts';

/**
 * A journal that also says whether a block has uncommitted changes, runs `preCommit` inside each
 * commit's gate (the filesystem folds its deferred state in), and orders data before commits.
 */
export type FsJournal = Journal & {
  isDirty(block: number): boolean;
  /** commit() in two stages: snapshot taken, then on the device (optional for injected journals). */
  commitStages?(): { taken: Promise<void>; done: Promise<boolean> };
  preCommit: ((h: Handle) => Promise<void>) | undefined;
  orderedData(): () => void;
};

/** Deepest extent tree ext4 builds (the root in the inode plus four levels of blocks). */
const MAX_EXTENT_DEPTH = 5;
/** One extent-tree change: each level's node, plus one split per level, plus the inode. */
const EXTENT_CHANGE = 2 * MAX_EXTENT_DEPTH + 1;
/** One allocation or free in one group: its bitmap and its descriptor block. */
const GROUP_CHANGE = 2;
/** One directory entry added or removed: up to three htree levels, the leaf and a split leaf, a new block. */
const DIR_ENTRY = 3 + 2 + GROUP_CHANGE + EXTENT_CHANGE;
/** A new inode: its inode-table block, the inode bitmap and descriptor. */
const NEW_INODE = 1 + GROUP_CHANGE;

export type OpKind =
  | 'create' | 'mkdir' | 'symlink' | 'link' | 'unlink' | 'rmdir' | 'rename' | 'setattr' | 'xattr'
  | 'write' | 'truncate' | 'fallocate' | 'writeback' | 'convert' | 'import' | 'evict' | 'quota-limits';

/**
 * Blocks an operation of this kind may dirty. `n` is the operation's size where it scales:
 * blocks for write/writeback/import/fallocate, and for operations that may free a whole file
 * (unlink, rmdir, rename over a file, truncate, evict) the clusters that file holds.
 */
export function creditsFor(kind: OpKind, vol: Volume, n = 0): number {
  const { geo } = vol;
  // Freeing: every leaf of the file's tree (one extent per cluster at worst, 340 per 4 KiB leaf) and every group it spans.
  const extentsPerLeaf = Math.max(1, Math.floor((geo.blockSize - 12) / 12));
  const freeing = (clusters: number) => EXTENT_CHANGE + Math.ceil(clusters / extentsPerLeaf) + GROUP_CHANGE * Math.min(geo.groupCount, clusters + 1);
  // Allocating n blocks: extents may split anywhere; runs come from at most a few groups each.
  const allocating = (blocks: number) => EXTENT_CHANGE * 2 + GROUP_CHANGE * Math.min(geo.groupCount, Math.ceil(blocks / geo.blocksPerGroup) + 2) + Math.ceil(blocks / extentsPerLeaf);
  switch (kind) {
    case 'create': return DIR_ENTRY + NEW_INODE + 1;
    case 'mkdir': return DIR_ENTRY + NEW_INODE + 2 + GROUP_CHANGE + EXTENT_CHANGE;
    case 'symlink': return DIR_ENTRY + NEW_INODE + GROUP_CHANGE + EXTENT_CHANGE;
    case 'link': return DIR_ENTRY + 1;
    case 'unlink': case 'rmdir': case 'evict': return DIR_ENTRY + NEW_INODE + 1 + freeing(n) + GROUP_CHANGE;
    // Both entries, the moved directory's '..', and a replaced target freed.
    case 'rename': return 2 * DIR_ENTRY + 2 + NEW_INODE + freeing(n) + GROUP_CHANGE;
    case 'setattr': return 1;
    // Inode body, old and new xattr block.
    case 'xattr': return 1 + 2 + 2 * GROUP_CHANGE;
    case 'write': return allocating(0);
    case 'truncate': return freeing(n);
    case 'fallocate': return freeing(n) + allocating(n);
    case 'writeback': case 'import': return allocating(n);
    case 'convert': return EXTENT_CHANGE * 2 + Math.ceil(n / extentsPerLeaf) * 2;
    case 'quota-limits': return 0;
  }
}

export class Jbd2 {
  closed = false;
  /** Test hook: an fsync with nothing to commit returns without flushing the data it wrote. */
  noDataFlushForTest = false;
  /** The superblock says "not cleanly unmounted" (or, with the log, needs_recovery) on disk. */
  markedDirty = false;
  constructor(
    readonly journal: FsJournal,
    private readonly vol: Volume,
    /** Free clusters and inodes as the allocators count them, for the superblock. */
    private readonly counts: () => { freeClusters: number; freeInodes: number },
    /** The jbd2 log commits go through, or undefined (no journal, or bypassed). */
    readonly log: Jbd2Log | undefined,
    /** Blocks the next commit adds beyond the journal's dirty ones (dirty inodes, descriptors). */
    private readonly deferredBlocks: () => number = () => 0,
  ) {}

  /**
   * Runs `fn` inside a handle with `credits` blocks of budget. With the log, a running
   * transaction near the log's limit is committed first; not from inside writeback
   * (`mayCommit: false`: it holds ordered-data tokens the commit would wait for).
   */
  async withHandle<T>(credits: number, fn: (h: Handle) => Promise<T>, opts?: { mayCommit?: boolean }): Promise<T> {
    const h = this.handleNow(credits, opts?.mayCommit) ?? await this.handleLater(credits, opts?.mayCommit);
    try { return await fn(h); } finally { h.stop(); }
  }

  /**
   * withHandle for a synchronous `fn`: when a handle is available at once (the usual case) it
   * runs and returns synchronously, with no promise at all (a FUSE SETATTR is one of these);
   * otherwise it goes through withHandle and returns its promise.
   */
  runNow<T>(credits: number, fn: (h: Handle) => T, opts?: { mayCommit?: boolean }): T | Promise<T> {
    const h = this.handleNow(credits, opts?.mayCommit);
    if (!h) return this.withHandle(credits, async (later) => fn(later), opts);
    try { return fn(h); } finally { h.stop(); }
  }

  /** Whether a handle must first wait for a commit that makes room in the log. */
  private commitDue(mayCommit: boolean | undefined): boolean {
    return this.log !== undefined && mayCommit !== false &&
      this.journal.dirtyBlocks + this.deferredBlocks() + 64 > this.log.maxTransactionBlocks;
  }

  /** A handle without waiting: none when closed, not marked dirty yet, a commit is due or one is taking its snapshot. */
  private handleNow(credits: number, mayCommit: boolean | undefined): Handle | undefined {
    if (this.closed || !this.markedDirty || this.commitDue(mayCommit)) return undefined;
    return this.journal.tryBegin?.(credits);
  }

  /** The waiting path of withHandle: the first write marks the superblock, a full log commits, a closed gate is waited for. */
  private async handleLater(credits: number, mayCommit: boolean | undefined): Promise<Handle> {
    if (this.closed) throw new Ext4Error('EBADF', 'filesystem is closed');
    if (!this.markedDirty) await this.markDirty();
    if (this.commitDue(mayCommit)) await this.commit();
    return this.journal.begin(credits);
  }

  /**
   * First write of the mount. With the log: needs_recovery is set (the state stays valid, as a
   * journalled ext4 mount does) and made durable, in place, before any commit record. Without
   * it: the "cleanly unmounted" state is cleared, as a non-journalled ext4 mount does.
   */
  async markDirty(): Promise<void> {
    this.markedDirty = true;
    const { sb } = this.vol;
    if (this.log) sb.featureIncompat |= INCOMPAT.needs_recovery;
    else sb.state &= ~SB_STATE.valid;
    sb.mntCount = (sb.mntCount + 1) & 0xffff;
    sb.mtime = nowSec();
    if (!this.log) return this.commitSuperblock();
    await this.writeSuperblockInPlace();
    await this.log.start();
    await this.vol.device.flush();
  }

  /**
   * One transaction: the journal's running changes plus what `preCommit` folds in. Returns when
   * it and every earlier commit are on the device (durable, with the log).
   */
  async commit(durable = true): Promise<void> {
    if (this.closed) throw new Ext4Error('EBADF', 'filesystem is closed');
    if (!this.markedDirty) await this.markDirty();
    this.takeBackgroundError();
    if (!durable && this.log && this.journal.commitStages) {
      // Nobody waits for durability (a bulk copy releasing memory): the caller goes on once the
      // snapshot is taken while the log writes and flushes proceed; the next commit, sync or
      // close waits for them (commits are serialized) and reports their failure.
      const { taken, done } = this.journal.commitStages();
      this.background = done.then(() => undefined, (e: unknown) => { this.backgroundError ??= e; });
      await taken;
      return;
    }
    // Joins a commit that has not taken its snapshot yet (group commit). With the log, a commit
    // that wrote a transaction flushed after this call (so the caller's data is durable); one
    // that found nothing to commit (an fsync of a file whose metadata is committed) flushes the
    // data only: one device flush instead of a transaction's two.
    const ticket = this.log?.flushTicket ?? 0;
    let wrote = true;
    if (this.journal.commitStages) wrote = await this.journal.commitStages().done;
    else await this.journal.commit();
    await this.background;
    this.takeBackgroundError();
    if (!durable) return;
    if (!this.log) await this.vol.device.flush();
    // Concurrent data-only fsyncs share one flush (any flush issued after this call covers the data).
    else if (!wrote && !this.noDataFlushForTest) await this.log.flushAfter(ticket);
  }

  /** A commit left running in the background (commit with durable false). */
  private background: Promise<void> | undefined;
  private backgroundError: unknown;

  private takeBackgroundError(): void {
    const e = this.backgroundError;
    if (e === undefined) return;
    this.backgroundError = undefined;
    throw e;
  }

  /**
   * Writes every committed transaction home and empties the log (sync()): a crash afterwards
   * has nothing to replay. Commits alone leave their blocks in the log (lazy checkpointing).
   */
  async checkpoint(): Promise<void> {
    await this.log?.checkpoint();
  }

  private superblockBytes(touch = true): Uint8Array {
    const { sb, geo } = this.vol;
    const { freeClusters, freeInodes } = this.counts();
    sb.freeBlocksCount = freeClusters * geo.clusterRatio;
    sb.freeInodesCount = freeInodes;
    if (touch) sb.wtime = nowSec();
    return encodeSuperblock(sb);
  }

  /**
   * Encodes the superblock (with the allocators' free counts) into its block through `h`,
   * unless only its write time would change: a commit with nothing else in it is then empty.
   */
  async writeSuperblock(h: Handle): Promise<void> {
    const { geo } = this.vol;
    const block = Math.floor(SUPERBLOCK_OFFSET / geo.blockSize);
    const at = SUPERBLOCK_OFFSET % geo.blockSize;
    const current = (await h.read(block)).subarray(at, at + SUPERBLOCK_SIZE);
    const same = this.superblockBytes(false);
    if (same.length === current.length && same.every((b, i) => b === current[i])) return;
    const bytes = await h.getWrite(block);
    bytes.set(this.superblockBytes(), at);
  }

  /** The superblock straight to its home (with the log: only when no transaction holds it). */
  private async writeSuperblockInPlace(): Promise<void> {
    await this.vol.device.write(SUPERBLOCK_OFFSET, this.superblockBytes());
  }

  /** Writes the superblock now, in a commit of its own. */
  async commitSuperblock(): Promise<void> {
    const h = await this.journal.begin(1);
    try { await this.writeSuperblock(h); } finally { h.stop(); }
    await this.journal.commit();
  }

  /**
   * Marks the filesystem cleanly unmounted and writes the superblock. With the log (everything
   * committed and checkpointed): the log is marked empty first, then needs_recovery cleared.
   */
  async markClean(): Promise<void> {
    await this.background;
    this.takeBackgroundError();
    this.vol.sb.state |= SB_STATE.valid;
    if (!this.log) return this.commitSuperblock();
    await this.log.close();
    this.vol.sb.featureIncompat &= ~INCOMPAT.needs_recovery;
    await this.writeSuperblockInPlace();
  }
}

/** The jbd2 log of an internal journal, or undefined without has_journal. */
export async function openLog(vol: Volume): Promise<Jbd2Log | undefined> {
  const { sb, geo } = vol;
  if (!(sb.featureCompat & COMPAT.has_journal)) return undefined;
  const jmap = await mapJournalInode(vol.device, sb, geo);
  const map = new Float64Array(jmap.countBlocks);
  for (const [first, fsBlock, n] of jmap.logical) for (let i = 0; i < n; i++) map[first + i] = fsBlock + i;
  const log = await Jbd2Log.open(vol.device, {
    blockSize: geo.blockSize, lengthBlocks: jmap.countBlocks, map, uuid: sb.uuid, metadataCsum: geo.metadataCsum,
    bit64: (sb.featureIncompat & INCOMPAT['64bit']) !== 0,
    // Committed blocks not yet checkpointed are read from the cache, not from their stale homes.
    cache: vol.cache,
  });
  return log;
}
