// Records of one directory leaf as a list: first-fit slots, insert and remove with the
// neighbour's rec_len, packing, and the hash-ordered split of a full leaf (htree).
import { assert, type Ext4ErrorWhere } from '../errors/ext4-error.ts';
import { direntRecLenFor, type DirEntry } from '../format/dirent.ts';
import { dirHash } from '../format/dir-hash.ts';

/** Element `i` of a list the caller indexes within its bounds (an internal invariant). */
export function itemAt<T>(list: readonly T[], i: number): T {
  const v = list[i];
  if (v === undefined) assert(false, `index ${i} outside a list of ${list.length}`);
  return v;
}

export function sameName(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export const emptyRecord = (recLen: number): DirEntry =>
  ({ inode: 0, recLen, nameLen: 0, fileType: 0, name: new Uint8Array(0), offset: 0 });

/**
 * First record with room for `need` bytes: a deleted record's whole length counts, a live one
 * offers what lies past its own name (the kernel's first-fit placement).
 */
export function findSlot(entries: readonly DirEntry[], need: number): number {
  for (const [i, e] of entries.entries()) {
    const used = e.inode !== 0 ? direntRecLenFor(e.nameLen) : 0;
    if (e.recLen - used >= need) return i;
  }
  return -1;
}

/** Puts `entry` into slot `i`: splits a live record's slack, or takes over a deleted record. */
export function insertAt(entries: DirEntry[], i: number, entry: DirEntry): void {
  const e = itemAt(entries, i);
  if (e.inode !== 0) {
    const used = direntRecLenFor(e.nameLen);
    entries.splice(i + 1, 0, { ...entry, recLen: e.recLen - used });
    entries[i] = { ...e, recLen: used };
  } else {
    entries[i] = { ...entry, recLen: e.recLen };
  }
}

/** Removes entry `i`: merged into the previous record, or (first in block) marked unused. */
export function removeAt(entries: DirEntry[], i: number): void {
  const e = itemAt(entries, i);
  if (i > 0) {
    const prev = itemAt(entries, i - 1);
    entries[i - 1] = { ...prev, recLen: prev.recLen + e.recLen };
    entries.splice(i, 1);
  } else {
    entries[0] = emptyRecord(e.recLen);
  }
}

/** Lays records out back to back, the last one taking the rest up to `end`. */
export function pack(live: readonly DirEntry[], end: number): DirEntry[] {
  if (live.length === 0) return [emptyRecord(end)];
  const out: DirEntry[] = [];
  let off = 0;
  for (const e of live) {
    const len = direntRecLenFor(e.nameLen);
    out.push({ ...e, recLen: len, offset: off });
    off += len;
  }
  if (off > end) assert(false, `packed records need ${off} bytes, ${end} available`);
  itemAt(out, out.length - 1).recLen += end - off;
  return out;
}

export function findLive(entries: readonly DirEntry[], name: Uint8Array, from = 0): number {
  for (let i = from; i < entries.length; i++) {
    const e = itemAt(entries, i);
    if (e.inode !== 0 && sameName(e.name, name)) return i;
  }
  return -1;
}

// ---- leaf split -------------------------------------------------------------------------------

export interface Hashed { e: DirEntry; hash: number; minor: number; size: number }

/**
 * Where to split hash-sorted records: move records from the top while more than half of the
 * next one would still land in the upper half; if that would move nearly everything (a block
 * that is full only through fragmentation), split by count instead.
 */
function splitPoint(sorted: readonly Hashed[], usable: number): number {
  const count = sorted.length;
  assert(count >= 2, 'splitting a leaf with fewer than two entries');
  let size = 0;
  let i = count - 1;
  for (; i >= 0; i--) {
    const s = itemAt(sorted, i).size;
    if (size + s / 2 > usable / 2) break;
    size += s;
  }
  return i > 0 ? i + 1 : count >> 1;
}

export function hashEntries(entries: readonly DirEntry[], version: number, hashSeed: readonly number[], where: Ext4ErrorWhere): Hashed[] {
  const out: Hashed[] = [];
  for (const e of entries) {
    if (e.inode === 0) continue;
    const h = dirHash(e.name, version, hashSeed, where);
    out.push({ e, hash: h.hash, minor: h.minorHash, size: direntRecLenFor(e.nameLen) });
  }
  out.sort((a, b) => a.hash - b.hash || a.minor - b.minor);
  return out;
}

/** Splits sorted records into two packed leaves; returns the index entry hash of the upper one. */
export function splitSorted(sorted: readonly Hashed[], end: number): { lower: DirEntry[]; upper: DirEntry[]; hash2: number; indexHash: number } {
  const split = splitPoint(sorted, end);
  const hash2 = itemAt(sorted, split).hash;
  // Equal hashes on both sides: the index entry gets the low bit, telling lookups to continue.
  const continued = itemAt(sorted, split - 1).hash === hash2;
  return {
    lower: pack(sorted.slice(0, split).map((h) => h.e), end),
    upper: pack(sorted.slice(split).map((h) => h.e), end),
    hash2,
    indexHash: (hash2 | (continued ? 1 : 0)) >>> 0,
  };
}
