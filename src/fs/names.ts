// Rules for directory-entry names as bytes: length, '.' and '..', map keys, and the file type
// an entry records for a mode.
import { posixError } from '../errors/ext4-error.ts';
import { S_IFMT, S_IFDIR, S_IFREG, S_IFLNK } from '../format/inode.ts';
import { FT_DIR, FT_REG, FT_SYMLINK, FT_CHRDEV, FT_BLKDEV, FT_FIFO, FT_SOCK } from '../format/dirent.ts';

/** The root directory's inode. */
export const ROOT_INO = 2;

/** Longest name a directory entry holds (bytes). */
export const NAME_MAX_BYTES = 255;

export function isDot(name: Uint8Array): boolean { return name.length === 1 && name[0] === 0x2e; }
export function isDotDot(name: Uint8Array): boolean { return name.length === 2 && name[0] === 0x2e && name[1] === 0x2e; }
export function isDotOrDotDot(name: Uint8Array): boolean { return isDot(name) || isDotDot(name); }

/** A Map key holding name bytes exactly (one char per byte). */
export function nameKey(b: Uint8Array): string {
  let k = '';
  for (let i = 0; i < b.length; i++) k += String.fromCharCode(b[i]!);
  return k;
}

/** A name a new entry may take: 1..255 bytes, not '.' or '..'. */
export function checkNewName(nameBytes: Uint8Array, syscall: string, path: string): void {
  if (nameBytes.length > NAME_MAX_BYTES) throw posixError('ENAMETOOLONG', syscall, path);
  if (nameBytes.length === 0 || isDotOrDotDot(nameBytes)) throw posixError('EEXIST', syscall, path);
}

export function fileTypeOf(mode: number): number {
  switch (mode & S_IFMT) {
    case S_IFREG: return FT_REG;
    case S_IFDIR: return FT_DIR;
    case S_IFLNK: return FT_SYMLINK;
    case 0x2000: return FT_CHRDEV;
    case 0x6000: return FT_BLKDEV;
    case 0x1000: return FT_FIFO;
    case 0xc000: return FT_SOCK;
    default: return 0;
  }
}
