// Applies journal fast-commit records (journal.md §3; the records come validated from
// journal/replay/fast-commit.ts) to a writable filesystem mounted without the log, after the
// full transactions were replayed. The records state outcomes, in log order, so applying them
// is idempotent:
// - INODE: the logged inode bytes replace the on-disk ones, except i_block (the mapping is
//   rebuilt by the range records; an inline-data inode takes the logged i_block) and i_blocks
//   (recomputed at the end); the inode is marked in use.
// - ADD_RANGE: the file's blocks in the range are unmapped (and freed), then the logged extent
//   is mapped and its blocks marked in use. DEL_RANGE: the range is unmapped and freed.
// - CREAT / LINK: the name is added in the parent (replacing an entry of the same name); a new
//   directory gets its '.' and '..' block; UNLINK removes the name if it names that inode.
// At the end every touched inode without links is freed, and i_blocks of the others is counted
// from their extent trees. Bigalloc and quota filesystems are refused (ENOTSUP) by the caller.
import { corrupt } from '../errors/ext4-error.ts';
import { decodeInode, EXTENTS_FL, INLINE_DATA_FL, isDirMode } from '../format/inode.ts';
import { EXT4_EXT_MAGIC } from '../format/extent.ts';
import { INCOMPAT } from '../format/features.ts';
import type { Handle } from '../journal/transaction.ts';
import type { FcRecord } from '../journal/replay/fast-commit.ts';
import { extentInsert, extentIterate, extentTreeNodeCount, initExtentRoot } from '../mapping/extent-tree.ts';
import { removeBlocks } from '../mapping/map-blocks.ts';
import { dirAddEntry, dirInit, dirRemoveEntry, dirReplaceEntry } from '../dir/dir-write.ts';
import { lookupName } from '../dir/dir-read.ts';
import { fileBlock, fsBlock } from '../util/brand.ts';
import { u16 } from '../util/bytes.ts';
import { MAX_FILE_BLOCK } from '../mapping/extent-status.ts';
import { evictInode } from './ialloc.ts';
import { dirEnv, dirSourceOf, fileMap, treeEnv } from './inode-env.ts';
import type { OpenInode } from './inode-cache.ts';
import type { NameiCtx } from './namei.ts';
import { fileTypeOf } from './names.ts';
import { nowTs } from './clock.ts';

/** i_block spans bytes 0x28..0x64 of an on-disk inode; i_generation starts at 0x64. */
const I_BLOCK = 0x28;
const I_GENERATION = 0x64;

/** Test hook: a deliberately broken replay that skips one kind of record (the checks must catch it). */
export const fastCommitTestHooks: { skip: FcRecord['kind'] | undefined } = { skip: undefined };

/** Applies `records` in order; returns how many were applied. */
export async function applyFastCommits(ctx: NameiCtx, records: readonly FcRecord[]): Promise<number> {
  const touched = new Set<number>();
  // Blocks named by any ADD_RANGE are taken first, so that nothing the replay allocates on its
  // own (a new directory's block, extent-tree nodes) lands on them (the kernel excludes them too).
  const claimed = new Set<number>();
  await ctx.jbd.withHandle(64, async (h) => {
    for (const r of records) {
      if (r.kind !== 'add-range' || r.invalid || r.kind === fastCommitTestHooks.skip) continue;
      for (let b = r.fsBlock; b < r.fsBlock + r.countBlocks; b++) {
        if (claimed.has(b) || await ctx.clusters.isAllocated(b, h)) continue;
        if (await ctx.allocLock.withLock(() => ctx.clusters.allocExact(h, b, 1))) { claimed.add(b); ctx.space.markAllocated(1); }
      }
    }
  }, { mayCommit: false });
  for (const r of records) {
    if (r.kind === fastCommitTestHooks.skip) continue;
    if (r.invalid) throw corrupt('jbd2-fast-commit-record', `fast-commit ${r.kind} record for inode ${r.ino} is out of range or malformed`, { inode: r.ino });
    await ctx.jbd.withHandle(64, async (h) => {
      touched.add(r.ino);
      switch (r.kind) {
        case 'inode': return replayInode(ctx, h, r.ino, r.raw);
        case 'add-range': return addRange(ctx, h, r, claimed);
        case 'del-range': {
          const oi = await mapped(ctx, r.ino);
          if (r.countBlocks > 0) await oi.data.withWrite(() => removeBlocks(fileMap(ctx, oi), h, r.fileBlock, Math.min(MAX_FILE_BLOCK, r.fileBlock + r.countBlocks - 1)));
          return;
        }
        case 'creat': case 'link': return addName(ctx, h, r.parent, r.ino, r.name, r.kind === 'creat', touched);
        case 'unlink': return removeName(ctx, h, r.parent, r.ino, r.name, touched);
      }
    }, { mayCommit: false });
  }
  if (claimed.size) {
    await ctx.jbd.withHandle(64, async (h) => {
      for (const b of claimed) { await ctx.allocLock.withLock(() => ctx.clusters.free(h, b, 1)); ctx.space.markFreed(1); }
    }, { mayCommit: false });
  }
  for (const ino of touched) {
    await ctx.jbd.withHandle(64, async (h) => {
      const oi = await ctx.icache.get(ino);
      if (oi.inode.mode === 0) return;
      if (oi.inode.linksCount === 0) {
        if (await ctx.inodes.isAllocated(ino, h)) await evictInode(ctx, h, oi);
        return;
      }
      await recountBlocks(ctx, h, oi);
    }, { mayCommit: false });
  }
  return records.length;
}

