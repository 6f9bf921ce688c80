// The differential runner's view of a filesystem: the calls a random sequence makes, each
// resolving or rejecting with an error whose `code` is an errno name. Two implementations:
// ext4kit's API (ext4kit-backend.ts) and node:fs on a directory (nodefs-backend.ts), which is
// how the kernel's ext4 is reached on a loop mount, and later a FUSE mount of ext4kit.

/** The stat fields compared (times only where an operation sets them). */
export interface StatLike {
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  blocks: number;
  mtimeNs: bigint;
}

/** statfs(2) counts, in `bsize` units. */
export interface StatFsLike { bsize: number; blocks: number; bfree: number; bavail: number; files: number; ffree: number }

export interface BackendHandle {
  /** `position` null: at the handle's position (O_APPEND: at the end), moving it. */
  write(data: Uint8Array, position: number | null): Promise<number>;
  read(lenBytes: number, position: number | null): Promise<Uint8Array>;
  truncate(lenBytes: number): Promise<void>;
  stat(): Promise<StatLike>;
  close(): Promise<void>;
}

/** setxattr flags as in setxattr(2): 1 = XATTR_CREATE, 2 = XATTR_REPLACE. */
export type XattrFlags = 0 | 1 | 2;

export interface Backend {
  readonly name: string;
  writeFile(path: string, data: Uint8Array, flag: string, mode: number): Promise<void>;
  appendFile(path: string, data: Uint8Array): Promise<void>;
  readFile(path: string): Promise<Uint8Array>;
  open(path: string, flags: string, mode: number): Promise<BackendHandle>;
  truncate(path: string, lenBytes: number): Promise<void>;
  /** fallocate(2) with Linux mode bits on the file opened read-write. */
  fallocate(path: string, mode: number, offset: number, lenBytes: number): Promise<void>;
  mkdir(path: string, mode: number): Promise<void>;
  rmdir(path: string): Promise<void>;
  unlink(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  link(existing: string, path: string): Promise<void>;
  symlink(target: string, path: string): Promise<void>;
  readlink(path: string): Promise<string>;
  chmod(path: string, mode: number): Promise<void>;
  chown(path: string, uid: number, gid: number): Promise<void>;
  lchown(path: string, uid: number, gid: number): Promise<void>;
  /** Both times set to `sec` seconds (whole seconds: both sides then see the same timespec). */
  utimes(path: string, sec: number): Promise<void>;
  /** The xattr calls do not follow a final symlink (lsetxattr and friends), as ext4kit's API. */
  setxattr(path: string, name: string, value: Uint8Array, flags: XattrFlags): Promise<void>;
  getxattr(path: string, name: string): Promise<Uint8Array>;
  listxattr(path: string): Promise<string[]>;
  removexattr(path: string, name: string): Promise<void>;
  readdir(path: string): Promise<string[]>;
  stat(path: string): Promise<StatLike>;
  lstat(path: string): Promise<StatLike>;
  statfs(): Promise<StatFsLike>;
  /** Flushes everything (before a final comparison). */
  sync(): Promise<void>;
}

/** The outcome of one call: its (JSON-comparable) result or its errno name. */
export type Outcome = { ok: true; value?: unknown } | { ok: false; code: string };

export async function outcomeOf(p: Promise<unknown>): Promise<Outcome> {
  try {
    const value = await p;
    return value === undefined ? { ok: true } : { ok: true, value };
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)) return { ok: false, code };
    throw e; // a bug (TypeError and the like) is never an outcome
  }
}
