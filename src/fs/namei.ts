// Name operations on (directory inode, name bytes), as FUSE requests them: lookup, create,
// mkdir, mknod, symlink, link, unlink, rmdir and rename (with RENAME_NOREPLACE / RENAME_EXCHANGE).
// Each takes the namespace lock, then one handle sized for its kind.
import { Ext4Error, posixError, corrupt, type Ext4ErrorCode } from '../errors/ext4-error.ts';
import { COMPAT, RO_COMPAT } from '../format/features.ts';
import { EXTENTS_FL, INLINE_DATA_FL, S_IFMT, S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK, isDirMode } from '../format/inode.ts';
import { FT_DIR, FT_REG, FT_SYMLINK } from '../format/dirent.ts';
import type { Handle } from '../journal/transaction.ts';
import type { Mutex } from '../util/rw-lock.ts';
import { fileBlock, fsBlock } from '../util/brand.ts';
import { extentInsert } from '../mapping/extent-tree.ts';
import { DirBlockMapHint, withMapHint } from '../dir/block-map-hint.ts';
import { dirAddEntry, dirInit, dirIsEmpty, dirRemoveEntry, dirReplaceEntry, dirSetParent, type DirWriteEnv } from '../dir/dir-write.ts';
import { lookupName } from '../dir/dir-read.ts';
import type { OpenInode } from './inode-cache.ts';
import { creditsFor, type Jbd2 } from './ext4-jbd2.ts';
import { allocMetaCluster, defaultGoal } from './balloc.ts';
import { dirEnv, dirSourceOf, fileMap, treeEnv } from './inode-env.ts';
import { MAX_FILE_BLOCK } from '../mapping/extent-status.ts';
import { removeBlocks } from '../mapping/map-blocks.ts';
import { createInode, evictInode, heldClusters, type Credentials, type IallocCtx } from './ialloc.ts';
import { clearOrphanSlot, orphanTestHooks, readOrphanFile, type Orphans } from './orphan.ts';
import type { NameCache } from './dcache.ts';
import { checkNewName, fileTypeOf, isDot, isDotDot, ROOT_INO } from './names.ts';
import { nowTs } from './clock.ts';
import { encodeDeviceNumber } from '../format/device-number.ts';

export { ROOT_INO } from './names.ts';
const EXT4_LINK_MAX = 65000;
const DOTDOT = new Uint8Array([0x2e, 0x2e]);

export interface NameiCtx extends IallocCtx {
  readonly jbd: Jbd2;
  readonly journal: { isDirty(b: number): boolean };
  readonly names: NameCache;
  readonly orphans: Orphans;
  /** The namespace lock (one per filesystem), outermost. */
  readonly ns: Mutex;
}

/** Where an error happened, for its message: the syscall and the path(s) the caller gave. */
export interface ErrAt { syscall: string; path?: string; dest?: string }
export const fail = (code: Ext4ErrorCode, at: ErrAt): Ext4Error => posixError(code, at.syscall, at.path, at.dest);

export interface RenameFlags {
  /** RENAME_NOREPLACE: EEXIST when the destination exists. */
  noReplace?: boolean;
  /** RENAME_EXCHANGE: swap the two entries (both must exist). */
  exchange?: boolean;
}

/** The inode `name` names in `dir` (through the name cache), or undefined. */
export async function lookup(ctx: Pick<NameiCtx, 'vol' | 'journal' | 'names' | 'icache'>, dir: OpenInode, name: Uint8Array): Promise<OpenInode | undefined> {
  const cached = ctx.names.get(dir.ino, name);
  if (cached === null) return undefined;
  let ino = cached;
  if (ino === undefined) {
    const e = await lookupName(dirSourceOf(ctx, dir), name);
    if (!e) return undefined;
    ino = e.ino;
    ctx.names.put(dir.ino, name, ino);
  }
  const oi = await ctx.icache.get(ino);
  if (oi.inode.linksCount === 0 && oi.inode.mode === 0) {
    throw corrupt('dirent-unused-inode', `directory entry points to unused inode ${ino}`, { inode: ino });
  }
  return oi;
}

