// `ext4kit ln [-s] IMAGE TARGET LINKPATH`: a hard link to TARGET, or (-s) a symlink holding TARGET.
import { parseArgs } from './args.ts';
import { normalizeImagePath } from './ls.ts';
import { intoIfDirectory } from './mv.ts';
import { IMAGE_OPTIONS, IMAGE_USAGE, openImage } from './image.ts';

export const LN_USAGE = `usage: ext4kit ln [-s] IMAGE TARGET LINKPATH
  makes LINKPATH a new name of the image file TARGET; with -s, a symbolic link whose contents
  are TARGET (any text; resolved relative to the link's directory). When LINKPATH is an existing
  directory the link goes inside it under TARGET's last name.
${IMAGE_USAGE}
example:
  ext4kit ln -s disk.img ../lib/libfoo.so.1 /usr/lib/libfoo.so`;

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { options: [...IMAGE_OPTIONS], flags: ['s'], minPositionals: 3, maxPositionals: 3, usage: LN_USAGE });
  const [image, target, linkArg] = args.positionals as [string, string, string];
  const fs = await openImage(image, args);
  try {
    const link = await intoIfDirectory(fs, target, normalizeImagePath(linkArg));
    if (args.flags.has('s')) await fs.symlink(target, link);
    else await fs.link(normalizeImagePath(target), link);
  } finally {
    await fs.close();
  }
  return 0;
}
