// `ext4kit cat IMAGE PATH...`: streams file contents to stdout, respecting pipe back-pressure.
import { once } from 'node:events';
import { parseArgs } from './args.ts';
import { normalizeImagePath } from './ls.ts';
import { IMAGE_OPTIONS, IMAGE_USAGE, openImage } from './image.ts';

export const CAT_USAGE = `usage: ext4kit cat IMAGE PATH...
  writes the bytes of each file (symlinks followed inside the image) to stdout
${IMAGE_USAGE}
example:
  ext4kit cat disk.img /etc/hostname`;

/** Copies a web stream to a Node writable, waiting for 'drain' when the writable is full. */
export async function pipeToWritable(stream: ReadableStream<Uint8Array>, out: NodeJS.WritableStream): Promise<void> {
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (value.length > 0 && !out.write(value)) await once(out, 'drain');
    }
  } finally {
    reader.releaseLock();
  }
}

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { options: [...IMAGE_OPTIONS], minPositionals: 2, usage: CAT_USAGE });
  const [image, ...paths] = args.positionals as [string, ...string[]];
  const fs = await openImage(image, args, { readOnly: true });
  try {
    for (const p of paths) await pipeToWritable(fs.createReadStream(normalizeImagePath(p)), process.stdout);
  } finally {
    await fs.close();
  }
  return 0;
}