/** Checks that `dir` can take a new entry `name`. */
function checkParent(dir: OpenInode, name: Uint8Array, at: ErrAt): void {
  if (!isDirMode(dir.inode.mode)) throw fail('ENOTDIR', at);
  // A directory removed while the caller held it (the kernel's IS_DEADDIR).
  if (dir.inode.linksCount === 0) throw fail('ENOENT', at);
  checkNewName(name, at.syscall, at.path ?? '');
}

/** Per extent-mapped directory, where its blocks were found by earlier inserts. */
const mapHints = new WeakMap<OpenInode, DirBlockMapHint>();

/** The env an insert into `dir` uses (under its data lock): block mappings remembered between inserts. */
function addEnv(ctx: NameiCtx, h: Handle, dir: OpenInode): DirWriteEnv {
  const env = dirEnv(ctx, h, dir);
  if (!(dir.inode.flags & EXTENTS_FL)) return env;
  let hint = mapHints.get(dir);
  if (!hint) {
    hint = new DirBlockMapHint();
    mapHints.set(dir, hint);
  }
  return withMapHint(env, hint, () => dir.inode.iBlock);
}

async function addEntry(ctx: NameiCtx, h: Handle, dir: OpenInode, name: Uint8Array, ino: number, fileType: number): Promise<void> {
  if (dir.inode.flags & INLINE_DATA_FL) throw new Ext4Error('ENOTSUP', 'ENOTSUP: writing inline-data directories is not supported yet');
  await dir.data.withWrite(() => dirAddEntry(addEnv(ctx, h, dir), name, ino, ctx.vol.filetype ? fileType : 0));
  ctx.names.put(dir.ino, name, ino, { onlyIfCached: true });
  touchDir(ctx, dir);
}

async function removeEntry(ctx: NameiCtx, h: Handle, dir: OpenInode, name: Uint8Array): Promise<void> {
  if (dir.inode.flags & INLINE_DATA_FL) throw new Ext4Error('ENOTSUP', 'ENOTSUP: writing inline-data directories is not supported yet');
  ctx.names.delete(dir.ino, name);
  await dir.data.withWrite(() => dirRemoveEntry(dirEnv(ctx, h, dir), name));
  touchDir(ctx, dir);
}

async function replaceEntry(ctx: NameiCtx, h: Handle, dir: OpenInode, name: Uint8Array, to: OpenInode): Promise<void> {
  await dir.data.withWrite(() => dirReplaceEntry(dirEnv(ctx, h, dir), name, to.ino, fileTypeOf(to.inode.mode)));
  ctx.names.put(dir.ino, name, to.ino, { onlyIfCached: true });
  touchDir(ctx, dir);
}

function touchDir(ctx: NameiCtx, dir: OpenInode): void {
  const t = nowTs();
  dir.inode.mtime = t; dir.inode.ctime = { ...t };
  ctx.icache.markDirty(dir);
}

function incDirLinks(dir: OpenInode): void {
  // dir_nlink: past the limit a directory's link count is pinned at 1 ("many").
  if (dir.inode.linksCount === 1) return;
  dir.inode.linksCount = dir.inode.linksCount + 1 >= EXT4_LINK_MAX ? 1 : dir.inode.linksCount + 1;
}

function decDirLinks(dir: OpenInode): void {
  if (dir.inode.linksCount === 1) return;
  dir.inode.linksCount = Math.max(2, dir.inode.linksCount - 1);
}

/** Drops a link; frees the inode now, or when its last handle closes (orphan). */
async function dropLink(ctx: NameiCtx, h: Handle, oi: OpenInode, dirLinks = false): Promise<void> {
  const { inode } = oi;
  inode.linksCount = dirLinks ? 0 : Math.max(0, inode.linksCount - 1);
  inode.ctime = nowTs();
  if (inode.linksCount > 0) { ctx.icache.markDirty(oi); return; }
  if (oi.refs > 0) { await ctx.orphans.add(ctx, h, oi); return; }
  await evictInode(ctx, h, oi);
}

