// The system.data xattr that holds the tail of an inline-data inode's bytes.
import { decodeInodeXattrs } from '../format/xattr.ts';
import { type Inode } from '../format/inode.ts';
import type { Volume } from './volume.ts';

/** The system.data value of an inline-data inode (empty when absent). */
export function inlineDataXattr(vol: Volume, ino: number, inode: Inode): Uint8Array {
  if (vol.geo.inodeSize <= 128 || inode.extraIsize === 0) return new Uint8Array(0);
  const e = decodeInodeXattrs(inode.raw, vol.geo.inodeSize, inode.extraIsize, { inode: ino })
    .find((x) => x.nameIndex === 7 && x.name === 'data');
  return e ? e.value : new Uint8Array(0);
}
