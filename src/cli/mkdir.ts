// `ext4kit mkdir [-p] [-m MODE] IMAGE PATH...`: makes directories in an image.
import { Ext4 } from '../node.ts';
import { optionValue, parseArgs, UsageError } from './args.ts';
import { normalizeImagePath } from './ls.ts';
import { forEachOperand } from './report.ts';

export const MKDIR_USAGE = `usage: ext4kit mkdir [-p] [-m MODE] IMAGE PATH...
  -p        make parent directories as needed; no error if PATH exists as a directory
  -m MODE   octal permission bits (default 755)`;

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { flags: ['p'], options: ['m'], minPositionals: 2, usage: MKDIR_USAGE });
  const [image, ...paths] = args.positionals as [string, ...string[]];
  const modeText = optionValue(args, 'm');
  if (modeText !== undefined && !/^[0-7]{1,4}$/.test(modeText)) throw new UsageError(`invalid mode '${modeText}' (octal digits)`, MKDIR_USAGE);
  const mode = modeText === undefined ? 0o755 : parseInt(modeText, 8);
  const fs = await Ext4.open(image, { umask: 0 }); // the mode is exactly -m (or 0755)
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