/**
 * A regular file `name` in `dir`. An existing entry is returned unless `exclusive` (EEXIST);
 * a symlink there is returned as is, for the caller to follow.
 */
export async function create(ctx: NameiCtx, dir: OpenInode, name: Uint8Array, mode: number, cred: Credentials, opts: { exclusive: boolean }, at: ErrAt): Promise<OpenInode> {
  return ctx.ns.withLock(async () => {
    checkParent(dir, name, at);
    const existing = await lookup(ctx, dir, name);
    if (existing) {
      if (opts.exclusive) throw fail('EEXIST', at);
      return existing;
    }
    return ctx.jbd.withHandle(creditsFor('create', ctx.vol), async (h) => {
      const oi = await createInode(ctx, h, dir, S_IFREG | (mode & 0o7777), cred);
      ctx.icache.markDirty(oi);
      await addEntry(ctx, h, dir, name, oi.ino, FT_REG);
      return oi;
    });
  });
}

/**
 * Under the namespace lock and a handle the caller holds: a new regular file (EEXIST when the
 * name is taken). The import path uses it to create and fill a file in one operation.
 */
export async function createLocked(ctx: NameiCtx, h: Handle, dir: OpenInode, name: Uint8Array, mode: number, owner: Credentials, at: ErrAt): Promise<OpenInode> {
  checkParent(dir, name, at);
  if (await lookup(ctx, dir, name)) throw fail('EEXIST', at);
  const oi = await createInode(ctx, h, dir, S_IFREG | (mode & 0o7777), owner);
  ctx.icache.markDirty(oi);
  await addEntry(ctx, h, dir, name, oi.ino, FT_REG);
  return oi;
}

export async function mkdir(ctx: NameiCtx, dir: OpenInode, name: Uint8Array, mode: number, cred: Credentials, at: ErrAt): Promise<OpenInode> {
  return ctx.ns.withLock(async () => {
    checkParent(dir, name, at);
    if (await lookup(ctx, dir, name)) throw fail('EEXIST', at);
    const dirNlink = ctx.vol.has('roCompat', RO_COMPAT.dir_nlink);
    if (dir.inode.linksCount >= EXT4_LINK_MAX && !dirNlink) throw fail('EMLINK', at);
    return ctx.jbd.withHandle(creditsFor('mkdir', ctx.vol), async (h) => {
      // mkdir(2) ignores the set-ID bits of its mode (S_ISGID comes from the parent only).
      const oi = await createInode(ctx, h, dir, S_IFDIR | (mode & 0o1777), cred);
      oi.inode.linksCount = 2;
      await oi.data.withWrite(() => dirInit(dirEnv(ctx, h, oi), oi.ino, dir.ino));
      ctx.names.putComplete(oi.ino, [{ name: DOTDOT, ino: dir.ino }, { name: DOTDOT.subarray(0, 1), ino: oi.ino }]);
      ctx.icache.markDirty(oi);
      await addEntry(ctx, h, dir, name, oi.ino, FT_DIR);
      incDirLinks(dir);
      ctx.icache.markDirty(dir);
      return oi;
    });
  });
}

