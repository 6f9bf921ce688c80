// The one path walk, over bytes, for every mount: components split on '/', '.' and '..'
// handled in place, symlinks followed up to 40 times (ELOOP), ENOTDIR through a non-directory,
// ENAMETOOLONG for a component over 255 bytes, and a trailing '/' requiring a directory.
import { posixError } from '../errors/ext4-error.ts';
import { isDirMode, isSymlinkMode, type Inode } from '../format/inode.ts';
import { isDot, isDotDot, NAME_MAX_BYTES } from './names.ts';

/** The kernel's MAXSYMLINKS. */
export const MAX_SYMLINK_FOLLOWS = 40;
const SLASH = 0x2f;

export interface WalkNode { readonly ino: number; readonly inode: Inode }

/** What a walk needs from a mount. */
export interface WalkSource<N extends WalkNode> {
  root(): Promise<N>;
  /** The entry `name` in directory `dir` ('..' included), or undefined. */
  lookup(dir: N, name: Uint8Array): Promise<N | undefined>;
  readlink(link: N): Promise<Uint8Array>;
}

/** Where an error is reported: the syscall and the path as the caller gave it. */
export interface WalkAt { syscall: string; path: string; dest?: string }

const fail = (code: 'ENOENT' | 'ENOTDIR' | 'ELOOP' | 'ENAMETOOLONG' | 'EINVAL', at: WalkAt) => posixError(code, at.syscall, at.path, at.dest);

/** Path components (without empty ones), and whether the path ends in '/'. */
export function splitPath(path: Uint8Array): { parts: Uint8Array[]; trailingSlash: boolean; absolute: boolean } {
  const parts: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i <= path.length; i++) {
    if (i === path.length || path[i] === SLASH) {
      if (i > start) parts.push(path.subarray(start, i));
      start = i + 1;
    }
  }
  return { parts, trailingSlash: path.length > 0 && path[path.length - 1] === SLASH, absolute: path[0] === SLASH };
}

interface WalkState<N extends WalkNode> { follows: number; src: WalkSource<N>; at: WalkAt }

/** Walks `parts` from `start`; the last component's symlink is followed when `followLast`. */
async function walkParts<N extends WalkNode>(st: WalkState<N>, start: N, parts: readonly Uint8Array[], followLast: boolean): Promise<N> {
  let cur = start;
  for (let i = 0; i < parts.length; i++) {
    const name = parts[i]!;
    if (!isDirMode(cur.inode.mode)) throw fail('ENOTDIR', st.at);
    if (isDot(name)) continue;
    if (name.length > NAME_MAX_BYTES) throw fail('ENAMETOOLONG', st.at);
    const next = await st.src.lookup(cur, name);
    if (!next) throw fail('ENOENT', st.at);
    const last = i === parts.length - 1;
    if (isSymlinkMode(next.inode.mode) && (!last || followLast) && !isDotDot(name)) {
      cur = await follow(st, cur, next);
      continue;
    }
    cur = next;
  }
  return cur;
}

/** Where symlink `link` (in directory `dir`) leads, followed all the way. */
async function follow<N extends WalkNode>(st: WalkState<N>, dir: N, link: N): Promise<N> {
  if (++st.follows > MAX_SYMLINK_FOLLOWS) throw fail('ELOOP', st.at);
  const target = await st.src.readlink(link);
  if (target.length === 0) throw fail('ENOENT', st.at);
  const t = splitPath(target);
  const node = await walkParts(st, t.absolute ? await st.src.root() : dir, t.parts, true);
  if (t.trailingSlash && !isDirMode(node.inode.mode)) throw fail('ENOTDIR', st.at);
  return node;
}

function checkPath(path: Uint8Array, at: WalkAt): void {
  if (path.length === 0) throw fail('ENOENT', at);
  if (path.includes(0)) throw fail('EINVAL', at);
}

/**
 * The inode `path` names. Relative paths start at `opts.from` (default: the root). A final
 * symlink is followed when `followLast`, and always when the path ends in '/', which then
 * must name a directory (ENOTDIR).
 */
export async function walk<N extends WalkNode>(src: WalkSource<N>, path: Uint8Array, followLast: boolean, at: WalkAt, from?: N): Promise<N> {
  checkPath(path, at);
  const { parts, trailingSlash, absolute } = splitPath(path);
  const st: WalkState<N> = { follows: 0, src, at };
  const node = await walkParts(st, absolute || !from ? await src.root() : from, parts, followLast || trailingSlash);
  if (trailingSlash && !isDirMode(node.inode.mode)) throw fail('ENOTDIR', at);
  return node;
}

/** The directory holding `path`'s last component, and that component (unresolved). */
export interface ParentOf<N> {
  dir: N;
  /** The last component; '.' for the root itself. */
  name: Uint8Array;
  /** The path ends in '/': what it names must be (or become) a directory. */
  trailingSlash: boolean;
}

export async function walkParent<N extends WalkNode>(src: WalkSource<N>, path: Uint8Array, at: WalkAt, from?: N): Promise<ParentOf<N>> {
  checkPath(path, at);
  const { parts, trailingSlash, absolute } = splitPath(path);
  const st: WalkState<N> = { follows: 0, src, at };
  const start = absolute || !from ? await src.root() : from;
  if (parts.length === 0) return { dir: start, name: new Uint8Array([0x2e]), trailingSlash };
  const name = parts[parts.length - 1]!;
  if (name.length > NAME_MAX_BYTES) throw fail('ENAMETOOLONG', at);
  const dir = await walkParts(st, start, parts.slice(0, -1), true);
  if (!isDirMode(dir.inode.mode)) throw fail('ENOTDIR', at);
  return { dir, name, trailingSlash };
}

/**
 * Where creating through `link` (a symlink found as a path's last component, in `dir`) lands,
 * as open(O_CREAT) without O_EXCL does: the parent and name of its target, symlinks followed.
 */
export async function walkLinkTarget<N extends WalkNode>(src: WalkSource<N>, dir: N, link: N, at: WalkAt): Promise<ParentOf<N> & { existing: N | undefined }> {
  let curDir = dir;
  let cur = link;
  for (let follows = 0; ; follows++) {
    if (follows >= MAX_SYMLINK_FOLLOWS) throw fail('ELOOP', at);
    const target = await src.readlink(cur);
    if (target.length === 0) throw fail('ENOENT', at);
    const p = await walkParent(src, target, at, curDir);
    const existing = await lookupIn(src, p.dir, p.name);
    if (!existing || !isSymlinkMode(existing.inode.mode)) return { ...p, existing };
    curDir = p.dir;
    cur = existing;
  }
}

/** `name` in `dir`, '.' included. */
export async function lookupIn<N extends WalkNode>(src: WalkSource<N>, dir: N, name: Uint8Array): Promise<N | undefined> {
  return isDot(name) ? dir : src.lookup(dir, name);
}
