// `ext4kit mv IMAGE FROM TO`: renames an entry; into TO/NAME when TO is an existing directory.
import { Ext4Error } from '../errors/ext4-error.ts';
import { parseArgs } from './args.ts';
import { childPath, normalizeImagePath } from './ls.ts';
import type { Ext4 } from '../node.ts';
import { IMAGE_OPTIONS, IMAGE_USAGE, openImage } from './image.ts';

export const MV_USAGE = `usage: ext4kit mv IMAGE FROM TO
  renames FROM to TO, replacing a file (or an empty directory) at TO; when TO is an existing
  directory, FROM moves into it under its own name
${IMAGE_USAGE}
example:
  ext4kit mv disk.img /old-name /new-name`;

/** The last component of an image path ('' for the root). */
export function lastName(path: string): string {
  const parts = path.split('/').filter((c) => c !== '' && c !== '.');
  return parts[parts.length - 1] ?? '';
}

/** `dest`, or dest/basename(src) when dest is an existing directory (what mv, ln and cp do). */
export async function intoIfDirectory(fs: Ext4, src: string, dest: string): Promise<string> {
  const st = await fs.stat(dest).catch((e: unknown) => {
    if (e instanceof Ext4Error && e.code === 'ENOENT') return undefined;
    throw e;
  });
  if (!st?.isDirectory()) return dest;
  const name = lastName(src);
  if (name === '' || name === '..') throw new Ext4Error('EINVAL', `EINVAL: cannot place '${src}' inside '${dest}'`, { where: { path: src } });
  return childPath(dest.replace(/\/+$/, '') || '/', name);
}

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { options: [...IMAGE_OPTIONS], minPositionals: 3, maxPositionals: 3, usage: MV_USAGE });
  const [image, fromArg, toArg] = args.positionals as [string, string, string];
  const fs = await openImage(image, args);
  try {
    const from = normalizeImagePath(fromArg);
    await fs.lstat(from);
    const to = await intoIfDirectory(fs, from, normalizeImagePath(toArg));
    await fs.rename(from, to);
  } finally {
    await fs.close();
  }
  return 0;
}