export async function symlink(ctx: NameiCtx, dir: OpenInode, name: Uint8Array, target: Uint8Array, cred: Credentials, at: ErrAt): Promise<OpenInode> {
  const bs = ctx.vol.geo.blockSize;
  if (target.length === 0 || target.length >= bs) throw fail('ENAMETOOLONG', at);
  return ctx.ns.withLock(async () => {
    checkParent(dir, name, at);
    if (await lookup(ctx, dir, name)) throw fail('EEXIST', at);
    return ctx.jbd.withHandle(creditsFor('symlink', ctx.vol), async (h) => {
      const oi = await createInode(ctx, h, dir, S_IFLNK | 0o777, cred);
      oi.inode.sizeBytes = target.length;
      if (target.length < 60) {
        oi.inode.flags &= ~EXTENTS_FL;
        oi.inode.iBlock.fill(0);
        oi.inode.iBlock.set(target);
      } else {
        const block = await allocMetaCluster(ctx, h, oi, defaultGoal(ctx.vol, oi.ino), false);
        await extentInsert(treeEnv(ctx, h, oi), { fileBlock: fileBlock(0), fsBlock: fsBlock(block), countBlocks: 1, unwritten: false });
        // The target is file data: it goes straight to the device (before the metadata commit).
        const data = new Uint8Array(bs);
        data.set(target);
        await ctx.vol.device.write(block * bs, data);
      }
      ctx.icache.markDirty(oi);
      await addEntry(ctx, h, dir, name, oi.ino, FT_SYMLINK);
      return oi;
    });
  });
}

/** The node types mknod(2) makes besides regular files: FIFOs, sockets, character and block devices. */
const SPECIAL_TYPES = new Set([S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK]);

/**
 * mknod(2): a FIFO, socket, character or block device `name` in `dir` (`mode` carries the type;
 * S_IFREG makes an empty regular file, as mknod(2) does). `rdev` (Linux's dev_t, as in
 * stat.rdev) is stored for devices only. Such inodes hold no blocks and no extent tree.
 */
export async function mknod(ctx: NameiCtx, dir: OpenInode, name: Uint8Array, mode: number, rdev: number, cred: Credentials, at: ErrAt): Promise<OpenInode> {
  const type = mode & S_IFMT;
  if (type === S_IFREG || type === 0) return create(ctx, dir, name, mode & 0o7777, cred, { exclusive: true }, at);
  if (!SPECIAL_TYPES.has(type)) throw fail('EINVAL', at);
  return ctx.ns.withLock(async () => {
    checkParent(dir, name, at);
    if (await lookup(ctx, dir, name)) throw fail('EEXIST', at);
    return ctx.jbd.withHandle(creditsFor('create', ctx.vol), async (h) => {
      const oi = await createInode(ctx, h, dir, type | (mode & 0o7777), cred);
      if (type === S_IFCHR || type === S_IFBLK) encodeDeviceNumber(oi.inode.iBlock, rdev);
      ctx.icache.markDirty(oi);
      await addEntry(ctx, h, dir, name, oi.ino, fileTypeOf(type));
      return oi;
    });
  });
}

export async function link(ctx: NameiCtx, src: OpenInode, dir: OpenInode, name: Uint8Array, at: ErrAt): Promise<void> {
  await ctx.ns.withLock(async () => {
    // The new name is looked up first (ENOENT, ENOTDIR, EEXIST), then the source judged (EPERM), as the kernel does.
    checkParent(dir, name, at);
    if (await lookup(ctx, dir, name)) throw fail('EEXIST', at);
    if (isDirMode(src.inode.mode)) throw fail('EPERM', at);
    if (src.inode.linksCount === 0) throw fail('ENOENT', at);
    if (src.inode.linksCount >= EXT4_LINK_MAX) throw fail('EMLINK', at);
    await ctx.jbd.withHandle(creditsFor('link', ctx.vol), async (h) => {
      await addEntry(ctx, h, dir, name, src.ino, fileTypeOf(src.inode.mode));
      src.inode.linksCount++;
      src.inode.ctime = nowTs();
      ctx.icache.markDirty(src);
    });
  });
}

