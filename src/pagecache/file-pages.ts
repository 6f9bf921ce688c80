// Per-inode page cache: one page per filesystem block. Pages carry a version so that writeback
// can clear "dirty" only if nobody wrote the page while its data was on its way to the disk.
// Knows nothing of allocation: map-blocks decides what backs a page.
//
// A page's bytes are a block-sized window into a backing buffer. A large write fills one buffer
// for a whole run of new pages (one allocation and one copy instead of one per block), and
// writeback can hand adjacent pages of one buffer to the device as a single range (no gather
// copy). A buffer lives as long as any of its pages; pages leave the cache when written back, so
// that is bounded by dirty data.

export class Page {
  dirty: boolean;
  /** Bumped by every write into the page. */
  version: number;
  constructor(
    /** The backing buffer; the page is bytes [offset, offset + block size) of it. */
    readonly buf: Uint8Array,
    readonly offset: number,
    readonly size: number,
    dirty: boolean,
    version: number,
  ) {
    this.dirty = dirty;
    this.version = version;
  }

  /** The page's bytes (a view: writes through it change the page). */
  get data(): Uint8Array {
    return this.offset === 0 && this.buf.length === this.size ? this.buf : this.buf.subarray(this.offset, this.offset + this.size);
  }
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
    const p = new Page(data, 0, this.blockSize, false, 0);
    this.pages.set(block, p);
    return p;
  }

  /**
   * Installs dirty pages for blocks [first, first + count) whose bytes are consecutive blocks of
   * `buf`, which the cache takes over (the caller must not keep using it). The blocks must have
   * no page yet.
   */
  installDirty(first: number, count: number, buf: Uint8Array): void {
    const bs = this.blockSize;
    if (buf.length !== count * bs) throw new Error(`installDirty: ${buf.length} bytes for ${count} pages`);
    for (let k = 0; k < count; k++) {
      if (this.pages.has(first + k)) throw new Error(`page ${first + k} installed twice`);
      this.pages.set(first + k, new Page(buf, k * bs, bs, true, 1));
    }
    this.dirtyPages += count;
    this.total.pages += count;
  }

  /** Copies `src` into the page at `offset` and marks it dirty. */
  write(block: number, offset: number, src: Uint8Array): void {
    const p = this.pages.get(block);
    if (!p) throw new Error(`page ${block} written before it was installed`);
    p.buf.set(src, p.offset + offset);
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
