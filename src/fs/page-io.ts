// Page I/O: dirty pages handed to the device in block order, adjacent ones coalesced into one
// write, then marked clean (unless rewritten meanwhile).
import { writeChunks } from '../device/block-device.ts';
import type { DirtyCounter, Page, PageBuffer } from '../pagecache/file-pages.ts';
import type { OpenInode } from './inode-cache.ts';
import type { Volume } from './volume.ts';

/** Largest device write of file data (bytes). */
const WRITEBACK_IO_BYTES = 8 << 20;

/**
 * Pages on their way to disk: file blocks [fileBlock, fileBlock + pages.length) go to fsBlock
 * onwards; pages[k] is the page of block fileBlock + k when it was mapped, versions[k] its
 * version then.
 */
export interface WbRun {
  oi: OpenInode; fileBlock: number; fsBlock: number; pages: Page[]; versions: number[];
  /** The blocks are unwritten extents: the caller cleans the pages once they are converted (cleanRun). */
  unwritten: boolean;
}

/** Records the pages of file blocks [first, first + count) → fsBlock…, split where a page is missing. */
export function pushWbRuns(runs: WbRun[], oi: OpenInode, first: number, count: number, fsBlock: number, unwritten = false): void {
  let run: WbRun | undefined;
  for (let k = 0; k < count; k++) {
    const page = oi.pages.get(first + k);
    if (!page) { run = undefined; continue; }
    if (!run) { run = { oi, fileBlock: first + k, fsBlock: fsBlock + k, pages: [], versions: [], unwritten }; runs.push(run); }
    run.pages.push(page);
    run.versions.push(page.version);
  }
}

/** Drops the run's pages that nobody rewrote since they were mapped (caller holds the data lock). */
export function cleanRun(r: WbRun): void {
  for (let k = 0; k < r.versions.length; k++) r.oi.pages.cleaned(r.fileBlock + k, r.versions[k]!);
}

/**
 * Writes page contents to their blocks in block order, coalesced into device writes of up to
 * WRITEBACK_IO_BYTES. Pages are handed to the device as they are (adjacent pages of one
 * buffer as one range), without gathering them into a new buffer.
 *
 * All pages are looked up and all device writes issued in one synchronous step: a page that
 * was dropped or replaced since it was mapped (truncate, punch, eviction) is skipped, because
 * its block is being freed and may belong to another file by the time a later write would be
 * issued; a write issued now is ordered by the device before any later write to that block.
 */
export async function writeBlocks(vol: Volume, dirtyPages: DirtyCounter, runs: WbRun[]): Promise<void> {
  const bs = vol.geo.blockSize;
  runs.sort((a, b) => a.fsBlock - b.fsBlock);
  const maxBlocks = Math.max(1, WRITEBACK_IO_BYTES / bs);
  const ios: Array<{ start: number; chunks: Uint8Array[] }> = [];
  // Buffers the device writes read: held, so that one whose pages are dropped meanwhile is
  // not recycled under the write.
  const held: PageBuffer[] = [];
  let chunks: Uint8Array[] = [];
  let ioStart = -1;
  let ioBlocks = 0;
  // The range of one backing buffer not yet added to `chunks`.
  let pend: PageBuffer | undefined;
  let pendFrom = 0;
  let pendTo = 0;
  const closePending = (): void => {
    if (pend) chunks.push(pendFrom === 0 && pendTo === pend.bytes.length ? pend.bytes : pend.bytes.subarray(pendFrom, pendTo));
    pend = undefined;
  };
  const endIo = (): void => {
    closePending();
    if (ioBlocks > 0) ios.push({ start: ioStart, chunks });
    chunks = [];
    ioBlocks = 0;
  };
  for (const run of runs) {
    const n = run.pages.length;
    for (let k = 0; k < n; k++) {
      const page = run.pages[k]!;
      if (run.oi.pages.get(run.fileBlock + k) !== page) { endIo(); continue; }
      const fsb = run.fsBlock + k;
      if (ioBlocks > 0 && (fsb !== ioStart + ioBlocks || ioBlocks >= maxBlocks)) endIo();
      if (ioBlocks === 0) ioStart = fsb;
      ioBlocks++;
      const store = page.store;
      if (held[held.length - 1] !== store) {
        dirtyPages.hold(store);
        held.push(store);
      }
      if (pend === store && pendTo === page.offset) { pendTo += bs; continue; }
      closePending();
      pend = store; pendFrom = page.offset; pendTo = page.offset + bs;
    }
  }
  endIo();
  const dev = vol.device;
  const results = await Promise.allSettled(ios.map((io) => writeChunks(dev, io.start * bs, io.chunks)));
  for (const store of held) dirtyPages.release(store);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
  // Written pages leave the cache under each inode's data lock: a reader holds it (shared)
  // from looking a block up as delayed until it has copied the page. Pages over unwritten
  // extents stay until the extent is converted: dropped before, a read or a partial write in
  // between would find an unwritten block without a page and take it for zeros.
  const byInode = new Map<OpenInode, WbRun[]>();
  for (const r of runs) {
    if (r.unwritten) continue;
    const list = byInode.get(r.oi);
    if (list) list.push(r); else byInode.set(r.oi, [r]);
  }
  for (const [oi, list] of byInode) {
    await oi.data.withWrite(async () => {
      for (const r of list) cleanRun(r);
    });
  }
}
