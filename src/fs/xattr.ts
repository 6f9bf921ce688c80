// Extended attributes of an inode, for every mount: one reader (the in-inode area, then the
// xattr block, with values held in EA inodes read through the inode's data, every check on the
// way), and setting/removing (in-inode area first, the rest in one xattr block).
import { corrupt, Ext4Error, posixError } from '../errors/ext4-error.ts';
import {
  decodeInodeXattrs, decodeXattrBlock, encodeInodeXattrs, encodeXattrBlock, splitXattrName, type XattrEntry,
} from '../format/xattr.ts';
import { INLINE_DATA_FL, isDirMode, isRegMode, type Inode } from '../format/inode.ts';
import { encodeUtf8 } from '../util/bytes.ts';
import type { Handle } from '../journal/transaction.ts';
import type { Mutex } from '../util/rw-lock.ts';
import type { Volume } from './volume.ts';
import type { InodeCache, OpenInode } from './inode-cache.ts';
import { creditsFor, type Jbd2 } from './ext4-jbd2.ts';
import { allocMetaCluster, chargeClusters, defaultGoal, freeMetaCluster, type BallocCtx } from './balloc.ts';
import { nowTs } from './clock.ts';

/** Largest value ext4kit reads from an EA inode (the kernel's limit is 64 KiB for most names). */
const MAX_EA_INODE_VALUE = 1 << 24;

export async function readXattrs(vol: Volume, ino: number, inode: Inode,
  readInodeData: (ino: number, inode: Inode, maxBytes: number) => Promise<Uint8Array>,
  readBlock: (block: number) => Promise<Uint8Array> = vol.readBlock): Promise<XattrEntry[]> {
  const { geo } = vol;
  const out: XattrEntry[] = [];
  if (geo.inodeSize > 128 && inode.extraIsize > 0) {
    out.push(...decodeInodeXattrs(inode.raw, geo.inodeSize, inode.extraIsize, { inode: ino }));
  }
  if (inode.fileAcl !== 0) {
    if (inode.fileAcl >= geo.blocksCount || inode.fileAcl <= geo.firstDataBlock) {
      throw corrupt('xattr-block-range', `xattr block ${inode.fileAcl} outside the filesystem`, { inode: ino });
    }
    const block = await readBlock(inode.fileAcl);
    const decoded = decodeXattrBlock(block, {
      blockNo: inode.fileAcl, where: { inode: ino, block: inode.fileAcl },
      ...(geo.metadataCsum ? { csumSeed: geo.csumSeed } : {}),
    });
    out.push(...decoded.entries);
  }
  for (const e of out) {
    if (e.valueInum === 0) continue;
    if (e.valueSize > MAX_EA_INODE_VALUE) throw new Ext4Error('EFBIG', `xattr ${e.fullName} value of ${e.valueSize} bytes is too large`, { where: { inode: ino } });
    const eaInode = await vol.readInode(e.valueInum);
    const data = await readInodeData(e.valueInum, eaInode, e.valueSize);
    if (data.length < e.valueSize) throw corrupt('xattr-ea-inode-size', `EA inode ${e.valueInum} holds fewer bytes than its xattr`, { inode: ino });
    e.value = data.subarray(0, e.valueSize);
  }
  return out;
}

/** Largest value the kernel's VFS takes (XATTR_SIZE_MAX): bigger values fail with E2BIG before any lookup. */
export const XATTR_SIZE_MAX_BYTES = 65536;

/**
 * The checks the kernel makes on an xattr name before it looks the path up: an empty name or
 * one over 255 bytes is ERANGE.
 */
export function checkXattrNameArg(name: string, syscall: string, path: string): void {
  const lenBytes = encodeUtf8(name).length;
  if (lenBytes === 0 || lenBytes > 255) throw posixError('ERANGE', syscall, path);
}

/** Namespaces ext4 has a handler for; anything else is EOPNOTSUPP. */
const PREFIX_NAMESPACES = ['user.', 'trusted.', 'security.'];
const WHOLE_NAMES = ['system.posix_acl_access', 'system.posix_acl_default'];

/**
 * The checks on an xattr name once the inode is known, in the kernel's order: permission
 * (`user.*` only on regular files and directories: EPERM to write, ENODATA to read), then the
 * namespace (unknown: EOPNOTSUPP, errno 95, which Node calls ENOTSUP; a prefix with nothing after it: EINVAL).
 */
export function checkXattrName(name: string, mode: number, write: boolean, syscall: string, path: string): void {
  if (name.startsWith('user.') && !isRegMode(mode) && !isDirMode(mode)) throw posixError(write ? 'EPERM' : 'ENODATA', syscall, path);
  if (WHOLE_NAMES.includes(name)) return;
  const prefix = PREFIX_NAMESPACES.find((p) => name.startsWith(p));
  if (prefix === undefined) throw posixError('ENOTSUP', syscall, path);
  if (name.length === prefix.length) throw posixError('EINVAL', syscall, path);
}

export interface XattrCtx extends BallocCtx {
  readonly jbd: Jbd2;
  readonly icache: InodeCache;
  readonly ns: Mutex;
}

export interface XattrSetFlags { create?: boolean; replace?: boolean }

