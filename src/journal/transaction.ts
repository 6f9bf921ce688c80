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

/** Journal with no log: changes are kept in memory and written in block order at commit. */
export class WriteBackJournal implements Journal {
  private readonly dirty = new Map<number, Uint8Array>();
  private readonly finalizers = new Map<number, (bytes: Uint8Array) => void>();
  /** Handles that may write and have not stopped. */
  private writers = 0;
  private idleWaiters: Array<() => void> = [];
  /** Closed (a pending promise) while a commit waits for writers and takes its snapshot. */
  private gate: Promise<void> | undefined;

  constructor(private readonly cache: BlockCache) {}

  async begin(credits: number): Promise<Handle> {
    while (this.gate) await this.gate;
    return this.start(credits);
  }

  isDirty(block: number): boolean { return this.dirty.has(block); }

  get dirtyBlocks(): number { return this.dirty.size; }

  start(credits: number): Handle {
    assert(Number.isInteger(credits) && credits >= 0, `bad credit count ${credits}`);
    const journal = this;
    let left = credits;
    let stopped = false;
    const counted = credits > 0;
    if (counted) this.writers++;
    const touched = new Set<number>();
    const spend = (block: number) => {
      assert(!stopped, 'handle used after stop');
      if (touched.has(block)) return;
      if (left <= 0) throw new Ext4Error('EIO', `journal handle out of credits (block ${block})`, { detail: 'journal-credits' });
      left--;
      touched.add(block);
    };
    return {
      get creditsLeft() { return left; },
      extend(n: number) { left += n; },
      stop() {
        if (stopped) return;
        stopped = true;
        if (counted && --journal.writers === 0) for (const w of journal.idleWaiters.splice(0)) w();
      },
      async read(block) {
        return journal.dirty.get(block) ?? journal.cache.read(block);
      },
      async getWrite(block) {
        spend(block);
        let buf = journal.dirty.get(block);
        if (!buf) {
          buf = (await journal.cache.read(block)).slice();
          journal.dirty.set(block, buf);
          journal.cache.put(block, buf);
        }
        return buf;
      },
      getNew(block) {
        spend(block);
        const buf = new Uint8Array(journal.cache.blockSize);
        journal.dirty.set(block, buf);
        journal.cache.put(block, buf);
        return buf;
      },
      forget(block) {
        journal.dirty.delete(block);
        journal.finalizers.delete(block);
        journal.cache.drop(block);
      },
      isDirty(block) { return journal.dirty.has(block); },
      onCommit(block, finalize) {
        assert(journal.dirty.has(block), `finalizer for clean block ${block}`);
        journal.finalizers.set(block, finalize);
      },
    };
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
      if (this.writers > 0) await new Promise<void>((r) => this.idleWaiters.push(r));
      for (const [block, finalize] of this.finalizers) finalize(this.dirty.get(block)!);
      this.finalizers.clear();
      const blocks = [...this.dirty.keys()].sort((a, b) => a - b);
      const bs = this.cache.blockSize;
      for (let i = 0; i < blocks.length;) {
        let j = i + 1;
        while (j < blocks.length && blocks[j] === blocks[j - 1]! + 1 && j - i < 256) j++;
        const buf = new Uint8Array((j - i) * bs);
        for (let k = i; k < j; k++) buf.set(this.dirty.get(blocks[k]!)!, (k - i) * bs);
        runs.push({ block: blocks[i]!, bytes: buf });
        i = j;
      }
      this.dirty.clear();
    } finally {
      this.gate = undefined;
      open();
    }
    for (const r of runs) await this.cache.device.write(r.block * this.cache.blockSize, r.bytes);
  }
}
