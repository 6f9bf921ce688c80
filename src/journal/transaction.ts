// The journaling seam. Every metadata change goes through a Handle obtained from a Journal with a
// block budget, exactly where jbd2 handles will go: callers ask for write access to a block,
// mutate the returned buffer, and the journal decides when and how it reaches the disk.
//
// Today's implementation (WriteBackJournal) has no on-disk log: dirty metadata stays in memory
// and is written at commit (sync/close), after file data, so that the image is clean after
// close() and the on-disk journal is never touched (never marked as needing recovery).
import { Ext4Error, assert } from '../errors/ext4-error.ts';
import { type FsBlock } from '../util/brand.ts';
import { type BlockCache } from '../cache/block-cache.ts';

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
    const touched = this.touched ??= new Set();
    if (touched.has(block)) return;
    if (this.left <= 0) throw new Ext4Error('EIO', `journal handle out of credits (block ${block})`, { detail: 'journal-credits' });
    this.left--;
    touched.add(block);
  }

  async read(block: FsBlock | number): Promise<Uint8Array> {
    return this.j.dirty.get(block) ?? this.j.cache.read(block);
  }

  async getWrite(block: FsBlock | number): Promise<Uint8Array> {
    this.spend(block);
    let buf = this.j.dirty.get(block);
    if (!buf) {
      buf = (await this.j.cache.read(block)).slice();
      this.j.dirty.set(block, buf);
      this.j.cache.put(block, buf);
    }
    return buf;
  }

  getNew(block: FsBlock | number): Uint8Array {
    this.spend(block);
    const buf = new Uint8Array(this.j.cache.blockSize);
    this.j.dirty.set(block, buf);
    this.j.cache.put(block, buf);
    return buf;
  }

  forget(block: FsBlock | number): void {
    this.j.dirty.delete(block);
    this.j.finalizers.delete(block);
    this.j.cache.drop(block);
  }

  isDirty(block: FsBlock | number): boolean { return this.j.dirty.has(block); }

  onCommit(block: FsBlock | number, finalize: (bytes: Uint8Array) => void): void {
    assert(this.j.dirty.has(block), `finalizer for clean block ${block}`);
    this.j.finalizers.set(block, finalize);
  }
}

/** Journal with no log: changes are kept in memory and written in block order at commit. */
export class WriteBackJournal implements Journal {
  private readonly j: JournalState;
  /** Closed (a pending promise) while a commit waits for writers and takes its snapshot. */
  private gate: Promise<void> | undefined;

  constructor(cache: BlockCache) {
    this.j = { cache, dirty: new Map(), finalizers: new Map(), writers: 0, idleWaiters: [] };
  }

  async begin(credits: number): Promise<Handle> {
    while (this.gate) await this.gate;
    return this.start(credits);
  }

  isDirty(block: number): boolean { return this.j.dirty.has(block); }

  get dirtyBlocks(): number { return this.j.dirty.size; }

  start(credits: number): Handle {
    return new WriteBackHandle(this.j, credits);
  }

  /**
   * Like a jbd2 commit: new handles wait, running ones finish, then the dirty set is finalized
   * and copied in one synchronous step; the copies are written after the gate reopens, so
   * handles started meanwhile change only the next commit's blocks.
   */
  async commit(): Promise<void> {
    while (this.gate) await this.gate;
    let open!: () => void;
    this.gate = new Promise<void>((r) => { open = r; });
    const runs: Array<{ block: number; bytes: Uint8Array }> = [];
    try {
      if (this.j.writers > 0) await new Promise<void>((r) => this.j.idleWaiters.push(r));
      for (const [block, finalize] of this.j.finalizers) finalize(this.j.dirty.get(block)!);
      this.j.finalizers.clear();
      const blocks = [...this.j.dirty.keys()].sort((a, b) => a - b);
      const bs = this.j.cache.blockSize;
      for (let i = 0; i < blocks.length;) {
        let j = i + 1;
        while (j < blocks.length && blocks[j] === blocks[j - 1]! + 1 && j - i < 256) j++;
        const buf = new Uint8Array((j - i) * bs);
        for (let k = i; k < j; k++) buf.set(this.j.dirty.get(blocks[k]!)!, (k - i) * bs);
        runs.push({ block: blocks[i]!, bytes: buf });
        i = j;
      }
      this.j.dirty.clear();
    } finally {
      this.gate = undefined;
      open();
    }
    for (const r of runs) await this.j.cache.device.write(r.block * this.j.cache.blockSize, r.bytes);
  }
}
