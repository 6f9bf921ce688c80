// The orphan list and the orphan file. The list: inodes with no links that are still open. They are chained through i_dtime
// from the superblock's s_last_orphan (both updated through the handle), and freed on last close.
import type { Handle } from '../journal/transaction.ts';
import { badChecksum, corrupt } from '../errors/ext4-error.ts';
import { isRegMode, type Inode } from '../format/inode.ts';
import { u32, setU32, setU64 } from '../util/bytes.ts';
import { crc32cUpdate } from '../util/crc.ts';
import { InodeData } from './readpage.ts';
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

// The orphan file (COMPAT orphan_file, journal.md §2.7): the kernel records inodes that are
// unlinked while open, or being truncated, in slots of this file instead of the list; after a
// crash RO_COMPAT orphan_present says some slots may be in use. Each block holds (bs − 8) / 4
// le32 inode numbers (0 = free), then le32 magic and le32 crc32c(inode seed, le64 physical
// block, slots). ext4kit itself never adds entries; a writable open releases them.
export const ORPHAN_BLOCK_MAGIC = 0x0b10ca04;

/** Test hook: a deliberately broken release that only clears orphan-file slots (the checks must catch it). */
export const orphanTestHooks = { slotsOnly: false };

/** Used slots of one orphan-file block. */
export interface OrphanFileBlock {
  fsBlock: number;
  entries: Array<{ slot: number; ino: number }>;
}

function orphanBlockCsum(seed: number, fsBlock: number, bytes: Uint8Array): number {
  const where = new Uint8Array(8);
  setU64(where, 0, fsBlock);
  return crc32cUpdate(crc32cUpdate(seed, where), bytes, 0, bytes.length - 8);
}

/** The orphan file's inode (validated: in range, a regular file of whole blocks). */
async function orphanFileInode(vol: Volume): Promise<{ ino: number; inode: Inode }> {
  const { sb, geo } = vol;
  const ino = sb.orphanFileInum;
  if (ino < 1 || ino > geo.inodesCount) throw corrupt('orphan-file-inode', `orphan file inode ${ino} outside 1..${geo.inodesCount}`);
  const inode = await vol.readInode(ino);
  if (!isRegMode(inode.mode) || inode.linksCount === 0 || inode.sizeBytes % geo.blockSize !== 0 || inode.sizeBytes / geo.blockSize > geo.blocksCount) {
    throw corrupt('orphan-file-inode', `orphan file inode ${ino} is not a regular file of whole blocks (mode 0${inode.mode.toString(8)}, size ${inode.sizeBytes})`, { inode: ino });
  }
  return { ino, inode };
}

/**
 * Reads and checks every block of the orphan file (mapped, no holes, magic, checksum, inode
 * numbers in range, no inode twice) and returns the used slots. Reads only; EUCLEAN or EBADMSG
 * naming the block on damage.
 */
export async function readOrphanFile(vol: Volume): Promise<OrphanFileBlock[]> {
  const { sb, geo } = vol;
  const { ino, inode } = await orphanFileInode(vol);
  const countBlocks = inode.sizeBytes / geo.blockSize;
  const maps = await new InodeData(vol, ino, inode).mappings();
  const seed = vol.inodeSeed(ino, inode);
  const out: OrphanFileBlock[] = [];
  const seen = new Set<number>();
  let next = 0;
  for (const m of maps) {
    if (m.fileBlock !== next || m.unwritten) throw corrupt('orphan-file-hole', `orphan file has a hole or unwritten extent at block ${next}`, { inode: ino });
    for (let k = 0; k < m.countBlocks && next < countBlocks; k++, next++) {
      const fsBlock = m.fsBlock + k;
      const bytes = await vol.readBlock(fsBlock);
      const where = { inode: ino, block: fsBlock };
      if (u32(bytes, geo.blockSize - 8) !== ORPHAN_BLOCK_MAGIC) throw corrupt('orphan-file-magic', `orphan file block ${next} has no orphan block magic`, where);
      if (seed !== undefined && u32(bytes, geo.blockSize - 4) !== orphanBlockCsum(seed, fsBlock, bytes)) throw badChecksum('orphan file block', where);
      const entries: OrphanFileBlock['entries'] = [];
      for (let slot = 0; slot < (geo.blockSize - 8) / 4; slot++) {
        const e = u32(bytes, slot * 4);
        if (e === 0) continue;
        if (e < sb.firstIno || e > geo.inodesCount || seen.has(e)) {
          throw corrupt('orphan-file-entry', `orphan file slot ${slot} of block ${next} names inode ${e} (outside ${sb.firstIno}..${geo.inodesCount} or twice)`, where);
        }
        seen.add(e);
        entries.push({ slot, ino: e });
      }
      if (entries.length) out.push({ fsBlock, entries });
    }
  }
  if (next !== countBlocks) throw corrupt('orphan-file-hole', `orphan file maps ${next} of its ${countBlocks} blocks`, { inode: ino });
  return out;
}

/** Frees one slot of the orphan file through the handle (the block's checksum is set at commit). */
export async function clearOrphanSlot(vol: Volume, h: Handle, fsBlock: number, slot: number): Promise<void> {
  const { ino, inode } = await orphanFileInode(vol);
  const seed = vol.inodeSeed(ino, inode);
  const bytes = await h.getWrite(fsBlock);
  setU32(bytes, slot * 4, 0);
  if (seed !== undefined) h.onCommit(fsBlock, (b) => setU32(b, b.length - 4, orphanBlockCsum(seed, fsBlock, b)));
}
