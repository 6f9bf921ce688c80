// Argument conversions at the API edge: times, fallocate modes, abort signals.
import { posixError } from '../errors/ext4-error.ts';
import type { FallocateFlags } from '../fs/file.ts';
import type { FallocateMode } from './types.ts';

export type TimeLike = Date | number | { sec: number; nsec: number };

export function toTs(t: TimeLike): { sec: number; nsec: number } {
  if (t instanceof Date) t = t.getTime() / 1000;
  if (typeof t === 'number') {
    const sec = Math.floor(t);
    return { sec, nsec: Math.min(999_999_999, Math.round((t - sec) * 1e9)) };
  }
  return t;
}

/** Linux fallocate(2) mode flags KEEP_SIZE (1), PUNCH_HOLE (2), ZERO_RANGE (0x10), or an object. */
export function fallocateMode(m: FallocateMode | number): FallocateFlags {
  if (typeof m !== 'number') return m;
  const known = 0x1 | 0x2 | 0x10;
  if (m & ~known) throw posixError('ENOTSUP', 'fallocate');
  if (m & 0x2 && !(m & 0x1)) throw posixError('ENOTSUP', 'fallocate');
  return { keepSize: (m & 0x1) !== 0, punchHole: (m & 0x2) !== 0, zeroRange: (m & 0x10) !== 0 };
}

/** Throws as node:fs does when `signal` was aborted: an AbortError carrying the reason. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (!signal?.aborted) return;
  const e = new Error('The operation was aborted', { cause: signal.reason }) as Error & { code: string };
  e.name = 'AbortError';
  e.code = 'ABORT_ERR';
  throw e;
}

/** Symbol.asyncDispose where the runtime lacks it (the name Node uses), so `await using` works. */
const symbols = Symbol as { asyncDispose?: symbol };
symbols.asyncDispose ??= Symbol.for('nodejs.asyncDispose');
export const asyncDispose: typeof Symbol.asyncDispose = symbols.asyncDispose as typeof Symbol.asyncDispose;
