// The public shapes of ext4kit's fs/promises-like API. Kept apart from the implementation so
// that the CLI, FUSE and tests depend on a small, stable contract.
import type { JournalReport } from '../journal/replay/report.ts';

// `Symbol.asyncDispose` (explicit resource management) appears in these types. Declared here as
// @types/node does, so a consumer whose lib lacks esnext.disposable still type-checks.
declare global {
  interface SymbolConstructor {
    readonly asyncDispose: unique symbol;
  }
}

/** Like node:fs Stats, plus nanosecond times as bigints. */
export interface Ext4Stats {
  dev: number;
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  size: number;
  blksize: number;
  /** 512-byte units, as st_blocks. */
  blocks: number;
  atimeMs: number;
  mtimeMs: number;
  ctimeMs: number;
  birthtimeMs: number;
  atime: Date;
  mtime: Date;
  ctime: Date;
  birthtime: Date;
  /** Exact times in nanoseconds since the epoch. */
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  birthtimeNs: bigint;
  /** ext4 inode flags (i_flags). */
  flags: number;
  generation: number;
  isFile(): boolean;
  isDirectory(): boolean;
  isSymbolicLink(): boolean;
  isBlockDevice(): boolean;
  isCharacterDevice(): boolean;
  isFIFO(): boolean;
  isSocket(): boolean;
}

/** stat(path, { bigint: true }): like node:fs BigIntStats. */
export interface Ext4BigIntStats extends Omit<Ext4Stats, 'dev' | 'ino' | 'mode' | 'nlink' | 'uid' | 'gid' | 'rdev' | 'size' | 'blksize' | 'blocks' | 'atimeMs' | 'mtimeMs' | 'ctimeMs' | 'birthtimeMs' | 'flags' | 'generation'> {
  dev: bigint;
  ino: bigint;
  mode: bigint;
  nlink: bigint;
  uid: bigint;
  gid: bigint;
  rdev: bigint;
  size: bigint;
  blksize: bigint;
  blocks: bigint;
  atimeMs: bigint;
  mtimeMs: bigint;
  ctimeMs: bigint;
  birthtimeMs: bigint;
  flags: bigint;
  generation: bigint;
}

/** One page of a resumable directory listing (readdirFrom). */
export interface Ext4DirPage {
  entries: Array<{ name: string; nameBytes: Uint8Array; ino: number; fileType: number; cookie: number }>;
  /** The listing has no entries after these. */
  done: boolean;
}

export type ReadFileOptions = 'utf8' | 'utf-8' | { encoding?: 'utf8' | 'utf-8' | null; signal?: AbortSignal };

export interface Ext4Dirent {
  name: string;
  /** The raw on-disk name bytes (names need not be UTF-8). */
  nameBytes: Uint8Array;
  /** Directory that holds the entry (the path given to readdir). */
  parentPath: string;
  ino: number;
  isFile(): boolean;
  isDirectory(): boolean;
  isSymbolicLink(): boolean;
  isBlockDevice(): boolean;
  isCharacterDevice(): boolean;
  isFIFO(): boolean;
  isSocket(): boolean;
}

export interface Ext4StatFs {
  type: number;
  bsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
}

/** Superblock summary, like `dumpe2fs -h`. */
export interface Ext4Info {
  label: string;
  uuid: string;
  state: 'clean' | 'not clean' | 'with errors';
  features: string[];
  blockSize: number;
  clusterSize: number;
  blocksCount: number;
  freeBlocks: number;
  reservedBlocks: number;
  inodesCount: number;
  freeInodes: number;
  inodeSize: number;
  groupCount: number;
  blocksPerGroup: number;
  clustersPerGroup: number;
  inodesPerGroup: number;
  firstDataBlock: number;
  reservedGdtBlocks: number;
  flexBgSize: number;
  descSize: number;
  hashSeed: string;
  defaultHashVersion: string;
  checksumType: string | undefined;
  checksumSeed: number | undefined;
  journalInode: number;
  orphanFileInode: number;
  created: Date;
  lastWritten: Date;
  lastMounted: Date | undefined;
  mountCount: number;
  /** Set when the image was opened read-only because of what it contains. */
  forcedReadOnly: string | undefined;
  readOnly: boolean;
  /** The journal and what recovery did at open (applied 'in-memory' on a read-only open). */
  journal: JournalReport | undefined;
}

export interface ReadResult {
  bytesRead: number;
  buffer: Uint8Array;
}

/** Like node:fs FileHandle. Writing methods fail with EBADF on a handle not opened for writing. */
export interface Ext4FileHandle {
  readonly fd: number;
  /** Reads into `buffer[offset..offset+length)` from `position` (default: the current position). */
  read(buffer: Uint8Array, offset?: number, length?: number, position?: number | null): Promise<ReadResult>;
  readFile(): Promise<Uint8Array>;
  /** Writes `data[offset..offset+length)` at `position` (default: the current position; appends with 'a'). */
  write(data: Uint8Array | string, offset?: number, length?: number, position?: number | null): Promise<WriteResult>;
  truncate(len?: number): Promise<void>;
  /** fsync(2): the file's data, then every pending metadata change. */
  sync(): Promise<void>;
  datasync(): Promise<void>;
  /** fallocate(2): mode flags KEEP_SIZE (1), PUNCH_HOLE (2), ZERO_RANGE (0x10), or an object. */
  fallocate(mode: FallocateMode | number, offset: number, length: number): Promise<void>;
  stat(): Promise<Ext4Stats>;
  close(): Promise<void>;
  /** `await using fh = await fs.open(…)` closes the handle at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void>;
}

export interface OpenOptions {
  /** Open without ever writing (forced for images that fail validation of ro_compat features). */
  readOnly?: boolean;
  /**
   * 'bypass': metadata is written in place without the journal's log, for building a fresh
   * image (mkfs -d); the image is marked not clean until close. Default: journaled writes
   * when the image has a journal.
   */
  journal?: 'bypass';
  /** Owner of files and directories created through this mount (default 0: root). */
  uid?: number;
  gid?: number;
  /** Bits cleared from the mode of created files and directories (default 0o022). */
  umask?: number;
}

export interface WriteResult {
  bytesWritten: number;
  buffer: Uint8Array;
}

/** fallocate(2) modes: default allocates; keepSize leaves i_size; punchHole frees; zeroRange zeroes. */
export interface FallocateMode {
  keepSize?: boolean;
  punchHole?: boolean;
  zeroRange?: boolean;
}
