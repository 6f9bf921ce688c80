// Extended attributes of an inode, for every mount: one reader (the in-inode area, then the
// xattr block, with values held in EA inodes read through the inode's data, every check on the
// way), and setting/removing (in-inode area first, the rest in one xattr block).
import { corrupt, Ext4Error, posixError } from '../errors/ext4-error.ts';
import {
  decodeInodeXattrs, decodeXattrBlock, encodeInodeXattrs, encodeXattrBlock, splitXattrName, type XattrEntry,
} from '../format/xattr.ts';
import { INLINE_DATA_FL, type Inode } from '../format/inode.ts';
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
  await ctx.ns.withLock(async () => {
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
      if (value.length > ctx.vol.geo.blockSize - 64) throw posixError('E2BIG', at.syscall, at.path);
      const entry = { nameIndex, name: suffix, fullName: name, value, valueInum: 0, valueSize: value.length, hash: 0 };
      if (i >= 0) entries[i] = entry; else entries.push(entry);
    }
    await ctx.jbd.withHandle(creditsFor('xattr', ctx.vol), (h) => storeXattrs(ctx, h, oi, entries, at));
  });
}

/** Places entries in the inode body first, the rest in one xattr block. */
async function storeXattrs(ctx: XattrCtx, h: Handle, oi: OpenInode, entries: XattrEntry[], at: { syscall: string; path?: string }): Promise<void> {
  const { geo } = ctx.vol;
  const inBody: XattrEntry[] = [];
  const inBlock: XattrEntry[] = [];
  const hasBody = geo.inodeSize > 128 && oi.inode.extraIsize > 0;
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
  if (hasBody) encodeInodeXattrs(inBody, oi.inode.raw, geo.inodeSize, oi.inode.extraIsize);
  const csum = geo.metadataCsum ? { csumSeed: geo.csumSeed } : {};
  if (inBlock.length === 0) {
    if (oi.inode.fileAcl) await releaseXattrBlock(ctx, h, oi);
  } else {
    let blk = oi.inode.fileAcl;
    if (blk) {
      const cur = decodeXattrBlock(await h.read(blk), { blockNo: blk });
      if (cur.refcount > 1) { await releaseXattrBlock(ctx, h, oi); blk = 0; }
    }
    if (!blk) blk = await allocMetaCluster(ctx, h, oi, oi.goal || defaultGoal(ctx.vol, oi.ino), false);
    const bytes = await h.getWrite(blk);
    bytes.fill(0);
    try {
      encodeXattrBlock(inBlock, bytes, { blockNo: blk, ...csum });
    } catch (e) {
      if (e instanceof Ext4Error && e.code === 'ENOSPC') throw posixError('ENOSPC', at.syscall, at.path);
      throw e;
    }
    oi.inode.fileAcl = blk;
  }
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
