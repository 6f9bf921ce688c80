// Paths at the API edge: strings are encoded to UTF-8 once, byte paths (Uint8Array) pass as
// they are, so names that are not UTF-8 reach every operation, reads and writes alike.
import { posixError } from '../errors/ext4-error.ts';
import { decodeUtf8, encodeUtf8 } from '../util/bytes.ts';

/** A path as node:fs takes it: a string, or raw bytes for names that are not UTF-8. */
export type PathLike = string | Uint8Array;

/** A path as bytes, and as shown in error messages. */
export interface EdgePath { bytes: Uint8Array; shown: string }

export function edgePath(p: PathLike, syscall: string): EdgePath {
  if (typeof p === 'string') {
    if (p.includes('\0')) throw posixError('EINVAL', syscall, p);
    return { bytes: encodeUtf8(p), shown: p };
  }
  if (!(p instanceof Uint8Array)) throw posixError('EINVAL', syscall, String(p));
  const shown = decodeUtf8(p);
  if (p.includes(0)) throw posixError('EINVAL', syscall, shown);
  return { bytes: p, shown };
}

/** `dir` + '/' + `name`, as bytes. */
export function joinBytes(dir: Uint8Array, name: Uint8Array): Uint8Array {
  const slash = dir.length > 0 && dir[dir.length - 1] === 0x2f;
  const out = new Uint8Array(dir.length + (slash ? 0 : 1) + name.length);
  out.set(dir);
  if (!slash) out[dir.length] = 0x2f;
  out.set(name, out.length - name.length);
  return out;
}

/** Strips trailing slashes (keeping a lone '/'). */
export function trimSlashes(p: string): string {
  const t = p.replace(/\/+$/, '');
  return t === '' && p.startsWith('/') ? '/' : t;
}
