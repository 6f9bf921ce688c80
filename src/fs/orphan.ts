// The orphan list: inodes with no links that are still open. They are chained through i_dtime
// from the superblock's s_last_orphan (both updated through the handle), and freed on last close.
import type { Handle } from '../journal/transaction.ts';
import type { InodeCache, OpenInode } from './inode-cache.ts';
import type { Jbd2 } from './ext4-jbd2.ts';
import type { Volume } from './volume.ts';

export interface OrphanCtx {
  readonly vol: Volume;
  readonly icache: InodeCache;
  readonly jbd: Jbd2;
}

export class Orphans {
  private readonly set = new Set<number>();
  has(ino: number): boolean { return this.set.has(ino); }
  get inos(): Iterable<number> { return this.set; }

  async add(ctx: OrphanCtx, h: Handle, oi: OpenInode): Promise<void> {
    const { sb } = ctx.vol;
    oi.inode.dtime = sb.lastOrphan;
    sb.lastOrphan = oi.ino;
    this.set.add(oi.ino);
    ctx.icache.markDirty(oi);
    await ctx.jbd.writeSuperblock(h);
  }

  async remove(ctx: OrphanCtx, h: Handle, oi: OpenInode): Promise<void> {
    const { sb } = ctx.vol;
    if (sb.lastOrphan === oi.ino) {
      sb.lastOrphan = oi.inode.dtime;
      await ctx.jbd.writeSuperblock(h);
    } else {
      for (const ino of this.set) {
        const o = await ctx.icache.get(ino);
        if (o.inode.dtime === oi.ino) { o.inode.dtime = oi.inode.dtime; ctx.icache.markDirty(o); break; }
      }
    }
    this.set.delete(oi.ino);
    oi.inode.dtime = 0;
  }
}
