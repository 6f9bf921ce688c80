// Resumable directory listing (FUSE READDIR, telldir/seekdir): every entry gets a cookie that
// depends on its name only (a hash, as ext4's htree cookies are), so a listing continued from a
// cookie after inserts and deletes returns every entry that stayed exactly once.
import { dirHash, DX_HASH_HALF_MD4_UNSIGNED } from '../format/dir-hash.ts';
import type { RawDirEntry } from '../dir/dir-read.ts';
import { isDot, isDotDot, nameKey } from './names.ts';

export interface CookieEntry extends RawDirEntry {
  /** Resume after this entry by passing its cookie. */
  cookie: number;
}

export interface DirPage {
  entries: CookieEntry[];
  /** No entries after the last one returned. */
  done: boolean;
}

/** Cookies: 0 starts a listing; '.' is 1, '..' 2, other names 3 + 52 bits of their hash. */
export function entryCookie(name: Uint8Array, seed: readonly number[]): number {
  if (isDot(name)) return 1;
  if (isDotDot(name)) return 2;
  const h = dirHash(name, DX_HASH_HALF_MD4_UNSIGNED, seed);
  return 3 + (h.hash >>> 1) * 2 ** 21 + (h.minorHash >>> 11);
}

/**
 * The entries after `cookie`, at most `maxEntries` of them, in cookie order. Entries whose
 * cookies collide are never split across pages (a page may then hold a few more than asked),
 * as the kernel returns a whole hash-collision chain at once.
 */
export function pageAfter(all: readonly RawDirEntry[], cookie: number, maxEntries: number, seed: readonly number[]): DirPage {
  const keyed = all.map((e) => ({ ...e, cookie: entryCookie(e.name, seed) })).filter((e) => e.cookie > cookie);
  keyed.sort((a, b) => a.cookie - b.cookie || (nameKey(a.name) < nameKey(b.name) ? -1 : 1));
  let n = Math.min(keyed.length, Math.max(1, maxEntries));
  while (n < keyed.length && keyed[n]!.cookie === keyed[n - 1]!.cookie) n++;
  return { entries: keyed.slice(0, n), done: n === keyed.length };
}