export async function unlink(ctx: NameiCtx, dir: OpenInode, name: Uint8Array, at: ErrAt): Promise<void> {
  await ctx.ns.withLock(async () => {
    if (!isDirMode(dir.inode.mode)) throw fail('ENOTDIR', at);
    const oi = await lookup(ctx, dir, name);
    if (!oi) throw fail('ENOENT', at);
    if (isDirMode(oi.inode.mode)) throw fail('EISDIR', at);
    await ctx.jbd.withHandle(creditsFor('unlink', ctx.vol, heldClusters(ctx, oi)), async (h) => {
      await removeEntry(ctx, h, dir, name);
      await dropLink(ctx, h, oi);
    });
  });
}

export async function rmdir(ctx: NameiCtx, dir: OpenInode, name: Uint8Array, at: ErrAt): Promise<void> {
  await ctx.ns.withLock(async () => {
    if (!isDirMode(dir.inode.mode)) throw fail('ENOTDIR', at);
    if (isDot(name)) throw fail('EINVAL', at);
    if (isDotDot(name)) throw fail('ENOTEMPTY', at);
    const oi = await lookup(ctx, dir, name);
    if (!oi) throw fail('ENOENT', at);
    if (!isDirMode(oi.inode.mode)) throw fail('ENOTDIR', at);
    if (oi.ino === ROOT_INO) throw fail('EBUSY', at);
    await ctx.jbd.withHandle(creditsFor('rmdir', ctx.vol, heldClusters(ctx, oi)), async (h) => {
      if (!(await dirIsEmpty(dirEnv(ctx, h, oi)))) throw fail('ENOTEMPTY', at);
      await removeEntry(ctx, h, dir, name);
      decDirLinks(dir);
      ctx.icache.markDirty(dir);
      await dropLink(ctx, h, oi, true);
      ctx.names.forgetDir(oi.ino);
    });
  });
}

/** Is `dir` inside `ancestor`'s subtree (or `ancestor` itself)? Walks '..' up to the root. */
async function isInside(ctx: NameiCtx, dir: OpenInode, ancestor: OpenInode): Promise<boolean> {
  for (let d = dir, hops = 0; ; hops++) {
    if (d.ino === ancestor.ino) return true;
    if (d.ino === ROOT_INO) return false;
    if (hops > 65536) throw corrupt('dir-cycle', 'directory parent chain does not reach the root', { inode: d.ino });
    const up = await lookupName(dirSourceOf(ctx, d), DOTDOT);
    if (!up) throw corrupt('dir-no-dotdot', "directory has no '..'", { inode: d.ino });
    d = await ctx.icache.get(up.ino);
  }
}

