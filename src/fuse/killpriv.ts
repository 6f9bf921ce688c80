// Set-id bits a write or truncate must drop (FUSE_HANDLE_KILLPRIV_V2 hands this to the server:
// the kernel then sends neither a SETATTR for it nor a GETXATTR of security.capability before
// every WRITE, which halved small-write throughput).
import { readFileSync } from 'node:fs';
import type { RequestHeader } from './header.ts';

/**
 * The permission bits of a regular file once a write or truncate by a caller without CAP_FSETID
 * dropped its set-id bits, as the kernel's VFS does for ext4: S_ISUID always; S_ISGID when the
 * file is group-executable or the caller is not in the file's group. undefined: nothing to drop.
 */
export function killedMode(mode: number, fileGid: number, inGroup: (gid: number) => boolean): number | undefined {
  if ((mode & 0o170000) !== 0o100000) return undefined;
  let bits = mode & 0o7777;
  bits &= ~0o4000;
  if (bits & 0o2000 && (bits & 0o010 || !inGroup(fileGid))) bits &= ~0o2000;
  return bits === (mode & 0o7777) ? undefined : bits;
}

/** Whether the process `pid` (a FUSE caller) has `gid` as its fsgid or a supplementary group. */
export function callerInGroup(h: Pick<RequestHeader, 'gid' | 'pid'>, gid: number): boolean {
  if (h.gid === gid) return true;
  try {
    const groups = /^Groups:\s*(.*)$/m.exec(readFileSync(`/proc/${h.pid}/status`, 'utf8'))?.[1] ?? '';
    return groups.split(/\s+/).includes(String(gid));
  } catch {
    return false;
  }
}
