// Seeded random operation sequences over a small namespace, so that calls keep meeting each
// other's files: the same seed gives the same sequence on every backend.
import { Prng } from '../byte-model.ts';

export type Op =
  | { k: 'writeFile'; path: string; len: number; seed: number; flag: string; mode: number }
  | { k: 'appendFile'; path: string; len: number; seed: number }
  | { k: 'readFile'; path: string }
  | { k: 'open'; slot: number; path: string; flags: string; mode: number }
  | { k: 'write'; slot: number; len: number; seed: number; pos: number | null }
  | { k: 'read'; slot: number; len: number; pos: number | null }
  | { k: 'ftruncate'; slot: number; len: number }
  | { k: 'fstat'; slot: number }
  | { k: 'close'; slot: number }
  | { k: 'truncate'; path: string; len: number }
  | { k: 'fallocate'; path: string; mode: number; offset: number; len: number }
  | { k: 'mkdir'; path: string; mode: number }
  | { k: 'rmdir' | 'unlink' | 'readlink' | 'readdir' | 'stat' | 'lstat' | 'listxattr'; path: string }
  | { k: 'rename' | 'link'; from: string; to: string }
  | { k: 'symlink'; target: string; path: string }
  | { k: 'chmod'; path: string; mode: number }
  | { k: 'chown' | 'lchown'; path: string; uid: number; gid: number }
  | { k: 'utimes'; path: string; sec: number }
  | { k: 'setxattr'; path: string; name: string; len: number; seed: number; flags: 0 | 1 | 2 }
  | { k: 'getxattr' | 'removexattr'; path: string; name: string };

export const HANDLE_SLOTS = 3;

const TOP = ['a', 'b', 'c', 'd'];
const SUB = ['x', 'y'];
const LENS = [0, 1, 100, 1000, 4095, 4096, 5000, 20_000, 70_000];
const XATTR_NAMES = ['user.a', 'user.b', 'user.c', 'trusted.t', 'security.s', 'user.', 'bogus.x', 'user.' + 'n'.repeat(250), 'user.' + 'n'.repeat(251)];
const XATTR_LENS = [0, 5, 60, 300, 1000, 3000, 5000, 70_000];
const CHMODS = [0o644, 0o755, 0o6755, 0o2745, 0o1777, 0o4700, 0o000, 0o2775];
const OWNERS: Array<[number, number]> = [[-1, -1], [0, 0], [5, 6], [1000, -1], [-1, 1234]];
const TIMES = [0, 1_000_000_000, -5, 2 ** 33, 2 ** 35, -(2 ** 32), 15_032_385_535, 1_700_000_000];
const TRUNCS = [0, 1, 4095, 4096, 10_000, 100_000, 1 << 20];
const FALLOC_MODES = [0, 1, 3, 0x10, 0x11];
const FALLOC_OFFSETS = [0, 100, 4096, 5000, 65_536];
const FALLOC_LENS = [1, 200, 4096, 10_000, 70_000];
const OPEN_FLAGS = ['r', 'r+', 'w', 'wx', 'a', 'a+', 'w+', 'ax'];
const POSITIONS = [null, null, 0, 100, 4096, 5000, 100_000];

/** A path in the small namespace: /a … /d and one level below them. */
function randomPath(r: Prng): string {
  const top = r.pick(TOP);
  return r.chance(0.45) ? `/${top}/${r.pick(SUB)}` : `/${top}`;
}

/** Weighted kinds: data and namespace calls most often. */
const KINDS: Array<[Op['k'], number]> = [
  ['writeFile', 6], ['appendFile', 4], ['readFile', 3], ['open', 5], ['write', 6], ['read', 3], ['ftruncate', 1],
  ['fstat', 1], ['close', 2], ['truncate', 2], ['fallocate', 3], ['mkdir', 7], ['rmdir', 2], ['unlink', 3],
  ['rename', 3], ['link', 2], ['symlink', 2], ['readlink', 1], ['readdir', 2], ['stat', 2], ['lstat', 1],
  ['chmod', 2], ['chown', 2], ['lchown', 1], ['utimes', 2], ['setxattr', 5], ['getxattr', 2], ['listxattr', 2], ['removexattr', 2],
];
const TOTAL = KINDS.reduce((n, [, w]) => n + w, 0);

export function randomOp(r: Prng): Op {
  let x = r.int(0, TOTAL - 1);
  let k: Op['k'] = 'stat';
  for (const [kind, w] of KINDS) { if (x < w) { k = kind; break; } x -= w; }
  const path = randomPath(r);
  const seed = r.int(1, 0x7fffffff);
  switch (k) {
    case 'writeFile': return { k, path, len: r.pick(LENS), seed, flag: r.pick(['w', 'w', 'wx', 'a']), mode: r.pick([0o644, 0o600, 0o755, 0o4755]) };
    case 'appendFile': return { k, path, len: r.pick(LENS), seed };
    case 'open': return { k, slot: r.int(0, HANDLE_SLOTS - 1), path, flags: r.pick(OPEN_FLAGS), mode: r.pick([0o644, 0o2755]) };
    case 'write': return { k, slot: r.int(0, HANDLE_SLOTS - 1), len: r.pick(LENS.filter((l) => l <= 20_000)), seed, pos: r.pick(POSITIONS) };
    case 'read': return { k, slot: r.int(0, HANDLE_SLOTS - 1), len: r.pick([1, 100, 5000, 30_000]), pos: r.pick(POSITIONS) };
    case 'ftruncate': return { k, slot: r.int(0, HANDLE_SLOTS - 1), len: r.pick(TRUNCS) };
    case 'fstat': case 'close': return { k, slot: r.int(0, HANDLE_SLOTS - 1) };
    case 'truncate': return { k, path, len: r.pick(TRUNCS) };
    case 'fallocate': return { k, path, mode: r.pick(FALLOC_MODES), offset: r.pick(FALLOC_OFFSETS), len: r.pick(FALLOC_LENS) };
    case 'mkdir': return { k, path, mode: r.pick([0o755, 0o2755, 0o777, 0o700]) };
    case 'rename': case 'link': return { k, from: path, to: randomPath(r) };
    case 'symlink': return { k, target: r.pick([...TOP, ...SUB, 'nowhere']), path };
    case 'chmod': return { k, path, mode: r.pick(CHMODS) };
    case 'chown': case 'lchown': { const [uid, gid] = r.pick(OWNERS); return { k, path, uid, gid }; }
    case 'utimes': return { k, path, sec: r.pick(TIMES) };
    case 'setxattr': return { k, path, name: r.pick(XATTR_NAMES), len: r.pick(XATTR_LENS), seed, flags: r.pick([0, 0, 0, 1, 2] as const) };
    case 'getxattr': case 'removexattr': return { k, path, name: r.pick(XATTR_NAMES) };
    default: return { k, path } as Op;
  }
}

export function randomSequence(seed: number, count: number): Op[] {
  const r = new Prng(seed);
  return Array.from({ length: count }, () => randomOp(r));
}

export function describeOp(op: Op): string {
  const { k, ...rest } = op;
  return `${k}(${Object.entries(rest).map(([key, v]) => `${key}=${typeof v === 'string' && v.length > 40 ? `${v.slice(0, 12)}…(${v.length})` : typeof v === 'number' && key === 'mode' ? '0o' + v.toString(8) : String(v)}`).join(', ')})`;
}
