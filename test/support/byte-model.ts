// A byte-exact model of regular files for write-path tests: every operation that succeeded on
// ext4kit (or on the kernel) is applied here too, and the file system must read back exactly this.
import { Ext4Error } from '../../src/errors/ext4-error.ts';
import type { Ext4 } from '../../src/api/ext4.ts';

/** Small deterministic PRNG (xorshift32); `int(a, b)` is inclusive. */
export class Prng {
  private s: number;
  constructor(seed: number) { this.s = (seed >>> 0) || 0x9e3779b9; }
  next(): number {
    let x = this.s;
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    this.s = x;
    return x / 0x1_0000_0000;
  }
  int(a: number, b: number): number { return a + Math.floor(this.next() * (b - a + 1)); }
  pick<T>(xs: readonly T[]): T { return xs[Math.floor(this.next() * xs.length)]!; }
  chance(p: number): boolean { return this.next() < p; }
}

/** Recognisable non-zero-heavy bytes: a writer id and the position are mixed in. */
export function fillPattern(len: number, seed: number): Uint8Array {
  const out = new Uint8Array(len);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = (x & 0xff) | 1; // never zero: a lost write can not hide as a hole
  }
  return out;
}

/** One file's expected bytes (grows like a vector). */
export class FileModel {
  private buf = new Uint8Array(0);
  size = 0;
  private ensure(n: number): void {
    if (n <= this.buf.length) return;
    const b = new Uint8Array(Math.max(n, this.buf.length * 2));
    b.set(this.buf.subarray(0, this.size));
    this.buf = b;
  }
  write(pos: number, data: Uint8Array): void {
    const end = pos + data.length;
    this.ensure(end);
    if (pos > this.size) this.buf.fill(0, this.size, pos);
    this.buf.set(data, pos);
    if (end > this.size) this.size = end;
  }
  truncate(n: number): void {
    if (n > this.size) { this.ensure(n); this.buf.fill(0, this.size, n); }
    this.size = n;
  }
  /** Zeroes [off, off+len) clipped to the current size. */
  zero(off: number, len: number): void {
    const end = Math.min(this.size, off + len);
    if (off < end) this.buf.fill(0, off, end);
  }
  /** Grows the size to at least n with zeros (fallocate without KEEP_SIZE, zero-range). */
  extend(n: number): void { if (n > this.size) this.truncate(n); }
  bytes(): Uint8Array { return this.buf.subarray(0, this.size); }
  slice(off: number, len: number): Uint8Array { return this.buf.slice(off, Math.min(this.size, off + len)); }
}

/** Index of the first differing byte, or -1. */
export function firstDiff(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

/** Throws a readable message when `actual` is not `expected`. */
export function assertBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  const d = firstDiff(actual, expected);
  if (d < 0) return;
  throw new Error(`${what}: ${actual.length} bytes read, ${expected.length} expected; first difference at byte ${d}` +
    ` (read ${actual[d]}, expected ${expected[d]})`);
}

/** Every file of the model must read back from `fs` exactly. */
export async function compareWithModel(fs: Ext4, files: ReadonlyMap<string, FileModel>, when: string): Promise<void> {
  for (const [path, m] of files) {
    const got = await fs.readFile(path);
    assertBytes(got, m.bytes(), `${when}: ${path}`);
  }
}

export function isErrno(e: unknown, ...codes: string[]): e is Ext4Error {
  return e instanceof Ext4Error && codes.includes(e.code);
}

/** Yields to other tasks: a few microtasks, sometimes a macrotask. */
export async function jitter(rng: Prng): Promise<void> {
  const r = rng.next();
  if (r < 0.15) await new Promise<void>((res) => setImmediate(res));
  else for (let i = Math.floor(r * 4); i > 0; i--) await Promise.resolve();
}
