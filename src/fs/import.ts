// Importing whole files (mkfs -d, put): a new file with its contents, owner, mode and times in
// one operation. Contents known in full gain nothing from delayed allocation, so blocks are
// allocated at once and written straight to the device; files imported one after another lie
// one after another on disk.
import type { Inode, Timestamp } from '../format/inode.ts';
import type { Handle } from '../journal/transaction.ts';
import { MAX_FILE_BLOCK } from '../mapping/extent-status.ts';
import { allocateWritten, removeBlocks } from '../mapping/map-blocks.ts';
import type { OpenInode } from './inode-cache.ts';
import { creditsFor } from './ext4-jbd2.ts';
import { fileMap } from './inode-env.ts';
import type { Credentials } from './ialloc.ts';
import { createLocked, type ErrAt, type NameiCtx } from './namei.ts';
import { truncate, type FileCtx } from './file.ts';
import { nowTs } from './clock.ts';

/** What importFile gives a new file besides its contents. */
export interface ImportAttrs {
  /** Permission bits (with set-id and sticky bits). */
  mode: number;
  /** Owner (default: the caller's credentials). */
  uid?: number;
  gid?: number;
  /** Times (default: now). */
  atime?: Timestamp;
  mtime?: Timestamp;
  /** All-zero blocks become holes (as mke2fs -d and cp --sparse do). */
  sparse?: boolean;
}

export type ImportCtx = NameiCtx & FileCtx;

/** Where the next imported file's data goes (right after the previous one's), and a scratch tail block. */
export class Importer {
  private goal = 0;
  private tailScratch: Uint8Array | undefined;
  constructor(private readonly ctx: ImportCtx) {}

  /**
   * Creates `name` in `dir` (EEXIST when taken) with all of `data`. Blocks are allocated at
   * once (ENOSPC/EDQUOT surface here, quota charged to the new owner) and written under the
   * data lock. On failure the new file is left empty.
   */
  async file(dir: OpenInode, name: Uint8Array, data: Uint8Array, attrs: ImportAttrs, cred: Credentials, at: ErrAt): Promise<void> {
    const { ctx } = this;
    // One namespace-lock hold and one handle: nobody can unlink the file before it is complete,
    // and readers who find it wait on its data lock until its blocks hold the data.
    await ctx.ns.withLock(() => ctx.jbd.withHandle(creditsFor('create', ctx.vol), async (h) => {
      const oi = await this.create(h, dir, name, attrs, cred, at);
      await oi.data.withWrite(async () => {
        try {
          await this.blocks(oi, h, data, 0, attrs, cred);
        } catch (e) {
          await removeBlocks(fileMap(ctx, oi), h, 0, MAX_FILE_BLOCK);
          throw e;
        }
        oi.inode.sizeBytes = data.length;
        setImportTimes(oi.inode, attrs);
      });
    }));
  }

  /**
   * file() for contents that arrive in pieces (a large host file read chunk by chunk): each
   * piece is allocated and written straight to the device as it comes, with no page cache and
   * no copy, continuing the previous piece's run. The file holds what has arrived so far; on
   * failure it is left empty. Returns the size.
   */
  async stream(dir: OpenInode, name: Uint8Array, chunks: AsyncIterable<Uint8Array>, attrs: ImportAttrs, cred: Credentials, at: ErrAt, release: (oi: OpenInode) => Promise<void>): Promise<number> {
    const { ctx } = this;
    const bs = ctx.vol.geo.blockSize;
    const oi = await ctx.ns.withLock(() => ctx.jbd.withHandle(creditsFor('create', ctx.vol), async (h) => {
      const created = await this.create(h, dir, name, attrs, cred, at);
      ctx.icache.hold(created); // held like an open file until the last piece
      return created;
    }));
    let size = 0;
    const put = (data: Uint8Array) => oi.io.withLock(() => ctx.jbd.withHandle(creditsFor('import', ctx.vol, Math.ceil(data.length / bs)), (h) => oi.data.withWrite(async () => {
      await this.blocks(oi, h, data, size / bs, attrs, cred);
      size += data.length;
      oi.inode.sizeBytes = size;
      ctx.icache.markDirty(oi);
    })));
    try {
      // Pieces go in whole blocks: a partial block waits for the next piece (or is the last).
      let carry: Uint8Array | undefined;
      for await (const chunk of chunks) {
        let data = chunk;
        if (carry) {
          data = new Uint8Array(carry.length + chunk.length);
          data.set(carry);
          data.set(chunk, carry.length);
          carry = undefined;
        }
        const whole = data.length - (data.length % bs);
        if (whole < data.length) {
          carry = data.slice(whole);
          data = data.subarray(0, whole);
        }
        if (data.length) await put(data);
      }
      if (carry) await put(carry);
      setImportTimes(oi.inode, attrs);
      ctx.icache.markDirty(oi);
    } catch (e) {
      await truncate(ctx, oi, 0).catch(() => undefined);
      throw e;
    } finally {
      await release(oi);
    }
    return size;
  }

