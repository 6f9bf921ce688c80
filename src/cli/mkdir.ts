// `ext4kit mkdir [-p] [-m MODE] IMAGE PATH...`: makes directories in an image.
import { optionValue, parseArgs, UsageError } from './args.ts';
import { normalizeImagePath } from './ls.ts';
import { forEachOperand } from './report.ts';
import { IMAGE_OPTIONS, IMAGE_USAGE, openImage } from './image.ts';

export const MKDIR_USAGE = `usage: ext4kit mkdir [-p] [-m MODE] IMAGE PATH...
  -p        make parent directories as needed; no error if PATH exists as a directory
  -m MODE   octal permission bits (default 755)
${IMAGE_USAGE}
example:
  ext4kit mkdir -p -m 755 disk.img /srv/www`;

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { flags: ['p'], options: ['m', ...IMAGE_OPTIONS], minPositionals: 2, usage: MKDIR_USAGE });
  const [image, ...paths] = args.positionals as [string, ...string[]];
  const modeText = optionValue(args, 'm');
  if (modeText !== undefined && !/^[0-7]{1,4}$/.test(modeText)) throw new UsageError(`invalid mode '${modeText}' (octal digits)`, MKDIR_USAGE);
  const mode = modeText === undefined ? 0o755 : parseInt(modeText, 8);
  const fs = await openImage(image, args);
  try {
    return await forEachOperand(paths, async (p) => {
      const path = normalizeImagePath(p);
      if (args.flags.has('p')) await fs.mkdir(path, { recursive: true, mode });
      else await fs.mkdir(path, { mode });
    });
  } finally {
    await fs.close();
  }
}
