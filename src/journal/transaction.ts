// The journaling seam. Every metadata change goes through a Handle obtained from a Journal with a
// block budget, exactly where jbd2 handles will go: callers ask for write access to a block,
// mutate the returned buffer, and the journal decides when and how it reaches the disk.
//
// WriteBackJournal keeps dirty metadata in memory and hands a frozen snapshot of it to a
// CommitSink at commit (sync/fsync/close): the jbd2 log (jbd2-log.ts) for filesystems with a
// journal, in-place writes without one. Commits are serialized: a commit returns only after
// every earlier commit is on the device, and no commit's writes overlap another's.
import { Ext4Error, assert } from '../errors/ext4-error.ts';
import { type FsBlock } from '../util/brand.ts';
import { type BlockCache } from '../cache/block-cache.ts';
import { InPlaceSink, type CommitSink } from './jbd2-log.ts';

/** Metadata block access inside one handle. */
export interface MetaTxn {
  /** Current contents of a metadata block (including uncommitted changes). Do not mutate. */
  read(block: FsBlock | number): Promise<Uint8Array>;
  /** A mutable buffer for the block, recorded as modified by this handle. */
  getWrite(block: FsBlock | number): Promise<Uint8Array>;
  /** A zeroed mutable buffer for a block that was just allocated (its old contents are not read). */
  getNew(block: FsBlock | number): Uint8Array;
  /** The block was freed: any pending write of it is dropped (a revoke, under jbd2). */
  forget(block: FsBlock | number): void;
  /**
   * Earlier versions of the block that are not yet durable replacements: its contents before
   * the running transaction, and before the committing one. Allocators treat a cluster used in
   * any of them as busy, so a block freed by a transaction is not reused (and overwritten in
   * place) before that transaction is durable (journal.md §4.3).
   */
  busyViews?(block: FsBlock | number): Uint8Array[];
  /** Whether the block has uncommitted changes (its checksum may not be final yet). */
  isDirty(block: FsBlock | number): boolean;
  /**
   * Runs `finalize` on the block's bytes just before it is written at commit (jbd2's "frozen
   * trigger"): checksums of blocks changed many times per commit are computed once.
   */
  onCommit(block: FsBlock | number, finalize: (bytes: Uint8Array) => void): void;
}

export interface Handle extends MetaTxn {
  /** Blocks this handle may still dirty. */
  readonly creditsLeft: number;
  /** Asks for more credits (jbd2 may restart the transaction; here it always succeeds). */
  extend(credits: number): void;
  stop(): void;
}

export interface Journal {
  /** A handle for changes; waits while a commit is taking its snapshot. */
  begin(credits: number): Promise<Handle>;
  /** A handle at once (for reads: a 0-credit handle never blocks or waits for a commit). */
  start(credits: number): Handle;
  /** begin() without waiting: the handle when no commit is taking its snapshot, else undefined (then call begin). */
  tryBegin?(credits: number): Handle | undefined;
  /** Writes every committed change to the device (after the caller wrote file data). */
  commit(): Promise<void>;
  /** Number of metadata blocks waiting for commit. */
  readonly dirtyBlocks: number;
}

/** What a WriteBackJournal shares with its handles. */
interface JournalState {
  readonly cache: BlockCache;
  readonly dirty: Map<number, Uint8Array>;
  readonly finalizers: Map<number, (bytes: Uint8Array) => void>;
  /** Blocks freed in the running transaction (revoke records, under jbd2). */
  readonly revokes: Set<number>;
  /** Frozen copies of the committing transaction until they are home: reads see them even if the cache dropped the block. */
  readonly committing: Map<number, Uint8Array>;
  /** Contents before the running transaction of the blocks it changed (see busyViews). */
  originals: Map<number, Uint8Array>;
  /** The same for each committing transaction (at most two), until it is durable. */
  readonly committingOriginals: Array<Map<number, Uint8Array>>;
  /** Handles that may write and have not stopped. */
  writers: number;
  idleWaiters: Array<() => void>;
}

/** One handle: a class rather than an object of closures (a bulk copy starts several per file). */
class WriteBackHandle implements Handle {
  private left: number;
  private stopped = false;
  private readonly counted: boolean;
  /** Blocks this handle has already paid a credit for (created on first write). */
  private touched: Set<number> | undefined;

  constructor(private readonly j: JournalState, credits: number) {
    assert(Number.isInteger(credits) && credits >= 0, `bad credit count ${credits}`);
    this.left = credits;
    this.counted = credits > 0;
    if (this.counted) j.writers++;
  }

