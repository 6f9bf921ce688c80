// Stand-in for `ext4kit get -r IMAGE / DEST` while the CLI lacks it: copies the whole tree out of
// an image through the public API (readdir/lstat/readFile/open/readlink), in its own process so
// that the harness measures it like the other tools. Usage: copy-out.ts IMAGE DEST
import { chmod, mkdir, open, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Ext4 } from '../../src/node.ts';

const [image, dest] = process.argv.slice(2);
if (!image || !dest) {
  process.stderr.write('usage: copy-out.ts IMAGE DEST\n');
  process.exit(2);
}

const CHUNK = 1 << 20;
const fs = await Ext4.open(image, { readOnly: true });
const files: Array<{ src: string; dst: string; mode: number; size: number }> = [];

async function walk(src: string, dst: string): Promise<void> {
  await mkdir(dst, { recursive: true });
  for (const e of await fs.readdir(src, { withFileTypes: true })) {
    const s = src === '/' ? `/${e.name}` : `${src}/${e.name}`;
    const d = join(dst, e.name);
    if (e.isDirectory()) {
      await walk(s, d);
      await chmod(d, (await fs.lstat(s)).mode & 0o7777);
    } else if (e.isSymbolicLink()) await symlink(await fs.readlink(s), d);
    else if (e.isFile()) {
      const st = await fs.lstat(s);
      files.push({ src: s, dst: d, mode: st.mode & 0o7777, size: st.size });
    }
  }
}

async function copyFile(f: { src: string; dst: string; mode: number; size: number }): Promise<void> {
  if (f.size <= CHUNK) {
    await writeFile(f.dst, await fs.readFile(f.src), { mode: f.mode });
    return;
  }
  const src = await fs.open(f.src);
  const out = await open(f.dst, 'w', f.mode);
  try {
    const buf = new Uint8Array(CHUNK);
    for (let pos = 0; pos < f.size; pos += CHUNK) {
      const { bytesRead } = await src.read(buf, 0, Math.min(CHUNK, f.size - pos), pos);
      await out.write(buf, 0, bytesRead, pos);
    }
  } finally {
    await out.close();
    await src.close();
  }
}

try {
  await walk('/', dest);
  let i = 0;
  await Promise.all(Array.from({ length: 4 }, async () => {
    while (i < files.length) await copyFile(files[i++]!);
  }));
} finally {
  await fs.close();
}
