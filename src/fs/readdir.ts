// Resumable directory listing (FUSE READDIR, telldir/seekdir): every entry gets a cookie that
// depends on its name only (its directory hash, as ext4's htree cookies are), so a listing
// continued from a cookie after inserts and deletes returns every entry that stayed exactly
// once. An htree directory is read from the leaf holding the cookie's hash onwards, so a page
// costs the leaves it spans; a linear directory (one block when dir_index is on) is read whole.
import { dirHash, effectiveHashVersion, DX_HASH_HALF_MD4_UNSIGNED, DX_HASH_TEA, DX_HASH_TEA_UNSIGNED } from '../format/dir-hash.ts';
import { listDirectory, type DirSource, type RawDirEntry } from '../dir/dir-read.ts';
import { htreeLeavesFrom, isHashOrdered, readHtreeRoot, HASH_END, type HashedEntry } from '../dir/htree-order.ts';
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

const MINOR_SCALE = 2 ** 21;

/** Cookies: 0 starts a listing; '.' is 1, '..' 2, other names 3 + 31 bits of major and 21 of minor hash. */
function cookieOfHash(hash: number, minorHash: number): number {
  return 3 + (hash >>> 1) * MINOR_SCALE + (minorHash >>> 11);
}

/** The smallest major hash an entry after `cookie` can have. */
function majorHashOf(cookie: number): number {
  return cookie < 3 ? 0 : Math.floor((cookie - 3) / MINOR_SCALE) * 2;
}

/**
 * The hash algorithm of cookies for a linear directory: the one an htree root made from it
 * would get (the superblock's default), so cookies survive the directory growing an index.
 */
export function linearHashVersion(defHashVersion: number, sbFlags: number): number {
  const stored = defHashVersion > DX_HASH_TEA && defHashVersion <= DX_HASH_TEA_UNSIGNED ? defHashVersion - 3 : defHashVersion;
  return stored <= DX_HASH_TEA ? effectiveHashVersion(stored, sbFlags) : DX_HASH_HALF_MD4_UNSIGNED;
}

export function entryCookie(name: Uint8Array, seed: readonly number[], version = DX_HASH_HALF_MD4_UNSIGNED): number {
  if (isDot(name)) return 1;
  if (isDotDot(name)) return 2;
  const h = dirHash(name, version, seed);
  return cookieOfHash(h.hash, h.minorHash);
}

const byCookie = (a: CookieEntry, b: CookieEntry) => a.cookie - b.cookie || (nameKey(a.name) < nameKey(b.name) ? -1 : 1);

/** The first `maxEntries` of sorted `keyed` (at least one), never splitting a run of equal cookies. */
function takePage(keyed: readonly CookieEntry[], maxEntries: number): CookieEntry[] {
  let n = Math.min(keyed.length, Math.max(1, maxEntries));
  while (n < keyed.length && keyed[n]!.cookie === keyed[n - 1]!.cookie) n++;
  return keyed.slice(0, n);
}

/**
 * The entries after `cookie`, at most `maxEntries` of them, in cookie order. Entries whose
 * cookies collide are never split across pages (a page may then hold a few more than asked),
 * as the kernel returns a whole hash-collision chain at once.
 */
export function pageAfter(all: readonly RawDirEntry[], cookie: number, maxEntries: number, seed: readonly number[], version = DX_HASH_HALF_MD4_UNSIGNED): DirPage {
  const keyed = all.map((e) => ({ ...e, cookie: entryCookie(e.name, seed, version) })).filter((e) => e.cookie > cookie);
  keyed.sort(byCookie);
  const entries = takePage(keyed, maxEntries);
  return { entries, done: entries.length === keyed.length };
}

/**
 * Sorted listings of linear directories on a read-only mount, whose directories never change:
 * a listing in pages then reads and sorts a large unindexed directory (ext2 without dir_index)
 * once, and each page is a binary search. A few directories at a time.
 */
export class LinearListings {
  private readonly sorted = new Map<number, CookieEntry[]>();
  constructor(private readonly maxDirs = 8) {}

  async page(src: DirSource, cookie: number, maxEntries: number, version: number): Promise<DirPage> {
    let keyed = this.sorted.get(src.ino);
    if (!keyed) {
      keyed = [];
      for await (const e of listDirectory(src)) keyed.push({ ...e, cookie: entryCookie(e.name, src.hashSeed, version) });
      keyed.sort(byCookie);
      if (this.sorted.size >= this.maxDirs) this.sorted.delete(this.sorted.keys().next().value as number);
    } else this.sorted.delete(src.ino);
    this.sorted.set(src.ino, keyed);
    let lo = 0, hi = keyed.length;
    while (lo < hi) { const mid = (lo + hi) >>> 1; if (keyed[mid]!.cookie <= cookie) lo = mid + 1; else hi = mid; }
    const rest = keyed.slice(lo, lo + Math.max(1, maxEntries) + 64);
    const entries = takePage(rest, maxEntries);
    return { entries, done: lo + entries.length === keyed.length };
  }
}

/**
 * One page of `src` after `cookie` (see pageAfter); `linearVersion` from linearHashVersion.
 * `readOnly`: listings of linear directories kept sorted across pages (their blocks never change).
 */
export async function readdirFrom(src: DirSource, cookie: number, maxEntries: number, linearVersion: number, readOnly?: LinearListings): Promise<DirPage> {
  if (!isHashOrdered(src)) {
    if (readOnly) return readOnly.page(src, cookie, maxEntries, linearVersion);
    const all: RawDirEntry[] = [];
    for await (const e of listDirectory(src)) all.push(e);
    return pageAfter(all, cookie, maxEntries, src.hashSeed, linearVersion);
  }
  const out: CookieEntry[] = [];
  if (cookie < 2) {
    const { root } = await readHtreeRoot(src);
    if (cookie < 1) out.push({ ino: root.dotInode, name: new Uint8Array([0x2e]), fileType: root.dotFileType, cookie: 1 });
    out.push({ ino: root.dotdotInode, name: new Uint8Array([0x2e, 0x2e]), fileType: root.dotdotFileType, cookie: 2 });
    if (out.length >= maxEntries) return { entries: out.slice(0, Math.max(1, maxEntries)), done: false };
  }
  const pending: CookieEntry[] = [];
  const keep = (e: HashedEntry) => { const c = cookieOfHash(e.hash, e.minorHash); if (c > cookie) pending.push({ ino: e.ino, name: e.name, fileType: e.fileType, cookie: c }); };
  for await (const leaf of htreeLeavesFrom(src, majorHashOf(cookie))) {
    for (const e of leaf.entries) keep(e);
    if (leaf.seenBelow === HASH_END) break;
    pending.sort(byCookie);
    // Entries below the next leaf's first hash are final: none can come later.
    let ready = 0;
    while (ready < pending.length && majorHashOf(pending[ready]!.cookie) < leaf.seenBelow) ready++;
    const want = maxEntries - out.length;
    if (ready >= want && ready > 0) {
      const page = takePage(pending.slice(0, ready), want);
      return { entries: [...out, ...page], done: false };
    }
  }
  pending.sort(byCookie);
  const page = takePage(pending, maxEntries - out.length);
  return { entries: [...out, ...page], done: page.length === pending.length };
}