export async function rename(ctx: NameiCtx, srcDir: OpenInode, srcName: Uint8Array, dstDir: OpenInode, dstName: Uint8Array, flags: RenameFlags, at: ErrAt): Promise<void> {
  if (flags.noReplace && flags.exchange) throw fail('EINVAL', at);
  await ctx.ns.withLock(async () => {
    if (!isDirMode(srcDir.inode.mode) || !isDirMode(dstDir.inode.mode)) throw fail('ENOTDIR', at);
    if (isDotOrDotDotName(srcName) || isDotOrDotDotName(dstName)) throw fail(isDot(srcName) || isDot(dstName) ? 'EINVAL' : 'EBUSY', at);
    checkParent(dstDir, dstName, at);
    const moving = await lookup(ctx, srcDir, srcName);
    if (!moving) throw fail('ENOENT', at);
    const target = await lookup(ctx, dstDir, dstName);
    if (flags.noReplace && target) throw fail('EEXIST', at);
    if (flags.exchange) {
      if (!target) throw fail('ENOENT', at);
      if (target.ino === moving.ino) return;
      await exchange(ctx, srcDir, srcName, moving, dstDir, dstName, target, at);
      return;
    }
    if (target && target.ino === moving.ino) return;
    const movingDir = isDirMode(moving.inode.mode);
    // A directory may not move into its own subtree.
    if (movingDir && await isInside(ctx, dstDir, moving)) throw fail('EINVAL', at);
    // ...nor may a directory be replaced by an entry inside it (the kernel's rename trap).
    if (target && isDirMode(target.inode.mode) && await isInside(ctx, srcDir, target)) throw fail('ENOTEMPTY', at);
    if (target) {
      if (movingDir && !isDirMode(target.inode.mode)) throw fail('ENOTDIR', at);
      if (!movingDir && isDirMode(target.inode.mode)) throw fail('EISDIR', at);
    }
    await ctx.jbd.withHandle(creditsFor('rename', ctx.vol, target ? heldClusters(ctx, target) : 0), async (h) => {
      if (target && isDirMode(target.inode.mode) && !(await dirIsEmpty(dirEnv(ctx, h, target)))) throw fail('ENOTEMPTY', at);
      if (target) {
        await replaceEntry(ctx, h, dstDir, dstName, moving);
        if (isDirMode(target.inode.mode)) { decDirLinks(dstDir); ctx.icache.markDirty(dstDir); ctx.names.forgetDir(target.ino); }
        await dropLink(ctx, h, target, isDirMode(target.inode.mode));
      } else {
        await addEntry(ctx, h, dstDir, dstName, moving.ino, fileTypeOf(moving.inode.mode));
      }
      // Re-resolve the source directory's entry: dstDir may be the same directory.
      await removeEntry(ctx, h, srcDir, srcName);
      if (movingDir && srcDir.ino !== dstDir.ino) {
        await setParent(ctx, h, moving, dstDir);
        decDirLinks(srcDir);
        // The new parent gains the moved directory's '..' (a replaced directory's was dropped above).
        incDirLinks(dstDir);
        ctx.icache.markDirty(srcDir);
        ctx.icache.markDirty(dstDir);
      }
      moving.inode.ctime = nowTs();
      ctx.icache.markDirty(moving);
    });
  });
}

async function setParent(ctx: NameiCtx, h: Handle, dir: OpenInode, parent: OpenInode): Promise<void> {
  await dir.data.withWrite(() => dirSetParent(dirEnv(ctx, h, dir), parent.ino));
  ctx.names.put(dir.ino, DOTDOT, parent.ino, { onlyIfCached: true });
}

/** RENAME_EXCHANGE: each name then names the other's inode; directories swap parents. */
async function exchange(ctx: NameiCtx, aDir: OpenInode, aName: Uint8Array, a: OpenInode, bDir: OpenInode, bName: Uint8Array, b: OpenInode, at: ErrAt): Promise<void> {
  const aIsDir = isDirMode(a.inode.mode);
  const bIsDir = isDirMode(b.inode.mode);
  if (aDir.ino !== bDir.ino) {
    if (aIsDir && await isInside(ctx, bDir, a)) throw fail('EINVAL', at);
    if (bIsDir && await isInside(ctx, aDir, b)) throw fail('EINVAL', at);
  }
  await ctx.jbd.withHandle(creditsFor('rename', ctx.vol), async (h) => {
    await replaceEntry(ctx, h, aDir, aName, b);
    await replaceEntry(ctx, h, bDir, bName, a);
    if (aDir.ino !== bDir.ino) {
      if (aIsDir) await setParent(ctx, h, a, bDir);
      if (bIsDir) await setParent(ctx, h, b, aDir);
      if (aIsDir && !bIsDir) { decDirLinks(aDir); incDirLinks(bDir); }
      if (bIsDir && !aIsDir) { decDirLinks(bDir); incDirLinks(aDir); }
      ctx.icache.markDirty(aDir);
      ctx.icache.markDirty(bDir);
    }
    const t = nowTs();
    a.inode.ctime = t; b.inode.ctime = { ...t };
    ctx.icache.markDirty(a);
    ctx.icache.markDirty(b);
  });
}

function isDotOrDotDotName(n: Uint8Array): boolean { return isDot(n) || isDotDot(n); }

