// Resumable directory listing (FUSE READDIR, telldir/seekdir): every entry gets a cookie that
// depends on its name only (its directory hash, as ext4's htree cookies are), so a listing
// continued from a cookie after inserts and deletes returns every entry that stayed exactly
// once. An htree directory is read from the leaf holding the cookie's hash onwards, so a page
// costs the leaves it spans; a linear directory (one block when dir_index is on) is read whole,
// and a large one is kept sorted across pages (LinearListings, LiveListings).
import { dirHash, effectiveHashVersion, DX_HASH_HALF_MD4_UNSIGNED, DX_HASH_TEA, DX_HASH_TEA_UNSIGNED } from '../format/dir-hash.ts';
import { listDirectory, type DirSource, type RawDirEntry } from '../dir/dir-read.ts';
import type { DirChange } from '../dir/dir-write.ts';
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

/** The page after `cookie` of a sorted listing: a binary search, then at most a page of entries. */
function pageOfSorted(keyed: readonly CookieEntry[], cookie: number, maxEntries: number): DirPage {
  let lo = 0, hi = keyed.length;
  while (lo < hi) { const mid = (lo + hi) >>> 1; if (keyed[mid]!.cookie <= cookie) lo = mid + 1; else hi = mid; }
  const rest = keyed.slice(lo, lo + Math.max(1, maxEntries) + 64);
  const entries = takePage(rest, maxEntries);
  return { entries, done: lo + entries.length === keyed.length };
}

async function sortedListing(src: DirSource, version: number): Promise<CookieEntry[]> {
  const keyed: CookieEntry[] = [];
  for await (const e of listDirectory(src)) keyed.push({ ...e, cookie: entryCookie(e.name, src.hashSeed, version) });
  keyed.sort(byCookie);
  return keyed;
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
      keyed = await sortedListing(src, version);
      if (this.sorted.size >= this.maxDirs) this.sorted.delete(this.sorted.keys().next().value as number);
    } else this.sorted.delete(src.ino);
    this.sorted.set(src.ino, keyed);
    return pageOfSorted(keyed, cookie, maxEntries);
  }
}

/** A linear directory's sorted listing, kept on its in-memory inode and changed with it. */
export interface LiveListing {
  readonly entries: CookieEntry[];
  readonly seed: readonly number[];
  readonly version: number;
}

/** Where a live listing is kept (the directory's in-memory inode). */
export interface ListingHolder { listing: LiveListing | undefined }

/** The index of the first entry not below (cookie, name). */
function lowerBound(entries: readonly CookieEntry[], cookie: number, key: string): number {
  let lo = 0, hi = entries.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const m = entries[mid]!;
    if (m.cookie < cookie || (m.cookie === cookie && nameKey(m.name) < key)) lo = mid + 1; else hi = mid;
  }
  return lo;
}

/**
 * Applies one change of the directory to its kept listing (a sorted insert or removal).
 * Returns false when the listing can no longer be trusted and must be dropped.
 */
export function applyDirChange(l: LiveListing, c: DirChange): boolean {
  if (c.kind === 'unknown') return false;
  if (c.kind === 'parent') {
    const dd = l.entries.find((e) => e.cookie === 2);
    if (!dd) return false;
    dd.ino = c.ino;
    return true;
  }
  const cookie = entryCookie(c.name, l.seed, l.version);
  const key = nameKey(c.name);
  const i = lowerBound(l.entries, cookie, key);
  const at = l.entries[i];
  const found = at !== undefined && at.cookie === cookie && nameKey(at.name) === key;
  if (c.kind === 'add') {
    if (found) return false;
    l.entries.splice(i, 0, { ino: c.ino, name: c.name.slice(), fileType: c.fileType, cookie });
    return true;
  }
  if (!found) return false;
  if (c.kind === 'remove') l.entries.splice(i, 1);
  else { at.ino = c.ino; at.fileType = c.fileType; }
  return true;
}

/**
 * Sorted listings of linear directories on a writable mount (large ones exist without
 * dir_index, or with the index flag cleared): made once when a listing needs a second page,
 * then kept on the directory's in-memory inode and changed with each insert and unlink
 * (applyDirChange, through DirWriteEnv.changed), so every page is a binary search instead of
 * a relisting of the whole directory. A few directories at a time.
 */
export class LiveListings {
  private readonly holders = new Set<ListingHolder>();
  /** At most `maxDirs` listings of `maxEntries` entries in all (about 150 bytes each). */
  constructor(private readonly maxDirs = 8, private readonly maxEntries = 262_144) {}

  async page(holder: ListingHolder, src: DirSource, cookie: number, maxEntries: number, version: number): Promise<DirPage> {
    let l = holder.listing;
    if (!l || l.version !== version) {
      const entries = await sortedListing(src, version);
      const page = pageOfSorted(entries, cookie, maxEntries);
      // A listing that fits in its first page is not worth keeping, one over the budget cannot be.
      if ((cookie === 0 && page.done) || entries.length > this.maxEntries) return page;
      l = { entries, seed: src.hashSeed, version };
      holder.listing = l;
    }
    this.holders.delete(holder);
    this.holders.add(holder);
    let total = 0;
    for (const h of this.holders) total += h.listing?.entries.length ?? 0;
    while (this.holders.size > this.maxDirs || total > this.maxEntries) {
      const oldest = this.holders.values().next().value as ListingHolder;
      if (oldest === holder) break;
      total -= oldest.listing?.entries.length ?? 0;
      oldest.listing = undefined;
      this.holders.delete(oldest);
    }
    return pageOfSorted(l.entries, cookie, maxEntries);
  }

  /** Listings kept now (tests). */
  get size(): number { return this.holders.size; }
}

/**
 * One page of `src` after `cookie` (see pageAfter); `linearVersion` from linearHashVersion.
 * `readOnly`: listings of linear directories kept sorted across pages (their blocks never change);
 * `live`: the same on a writable mount, kept on the directory's inode and changed with it.
 */
export async function readdirFrom(src: DirSource, cookie: number, maxEntries: number, linearVersion: number, readOnly?: LinearListings, live?: { listings: LiveListings; holder: ListingHolder }): Promise<DirPage> {
  if (!isHashOrdered(src)) {
    if (readOnly) return readOnly.page(src, cookie, maxEntries, linearVersion);
    if (live) return live.listings.page(live.holder, src, cookie, maxEntries, linearVersion);
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
