// File data: buffered read (page cache first, then disk), write (space reserved at write time,
// blocks chosen at writeback), truncate and fallocate. The one read path for every mount.
import { Ext4Error, posixError } from '../errors/ext4-error.ts';
import { EXTENTS_FL, INLINE_DATA_FL, isDirMode, isRegMode } from '../format/inode.ts';
import { MAX_FILE_BLOCK } from '../mapping/extent-status.ts';
import { allocateUnwritten, lookupRange, removeBlocks, reserveDelayed } from '../mapping/map-blocks.ts';
import { RUN_BUFFER_BYTES } from '../pagecache/file-pages.ts';
import type { OpenInode } from './inode-cache.ts';
import { creditsFor, type FsJournal } from './ext4-jbd2.ts';
import { fileMap } from './inode-env.ts';
import { growSize, type Writeback, type WritebackCtx } from './writeback.ts';
import { heldClusters, type Credentials } from './ialloc.ts';
import { InodeData } from './readpage.ts';
import { nowTs } from './clock.ts';
import { fileBlock } from '../util/brand.ts';

/** The kernel's page size (x86-64, arm64 default): a punched hole past EOF ends at this boundary. */
const PUNCH_PAGE_BYTES = 4096;

export interface FileCtx extends WritebackCtx {
  readonly journal: FsJournal;
  readonly writeback: Writeback;
}

export interface FallocateFlags { keepSize?: boolean; punchHole?: boolean; zeroRange?: boolean }

/** Reads file bytes [pos, pos + len) clipped to the size: the page cache first, then the disk. */
export async function read(ctx: Pick<FileCtx, 'vol' | 'journal' | 'space' | 'clusters' | 'allocLock'>, oi: OpenInode, pos: number, len: number): Promise<Uint8Array> {
  const size = oi.inode.sizeBytes;
  if (pos >= size || len <= 0) return new Uint8Array(0);
  if (oi.inode.flags & INLINE_DATA_FL || !(oi.inode.flags & EXTENTS_FL)) {
    return new InodeData(ctx.vol, oi.ino, oi.inode).read(pos, len);
  }
  const end = Math.min(size, pos + len);
  const out = new Uint8Array(end - pos);
  const bs = ctx.vol.geo.blockSize;
  const first = Math.floor(pos / bs);
  const last = Math.floor((end - 1) / bs);
  await oi.data.withRead(async () => {
    const h = ctx.journal.start(0);
    try {
      for (const seg of await lookupRange(fileMap(ctx, oi), h, first, last - first + 1)) {
        for (let b = seg.first; b < seg.first + seg.count; b++) {
          const page = oi.pages.get(b);
          const src: Uint8Array | undefined = page?.data;
          if (!src && seg.state === 'written') {
            // Read the rest of this written run in one device request.
            let n = 1;
            while (b + n < seg.first + seg.count && !oi.pages.get(b + n) && n < 2048) n++;
            const data = await ctx.vol.cache.readRange(seg.fsBlock! + (b - seg.first), n);
            for (let k = 0; k < n; k++) copyBlock(out, pos, end, (b + k) * bs, data.subarray(k * bs, (k + 1) * bs));
            b += n - 1;
            continue;
          }
          if (src) copyBlock(out, pos, end, b * bs, src);
        }
      }
    } finally { h.stop(); }
  });
  return out;
}

/** A symlink's target: from the page cache while a new slow symlink's block is unwritten, else from disk. */
export async function readlink(ctx: Pick<FileCtx, 'vol' | 'journal' | 'space' | 'clusters' | 'allocLock'>, oi: OpenInode): Promise<Uint8Array> {
  if (oi.pages.size > 0 && oi.inode.sizeBytes >= 60) return read(ctx, oi, 0, oi.inode.sizeBytes);
  return new InodeData(ctx.vol, oi.ino, oi.inode).symlinkTarget();
}

function copyBlock(out: Uint8Array, pos: number, end: number, blockStart: number, src: Uint8Array): void {
  const s = Math.max(pos, blockStart);
  const e = Math.min(end, blockStart + src.length);
  if (e > s) out.set(src.subarray(s - blockStart, e - blockStart), s - pos);
}

/** Loads the page of block b for a partial write (contents from disk when written there). */
async function loadPage(ctx: FileCtx, oi: OpenInode, b: number): Promise<void> {
  if (oi.pages.get(b)) return;
  const bs = ctx.vol.geo.blockSize;
  let data = new Uint8Array(bs);
  if (b * bs < oi.inode.sizeBytes) {
    const h = ctx.journal.start(0);
    try {
      const [seg] = await lookupRange(fileMap(ctx, oi), h, b, 1);
      if (seg && seg.state === 'written') data = (await ctx.vol.cache.readRange(seg.fsBlock!, 1)).slice();
    } finally { h.stop(); }
  }
  if (!oi.pages.get(b)) oi.pages.install(b, data);
}

