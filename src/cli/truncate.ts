// `ext4kit truncate [-c] -s SIZE IMAGE PATH...`: sets file sizes (growing leaves a hole), like
// coreutils truncate: SIZE may be +N or -N (relative), with binary units (K, M, G...).
import { Ext4Error } from '../errors/ext4-error.ts';
import type { Ext4WritableHandle } from '../api/ext4.ts';
import { optionValue, parseArgs, parseSize, UsageError } from './args.ts';
import { normalizeImagePath } from './ls.ts';
import { forEachOperand } from './report.ts';
import { IMAGE_OPTIONS, IMAGE_USAGE, openImage } from './image.ts';

export const TRUNCATE_USAGE = `usage: ext4kit truncate [-c] -s SIZE IMAGE PATH...
  -s SIZE  new size: bytes or with a binary unit (512K, 64M, 1G); +SIZE grows, -SIZE shrinks
  -c       do not create missing files (missing files are created, mode 644, by default)
${IMAGE_USAGE}
example:
  ext4kit truncate -s 1G disk.img /var/swapfile`;

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { flags: ['c'], options: ['s', ...IMAGE_OPTIONS], minPositionals: 2, usage: TRUNCATE_USAGE });
  const sizeText = optionValue(args, 's');
  if (sizeText === undefined) throw new UsageError('missing -s SIZE', TRUNCATE_USAGE);
  const m = /^([+-]?)(.*)$/.exec(sizeText)!;
  const rel = m[1] as '' | '+' | '-';
  const amount = /^0+$/.test(m[2]!) ? 0 : parseSize(m[2]!);
  if (amount === undefined) throw new UsageError(`invalid size '${sizeText}'`, TRUNCATE_USAGE);
  const [image, ...paths] = args.positionals as [string, ...string[]];
  const fs = await openImage(image, args);
  try {
    return await forEachOperand(paths, async (p) => {
      const path = normalizeImagePath(p);
      const st = await fs.stat(path).catch((e: unknown) => {
        if (e instanceof Ext4Error && e.code === 'ENOENT') return undefined;
        throw e;
      });
      if (!st && args.flags.has('c')) return;
      const old = st?.size ?? 0;
      const size = rel === '+' ? old + amount : rel === '-' ? Math.max(0, old - amount) : amount;
      if (st) {
        await fs.truncate(path, size);
        return;
      }
      const fh = (await fs.open(path, 'wx', 0o644)) as Ext4WritableHandle;
      try {
        await fh.truncate(size);
      } finally {
        await fh.close();
      }
    });
  } finally {
    await fs.close();
  }
}