/** Frees an orphan whose last handle closed. */
export async function releaseOrphan(ctx: NameiCtx, oi: OpenInode): Promise<void> {
  await ctx.ns.withLock(() => ctx.jbd.withHandle(creditsFor('evict', ctx.vol, heldClusters(ctx, oi)), async (h) => {
    await ctx.orphans.remove(ctx, h, oi);
    await evictInode(ctx, h, oi);
  }));
}


/**
 * Releases one orphan a crash left, in handle `h`, as a kernel mount does: an unlinked inode is
 * freed, a linked one loses its blocks past i_size (journal.md §2.7). An orphan entry naming an
 * unused inode is EUCLEAN.
 */
async function releaseCrashOrphan(ctx: NameiCtx, h: Handle, oi: OpenInode): Promise<void> {
  const { geo } = ctx.vol;
  if (oi.inode.mode === 0) throw corrupt('orphan-unused-inode', `orphan entry names unused inode ${oi.ino}`, { inode: oi.ino });
  if (oi.inode.linksCount === 0) {
    await evictInode(ctx, h, oi);
  } else {
    const firstGone = Math.ceil(oi.inode.sizeBytes / geo.blockSize);
    if (oi.inode.flags & EXTENTS_FL && firstGone <= MAX_FILE_BLOCK) {
      await oi.data.withWrite(() => removeBlocks(fileMap(ctx, oi), h, firstGone, MAX_FILE_BLOCK));
    }
    oi.inode.dtime = 0;
    ctx.icache.markDirty(oi);
  }
}

/**
 * Releases the orphans a crash left on the superblock's list (s_last_orphan, next = i_dtime)
 * and in the orphan file, after journal replay (journal.md §2.7): see releaseCrashOrphan.
 * Returns how many were released. A list leaving the valid inode range or looping, or a damaged
 * orphan file, is EUCLEAN/EBADMSG (the orphan file is checked whole before anything changes).
 */
export async function releaseOrphanList(ctx: NameiCtx): Promise<number> {
  const { sb, geo } = ctx.vol;
  const orphanFile = sb.featureCompat & COMPAT.orphan_file && sb.featureRoCompat & RO_COMPAT.orphan_present
    ? await readOrphanFile(ctx.vol) : [];
  let count = 0;
  const seen = new Set<number>();
  while (sb.lastOrphan !== 0) {
    const ino = sb.lastOrphan;
    if (ino < sb.firstIno || ino > geo.inodesCount || seen.has(ino)) {
      throw corrupt('orphan-list', `orphan list reaches inode ${ino} (outside ${sb.firstIno}..${geo.inodesCount} or a loop)`, { inode: ino });
    }
    seen.add(ino);
    const oi = await ctx.icache.get(ino);
    await ctx.ns.withLock(() => ctx.jbd.withHandle(creditsFor('evict', ctx.vol, heldClusters(ctx, oi)), async (h) => {
      sb.lastOrphan = oi.inode.dtime;
      await ctx.jbd.writeSuperblock(h);
      await releaseCrashOrphan(ctx, h, oi);
    }));
    count++;
  }
  for (const block of orphanFile) {
    for (const { slot, ino } of block.entries) {
      if (seen.has(ino)) throw corrupt('orphan-file-entry', `inode ${ino} is both on the orphan list and in the orphan file`, { inode: ino });
      seen.add(ino);
      const oi = await ctx.icache.get(ino);
      await ctx.ns.withLock(() => ctx.jbd.withHandle(creditsFor('evict', ctx.vol, heldClusters(ctx, oi)) + 1, async (h) => {
        await clearOrphanSlot(ctx.vol, h, block.fsBlock, slot);
        if (!orphanTestHooks.slotsOnly) await releaseCrashOrphan(ctx, h, oi);
      }));
      count++;
    }
  }
  if (sb.featureRoCompat & RO_COMPAT.orphan_present) {
    await ctx.jbd.withHandle(1, async (h) => {
      sb.featureRoCompat &= ~RO_COMPAT.orphan_present;
      await ctx.jbd.writeSuperblock(h);
    });
  }
  return count;
}
