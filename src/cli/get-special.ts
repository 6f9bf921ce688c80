// Special files of `ext4kit get` (FIFOs and device nodes, through mkfifo(1) and mknod(1), mode
// 0600 until the end of the copy); sockets and unknown types are skipped with a warning.
import { Ext4Error } from '../errors/ext4-error.ts';
import { S_IFBLK, S_IFCHR, S_IFIFO, S_IFSOCK } from '../format/inode.ts';
import { fmtOf, type Meta } from './get-inode.ts';
import { asArg, runTool } from './get-host.ts';
import { devMajorMinor } from './ls.ts';

/** Creates the special file `st` at `host`; false when it was skipped (warned once per kind). */
export async function makeSpecial(st: Meta, host: Buffer, shown: string, isRoot: boolean, warnOnce: (key: string, msg: string) => void): Promise<boolean> {
  const arg = asArg(host);
  const fmt = fmtOf(st);
  if (fmt === S_IFSOCK) {
    warnOnce('socket', `skipping sockets (first: '${shown}')`);
    return false;
  }
  if (arg === undefined) {
    warnOnce('special-name', `skipping special files whose host path is not UTF-8 (first: '${shown}')`);
    return false;
  }
  if (fmt === S_IFIFO) {
    const r = await runTool('mkfifo', ['-m', '600', '--', arg]);
    if (r.ok) return true;
    if (r.missing) warnOnce('mkfifo', `mkfifo not found: skipping FIFOs (first: '${shown}')`);
    else throw new Ext4Error('EIO', `mkfifo '${arg}' failed: ${r.stderr}`);
    return false;
  }
  if (fmt === S_IFBLK || fmt === S_IFCHR) {
    if (!isRoot) {
      warnOnce('device', `not root: skipping device files (first: '${shown}')`);
      return false;
    }
    const [major, minor] = devMajorMinor(st.rdev);
    const r = await runTool('mknod', ['-m', '600', '--', arg, fmt === S_IFBLK ? 'b' : 'c', String(major), String(minor)]);
    if (r.ok) return true;
    if (r.missing) warnOnce('mknod', `mknod not found: skipping device files (first: '${shown}')`);
    else warnOnce('mknod-failed', `mknod failed, skipping device files (first: '${shown}': ${r.stderr})`);
    return false;
  }
  warnOnce('unknown-type', `skipping entries of unknown type (first: '${shown}')`);
  return false;
}
