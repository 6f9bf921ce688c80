// Per-inode page cache: one page per filesystem block. Pages carry a version so that writeback
// can clear "dirty" only if nobody wrote the page while its data was on its way to the disk.
// Knows nothing of allocation: map-blocks decides what backs a page.
//
// A page's bytes are a block-sized window into a backing buffer. A large write fills one buffer
// for a whole run of new pages (one copy instead of one allocation and copy per block), and
// writeback hands adjacent pages of one buffer to the device as a single range (no gather copy).
// Full-size run buffers are recycled through a pool shared by all files once no page and no
// device write uses them any more: streaming a large file then reuses a few warm buffers
// instead of allocating (and faulting in) fresh memory for every megabyte. Pages leave the cache
// when written back, so buffers in use are bounded by dirty data.

/** Size of a recycled run buffer (a multiple of every block size). */
export const RUN_BUFFER_BYTES = 1 << 20;
/** Idle run buffers kept for reuse, at most. */
const POOL_MAX = 32;

/** A buffer that backs pages; `refs` counts its pages plus holds by in-flight device writes. */
export class PageBuffer {
  refs = 0;
  constructor(readonly bytes: Uint8Array, readonly pooled: boolean) {}
}

export class Page {
  dirty: boolean;
  /**
   * Changed by every write into the page, to a value never used before in this file: a page that
   * was dropped and installed again never shows a version an earlier writeback recorded.
   */
  version: number;
  constructor(
    readonly store: PageBuffer,
    /** The page is bytes [offset, offset + size) of store.bytes. */
    readonly offset: number,
    readonly size: number,
    dirty: boolean,
    version: number,
  ) {
    this.dirty = dirty;
    this.version = version;
  }

  get buf(): Uint8Array { return this.store.bytes; }

  /** The page's bytes (a view: writes through it change the page). Use before any await. */
  get data(): Uint8Array {
    const b = this.store.bytes;
    return this.offset === 0 && b.length === this.size ? b : b.subarray(this.offset, this.offset + this.size);
  }
}

/**
 * Page-cache state shared by all files of a filesystem: the dirty page count (for the writeback
 * threshold) and the pool of recycled run buffers.
 */
export class DirtyCounter {
  pages = 0;
  private readonly idle: Uint8Array[] = [];

  /** A run buffer: a fresh one is all zeros, a recycled one holds old bytes. */
  takeRunBuffer(): { bytes: Uint8Array; fresh: boolean } {
    const b = this.idle.pop();
    return b ? { bytes: b, fresh: false } : { bytes: new Uint8Array(RUN_BUFFER_BYTES), fresh: true };
  }

  /** Takes a hold on a page buffer (an in-flight device write reads it). */
  hold(store: PageBuffer): void { store.refs++; }

  /** Drops a page's or a hold's reference; an unused pooled buffer goes back to the pool. */
  release(store: PageBuffer): void {
    if (--store.refs === 0 && store.pooled && this.idle.length < POOL_MAX) this.idle.push(store.bytes);
  }

  /** Idle buffers in the pool (tests). */
  get idleBuffers(): number { return this.idle.length; }
}

export class FilePages {
  private readonly pages = new Map<number, Page>();
  private dirtyPages = 0;
  /** Last page version handed out. */
  private seq = 0;

  constructor(readonly blockSize: number, private readonly total: DirtyCounter = new DirtyCounter()) {}

  get(block: number): Page | undefined { return this.pages.get(block); }

  /** Installs a clean page read from disk (or zeros). */
  install(block: number, data: Uint8Array): Page {
    const store = new PageBuffer(data, false);
    store.refs = 1;
    const p = new Page(store, 0, this.blockSize, false, 0);
    this.pages.set(block, p);
    return p;
  }

  /**
   * Installs dirty pages for blocks [first, first + count), which must have no page yet, backed
   * by one buffer: `fill(bytes)` writes bytes [coverFrom, coverTo) of the run, the rest of the
   * run reads as zeros.
   */
  installDirty(first: number, count: number, coverFrom: number, coverTo: number, fill: (bytes: Uint8Array) => void): void {
    const bs = this.blockSize;
    const len = count * bs;
    let store: PageBuffer;
    if (len === RUN_BUFFER_BYTES) {
      const { bytes, fresh } = this.total.takeRunBuffer();
      if (!fresh) { bytes.fill(0, 0, coverFrom); bytes.fill(0, coverTo, len); }
      store = new PageBuffer(bytes, true);
    } else {
      store = new PageBuffer(new Uint8Array(len), false);
    }
    fill(store.bytes);
    const version = ++this.seq;
    for (let k = 0; k < count; k++) {
      if (this.pages.has(first + k)) throw new Error(`page ${first + k} installed twice`);
      this.pages.set(first + k, new Page(store, k * bs, bs, true, version));
    }
    store.refs += count;
    this.dirtyPages += count;
    this.total.pages += count;
  }

  /** Copies `src` into the page at `offset` and marks it dirty. */
  write(block: number, offset: number, src: Uint8Array): void {
    const p = this.pages.get(block);
    if (!p) throw new Error(`page ${block} written before it was installed`);
    p.buf.set(src, p.offset + offset);
    p.version = ++this.seq;
    if (!p.dirty) { p.dirty = true; this.dirtyPages++; this.total.pages++; }
  }

  /**
   * The page reached the disk: if nobody wrote it since `version` was observed, it is dropped
   * (reads of written blocks go to the device), so memory is bounded by dirty data.
   */
  cleaned(block: number, version: number): void {
    const p = this.pages.get(block);
    if (p?.dirty && p.version === version) {
      this.dirtyPages--;
      this.total.pages--;
      this.remove(block, p);
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
      this.remove(b, p);
    }
  }

  /** Forgets clean pages to bound memory. */
  shrink(): void {
    for (const [b, p] of this.pages) if (!p.dirty) this.remove(b, p);
  }

  get size(): number { return this.pages.size; }

  private remove(block: number, p: Page): void {
    this.pages.delete(block);
    this.total.release(p.store);
  }
}
