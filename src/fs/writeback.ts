// Writeback: dirty pages of one or many inodes get blocks (delayed allocation happens here),
// their data goes to the device (page-io), then unwritten extents are converted. Background
// writeback starts past a dirty threshold or when dirty data ages; writers are throttled.
import { allocateDelayed, lookupRange, setUnwritten } from '../mapping/map-blocks.ts';
import type { DirtyCounter } from '../pagecache/file-pages.ts';
import type { InodeCache, OpenInode } from './inode-cache.ts';
import { creditsFor, type Jbd2 } from './ext4-jbd2.ts';
import type { BallocCtx } from './balloc.ts';
import { fileMap } from './inode-env.ts';
import { cleanRun, pushWbRuns, writeBlocks, type WbRun } from './page-io.ts';

/**
 * Background writeback starts when this many bytes are dirty in the page cache; writers wait
 * past twice as many. Peak memory is about twice this in live pages plus as much again in pages
 * and write buffers already written but not yet collected (V8 frees such external memory lazily):
 * at 32 MiB eight interleaved writers peaked at 260-290 MiB RSS, at 16 MiB about 210 MiB.
 */
const DIRTY_THRESHOLD_BYTES = 16 << 20;
/** ...and dirty data older than this is written back (the kernel's dirty_expire is 30 s; ours is shorter). */
const DIRTY_EXPIRE_MS = 5000;
/** Writeback passes one background run makes at most while dirty data stays over the threshold. */
const BACKGROUND_PASSES_MAX = 4;

export interface WritebackCtx extends BallocCtx {
  readonly jbd: Jbd2;
  readonly icache: InodeCache;
}

/** An unwritten range whose pages are being written: runs[runFrom, runTo) hold its pages. */
type Convert = { oi: OpenInode; first: number; count: number; fsBlock: number; runFrom: number; runTo: number };

// i_disksize (the kernel's name): the size the inode table holds lags the in-memory size while
// data past it is only in the page cache, so a crash leaves a file shorter, never with zeros
// (or a recycled block's old contents) where written data should be. It moves up in the handle
// that maps written data (that commit waits for the data: ordered mode), and at commit once no
// page at or above it is dirty (everything below the size is then on disk or a hole).

/** Raises the on-disk size to cover data up to `limitBytes` (never past the in-memory size). */
export function raiseDiskSize(oi: OpenInode, limitBytes: number): void {
  const disk = oi.diskSizeBytes;
  if (disk === undefined || limitBytes <= disk) return;
  oi.diskSizeBytes = limitBytes >= oi.inode.sizeBytes ? undefined : limitBytes;
}

/** A buffered write moves the in-memory size to `endBytes`; the on-disk size stays behind. */
export function growSize(oi: OpenInode, endBytes: number): void {
  if (endBytes <= oi.inode.sizeBytes) return;
  oi.diskSizeBytes ??= oi.inode.sizeBytes;
  oi.inode.sizeBytes = endBytes;
}

/**
 * At commit (no handle running): the on-disk size catches up with the in-memory one when no
 * page at or above it is dirty, and follows a truncate below it at once.
 */
export function settleDiskSize(oi: OpenInode, blockSize: number): void {
  const disk = oi.diskSizeBytes;
  if (disk === undefined) return;
  if (oi.inode.sizeBytes <= disk || oi.pages.dirtyCount === 0) { oi.diskSizeBytes = undefined; return; }
  const from = Math.floor(disk / blockSize);
  for (const b of oi.pages.dirtyBlocks()) if (b >= from) return;
  oi.diskSizeBytes = undefined;
}

export class Writeback {
  private background: Promise<void> | undefined;
  private ageTimer: ReturnType<typeof setTimeout> | undefined;
  private backgroundError: unknown;
  /** Writers throttled until the current background pass ends. */
  private readonly passWaiters: Array<() => void> = [];
  /**
   * Test hook: unwritten extents are converted in the handle that maps them, and commits stop
   * waiting for the data (a commit may then make them written before their data is on disk).
   */
  convertBeforeDataForTest = false;
  constructor(private readonly ctx: WritebackCtx, readonly dirtyPages: DirtyCounter) {}

  get dirtyBytes(): number { return this.dirtyPages.pages * this.ctx.vol.geo.blockSize; }

