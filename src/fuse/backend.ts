// The inode-level operations a FUSE session needs from a filesystem. Node IDs are inode
// numbers (the session maps the kernel's root, node 1, to the root inode). Failures are
// Ext4Error with a POSIX code; the session turns them into errno replies.
import type { NodeAttr } from './attr.ts';
import type { StatfsOut } from './xattr.ts';

/** Who asks: the caller's credentials from the request header. */
export interface Caller { uid: number; gid: number; pid: number }

export interface DirListing {
  ino: number;
  nameBytes: Uint8Array;
  /** DT_* type. */
  type: number;
  /** Where a listing resumes after this entry (stable across inserts and deletes). */
  cookie: number;
}

/** SETATTR changes, each present only when the kernel asked for it. */
export interface AttrChanges {
  mode?: number;
  uid?: number;
  gid?: number;
  sizeBytes?: number;
  /** 'now' for UTIME_NOW. */
  atime?: { sec: number; nsec: number } | 'now';
  mtime?: { sec: number; nsec: number } | 'now';
  ctime?: { sec: number; nsec: number };
  /** An open handle the change came through (ftruncate). */
  fh?: number;
}

export interface FallocateFlags { keepSize: boolean; punchHole: boolean; zeroRange: boolean }

export interface FuseBackend {
  readonly rootIno: number;
  readonly readOnly: boolean;
  /** Inode generation for entry replies. */
  lookup(parentIno: number, nameBytes: Uint8Array): Promise<{ attr: NodeAttr; generation: number } | undefined>;
  /** The kernel dropped `count` lookups of `ino`. */
  forget(ino: number, count: number): Promise<void>;
  // getattr, setattr, release and listxattr may answer without a promise (the inode was in
  // memory and nothing had to wait): the session then replies without an await.
  getattr(ino: number): NodeAttr | Promise<NodeAttr>;
  setattr(ino: number, changes: AttrChanges, caller: Caller): NodeAttr | Promise<NodeAttr>;
  readlink(ino: number): Promise<Uint8Array>;

  opendir(ino: number): Promise<number>;
  /**
   * About `maxEntries` entries after `cookie` (0: from the start, '.' and '..' included), in
   * cookie order; a run of entries with equal cookies is never split across calls.
   */
  readdir(fh: number, cookie: number, maxEntries: number): Promise<readonly DirListing[]>;
  releasedir(fh: number): Promise<void>;
  /** READDIRPLUS: the lookup reply of one listed entry (counted like LOOKUP). */
  lookupListed(dirIno: number, entry: DirListing): Promise<{ attr: NodeAttr; generation: number }>;

  open(ino: number, flags: number, caller: Caller): Promise<number>;
  create(parentIno: number, nameBytes: Uint8Array, mode: number, flags: number, caller: Caller): Promise<{ fh: number; attr: NodeAttr; generation: number }>;
  read(fh: number, offset: number, lenBytes: number): Promise<Uint8Array>;
  write(fh: number, offset: number, data: Uint8Array, caller: Caller): Promise<number>;
  flush(fh: number): Promise<void>;
  release(fh: number): undefined | Promise<void>;
  fsync(ino: number, fh: number | undefined): Promise<void>;
  fallocate(fh: number, offset: number, lenBytes: number, flags: FallocateFlags, caller: Caller): Promise<void>;
  /** SEEK_DATA / SEEK_HOLE. */
  lseek(fh: number, offset: number, whence: number): Promise<number>;

  mkdir(parentIno: number, nameBytes: Uint8Array, mode: number, caller: Caller): Promise<{ attr: NodeAttr; generation: number }>;
  mknod(parentIno: number, nameBytes: Uint8Array, mode: number, rdev: number, caller: Caller): Promise<{ attr: NodeAttr; generation: number }>;
  symlink(parentIno: number, nameBytes: Uint8Array, target: Uint8Array, caller: Caller): Promise<{ attr: NodeAttr; generation: number }>;
  link(ino: number, newParentIno: number, nameBytes: Uint8Array): Promise<{ attr: NodeAttr; generation: number }>;
  unlink(parentIno: number, nameBytes: Uint8Array): Promise<void>;
  rmdir(parentIno: number, nameBytes: Uint8Array): Promise<void>;
  rename(parentIno: number, nameBytes: Uint8Array, newParentIno: number, newNameBytes: Uint8Array, flags: number): Promise<void>;

  statfs(): Promise<StatfsOut>;
  getxattr(ino: number, name: string): Promise<Uint8Array>;
  listxattr(ino: number): readonly string[] | Promise<readonly string[]>;
  setxattr(ino: number, name: string, value: Uint8Array, flags: number): Promise<void>;
  removexattr(ino: number, name: string): Promise<void>;

  /** Writes everything back (the session calls it at unmount, before close). */
  close(): Promise<void>;
}