  private async create(h: Handle, dir: OpenInode, name: Uint8Array, attrs: ImportAttrs, cred: Credentials, at: ErrAt): Promise<OpenInode> {
    const owner = { uid: attrs.uid ?? cred.uid, gid: attrs.gid ?? cred.gid };
    return createLocked(this.ctx, h, dir, name, attrs.mode, owner, at);
  }

  /**
   * Allocates written extents for `data` at file block `firstBlock` of a file being imported,
   * right after the previous import, and writes the data there (all-zero blocks stay holes with
   * `sparse`). The caller holds the data lock exclusively.
   */
  private async blocks(oi: OpenInode, h: Handle, data: Uint8Array, firstBlock: number, attrs: ImportAttrs, cred: Credentials): Promise<void> {
    const { ctx } = this;
    const bs = ctx.vol.geo.blockSize;
    const runs = attrs.sparse ? nonZeroBlockRuns(data, bs) : data.length ? [{ first: 0, count: Math.ceil(data.length / bs) }] : [];
    if (!oi.goal) oi.goal = this.goal;
    const map = runs.length ? fileMap(ctx, oi) : undefined;
    const opts = { useRootReserve: cred.uid === 0 };
    for (const run of runs) {
      h.extend(creditsFor('import', ctx.vol, run.count));
      for (const p of await allocateWritten(map!, h, firstBlock + run.first, run.count, opts)) {
        await this.writeBlocksOf(data, p.first - firstBlock, p.count, p.fsBlock);
      }
    }
    this.goal = oi.goal;
  }

  /** Writes `count` blocks of `data` from file block `first` at `fsBlock`, the last one zero-padded. */
  private async writeBlocksOf(data: Uint8Array, first: number, count: number, fsBlockNo: number): Promise<void> {
    const { vol } = this.ctx;
    const bs = vol.geo.blockSize;
    const from = first * bs;
    const whole = Math.min(count, Math.floor((data.length - from) / bs));
    if (whole > 0) await vol.device.write(fsBlockNo * bs, data.subarray(from, from + whole * bs));
    if (whole < count) {
      // A device write has completed (or copied its data) when it resolves: one scratch block serves every tail.
      this.tailScratch ??= new Uint8Array(bs);
      const tail = this.tailScratch;
      tail.set(data.subarray(from + whole * bs, from + count * bs));
      tail.fill(0, data.length - (from + whole * bs));
      await vol.device.write((fsBlockNo + whole) * bs, tail);
    }
  }
}

function setImportTimes(inode: Inode, attrs: ImportAttrs): void {
  // The clock only when a time is missing (a clock read is a system call on some hosts).
  const now = attrs.atime && attrs.mtime ? undefined : nowTs();
  inode.atime = attrs.atime ? { sec: attrs.atime.sec, nsec: attrs.atime.nsec } : now!;
  inode.mtime = attrs.mtime ? { sec: attrs.mtime.sec, nsec: attrs.mtime.nsec } : { ...now! };
}

/** Runs of blocks of `data` holding a non-zero byte (the last block may be partial). */
function nonZeroBlockRuns(data: Uint8Array, blockSize: number): Array<{ first: number; count: number }> {
  const runs: Array<{ first: number; count: number }> = [];
  const blocks = Math.ceil(data.length / blockSize);
  for (let b = 0; b < blocks; b++) {
    if (isZero(data, b * blockSize, Math.min(data.length, (b + 1) * blockSize))) continue;
    const last = runs[runs.length - 1];
    if (last && last.first + last.count === b) last.count++;
    else runs.push({ first: b, count: 1 });
  }
  return runs;
}

function isZero(data: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (data[i] !== 0) return false;
  return true;
}