function checkWritable(oi: OpenInode, syscall: string): void {
  if (isDirMode(oi.inode.mode)) throw posixError('EISDIR', syscall);
  if (!isRegMode(oi.inode.mode)) throw posixError('EINVAL', syscall);
  if (!(oi.inode.flags & EXTENTS_FL) || oi.inode.flags & INLINE_DATA_FL) {
    throw new Ext4Error('ENOTSUP', `ENOTSUP: ${syscall} of block-mapped or inline-data files is not supported yet`);
  }
}

/**
 * Buffered write at `pos`, or at the end of the file when `pos` is 'append' (chosen under the
 * inode lock, so concurrent appends never overlap): reserves space for new blocks
 * (ENOSPC/EDQUOT here), then copies into pages. Returns the position written at.
 */
export async function write(ctx: FileCtx, oi: OpenInode, posIn: number | 'append', src: Uint8Array, cred: Credentials): Promise<number> {
  if (!isRegMode(oi.inode.mode)) throw posixError('EINVAL', 'write');
  checkWritable(oi, 'write');
  const bs = ctx.vol.geo.blockSize;
  let at = typeof posIn === 'number' ? posIn : oi.inode.sizeBytes;
  if (src.length === 0) return at;
  await oi.io.withLock(async () => {
    const pos = posIn === 'append' ? oi.inode.sizeBytes : posIn;
    at = pos;
    const end = pos + src.length;
    if (end > MAX_FILE_BLOCK * bs) throw posixError('EFBIG', 'write');
    const first = Math.floor(pos / bs);
    const last = Math.floor((end - 1) / bs);
    // Space is reserved for holes only. A range the es tree shows all delayed or mapped needs no
    // reservation and stays so while the inode lock is held (only truncate, punch and zero-range
    // make holes, and they take it): an overwrite skips the handle and the exclusive data lock.
    if (!coveredInEs(oi, first, last)) {
      await ctx.jbd.withHandle(creditsFor('write', ctx.vol, last - first + 1), async (h) => {
        await oi.data.withWrite(() => reserveDelayed(fileMap(ctx, oi), h, first, last - first + 1, { useRootReserve: cred.uid === 0 }));
      });
    }
    // Pages are prepared and filled under the data lock: writeback drops written pages only
    // under it (exclusive), so a page loaded here cannot vanish before the copy.
    await oi.data.withRead(async () => {
      if (pos % bs) await loadPage(ctx, oi, first);
      if (end % bs && end < oi.inode.sizeBytes) await loadPage(ctx, oi, last);
      for (let b = first; b <= last;) {
        if (oi.pages.get(b)) {
          const from = Math.max(pos, b * bs);
          const to = Math.min(end, (b + 1) * bs);
          oi.pages.write(b, from - b * bs, src.subarray(from - pos, to - pos));
          b++;
          continue;
        }
        // A run of blocks without pages gets one buffer (a recycled one when full-size) and one copy.
        let e = b + 1;
        while (e <= last && e - b < RUN_BUFFER_BYTES / bs && !oi.pages.get(e)) e++;
        const from = Math.max(pos, b * bs);
        const to = Math.min(end, e * bs);
        oi.pages.installDirty(b, e - b, from - b * bs, to - b * bs, (buf) => buf.set(src.subarray(from - pos, to - pos), from - b * bs));
        b = e;
      }
    });
    const t = nowTs();
    oi.inode.mtime = t; oi.inode.ctime = { ...t };
    growSize(oi, end);
    ctx.icache.markDirty(oi);
  });
  await ctx.writeback.balanceDirty();
  return at;
}

/** Whether every block of [first, last] has a delayed, written or unwritten es entry. */
function coveredInEs(oi: OpenInode, first: number, last: number): boolean {
  let next = first;
  for (const e of oi.state.es.overlapping(fileBlock(first), fileBlock(last))) {
    if (e.first > next || e.status === 'hole') return false;
    next = e.first + e.countBlocks;
    if (next > last) return true;
  }
  return false;
}

/** Zeroes [from, to) inside block b's page (loading it first), marking it dirty. */
async function zeroInPage(ctx: FileCtx, oi: OpenInode, b: number, from: number, to: number): Promise<void> {
  const bs = ctx.vol.geo.blockSize;
  await oi.data.withRead(async () => {
    await loadPage(ctx, oi, b);
    const h = ctx.journal.start(0);
    let backed = false;
    try {
      const [seg] = await lookupRange(fileMap(ctx, oi), h, b, 1);
      backed = !!seg && seg.state !== 'hole';
    } finally { h.stop(); }
    if (backed) oi.pages.write(b, from - b * bs, new Uint8Array(to - from));
    else oi.pages.get(b)?.data.fill(0, from - b * bs, to - b * bs);
  });
}

