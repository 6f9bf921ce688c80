// Per-inode page cache: one page per filesystem block. Pages carry a version so that writeback
// can clear "dirty" only if nobody wrote the page while its data was on its way to the disk.
// Knows nothing of allocation: map-blocks decides what backs a page.

export interface Page {
  data: Uint8Array;
  dirty: boolean;
  /** Bumped by every write into the page. */
  version: number;
}

/** Shared count of dirty pages across all files, for the writeback threshold. */
export class DirtyCounter {
  pages = 0;
}

export class FilePages {
  private readonly pages = new Map<number, Page>();
  private dirtyPages = 0;

  constructor(readonly blockSize: number, private readonly total: DirtyCounter = new DirtyCounter()) {}

  get(block: number): Page | undefined { return this.pages.get(block); }

  /** Installs a clean page read from disk (or zeros). */
  install(block: number, data: Uint8Array): Page {
    const p: Page = { data, dirty: false, version: 0 };
    this.pages.set(block, p);
    return p;
  }

  /** Copies `src` into the page at `offset` and marks it dirty. */
  write(block: number, offset: number, src: Uint8Array): void {
    const p = this.pages.get(block);
    if (!p) throw new Error(`page ${block} written before it was installed`);
    p.data.set(src, offset);
    p.version++;
    if (!p.dirty) { p.dirty = true; this.dirtyPages++; this.total.pages++; }
  }

  /**
   * The page reached the disk: if nobody wrote it since `version` was observed, it is dropped
   * (reads of written blocks go to the device), so memory is bounded by dirty data.
   */
  cleaned(block: number, version: number): void {
    const p = this.pages.get(block);
    if (p && p.dirty && p.version === version) {
      this.dirtyPages--;
      this.total.pages--;
      this.pages.delete(block);
    }
  }

  get dirtyCount(): number { return this.dirtyPages; }

  /** Dirty page numbers in ascending order. */
  dirtyBlocks(): number[] {
    const out: number[] = [];
    for (const [b, p] of this.pages) if (p.dirty) out.push(b);
    return out.sort((a, b) => a - b);
  }

  /** Drops pages at or after `fromBlock` (truncate), or in [fromBlock, toBlock] (punch). */
  drop(fromBlock: number, toBlock = Infinity): void {
    for (const [b, p] of this.pages) {
      if (b < fromBlock || b > toBlock) continue;
      if (p.dirty) { this.dirtyPages--; this.total.pages--; }
      this.pages.delete(b);
    }
  }

  /** Forgets clean pages to bound memory. */
  shrink(): void {
    for (const [b, p] of this.pages) if (!p.dirty) this.pages.delete(b);
  }

  get size(): number { return this.pages.size; }
}