/** The inode, which must be in use and extent-mapped (the records map blocks only through extents). */
async function mapped(ctx: NameiCtx, ino: number): Promise<OpenInode> {
  const oi = await ctx.icache.get(ino);
  if (oi.inode.mode === 0 || !(oi.inode.flags & EXTENTS_FL)) {
    throw corrupt('jbd2-fast-commit-inode', `fast-commit range record for inode ${ino}, which is unused or not extent-mapped`, { inode: ino });
  }
  return oi;
}

async function replayInode(ctx: NameiCtx, h: Handle, ino: number, logged: Uint8Array): Promise<void> {
  const { geo } = ctx.vol;
  if (ino < ctx.vol.sb.firstIno && ino !== 2) throw corrupt('jbd2-fast-commit-inode', `fast-commit record for reserved inode ${ino}`, { inode: ino });
  const oi = await ctx.icache.get(ino);
  const bytes = oi.inode.raw.slice(0, geo.inodeSize);
  const len = Math.min(logged.length, geo.inodeSize);
  bytes.set(logged.subarray(0, I_BLOCK), 0);
  if (len > I_GENERATION) bytes.set(logged.subarray(I_GENERATION, len), I_GENERATION);
  const next = decodeInode(bytes, {
    ino, inodeSize: geo.inodeSize, hugeFile: ctx.vol.hugeFile, blockSize: geo.blockSize, has64bit: ctx.vol.has('incompat', INCOMPAT['64bit']),
  });
  if (next.flags & INLINE_DATA_FL) next.iBlock = logged.slice(I_BLOCK, I_GENERATION);
  else next.iBlock = oi.inode.iBlock;
  if (next.flags & EXTENTS_FL && u16(next.iBlock, 0) !== EXT4_EXT_MAGIC) {
    next.iBlock = new Uint8Array(60);
    initExtentRoot(next.iBlock);
  }
  next.blocks512 = oi.inode.blocks512;
  if (next.mode !== 0) await ctx.allocLock.withLock(() => ctx.inodes.allocExact(h, ino, isDirMode(next.mode)));
  Object.assign(oi.inode, next);
  ctx.icache.markDirty(oi);
}

async function addRange(ctx: NameiCtx, h: Handle, r: Extract<FcRecord, { kind: 'add-range' }>, claimed: Set<number>): Promise<void> {
  const oi = await mapped(ctx, r.ino);
  const f = fileMap(ctx, oi);
  await oi.data.withWrite(async () => {
    await removeBlocks(f, h, r.fileBlock, r.fileBlock + r.countBlocks - 1);
    for (let b = r.fsBlock; b < r.fsBlock + r.countBlocks; b++) {
      if (claimed.delete(b)) continue;
      if (!await ctx.allocLock.withLock(() => ctx.clusters.allocExact(h, b, 1))) {
        throw corrupt('jbd2-fast-commit-block-in-use', `fast-commit extent ${r.fsBlock}+${r.countBlocks} of inode ${r.ino} overlaps blocks in use`, { inode: r.ino, block: b });
      }
      ctx.space.markAllocated(1);
    }
    await extentInsert(treeEnv(ctx, h, oi), { fileBlock: fileBlock(r.fileBlock), countBlocks: r.countBlocks, fsBlock: fsBlock(r.fsBlock), unwritten: r.unwritten });
  });
  ctx.icache.markDirty(oi);
}

