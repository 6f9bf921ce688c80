// `ext4kit umount MOUNTPOINT`: detaches an ext4kit mount and waits until its server has written
// everything back and exited, so the image is complete (and e2fsck-clean) when this returns.
import { UsageError } from './args.ts';
import { serverFor, waitForExit } from '../fuse/server-registry.ts';
import { unmountPath } from '../fuse/transport.ts';

export const USAGE = `usage: ext4kit umount [-l] MOUNTPOINT
  -l    lazy: detach now, finish when the last open file is closed
example:
  ext4kit umount /mnt/x`;

export async function run(argv: string[]): Promise<number> {
  const lazy = argv.includes('-l');
  const pos = argv.filter((a) => a !== '-l');
  if (pos.length !== 1 || pos[0]!.startsWith('-')) throw new UsageError('needs one MOUNTPOINT', USAGE);
  const mountpoint = pos[0]!;
  const server = serverFor(mountpoint);
  const r = await unmountPath(mountpoint, lazy);
  if (!r.ok) {
    process.stderr.write(`ext4kit umount: ${r.stderr.trim() || `umount ${mountpoint} failed`}\n`);
    return 1;
  }
  if (server && !(await waitForExit(server.pid, 10 * 60_000))) {
    process.stderr.write(`ext4kit umount: server ${server.pid} is still writing back after 10 minutes\n`);
    return 1;
  }
  return 0;
}