  /** Writes an inode's dirty pages: allocates delayed blocks, writes data, converts unwritten. */
  async inode(oi: OpenInode): Promise<void> {
    await this.inodes([oi]);
  }

  /**
   * Writeback of several inodes as one batch: each inode's dirty pages are mapped to disk
   * blocks (delayed ones allocated, under that inode's data lock), then all the data is
   * written in block order with adjacent ranges coalesced (ordered mode: data before the
   * metadata commit), then pages are marked clean and unwritten ranges converted.
   */
  async inodes(list: OpenInode[]): Promise<void> {
    const { ctx } = this;
    const sorted = [...new Set(list)].sort((a, b) => a.ino - b.ino);
    const releases = [];
    for (const oi of sorted) releases.push(await oi.writeback.acquire());
    // Ordered mode: a commit that may make this batch's new blocks reachable waits for their data.
    const orderedDone = ctx.jbd.journal.orderedData();
    try {
      const blocks: WbRun[] = [];
      const converts: Convert[] = [];
      for (const oi of sorted) await this.mapDirtyPages(oi, blocks, converts);
      if (this.convertBeforeDataForTest) {
        // ...and the data comes late: a commit meanwhile makes the stale blocks readable.
        orderedDone();
        await new Promise((r) => setTimeout(r, 20));
      }
      // writeBlocks sorts the runs: keep the converts' runs by identity.
      const convertRuns = converts.map((c) => blocks.slice(c.runFrom, c.runTo));
      await writeBlocks(ctx.vol, this.dirtyPages, blocks);
      orderedDone();
      // The next commit lets the on-disk size catch up over what was just written.
      for (const oi of sorted) if (oi.diskSizeBytes !== undefined) ctx.icache.markDirty(oi);
      for (const [i, c] of converts.entries()) {
        await ctx.jbd.withHandle(creditsFor('convert', ctx.vol, c.count), (h) => c.oi.data.withWrite(async () => {
          // A truncate, punch or zero-range since the mapping may have removed or replaced part
          // of the range: convert only what is still the unwritten extent whose data was written.
          for (const seg of await lookupRange(fileMap(ctx, c.oi), h, c.first, c.count)) {
            if (seg.state !== 'unwritten' || seg.fsBlock !== c.fsBlock + (seg.first - c.first)) continue;
            await setUnwritten(fileMap(ctx, c.oi), h, seg.first, seg.count, false);
            raiseDiskSize(c.oi, (seg.first + seg.count) * ctx.vol.geo.blockSize);
          }
          // Only now may the written pages go: the extent reads as written.
          for (const r of convertRuns[i]!) cleanRun(r);
          ctx.icache.markDirty(c.oi);
        }), { mayCommit: false });
      }
    } finally {
      orderedDone();
      for (const r of releases) r();
    }
  }

  /** Finds what backs each dirty page (allocating delayed blocks) and records page versions. */
  private async mapDirtyPages(oi: OpenInode, blocks: WbRun[], converts: Convert[]): Promise<void> {
    const { ctx } = this;
    const dirty = oi.pages.dirtyBlocks();
    for (let i = 0; i < dirty.length;) {
      let j = i + 1;
      while (j < dirty.length && dirty[j] === dirty[j - 1]! + 1 && j - i < 4096) j++;
      const first = dirty[i]!;
      const count = j - i;
      i = j;
      await ctx.jbd.withHandle(creditsFor('writeback', ctx.vol, count), (h) => oi.data.withWrite(async () => {
        // Overwrites of written blocks change nothing in the inode: it stays clean (an fsync
        // whose metadata another commit already carried then has nothing to commit).
        const diskSizeBefore = oi.diskSizeBytes;
        let allocated = false;
        for (const seg of await lookupRange(fileMap(ctx, oi), h, first, count)) {
          if (seg.state === 'delayed') allocated = true;
          const pieces = seg.state === 'delayed' ? await allocateDelayed(fileMap(ctx, oi), h, seg.first, seg.count)
            : seg.state === 'written' || seg.state === 'unwritten' ? [{ first: seg.first, count: seg.count, fsBlock: seg.fsBlock! }]
            : []; // a dirty page over a hole was truncated away after it was dirtied: nothing to write
          const runFrom = blocks.length;
          for (const p of pieces) pushWbRuns(blocks, oi, p.first, p.count, p.fsBlock, seg.state === 'unwritten' && !this.convertBeforeDataForTest);
          if (seg.state === 'unwritten' && this.convertBeforeDataForTest) {
            await setUnwritten(fileMap(ctx, oi), h, seg.first, seg.count, false);
            raiseDiskSize(oi, (seg.first + seg.count) * ctx.vol.geo.blockSize);
            allocated = true;
          } else if (seg.state === 'unwritten') converts.push({ oi, first: seg.first, count: seg.count, fsBlock: seg.fsBlock!, runFrom, runTo: blocks.length });
          // Mapped data reaches the disk before the commit holding this handle (ordered mode),
          // so the on-disk size may cover it now; unwritten ranges only once converted.
          else if (pieces.length) raiseDiskSize(oi, (seg.first + seg.count) * ctx.vol.geo.blockSize);
        }
        if (allocated || oi.diskSizeBytes !== diskSizeBefore) ctx.icache.markDirty(oi);
      }), { mayCommit: false });
    }
    if (oi.refs === 0) ctx.clusters.releaseWindow(oi.ino);
  }

