// The one error type of ext4kit: a stable errno-style `code` plus private detail.
// Corrupt structures are EUCLEAN, checksum failures EBADMSG, unsupported features ENOTSUP,
// device failures EIO; user errors use the usual POSIX codes. Bugs are assertions, not these.

export type Ext4ErrorCode =
  | 'EUCLEAN' | 'EBADMSG' | 'ENOTSUP' | 'EIO'
  | 'ENOENT' | 'EEXIST' | 'ENOTDIR' | 'EISDIR' | 'ENOTEMPTY' | 'EINVAL' | 'ENAMETOOLONG'
  | 'ELOOP' | 'EBADF' | 'EROFS' | 'ENOSPC' | 'EDQUOT' | 'EXDEV' | 'EMLINK' | 'EFBIG'
  | 'ENODATA' | 'ERANGE' | 'EPERM' | 'EACCES' | 'E2BIG' | 'EBUSY' | 'ENODEV';

/** Where in the filesystem a problem was found. */
export interface Ext4ErrorWhere {
  inode?: number;
  block?: number;
  group?: number;
  path?: string;
}

export const ERRNO: Readonly<Record<Ext4ErrorCode, number>> = {
  EPERM: 1, ENOENT: 2, EIO: 5, E2BIG: 7, EBADF: 9, EACCES: 13, EBUSY: 16, EEXIST: 17, EXDEV: 18, ENODEV: 19,
  ENOTDIR: 20, EISDIR: 21, EINVAL: 22, EFBIG: 27, ENOSPC: 28, EROFS: 30, EMLINK: 31,
  ERANGE: 34, ENAMETOOLONG: 36, ENOTEMPTY: 39, ELOOP: 40, ENODATA: 61, EBADMSG: 74,
  ENOTSUP: 95, EUCLEAN: 117, EDQUOT: 122,
};

const DESCRIPTION: Readonly<Record<Ext4ErrorCode, string>> = {
  EPERM: 'operation not permitted', ENOENT: 'no such file or directory', EIO: 'i/o error',
  E2BIG: 'argument list too long', EBADF: 'bad file descriptor', EACCES: 'permission denied',
  EBUSY: 'resource busy or locked', ENODEV: 'no such device',
  EEXIST: 'file already exists', EXDEV: 'cross-device link not permitted',
  ENOTDIR: 'not a directory', EISDIR: 'illegal operation on a directory',
  EINVAL: 'invalid argument', EFBIG: 'file too large', ENOSPC: 'no space left on device',
  EROFS: 'read-only file system', EMLINK: 'too many links', ERANGE: 'result too large',
  ENAMETOOLONG: 'name too long', ENOTEMPTY: 'directory not empty',
  ELOOP: 'too many symbolic links encountered', ENODATA: 'no data available',
  EBADMSG: 'bad message', ENOTSUP: 'operation not supported', EUCLEAN: 'structure needs cleaning',
  EDQUOT: 'disk quota exceeded',
};

export class Ext4Error extends Error {
  override readonly name = 'Ext4Error';
  readonly code: Ext4ErrorCode;
  readonly errno: number;
  /** Machine-readable kind for corrupt/unsupported errors, e.g. 'extent-magic'. */
  readonly detail: string | undefined;
  readonly where: Ext4ErrorWhere;
  syscall: string | undefined;
  path: string | undefined;

  constructor(code: Ext4ErrorCode, message: string, opts: { detail?: string; where?: Ext4ErrorWhere; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.errno = -ERRNO[code];
    this.detail = opts.detail;
    this.where = opts.where ?? {};
    this.syscall = undefined;
    this.path = undefined;
  }
}

function describeWhere(where: Ext4ErrorWhere | undefined): string {
  if (!where) return '';
  const parts: string[] = [];
  if (where.inode !== undefined) parts.push(`inode ${where.inode}`);
  if (where.block !== undefined) parts.push(`block ${where.block}`);
  if (where.group !== undefined) parts.push(`group ${where.group}`);
  if (where.path !== undefined) parts.push(`path '${where.path}'`);
  return parts.length ? ` (${parts.join(', ')})` : '';
}

/** A structure on disk violates a format rule. `detail` names the rule ('extent-magic'). */
export function corrupt(detail: string, message: string, where?: Ext4ErrorWhere): Ext4Error {
  return new Ext4Error('EUCLEAN', `${message}${describeWhere(where)}`, { detail, where });
}

/** A metadata checksum does not match. `structure` names what was checked. */
export function badChecksum(structure: string, where?: Ext4ErrorWhere): Ext4Error {
  return new Ext4Error('EBADMSG', `${structure} checksum mismatch${describeWhere(where)}`, {
    detail: `${structure}-checksum`, where,
  });
}

export function unsupported(detail: string, message: string, where?: Ext4ErrorWhere): Ext4Error {
  return new Ext4Error('ENOTSUP', `${message}${describeWhere(where)}`, { detail, where });
}

export function ioError(message: string, cause?: unknown): Ext4Error {
  return new Ext4Error('EIO', message, { detail: 'device', cause });
}

/** A POSIX-style user error shaped like Node's: `ENOENT: no such file or directory, open '/a'`. */
export function posixError(code: Ext4ErrorCode, syscall: string, path?: string, path2?: string): Ext4Error {
  let msg = `${code}: ${DESCRIPTION[code]}, ${syscall}`;
  if (path !== undefined) msg += ` '${path}'`;
  if (path2 !== undefined) msg += ` -> '${path2}'`;
  const e = new Ext4Error(code, msg, { where: path === undefined ? {} : { path } });
  e.syscall = syscall;
  e.path = path;
  return e;
}

export function isExt4Error(e: unknown): e is Ext4Error {
  return e instanceof Ext4Error;
}

/** Internal invariant violated: a bug in ext4kit, never a property of the image. */
export function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new Error(`ext4kit internal assertion failed: ${message}`);
}
