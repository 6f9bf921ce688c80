// FUSE kernel protocol constants: opcodes, INIT capability bits, setattr masks, open flags and
// Linux errno numbers (facts from the public ABI header include/uapi/linux/fuse.h, 7.x).

/** Protocol version we speak; the reply takes min(kernel minor, ours). */
export const FUSE_KERNEL_VERSION = 7;
// 7.33: HANDLE_KILLPRIV_V2 and the KILL_SUIDGID request flags (no struct we use changed size).
export const FUSE_KERNEL_MINOR_VERSION = 33;

export const OP = {
  LOOKUP: 1, FORGET: 2, GETATTR: 3, SETATTR: 4, READLINK: 5, SYMLINK: 6, MKNOD: 8, MKDIR: 9,
  UNLINK: 10, RMDIR: 11, RENAME: 12, LINK: 13, OPEN: 14, READ: 15, WRITE: 16, STATFS: 17,
  RELEASE: 18, FSYNC: 20, SETXATTR: 21, GETXATTR: 22, LISTXATTR: 23, REMOVEXATTR: 24, FLUSH: 25,
  INIT: 26, OPENDIR: 27, READDIR: 28, RELEASEDIR: 29, FSYNCDIR: 30, GETLK: 31, SETLK: 32,
  SETLKW: 33, ACCESS: 34, CREATE: 35, INTERRUPT: 36, BMAP: 37, DESTROY: 38, IOCTL: 39, POLL: 40,
  NOTIFY_REPLY: 41, BATCH_FORGET: 42, FALLOCATE: 43, READDIRPLUS: 44, RENAME2: 45, LSEEK: 46,
  COPY_FILE_RANGE: 47, SETUPMAPPING: 48, REMOVEMAPPING: 49, SYNCFS: 50, TMPFILE: 51, STATX: 52,
} as const;
export type Opcode = (typeof OP)[keyof typeof OP];

const OP_NAMES: Record<number, string> = Object.fromEntries(Object.entries(OP).map(([k, v]) => [v, k]));
export const opName = (op: number): string => OP_NAMES[op] ?? `OP_${op}`;

/** fuse_init_in/out flags. */
export const INIT = {
  ASYNC_READ: 1 << 0, POSIX_LOCKS: 1 << 1, ATOMIC_O_TRUNC: 1 << 3, EXPORT_SUPPORT: 1 << 4,
  BIG_WRITES: 1 << 5, DONT_MASK: 1 << 6, DO_READDIRPLUS: 1 << 13, READDIRPLUS_AUTO: 1 << 14,
  ASYNC_DIO: 1 << 15, WRITEBACK_CACHE: 1 << 16, PARALLEL_DIROPS: 1 << 18,
  HANDLE_KILLPRIV: 1 << 19, POSIX_ACL: 1 << 20, MAX_PAGES: 1 << 22, CACHE_SYMLINKS: 1 << 23,
  HANDLE_KILLPRIV_V2: 1 << 28,
} as const;

/** fuse_setattr_in.valid bits. */
export const FATTR = {
  MODE: 1 << 0, UID: 1 << 1, GID: 1 << 2, SIZE: 1 << 3, ATIME: 1 << 4, MTIME: 1 << 5, FH: 1 << 6,
  ATIME_NOW: 1 << 7, MTIME_NOW: 1 << 8, LOCKOWNER: 1 << 9, CTIME: 1 << 10, KILL_SUIDGID: 1 << 11,
} as const;

/** fuse_write_in.write_flags: the writer lacks CAP_FSETID, so S_ISUID/S_ISGID must go (KILLPRIV_V2). */
export const WRITE_KILL_SUIDGID = 1 << 2;

/** fuse_open_out.open_flags. */
export const FOPEN = { DIRECT_IO: 1 << 0, KEEP_CACHE: 1 << 1, NONSEEKABLE: 1 << 2, CACHE_DIR: 1 << 3 } as const;

/** fuse_getattr_in.getattr_flags: fh is valid. */
export const GETATTR_FH = 1 << 0;

/** RENAME2 flags (renameat2). */
export const RENAME_NOREPLACE = 1 << 0;
export const RENAME_EXCHANGE = 1 << 1;
export const RENAME_WHITEOUT = 1 << 2;

/** fallocate(2) modes that reach a FUSE server. */
export const FALLOC = { KEEP_SIZE: 0x01, PUNCH_HOLE: 0x02, ZERO_RANGE: 0x10 } as const;

export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

/** setxattr flags. */
export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;

/** Linux errno numbers used in replies (the reply carries -errno). */
export const ERRNO = {
  EPERM: 1, ENOENT: 2, EIO: 5, ENXIO: 6, E2BIG: 7, EBADF: 9, EAGAIN: 11, ENOMEM: 12, EACCES: 13,
  EBUSY: 16, EEXIST: 17, EXDEV: 18, ENODEV: 19, ENOTDIR: 20, EISDIR: 21, EINVAL: 22, EFBIG: 27,
  ENOSPC: 28, EROFS: 30, EMLINK: 31, ERANGE: 34, ENAMETOOLONG: 36, ENOSYS: 38, ENOTEMPTY: 39,
  ELOOP: 40, ENODATA: 61, EPROTO: 71, EBADMSG: 74, EILSEQ: 84, EOPNOTSUPP: 95, ENOTSUP: 95, ESTALE: 116,
  EUCLEAN: 117, EDQUOT: 122,
} as const;
export type ErrnoName = keyof typeof ERRNO;

/** Size of fuse_in_header and fuse_out_header. */
export const IN_HEADER_BYTES = 40;
export const OUT_HEADER_BYTES = 16;
/** The largest WRITE payload we negotiate, and the read buffer that holds it with its headers. */
export const MAX_WRITE_BYTES = 1 << 20;
export const MAX_PAGES = 256;
export const READ_BUFFER_BYTES = MAX_WRITE_BYTES + 4096;