  /** Writes back every dirty inode, in batches bounded by dirty bytes. */
  async all(): Promise<void> {
    let batch: OpenInode[] = [];
    let pages = 0;
    const limit = Math.max(1, (64 << 20) / this.ctx.vol.geo.blockSize);
    for (const oi of [...this.ctx.icache.open.values()]) {
      if (!oi.dirtyPageCount) continue;
      batch.push(oi);
      pages += oi.dirtyPageCount;
      if (pages >= limit || batch.length >= 4096) { await this.inodes(batch); batch = []; pages = 0; }
    }
    if (batch.length) await this.inodes(batch);
  }

  /** After a buffered write: start background writeback when due, and throttle the writer. */
  async balanceDirty(): Promise<void> {
    this.maybeStartBackground();
    // Throttle writers (the kernel's balance_dirty_pages): past twice the threshold a writer
    // waits for writeback, so dirty memory stays bounded whatever the write rate.
    // A background run may make several passes: the writer goes on after the pass that brought
    // dirty data under the limit, not after the whole run.
    while (this.background && this.dirtyBytes >= 2 * DIRTY_THRESHOLD_BYTES) await new Promise<void>((r) => this.passWaiters.push(r));
  }

  /** Wakes writers waiting for a background pass to end. */
  private passEnded(): void {
    for (const w of this.passWaiters.splice(0)) w();
  }

  private maybeStartBackground(): void {
    // Age: dirty data is written back at most DIRTY_EXPIRE_MS after it was first dirtied.
    if (!this.ageTimer && !this.ctx.jbd.closed) {
      const t = setTimeout(() => {
        this.ageTimer = undefined;
        if (!this.ctx.jbd.closed && !this.background) this.startBackground();
      }, DIRTY_EXPIRE_MS);
      (t as { unref?: () => void }).unref?.();
      this.ageTimer = t;
    }
    if (this.background || this.dirtyBytes < DIRTY_THRESHOLD_BYTES) return;
    this.startBackground();
  }

  private startBackground(): void {
    this.background = (async () => {
      try {
        // Data writes run on another thread (large device writes): while one pass's data is on
        // its way, the writer dirties more, and the next pass starts as soon as this one ends
        // (not at the writer's next call), so the device always has the next data queued.
        // Bounded, so that a sync waiting for this background run is not starved by a writer.
        for (let pass = 0; pass < BACKGROUND_PASSES_MAX; pass++) {
          await this.all();
          if (this.ctx.jbd.closed || this.dirtyBytes < DIRTY_THRESHOLD_BYTES) break;
          this.passEnded();
        }
      } catch (e) {
        // Reported by the next sync/fsync, as the kernel reports writeback errors (errseq).
        this.backgroundError ??= e;
      } finally {
        this.background = undefined;
        this.passEnded();
      }
    })();
  }

  /** Waits for a background pass in flight. */
  async idle(): Promise<void> { if (this.background) await this.background; }

  /** Throws (once) an error that background writeback met. */
  takeError(): void {
    const e = this.backgroundError;
    if (e === undefined) return;
    this.backgroundError = undefined;
    throw e;
  }

  stopTimer(): void {
    if (this.ageTimer) { clearTimeout(this.ageTimer); this.ageTimer = undefined; }
  }
}
