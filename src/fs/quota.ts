// Quota: usage loaded from the quota files at mount, kept in memory, written back to the quota
// files (a new block mapped as a directory's would be) at every commit.
import { Ext4Error, assert, posixError } from '../errors/ext4-error.ts';
import { decodeQuotaFile, encodeQuotaFile, type QuotaUsage as QuotaFileUsage } from '../format/quota.ts';
import { fileBlock } from '../util/brand.ts';
import type { Handle } from '../journal/transaction.ts';
import { MemoryQuota } from '../alloc/space-accounting.ts';
import { extentLookup } from '../mapping/extent-tree.ts';
import type { InodeCache } from './inode-cache.ts';
import type { BallocCtx } from './balloc.ts';
import { mapNewMetaBlock, treeEnv } from './inode-env.ts';
import { InodeData } from './readpage.ts';
import type { Volume } from './volume.ts';

export async function loadQuota(vol: Volume): Promise<MemoryQuota> {
  const quota = new MemoryQuota();
  const { sb } = vol;
  for (const [kind, ino] of [['user', sb.usrQuotaInum], ['group', sb.grpQuotaInum]] as const) {
    if (!ino) continue;
    const inode = await vol.readInode(ino);
    const bytes = await new InodeData(vol, ino, inode).read(0, Math.min(inode.sizeBytes, 64 << 20));
    for (const [id, u] of decodeQuotaFile(bytes, kind, { inode: ino })) {
      quota.load(kind, id, u.spaceBytes, u.inodes, { softBytes: u.softBytes ?? 0, hardBytes: u.hardBytes ?? 0 });
    }
  }
  return quota;
}

/** Writes the in-memory usage into the quota files (through the handle). */
export async function writeQuotaFiles(ctx: BallocCtx & { readonly icache: InodeCache }, h: Handle, quota: MemoryQuota): Promise<void> {
  const { sb, geo } = ctx.vol;
  const bs = geo.blockSize;
  for (const [kind, ino] of [['user', sb.usrQuotaInum], ['group', sb.grpQuotaInum]] as const) {
    if (!ino) continue;
    const usage = new Map<number, QuotaFileUsage>();
    for (const e of quota.entries(kind)) {
      usage.set(e.id, { spaceBytes: e.usedBytes, inodes: e.inodes, softBytes: e.limits.softBytes, hardBytes: e.limits.hardBytes });
    }
    const bytes = encodeQuotaFile(kind, usage);
    const oi = await ctx.icache.get(ino);
    const blocks = Math.ceil(bytes.length / bs);
    // Quota files are not charged to any quota.
    for (let b = Math.ceil(oi.inode.sizeBytes / bs); b < blocks; b++) await mapNewMetaBlock(ctx, h, oi, b, { mustSucceed: true, charge: false });
    const env = treeEnv(ctx, h, oi);
    for (let b = 0; b < blocks; b++) {
      const e = await extentLookup(env, fileBlock(b));
      assert(e, `quota file block ${b} unmapped`);
      const target = await h.getWrite(e.fsBlock + (b - e.fileBlock));
      target.fill(0);
      target.set(bytes.subarray(b * bs, Math.min(bytes.length, (b + 1) * bs)));
    }
    oi.inode.sizeBytes = Math.max(oi.inode.sizeBytes, bytes.length);
    ctx.icache.markDirty(oi);
  }
}

/** Sets block limits for one user or group (kept in the quota files at the next commit). */
export function setQuotaLimits(quota: MemoryQuota | undefined, kind: 'user' | 'group', id: number, limits: { softBytes: number; hardBytes: number }): void {
  if (!quota) throw new Ext4Error('ENOTSUP', 'ENOTSUP: the filesystem has no quota feature');
  if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) throw posixError('EINVAL', 'quotactl');
  quota.setLimits(kind, id, limits);
}
