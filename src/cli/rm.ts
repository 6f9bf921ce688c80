// `ext4kit rm [-r] [-f] IMAGE PATH...`: removes files, symlinks and (with -r) directory trees.
import { Ext4Error } from '../errors/ext4-error.ts';
import { parseArgs, UsageError } from './args.ts';
import { normalizeImagePath } from './ls.ts';
import { forEachOperand } from './report.ts';
import { IMAGE_OPTIONS, IMAGE_USAGE, openImage } from './image.ts';

export const RM_USAGE = `usage: ext4kit rm [-r] [-f] IMAGE PATH...
  -r, -R   remove directories and their contents
  -f       ignore missing paths
${IMAGE_USAGE}
example:
  ext4kit rm -r disk.img /tmp/cache
  ext4kit rm disk.img -- -h                  (a file named -h)`;

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { options: [...IMAGE_OPTIONS], flags: ['r', 'R', 'f'], minPositionals: 1, usage: RM_USAGE });
  const [image, ...paths] = args.positionals as [string, ...string[]];
  const recursive = args.flags.has('r') || args.flags.has('R');
  const force = args.flags.has('f');
  if (paths.length === 0 && !force) throw new UsageError('missing PATH', RM_USAGE);
  const fs = await openImage(image, args);
  try {
    return await forEachOperand(paths, async (p) => {
      const path = normalizeImagePath(p);
      if (path.split('/').every((c) => c === '' || c === '.')) {
        throw new Ext4Error('EBUSY', `EBUSY: refusing to remove the root directory '${p}'`, { where: { path: p } });
      }
      if (/(^|\/)\.\.?\/*$/.test(path)) throw new Ext4Error('EINVAL', `EINVAL: refusing to remove '.' or '..' ('${p}')`, { where: { path: p } });
      const st = await fs.lstat(path).catch((e: unknown) => {
        if (force && e instanceof Ext4Error && e.code === 'ENOENT') return undefined;
        throw e;
      });
      if (!st) return;
      if (st.isDirectory() && !recursive) throw new Ext4Error('EISDIR', `EISDIR: cannot remove '${p}': is a directory (use -r)`, { where: { path: p } });
      await fs.rm(path, { recursive, force });
    });
  } finally {
    await fs.close();
  }
}