  get creditsLeft(): number { return this.left; }
  extend(n: number): void { this.left += n; }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.counted && --this.j.writers === 0) for (const w of this.j.idleWaiters.splice(0)) w();
  }

  private spend(block: number): void {
    assert(!this.stopped, 'handle used after stop');
    if (!this.touched) this.touched = new Set();
    const touched = this.touched;
    if (touched.has(block)) return;
    if (this.left <= 0) throw new Ext4Error('EIO', `journal handle out of credits (block ${block})`, { detail: 'journal-credits' });
    this.left--;
    touched.add(block);
  }

  async read(block: FsBlock | number): Promise<Uint8Array> {
    return this.j.dirty.get(block) ?? this.j.committing.get(block) ?? this.j.cache.read(block);
  }

  async getWrite(block: FsBlock | number): Promise<Uint8Array> {
    this.spend(block);
    let buf = this.j.dirty.get(block);
    if (!buf) {
      const before = this.j.committing.get(block) ?? await this.j.cache.read(block);
      // Another handle may have dirtied it while we read.
      const raced = this.j.dirty.get(block);
      if (raced) return raced;
      buf = before.slice();
      if (!this.j.originals.has(block)) this.j.originals.set(block, before);
      this.j.revokes.delete(block);
      this.j.dirty.set(block, buf);
      this.j.cache.put(block, buf);
    }
    return buf;
  }

  getNew(block: FsBlock | number): Uint8Array {
    this.spend(block);
    const buf = new Uint8Array(this.j.cache.blockSize);
    // Journaled again after a free in this transaction: the revoke would hide this copy.
    this.j.revokes.delete(block);
    this.j.dirty.set(block, buf);
    this.j.cache.put(block, buf);
    return buf;
  }

  forget(block: FsBlock | number): void {
    this.j.revokes.add(block);
    this.j.dirty.delete(block);
    this.j.finalizers.delete(block);
    this.j.cache.drop(block);
  }

  isDirty(block: FsBlock | number): boolean { return this.j.dirty.has(block); }

  busyViews(block: FsBlock | number): Uint8Array[] {
    const out: Uint8Array[] = [];
    const a = this.j.originals.get(block);
    if (a) out.push(a);
    for (const m of this.j.committingOriginals) {
      const b = m.get(block);
      if (b) out.push(b);
    }
    return out;
  }

  onCommit(block: FsBlock | number, finalize: (bytes: Uint8Array) => void): void {
    assert(this.j.dirty.has(block), `finalizer for clean block ${block}`);
    this.j.finalizers.set(block, finalize);
  }
}

/** Journal over a commit sink: changes are kept in memory and handed to the sink at commit. */
export class WriteBackJournal implements Journal {
  private readonly j: JournalState;
  /** Closed (a pending promise) while a commit waits for writers and takes its snapshot. */
  private gate: Promise<void> | undefined;
  /**
   * When the next commit may take its snapshot: once the previous one has taken its own and
   * the one before that has finished. So a commit's snapshot (and a bulk copy waiting for it)
   * does not wait for the previous commit's log writes and flushes; at most two are in flight.
   */
  private commitTail: Promise<void> = Promise.resolve();
  /** The previous commit, finished (or failed): a commit goes to the sink only after it. */
  private prevDone: Promise<void> = Promise.resolve();
  /** Data writes to newly allocated blocks in flight (ordered mode): a commit waits for those started before its snapshot. */
  private readonly ordered = new Set<Promise<void>>();
  /** Commits handed to the sink. */
  commits = 0;
  /**
   * Runs inside the commit's gate, after every handle stopped and before the snapshot: the
   * filesystem folds its deferred in-memory state (dirty inodes, group descriptors, quota,
   * superblock) into the transaction, so each commit is a consistent cut.
   */
  preCommit: ((h: Handle) => Promise<void>) | undefined;

  constructor(cache: BlockCache, readonly sink: CommitSink = new InPlaceSink(cache.device, cache.blockSize)) {
    this.j = { cache, dirty: new Map(), finalizers: new Map(), writers: 0, idleWaiters: [], revokes: new Set(), committing: new Map(),
      originals: new Map(), committingOriginals: [] };
  }

  async begin(credits: number): Promise<Handle> {
    while (this.gate) await this.gate;
    return this.start(credits);
  }

  tryBegin(credits: number): Handle | undefined {
    return this.gate ? undefined : this.start(credits);
  }

  isDirty(block: number): boolean { return this.j.dirty.has(block); }

  get dirtyBlocks(): number { return this.j.dirty.size; }

  start(credits: number): Handle {
    return new WriteBackHandle(this.j, credits);
  }

