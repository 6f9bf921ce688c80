// `ext4kit demo`: makes a small image in a temporary directory, then shows `info` and
// `ls -l -R /` of it. (It will populate the image from a built-in example tree once writing lands.)
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ext4 } from '../node.ts';
import { parseArgs } from './args.ts';
import { formatInfo } from './info.ts';
import { listPath } from './ls.ts';

export const DEMO_USAGE = `usage: ext4kit demo [--bigalloc] [--keep]
  makes a 32 MiB ext4 image in a temporary directory and shows its summary and listing
  --bigalloc  use bigalloc with 16 KiB clusters (4 KiB blocks)
  --keep      keep the image and print its path`;

const SIZE = 32 * 1024 * 1024;

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { flags: ['bigalloc', 'keep'], maxPositionals: 0, usage: DEMO_USAGE });
  const write = (s: string) => process.stdout.write(s);
  const dir = await mkdtemp(join(tmpdir(), 'ext4kit-demo-'));
  const image = join(dir, 'demo.img');
  try {
    const fh = await open(image, 'w');
    try {
      await fh.truncate(SIZE);
    } finally {
      await fh.close();
    }
    const bigalloc = args.flags.has('bigalloc');
    await Ext4.mkfs(image, {
      sizeBytes: SIZE,
      deviceZeroed: true,
      label: 'ext4kit-demo',
      ...(bigalloc ? { features: 'bigalloc', blockSize: 4096, clusterBytes: 16384 } : {}),
    });
    write(`$ ext4kit mkfs${bigalloc ? ' -O bigalloc -b 4096 -C 16K' : ''} -L ext4kit-demo demo.img 32M\n\n`);
    const fs = await Ext4.open(image, { readOnly: true });
    try {
      write('$ ext4kit info demo.img\n');
      write(formatInfo(await fs.info()));
      write('\n$ ext4kit ls -l -R demo.img /\n');
      await listPath(fs, '/', { long: true, recursive: true, all: false, inode: false }, write);
    } finally {
      await fs.close();
    }
    if (args.flags.has('keep')) write(`\nimage kept at ${image}\n`);
  } finally {
    if (!args.flags.has('keep')) await rm(dir, { recursive: true, force: true });
  }
  return 0;
}