async function addName(ctx: NameiCtx, h: Handle, parentIno: number, ino: number, name: Uint8Array, creat: boolean, touched: Set<number>): Promise<void> {
  const dir = await ctx.icache.get(parentIno);
  const child = await ctx.icache.get(ino);
  if (!isDirMode(dir.inode.mode) || child.inode.mode === 0) {
    throw corrupt('jbd2-fast-commit-dentry', `fast-commit entry '${new TextDecoder().decode(name)}' links inode ${ino} (unused?) into inode ${parentIno} (not a directory?)`, { inode: parentIno });
  }
  touched.add(parentIno);
  const isDir = isDirMode(child.inode.mode);
  if (creat && isDir && await isUnmapped(ctx, h, child)) {
    // A directory made under fast commits has no logged block: it gets '.' and '..' anew.
    child.inode.sizeBytes = 0;
    await child.data.withWrite(() => dirInit(dirEnv(ctx, h, child), child.ino, dir.ino));
  }
  const existing = await dir.data.withRead(() => lookupName(dirSourceOf(ctx, dir), name));
  if (existing?.ino === ino) return;
  const type = ctx.vol.filetype ? fileTypeOf(child.inode.mode) : 0;
  if (existing) await dir.data.withWrite(() => dirReplaceEntry(dirEnv(ctx, h, dir), name, ino, type));
  else await dir.data.withWrite(() => dirAddEntry(dirEnv(ctx, h, dir), name, ino, type));
  ctx.names.delete(dir.ino, name);
  if (creat) child.inode.linksCount = isDir ? 2 : 1;
  else child.inode.linksCount++;
  if (isDir && !existing) dir.inode.linksCount++;
  touch(dir);
  ctx.icache.markDirty(child);
  ctx.icache.markDirty(dir);
}

async function removeName(ctx: NameiCtx, h: Handle, parentIno: number, ino: number, name: Uint8Array, touched: Set<number>): Promise<void> {
  const dir = await ctx.icache.get(parentIno);
  if (!isDirMode(dir.inode.mode)) return;
  const existing = await dir.data.withRead(() => lookupName(dirSourceOf(ctx, dir), name));
  if (existing?.ino !== ino) return; // already gone (or the name now belongs to another inode)
  touched.add(parentIno);
  await dir.data.withWrite(() => dirRemoveEntry(dirEnv(ctx, h, dir), name));
  ctx.names.delete(dir.ino, name);
  const child = await ctx.icache.get(ino);
  if (isDirMode(child.inode.mode)) {
    child.inode.linksCount = 0;
    dir.inode.linksCount = Math.max(2, dir.inode.linksCount - 1);
  } else {
    child.inode.linksCount = Math.max(0, child.inode.linksCount - 1);
  }
  touch(dir);
  ctx.icache.markDirty(child);
  ctx.icache.markDirty(dir);
}

/** A directory whose entries the replay changed gets the replay time, as the kernel's and e2fsck's replays do. */
function touch(dir: OpenInode): void {
  const t = nowTs();
  dir.inode.mtime = t;
  dir.inode.ctime = { ...t };
}

async function isUnmapped(ctx: NameiCtx, h: Handle, oi: OpenInode): Promise<boolean> {
  if (!(oi.inode.flags & EXTENTS_FL)) return false;
  for await (const _ of extentIterate(treeEnv(ctx, h, oi))) return false;
  return true;
}

/** i_blocks from the extent tree: mapped blocks, tree node blocks and the xattr block. */
async function recountBlocks(ctx: NameiCtx, h: Handle, oi: OpenInode): Promise<void> {
  const { geo } = ctx.vol;
  if (!(oi.inode.flags & EXTENTS_FL) || oi.inode.flags & INLINE_DATA_FL) return;
  const env = treeEnv(ctx, h, oi);
  let blocks = await extentTreeNodeCount(env);
  for await (const e of extentIterate(env)) blocks += e.countBlocks;
  const blocks512 = blocks * (geo.blockSize / 512) + (oi.inode.fileAcl ? geo.clusterSize / 512 : 0);
  if (blocks512 !== oi.inode.blocks512) {
    oi.inode.blocks512 = blocks512;
    ctx.icache.markDirty(oi);
  }
}
