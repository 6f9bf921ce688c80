// Paths of `ext4kit get`: image paths (put together only for messages), host paths as bytes, and
// the check that an image name can only ever name one entry inside its parent directory.
import { corrupt } from '../errors/ext4-error.ts';
import { printableName } from './ls.ts';

/** An image path, put together only when a message shows it (most entries never need it). */
export class ImgRef {
  constructor(private readonly parent: ImgRef | undefined, private readonly leaf: ImgPath) {}
  bytes(): Uint8Array { return this.parent ? childOf(this.parent.bytes(), bytesOf(this.leaf)) : bytesOf(this.leaf); }
  shown(): string { return this.parent ? printableName(this.bytes()) : shownPath(this.leaf); }
}

/** A directory entry name that can only ever name one entry inside its parent. */
export function checkName(name: Uint8Array, parent: string | ImgRef): void {
  const bad = name.length === 0 || name.includes(0x2f) || name.includes(0) ||
    (name.length === 1 && name[0] === 0x2e) || (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e);
  if (!bad) return;
  const at = typeof parent === 'string' ? parent : parent.shown();
  throw corrupt('dirent-name', `unsafe directory entry name '${printableName(name)}' in '${at}'`, { path: at });
}

/** An image path: a string, or bytes when a name on the way is not UTF-8. */
export type ImgPath = string | Uint8Array;
export const bytesOf = (p: ImgPath): Uint8Array => (typeof p === 'string' ? new TextEncoder().encode(p) : p);
export const shownPath = (p: ImgPath): string => (typeof p === 'string' ? p : printableName(p));

/** The image path of a directory entry, as bytes (only shown in messages). */
export function childOf(dir: ImgPath, name: Uint8Array): Uint8Array {
  const d = bytesOf(dir);
  const out = new Uint8Array(d.length + 1 + name.length);
  out.set(d);
  let at = d.length;
  if (at === 0 || d[at - 1] !== 0x2f) out[at++] = 0x2f;
  out.set(name, at);
  return out.subarray(0, at + name.length);
}

/** `parent/name` as bytes (host paths are bytes: image names need not be UTF-8). */
export function joinHost(parent: Buffer, name: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(parent.length + 1 + name.length);
  // set(), not Buffer#copy: copy makes a Uint8Array view of the source on every call.
  out.set(parent, 0);
  out[parent.length] = 0x2f;
  out.set(name, parent.length + 1);
  return out;
}

/**
 * The names met in one directory listing, to refuse a name listed twice: keyed by a 32-bit
 * FNV-1a hash of the bytes (no string per name), the bytes compared only within one hash.
 */
export class NameSet {
  /** A hash's one name, or its names when several share it (rare: no array per name). */
  private readonly byHash = new Map<number, Uint8Array | Uint8Array[]>();

  /** Adds `name`; false when it was there already. */
  add(name: Uint8Array): boolean {
    let h = 0x811c9dc5;
    for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name[i]!, 0x01000193);
    h >>>= 0;
    const had = this.byHash.get(h);
    if (had === undefined) {
      this.byHash.set(h, name);
      return true;
    }
    if (had instanceof Uint8Array) {
      if (sameBytes(had, name)) return false;
      this.byHash.set(h, [had, name]);
      return true;
    }
    for (const other of had) if (sameBytes(other, name)) return false;
    had.push(name);
    return true;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
