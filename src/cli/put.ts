// `ext4kit put [-r] IMAGE SRC PATH`: copies a host file or tree into an image, like `cp -a`.
import { Ext4 } from '../node.ts';
import { parseArgs } from './args.ts';
import { hostIdentity, putIntoImage } from './copy-in.ts';

export const PUT_USAGE = `usage: ext4kit put [-r] IMAGE SRC PATH
  copies host file SRC into IMAGE at PATH (into PATH/NAME when PATH is a directory)
  -r   copy a directory tree (symlinks are copied as symlinks)
Keeps contents (all-zero blocks become holes), modes (set-id, sticky), owners (the host's
numbers), atime and mtime to the nanosecond, symlinks, hard links and xattrs (user.*, and
trusted.*/security.* when readable; needs getfattr). An existing directory at the destination is
merged into; an existing file is replaced. FIFOs, sockets and devices are skipped with a warning.`;

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { flags: ['r', 'R'], minPositionals: 3, maxPositionals: 3, usage: PUT_USAGE });
  const [image, src, dest] = args.positionals as [string, string, string];
  const self = await hostIdentity(image);
  const fs = await Ext4.open(image, { umask: 0 }); // copies keep their source modes
  try {
    await putIntoImage(fs, src, dest, {
      recursive: args.flags.has('r') || args.flags.has('R'),
      progressLabel: 'put',
      ...(self ? { exclude: self } : {}),
    });
  } finally {
    await fs.close();
  }
  return 0;
}