export async function truncate(ctx: FileCtx, oi: OpenInode, newSize: number): Promise<void> {
  checkWritable(oi, 'ftruncate');
  const bs = ctx.vol.geo.blockSize;
  if (newSize < 0 || !Number.isSafeInteger(newSize)) throw posixError('EINVAL', 'ftruncate');
  if (newSize > MAX_FILE_BLOCK * bs) throw posixError('EFBIG', 'ftruncate');
  await oi.io.withLock(async () => {
    const old = oi.inode.sizeBytes;
    // As the kernel, also when the size does not change: blocks preallocated past EOF go.
    if (newSize <= old) {
      if (newSize < old && newSize % bs) await zeroInPage(ctx, oi, Math.floor(newSize / bs), newSize, Math.floor(newSize / bs) * bs + bs);
      const firstGone = Math.ceil(newSize / bs);
      oi.pages.drop(firstGone);
      await ctx.jbd.withHandle(creditsFor('truncate', ctx.vol, heldClusters(ctx, oi)), async (h) => {
        if (firstGone <= MAX_FILE_BLOCK) await oi.data.withWrite(() => removeBlocks(fileMap(ctx, oi), h, firstGone, MAX_FILE_BLOCK));
      });
    }
    oi.inode.sizeBytes = newSize;
    // Below the on-disk size it follows at once; above it, once the data below is written.
    if (oi.diskSizeBytes !== undefined && newSize <= oi.diskSizeBytes) oi.diskSizeBytes = undefined;
    const t = nowTs();
    oi.inode.mtime = t; oi.inode.ctime = { ...t };
    ctx.icache.markDirty(oi);
  });
}

/** fallocate: mode 0 / keep-size allocate unwritten extents; punch-hole and zero-range as Linux. */
export async function fallocate(ctx: FileCtx, oi: OpenInode, mode: FallocateFlags, offset: number, length: number, cred: Credentials): Promise<void> {
  const bs = ctx.vol.geo.blockSize;
  if (offset < 0 || length <= 0) throw posixError('EINVAL', 'fallocate');
  if (!isRegMode(oi.inode.mode)) throw posixError('ENODEV', 'fallocate');
  if (!(oi.inode.flags & EXTENTS_FL)) throw new Ext4Error('ENOTSUP', 'ENOTSUP: fallocate needs an extent-mapped file');
  if (offset + length > MAX_FILE_BLOCK * bs) throw posixError('EFBIG', 'fallocate');
  const end = offset + length;
  const opts = { useRootReserve: cred.uid === 0 };
  if (mode.punchHole || mode.zeroRange) {
    // Zero-range allocates: delayed blocks in the range go to disk first, as for allocation.
    if (mode.zeroRange) await ctx.writeback.inode(oi);
    await oi.io.withLock(async () => {
      const size = oi.inode.sizeBytes;
      // A hole reaching past EOF ends, as in the kernel, at the end of the page holding EOF:
      // the last block's tail past EOF is freed too, not just zeroed.
      const stop = mode.punchHole ? Math.min(end, Math.ceil(size / PUNCH_PAGE_BYTES) * PUNCH_PAGE_BYTES) : end;
      if (offset < stop) {
        const firstFull = Math.ceil(offset / bs);
        const lastFull = Math.floor(stop / bs) - 1;
        if (offset % bs) await zeroInPage(ctx, oi, Math.floor(offset / bs), offset, Math.min(stop, Math.floor(offset / bs) * bs + bs));
        if (stop % bs && Math.floor(stop / bs) >= firstFull) await zeroInPage(ctx, oi, Math.floor(stop / bs), Math.floor(stop / bs) * bs, stop);
        if (firstFull <= lastFull) {
          const count = lastFull - firstFull + 1;
          oi.pages.drop(firstFull, lastFull);
          await ctx.jbd.withHandle(creditsFor('truncate', ctx.vol, Math.min(heldClusters(ctx, oi), count)), (h) => oi.data.withWrite(() => removeBlocks(fileMap(ctx, oi), h, firstFull, lastFull)));
        }
        if (mode.zeroRange) {
          // Like the kernel, every block the range touches (partial ones too) ends up allocated:
          // holes become unwritten extents.
          const first = Math.floor(offset / bs);
          const last = Math.ceil(stop / bs) - 1;
          await ctx.jbd.withHandle(creditsFor('fallocate', ctx.vol, last - first + 1), (h) => oi.data.withWrite(() => allocateUnwritten(fileMap(ctx, oi), h, first, last - first + 1, opts)));
        }
      }
      if (mode.zeroRange && !mode.keepSize && end > oi.inode.sizeBytes) oi.inode.sizeBytes = end;
      oi.inode.mtime = nowTs(); oi.inode.ctime = nowTs();
      ctx.icache.markDirty(oi);
    });
    return;
  }
  // Allocation: delayed blocks in the range go to disk first, then holes become unwritten.
  await ctx.writeback.inode(oi);
  await oi.io.withLock(async () => {
    const first = Math.floor(offset / bs);
    const last = Math.floor((end - 1) / bs);
    await ctx.jbd.withHandle(creditsFor('fallocate', ctx.vol, last - first + 1), (h) => oi.data.withWrite(() => allocateUnwritten(fileMap(ctx, oi), h, first, last - first + 1, opts)));
    if (!mode.keepSize && end > oi.inode.sizeBytes) { oi.inode.sizeBytes = end; oi.inode.mtime = nowTs(); }
    oi.inode.ctime = nowTs();
    ctx.icache.markDirty(oi);
  });
}
