// Codecs of the xattr requests (SETXATTR, GETXATTR, LISTXATTR, REMOVEXATTR) and STATFS. Pure.
import { Reader, Writer } from './wire.ts';

export interface SetxattrIn { nameBytes: Uint8Array; value: Uint8Array; flags: number }
/** fuse_setxattr_in is 8 bytes unless SETXATTR_EXT was negotiated (we do not). */
export function decodeSetxattrIn(body: Uint8Array): SetxattrIn {
  const r = new Reader(body);
  const size = r.u32(), flags = r.u32();
  const nameBytes = r.cstr();
  return { nameBytes, value: r.take(size), flags };
}

export interface GetxattrIn { sizeBytes: number; nameBytes: Uint8Array }
export function decodeGetxattrIn(body: Uint8Array, withName: boolean): GetxattrIn {
  const r = new Reader(body);
  const sizeBytes = r.u32();
  r.skip(4);
  return { sizeBytes, nameBytes: withName ? r.cstr() : new Uint8Array(0) };
}

/** The reply to a size probe (size 0): how many bytes the value needs. */
export function encodeXattrSizeOut(sizeBytes: number): Uint8Array {
  return new Writer(8).u32(sizeBytes).u32(0).bytes;
}

export interface StatfsOut {
  blocks: number; bfree: number; bavail: number; files: number; ffree: number;
  bsize: number; namelen: number; frsize: number;
}
export function encodeStatfsOut(s: StatfsOut): Uint8Array {
  return new Writer(80).u64(s.blocks).u64(s.bfree).u64(s.bavail).u64(s.files).u64(s.ffree)
    .u32(s.bsize).u32(s.namelen).u32(s.frsize).bytes;
}

/**
 * What ext4's xattr handlers answer for a name before looking anything up: the user, trusted
 * and security namespaces need a non-empty suffix (EINVAL), the POSIX ACL names are whole
 * names, anything else is not supported (EOPNOTSUPP). undefined: the name is acceptable.
 */
export function xattrNameError(name: string): 'EINVAL' | 'EOPNOTSUPP' | undefined {
  for (const prefix of ['user.', 'trusted.', 'security.']) {
    if (name.startsWith(prefix)) return name.length === prefix.length ? 'EINVAL' : undefined;
  }
  if (name === 'system.posix_acl_access' || name === 'system.posix_acl_default') return undefined;
  return 'EOPNOTSUPP';
}
