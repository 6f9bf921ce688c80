// Stats and Dirent objects shaped like node:fs's, built from decoded inodes.
import { S_IFMT, S_IFREG, S_IFDIR, S_IFLNK, S_IFBLK, S_IFCHR, S_IFIFO, S_IFSOCK, type Inode, type Timestamp } from '../format/inode.ts';
import { decodeDeviceNumber } from '../format/device-number.ts';
import type { Ext4BigIntStats, Ext4Dirent, Ext4Stats } from './types.ts';

const ns = (t: Timestamp | undefined): bigint => (t ? BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec) : 0n);
const ms = (t: Timestamp | undefined): number => (t ? t.sec * 1000 + t.nsec / 1e6 : 0);

/** Device number as Linux's dev_t, from either of ext4's two encodings in i_block. */
export function deviceNumber(inode: Inode): number { return decodeDeviceNumber(inode.iBlock); }

const typeTests = (mode: number) => ({
  isFile: () => (mode & S_IFMT) === S_IFREG,
  isDirectory: () => (mode & S_IFMT) === S_IFDIR,
  isSymbolicLink: () => (mode & S_IFMT) === S_IFLNK,
  isBlockDevice: () => (mode & S_IFMT) === S_IFBLK,
  isCharacterDevice: () => (mode & S_IFMT) === S_IFCHR,
  isFIFO: () => (mode & S_IFMT) === S_IFIFO,
  isSocket: () => (mode & S_IFMT) === S_IFSOCK,
});

export function makeStats(ino: number, inode: Inode, blockSize: number, extraBlocks512 = 0): Ext4Stats {
  const isDev = ((inode.mode & S_IFMT) === S_IFBLK || (inode.mode & S_IFMT) === S_IFCHR);
  return {
    dev: 0, ino, mode: inode.mode, nlink: inode.linksCount, uid: inode.uid, gid: inode.gid,
    rdev: isDev ? deviceNumber(inode) : 0, size: inode.sizeBytes, blksize: blockSize,
    blocks: inode.blocks512 + extraBlocks512,
    atimeMs: ms(inode.atime), mtimeMs: ms(inode.mtime), ctimeMs: ms(inode.ctime), birthtimeMs: ms(inode.crtime),
    atime: new Date(ms(inode.atime)), mtime: new Date(ms(inode.mtime)), ctime: new Date(ms(inode.ctime)),
    birthtime: new Date(ms(inode.crtime)),
    atimeNs: ns(inode.atime), mtimeNs: ns(inode.mtime), ctimeNs: ns(inode.ctime), birthtimeNs: ns(inode.crtime),
    flags: inode.flags, generation: inode.generation,
    ...typeTests(inode.mode),
  };
}

/** The same fields as bigints (milliseconds truncated, as Node's BigIntStats). */
export function makeBigIntStats(ino: number, inode: Inode, blockSize: number, extraBlocks512 = 0): Ext4BigIntStats {
  const s = makeStats(ino, inode, blockSize, extraBlocks512);
  const msOf = (t: bigint) => t / 1_000_000n;
  return {
    ...s,
    dev: BigInt(s.dev), ino: BigInt(s.ino), mode: BigInt(s.mode), nlink: BigInt(s.nlink), uid: BigInt(s.uid), gid: BigInt(s.gid),
    rdev: BigInt(s.rdev), size: BigInt(s.size), blksize: BigInt(s.blksize), blocks: BigInt(s.blocks),
    atimeMs: msOf(s.atimeNs), mtimeMs: msOf(s.mtimeNs), ctimeMs: msOf(s.ctimeNs), birthtimeMs: msOf(s.birthtimeNs),
    flags: BigInt(s.flags), generation: BigInt(s.generation),
  };
}

/** ext4 directory file types (FT_*) to S_IF* bits. */
const FT_MODE = [0, S_IFREG, S_IFDIR, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK, S_IFLNK];

export function makeDirent(name: string, nameBytes: Uint8Array, parentPath: string, ino: number, fileTypeOrMode: { fileType: number } | { mode: number }): Ext4Dirent {
  const mode = 'mode' in fileTypeOrMode ? fileTypeOrMode.mode : FT_MODE[fileTypeOrMode.fileType] ?? 0;
  return { name, nameBytes, parentPath, ino, ...typeTests(mode) };
}
