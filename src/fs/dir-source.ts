// What directory reading (dir/) needs for one directory inode: its mappings, blocks and inline
// bytes, plus the superblock's hashing parameters.
import { type DirSource } from '../dir/dir-read.ts';
import { COMPAT, INCOMPAT } from '../format/features.ts';
import { type Inode } from '../format/inode.ts';
import { InodeData } from './readpage.ts';
import { inlineDataXattr } from './inline-data.ts';
import type { Volume } from './volume.ts';

export function dirSource(vol: Volume, ino: number, inode: Inode, extra: Pick<DirSource, 'isDirty' | 'verified'> = {}): DirSource {
  const data = new InodeData(vol, ino, inode);
  return {
    ino, inode, blockSize: vol.geo.blockSize, filetype: vol.filetype, metadataCsum: vol.geo.metadataCsum,
    inodesCount: vol.geo.inodesCount, inodeSeed: vol.inodeSeed(ino, inode),
    dirIndex: (vol.sb.featureCompat & COMPAT.dir_index) !== 0, largeDir: vol.has('incompat', INCOMPAT.large_dir),
    hashSeed: vol.sb.hashSeed, sbFlags: vol.sb.flags,
    mappings: () => data.mappings(), readBlock: (b) => vol.readBlock(b),
    inlineData: async () => inlineDataXattr(vol, ino, inode),
    ...extra,
  };
}
