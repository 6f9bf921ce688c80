// Extended attributes of an inode: the in-inode area, then the xattr block, with values held
// in EA inodes (ea_inode feature) read through the inode's data.
import { corrupt, Ext4Error } from '../errors/ext4-error.ts';
import { decodeInodeXattrs, decodeXattrBlock, type XattrEntry } from '../format/xattr.ts';
import { type Inode } from '../format/inode.ts';
import type { Volume } from './volume.ts';

/** Largest value ext4kit reads from an EA inode (the kernel's limit is 64 KiB for most names). */
const MAX_EA_INODE_VALUE = 1 << 24;

export async function readXattrs(vol: Volume, ino: number, inode: Inode, readInodeData: (ino: number, inode: Inode, maxBytes: number) => Promise<Uint8Array>): Promise<XattrEntry[]> {
  const { geo } = vol;
  const out: XattrEntry[] = [];
  if (geo.inodeSize > 128 && inode.extraIsize > 0) {
    out.push(...decodeInodeXattrs(inode.raw, geo.inodeSize, inode.extraIsize, { inode: ino }));
  }
  if (inode.fileAcl !== 0) {
    if (inode.fileAcl >= geo.blocksCount || inode.fileAcl <= geo.firstDataBlock) {
      throw corrupt('xattr-block-range', `xattr block ${inode.fileAcl} outside the filesystem`, { inode: ino });
    }
    const block = await vol.readBlock(inode.fileAcl);
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

/** The system.data value of an inline-data inode (empty when absent). */
export function inlineDataXattr(vol: Volume, ino: number, inode: Inode): Uint8Array {
  if (vol.geo.inodeSize <= 128 || inode.extraIsize === 0) return new Uint8Array(0);
  const e = decodeInodeXattrs(inode.raw, vol.geo.inodeSize, inode.extraIsize, { inode: ino })
    .find((x) => x.nameIndex === 7 && x.name === 'data');
  return e ? e.value : new Uint8Array(0);
}
