// Stand-in for `ext4kit mkfs -q -d TREE IMAGE SIZE` while the CLI lacks -d: Ext4.mkfs on a new
// sparse file, then a copy of TREE through the public API (mkdir, writeFile for small files,
// open + write in 1 MiB chunks for large ones, symlink, chmod, utimes), in its own process so that
// the harness measures it like mke2fs -d. Usage: mkfs-d.ts TREE IMAGE BYTES
import { lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Ext4 } from '../../src/node.ts';

const [tree, image, size] = process.argv.slice(2);
if (!tree || !image || !size || !/^\d+$/.test(size)) {
  process.stderr.write('usage: mkfs-d.ts TREE IMAGE BYTES\n');
  process.exit(2);
}

const CHUNK = 1 << 20;
await Ext4.mkfs(image, { sizeBytes: Number(size) });
const fs = await Ext4.open(image);
const buf = Buffer.allocUnsafe(CHUNK);

async function copyFile(src: string, dst: string, bytes: number, mode: number): Promise<void> {
  if (bytes <= CHUNK) {
    await fs.writeFile(dst, await readFile(src), { mode });
    return;
  }
  const out = await fs.open(dst, 'w', mode);
  const inp = await open(src, 'r');
  try {
    for (let pos = 0; pos < bytes; pos += CHUNK) {
      const { bytesRead } = await inp.read(buf, 0, Math.min(CHUNK, bytes - pos), pos);
      if (bytesRead === 0) break;
      await out.write(buf, 0, bytesRead, pos);
    }
  } finally {
    await inp.close();
    await out.close();
  }
}

async function walk(src: string, dst: string): Promise<void> {
  for (const name of readdirSync(src).sort()) {
    const s = join(src, name);
    const d = dst === '/' ? `/${name}` : `${dst}/${name}`;
    const st = lstatSync(s);
    if (st.isDirectory()) {
      await fs.mkdir(d, { mode: st.mode & 0o7777 });
      await walk(s, d);
    } else if (st.isSymbolicLink()) {
      await fs.symlink(readlinkSync(s), d);
      continue;
    } else if (st.isFile()) await copyFile(s, d, st.size, st.mode & 0o7777);
    else continue;
    await fs.utimes(d, st.atimeMs / 1000, st.mtimeMs / 1000);
  }
}

try {
  await walk(tree, '/');
} finally {
  await fs.close();
}
