// Extended attributes of an inode: the in-inode area, then the xattr block, with values held
// in EA inodes (ea_inode feature) read through the inode's data.
import { corrupt, Ext4Error, posixError } from '../errors/ext4-error.ts';
import { encodeUtf8 } from '../util/bytes.ts';
import { decodeInodeXattrs, decodeXattrBlock, type XattrEntry } from '../format/xattr.ts';
import { isDirMode, isRegMode, type Inode } from '../format/inode.ts';
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