  /**
   * Ordered data: call before allocating blocks for data, and call the returned function once
   * that data is written. A commit whose snapshot may make those blocks reachable waits for it.
   */
  orderedData(): () => void {
    let done!: () => void;
    const p = new Promise<void>((r) => { done = r; });
    this.ordered.add(p);
    return () => { this.ordered.delete(p); done(); };
  }

  /**
   * Like a jbd2 commit: new handles wait, running ones finish, then the dirty set is finalized
   * and copied in one synchronous step; the copies go to the sink after the gate reopens, so
   * handles started meanwhile change only the next commit's blocks. Resolves when this commit
   * and every earlier one are on the device (the sink decides how durable that is).
   */
  async commit(): Promise<void> {
    await this.commitStages().done;
  }

  /**
   * commit(), with a second promise that resolves once the snapshot is taken (the running
   * changes belong to this commit; new handles go to the next one), while the blocks may still
   * be on their way to the device. `done` says whether the commit wrote anything (false: there
   * was nothing to commit, and nothing was flushed).
   */
  commitStages(): { taken: Promise<void>; done: Promise<boolean> } {
    // Group commit (as jbd2): a commit that is queued and has not taken its snapshot yet will
    // include every change made before this call, so concurrent fsyncs share it.
    if (this.queued) return this.queued;
    let taken!: () => void;
    const t = new Promise<void>((r) => { taken = r; });
    const stages = { taken: t, done: Promise.resolve(false) };
    const prevDone = this.prevDone;
    const run = this.commitTail.then(() => this.commitNow(taken, stages, prevDone));
    stages.done = run;
    this.queued = stages;
    this.prevDone = run.then(() => undefined, () => undefined);
    this.commitTail = Promise.all([t, prevDone]).then(() => undefined);
    run.catch(() => { if (this.queued === stages) this.queued = undefined; taken(); });
    return stages;
  }

  /** The commit that has been asked for and has not closed its gate yet (others join it). */
  private queued: { taken: Promise<void>; done: Promise<boolean> } | undefined;
  /** Commits that found nothing to write (every earlier one was durable already). */
  emptyCommits = 0;

  private async commitNow(taken: () => void, stages: { taken: Promise<void>; done: Promise<boolean> }, prevDone: Promise<void>): Promise<boolean> {
    while (this.gate) await this.gate;
    // From here on a new commit() must start another commit: this one's snapshot may already be past.
    if (this.queued === stages) this.queued = undefined;
    let open!: () => void;
    this.gate = new Promise<void>((r) => { open = r; });
    let blocks: Array<{ block: number; bytes: Uint8Array }>;
    let revokes: number[];
    let ordered: Array<Promise<void>>;
    let originals: Map<number, Uint8Array>;
    try {
      if (this.j.writers > 0) await new Promise<void>((r) => this.j.idleWaiters.push(r));
      if (this.preCommit) {
        const h = new WriteBackHandle(this.j, Number.MAX_SAFE_INTEGER);
        try { await this.preCommit(h); } finally { h.stop(); }
      }
      for (const [block, finalize] of this.j.finalizers) finalize(this.j.dirty.get(block)!);
      this.j.finalizers.clear();
      const sorted = [...this.j.dirty.keys()].sort((a, b) => a - b);
      blocks = sorted.map((block) => ({ block, bytes: this.j.dirty.get(block)!.slice() }));
      // Pinned until their home location has them (the sink unpins, or we do after an in-place
      // sink): a reader outside any handle must not find an older copy on the device meanwhile.
      for (const b of blocks) { this.j.committing.set(b.block, b.bytes); this.j.cache.pin(b.block, b.bytes); }
      revokes = [...this.j.revokes].sort((a, b) => a - b);
      this.j.dirty.clear();
      this.j.revokes.clear();
      originals = this.j.originals;
      this.j.committingOriginals.push(originals);
      this.j.originals = new Map();
      ordered = [...this.ordered];
    } finally {
      this.gate = undefined;
      open();
      taken();
    }
    try {
      // Ordered mode: data of blocks this transaction makes reachable is written first.
      await Promise.all(ordered);
      // On the device in commit order: this commit's blocks go after the previous commit's.
      await prevDone;
      if (blocks.length === 0 && revokes.length === 0) {
        this.emptyCommits++;
        return false;
      }
      await this.sink.commit({ blocks, revokes });
      if (!this.sink.keepsBlocks) for (const b of blocks) this.j.cache.unpin(b.block, b.bytes);
      this.commits++;
      return true;
    } finally {
      for (const b of blocks) if (this.j.committing.get(b.block) === b.bytes) this.j.committing.delete(b.block);
      const at = this.j.committingOriginals.indexOf(originals);
      if (at >= 0) this.j.committingOriginals.splice(at, 1);
    }
  }
}