/**
 * Sets (`value`) or removes (undefined) one xattr of an inode. `entries` reads the inode's
 * current xattrs (the one reader, above).
 */
export async function setXattr(ctx: XattrCtx, oi: OpenInode, entriesOf: () => Promise<XattrEntry[]>, name: string,
  value: Uint8Array | undefined, flags: XattrSetFlags, at: { syscall: string; path?: string }): Promise<void> {
  const path = at.path ?? '';
  await ctx.ns.withLock(async () => {
    checkXattrName(name, oi.inode.mode, true, at.syscall, path);
    if (oi.inode.flags & INLINE_DATA_FL) throw new Ext4Error('ENOTSUP', 'ENOTSUP: xattrs on inline-data inodes are not supported yet');
    const { nameIndex, name: suffix } = splitXattrName(name);
    const entries = await entriesOf();
    if (entries.some((e) => e.valueInum !== 0)) throw new Ext4Error('ENOTSUP', 'ENOTSUP: xattrs stored in EA inodes are not supported yet');
    const i = entries.findIndex((e) => e.nameIndex === nameIndex && e.name === suffix);
    if (value === undefined) {
      if (i < 0) throw posixError('ENODATA', at.syscall, at.path);
      entries.splice(i, 1);
    } else {
      if (i >= 0 && flags.create) throw posixError('EEXIST', at.syscall, at.path);
      if (i < 0 && flags.replace) throw posixError('ENODATA', at.syscall, at.path);
      if (value.length > ctx.vol.geo.blockSize - 64) throw posixError('ENOSPC', at.syscall, at.path);
      const entry = { nameIndex, name: suffix, fullName: name, value, valueInum: 0, valueSize: value.length, hash: 0 };
      if (i >= 0) entries[i] = entry; else entries.push(entry);
    }
    await ctx.jbd.withHandle(creditsFor('xattr', ctx.vol), (h) => storeXattrs(ctx, h, oi, entries, at));
  });
}

/**
 * Places entries in the inode body first, the rest in one xattr block. Everything is encoded
 * into scratch buffers before anything changes, so a set that does not fit (ENOSPC) leaves the
 * inode, its block and the allocator as they were.
 */
async function storeXattrs(ctx: XattrCtx, h: Handle, oi: OpenInode, entries: XattrEntry[], at: { syscall: string; path?: string }): Promise<void> {
  const { geo } = ctx.vol;
  const csum = geo.metadataCsum ? { csumSeed: geo.csumSeed } : {};
  const hasBody = geo.inodeSize > 128 && oi.inode.extraIsize > 0;
  const inBody: XattrEntry[] = [];
  const inBlock: XattrEntry[] = [];
  for (const e of [...entries].sort((a, b) => a.value.length - b.value.length)) {
    if (hasBody) {
      try {
        encodeInodeXattrs([...inBody, e], oi.inode.raw.slice(), geo.inodeSize, oi.inode.extraIsize);
        inBody.push(e);
        continue;
      } catch (err) {
        if (!(err instanceof Ext4Error)) throw err;
      }
    }
    inBlock.push(e);
  }
  const raw = oi.inode.raw.slice();
  if (hasBody) encodeInodeXattrs(inBody, raw, geo.inodeSize, oi.inode.extraIsize);
  let blk = oi.inode.fileAcl;
  if (inBlock.length > 0) {
    // Does it fit? Encoded into scratch first (the block number only changes the checksum).
    try {
      encodeXattrBlock(inBlock, new Uint8Array(geo.blockSize), { blockNo: blk, ...csum });
    } catch (e) {
      if (e instanceof Ext4Error && e.code === 'ENOSPC') throw posixError('ENOSPC', 'setxattr', at.path);
      throw e;
    }
    const shared = blk !== 0 && decodeXattrBlock(await h.read(blk), { blockNo: blk }).refcount > 1;
    if (!blk || shared) blk = await allocMetaCluster(ctx, h, oi, oi.goal || defaultGoal(ctx.vol, oi.ino), false);
    if (shared) await releaseXattrBlock(ctx, h, oi);
    encodeXattrBlock(inBlock, await h.getWrite(blk), { blockNo: blk, ...csum });
  } else if (blk) {
    await releaseXattrBlock(ctx, h, oi);
    blk = 0;
  }
  oi.inode.raw.set(raw);
  oi.inode.fileAcl = blk;
  oi.inode.ctime = nowTs();
  ctx.icache.markDirty(oi);
}

async function releaseXattrBlock(ctx: XattrCtx, h: Handle, oi: OpenInode): Promise<void> {
  const blk = oi.inode.fileAcl;
  const cur = decodeXattrBlock(await h.read(blk), { blockNo: blk });
  if (cur.refcount > 1) {
    const bytes = await h.getWrite(blk);
    const { geo } = ctx.vol;
    encodeXattrBlock(cur.entries, bytes, { blockNo: blk, refcount: cur.refcount - 1, ...(geo.metadataCsum ? { csumSeed: geo.csumSeed } : {}) });
    chargeClusters(ctx.vol, oi, -1);
  } else {
    await freeMetaCluster(ctx, h, oi, blk);
  }
  oi.inode.fileAcl = 0;
}
