// Wall-clock times as ext4 stores them: seconds, and seconds with nanoseconds.
import type { Timestamp } from '../format/inode.ts';

export function nowSec(): number { return Math.floor(Date.now() / 1000); }

export function nowTs(): Timestamp {
  const ms = Date.now();
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1_000_000 };
}
