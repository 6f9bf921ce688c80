// Reading an inode's bytes from disk (what the page cache falls back to): mapped extents and block maps (holes and unwritten extents read as
// zeros), inline data, and symlink targets. Physically contiguous ranges become one device read.
import { corrupt, Ext4Error } from '../errors/ext4-error.ts';
import {
  EXTENTS_FL, INLINE_DATA_FL, S_IFDIR, S_IFMT, S_IFREG, isFastSymlink, fastSymlinkTarget, isSymlinkMode, type Inode,
} from '../format/inode.ts';
import { I_BLOCK_SIZE } from '../format/inode.ts';
import { iterateMappings, type Mapping } from '../mapping/read-map.ts';
import { readRootNode } from '../mapping/extent-node.ts';
import type { Volume } from './volume.ts';
import { inlineDataXattr } from './inline-data.ts';

/** A bound on the mappings kept per open file (a hostile tree cannot make this unbounded). */
const MAX_MAPPINGS = 1 << 22;
/** Largest single device read for file data. */
const MAX_READ_BYTES = 8 << 20;

/**
 * The extents of a file or directory whose whole extent tree is its root in i_block (most
 * files), decoded and checked as the tree walk does, synchronously and without the walk's
 * per-extent async steps and context. Undefined when the tree has index nodes, or when the
 * inode maps its blocks otherwise (or none): then `InodeData.mappings` walks.
 */
export function rootLeafMappings(vol: Volume, ino: number, inode: Inode): Mapping[] | undefined {
  const type = inode.mode & S_IFMT;
  if ((inode.flags & (EXTENTS_FL | INLINE_DATA_FL)) !== EXTENTS_FL || (type !== S_IFREG && type !== S_IFDIR)) return undefined;
  const { geo } = vol;
  const root = readRootNode({ blockSize: geo.blockSize, blocksCount: geo.blocksCount, ino, readBlock: vol.readBlock }, inode.iBlock);
  // A fresh decode: its extents are this file's own (Extent has Mapping's fields).
  return root.kind === 'leaf' ? root.extents : undefined;
}

export class InodeData {
  private maps: Mapping[] | undefined;
  constructor(private readonly vol: Volume, readonly ino: number, readonly inode: Inode) {}

  get sizeBytes(): number { return this.inode.sizeBytes; }

  async mappings(): Promise<readonly Mapping[]> {
    if (this.maps) return this.maps;
    const leaf = rootLeafMappings(this.vol, this.ino, this.inode);
    if (leaf) {
      this.maps = leaf;
      return leaf;
    }
    const out: Mapping[] = [];
    if (!(this.inode.flags & INLINE_DATA_FL) && !isFastSymlink(this.inode, { clusterSize: this.vol.geo.clusterSize })) {
      for await (const m of iterateMappings(this.inode, this.vol.mapContext(this.ino, this.inode))) {
        if (out.length >= MAX_MAPPINGS) throw corrupt('too-many-extents', `file has more than ${MAX_MAPPINGS} extents`, { inode: this.ino });
        out.push(m);
      }
    }
    this.maps = out;
    return out;
  }

  private inlineBytes(): Uint8Array {
    const extra = inlineDataXattr(this.vol, this.ino, this.inode);
    const all = new Uint8Array(I_BLOCK_SIZE + extra.length);
    all.set(this.inode.iBlock, 0);
    all.set(extra, I_BLOCK_SIZE);
    return all;
  }

  /** Bytes [pos, pos+len) clipped to the file size. */
  async read(pos: number, len: number): Promise<Uint8Array> {
    const size = this.inode.sizeBytes;
    if (pos >= size || len <= 0) return new Uint8Array(0);
    const end = Math.min(size, pos + len);
    if (end - pos > 0x7fffffff) throw new Ext4Error('EFBIG', `read of ${end - pos} bytes is too large`, { where: { inode: this.ino } });
    const out = new Uint8Array(end - pos);
    if (this.inode.flags & INLINE_DATA_FL) {
      const inline = this.inlineBytes();
      if (size > inline.length) throw corrupt('inline-data-size', `inline file of ${size} bytes holds only ${inline.length}`, { inode: this.ino });
      out.set(inline.subarray(pos, end));
      return out;
    }
    const bs = this.vol.geo.blockSize;
    const maps = await this.mappings();
    const firstBlock = Math.floor(pos / bs);
    const lastBlock = Math.floor((end - 1) / bs);
    // First mapping that ends after firstBlock.
    let lo = 0, hi = maps.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (maps[mid]!.fileBlock + maps[mid]!.countBlocks <= firstBlock) lo = mid + 1; else hi = mid; }
    for (let i = lo; i < maps.length && maps[i]!.fileBlock <= lastBlock; i++) {
      const m = maps[i]!;
      if (m.unwritten) continue;
      const from = Math.max(m.fileBlock, firstBlock);
      const to = Math.min(m.fileBlock + m.countBlocks - 1, lastBlock);
      for (let b = from; b <= to;) {
        const n = Math.min(to - b + 1, Math.max(1, Math.floor(MAX_READ_BYTES / bs)));
        const data = await this.vol.cache.readRange(m.fsBlock + (b - m.fileBlock), n);
        const dataStart = b * bs;
        const s = Math.max(pos, dataStart), e = Math.min(end, dataStart + n * bs);
        out.set(data.subarray(s - dataStart, e - dataStart), s - pos);
        b += n;
      }
    }
    return out;
  }

  async symlinkTarget(): Promise<Uint8Array> {
    const { inode, ino } = this;
    if (!isSymlinkMode(inode.mode)) throw new Ext4Error('EINVAL', 'not a symbolic link', { where: { inode: ino } });
    if (inode.sizeBytes === 0 || inode.sizeBytes > 65536) throw corrupt('symlink-length', `symlink length ${inode.sizeBytes} invalid`, { inode: ino });
    if (!(inode.flags & INLINE_DATA_FL) && isFastSymlink(inode, { clusterSize: this.vol.geo.clusterSize })) {
      return fastSymlinkTarget(inode, { inode: ino });
    }
    const bytes = await this.read(0, inode.sizeBytes);
    const nul = bytes.indexOf(0);
    return nul >= 0 ? bytes.subarray(0, nul) : bytes;
  }
}
