// `ext4kit put [-r] IMAGE SRC PATH`: copies a host file or tree into an image, like `cp -a`.
import { parseArgs, type ParsedArgs } from './args.ts';
import { Ext4Error } from '../errors/ext4-error.ts';
import { normalizeImagePath } from './ls.ts';
import { hostIdentity, putIntoImage, startTreeReader } from './copy-in.ts';
import { IMAGE_OPTIONS, IMAGE_USAGE, imageRef, openImage } from './image.ts';

export const PUT_USAGE = `usage: ext4kit put [-r] IMAGE SRC PATH
  copies host file SRC into IMAGE at PATH (into PATH/NAME when PATH is a directory); SRC '-'
  reads standard input into the file PATH; with -r, SRC/. copies the contents of SRC into PATH
  -r   copy a directory tree (symlinks are copied as symlinks)
Keeps contents (all-zero blocks become holes), modes (set-id, sticky), owners (the host's
numbers), atime and mtime to the nanosecond, symlinks, hard links and xattrs (user.*, and
trusted.*/security.* when readable; needs getfattr). An existing directory at the destination is
merged into; an existing file is replaced. FIFOs, sockets and devices are created as nodes.
${IMAGE_USAGE}
example:
  ext4kit put -r disk.img ./site/. /srv/www    (the contents of ./site)
  tar c . | ext4kit put disk.img - /backup.tar  (from stdin)`;

/** `put IMAGE - PATH`: standard input becomes the file PATH (replaced when it exists), streamed. */
async function putStdin(image: string, dest: string, args: ParsedArgs): Promise<number> {
  const path = normalizeImagePath(dest);
  const fs = await openImage(image, args);
  try {
    const old = await fs.lstat(path).catch((e: unknown) => {
      if (e instanceof Ext4Error && e.code === 'ENOENT') return undefined;
      throw e;
    });
    if (old?.isDirectory()) throw new Ext4Error('EISDIR', `EISDIR: '${dest}' is a directory (standard input needs a file name)`, { where: { path: dest } });
    if (old) await fs.unlink(path);
    const owner = process.getuid && process.getgid ? { uid: process.getuid(), gid: process.getgid() } : {};
    await fs.importFile(path, process.stdin as AsyncIterable<Uint8Array>, { mode: 0o644 & ~process.umask(), ...owner });
  } finally {
    await fs.close();
  }
  return 0;
}

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { options: [...IMAGE_OPTIONS], flags: ['r', 'R'], minPositionals: 3, maxPositionals: 3, usage: PUT_USAGE });
  const [image, src, dest] = args.positionals as [string, string, string];
  if (src === '-') return putStdin(image, dest, args);
  const recursive = args.flags.has('r') || args.flags.has('R');
  // The tree reader's worker boots and reads ahead while the image opens.
  const reader = recursive ? startTreeReader(src) : undefined;
  try {
    const self = await hostIdentity(imageRef(image, args).path);
    const fs = await openImage(image, args);
    try {
      await putIntoImage(fs, src, dest, { recursive, progressLabel: 'put', ...(self ? { exclude: self } : {}), ...(reader ? { reader } : {}) });
    } finally {
      await fs.close();
    }
  } finally {
    await reader?.close();
  }
  return 0;
}
