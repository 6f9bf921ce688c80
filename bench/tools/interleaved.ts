// Writes the "interleaved" workload's files round-robin, one chunk of each file in turn, either
// into an ext4 image through ext4kit's API (one process, one handle per file) or into a host
// directory (a loop-mounted ext4) with fs.writeSync. Usage:
//   interleaved.ts ext4kit IMAGE FILES CHUNK_BYTES FILE_BYTES
//   interleaved.ts host DIR FILES CHUNK_BYTES FILE_BYTES
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Ext4 } from '../../src/node.ts';
import { chunkOf, chunksPerFile, fileName, type InterleavedParams } from '../interleaved-data.ts';

const [mode, target, files, chunk, bytes] = process.argv.slice(2);
if ((mode !== 'ext4kit' && mode !== 'host') || !target || ![files, chunk, bytes].every((x) => x !== undefined && /^\d+$/.test(x))) {
  process.stderr.write('usage: interleaved.ts ext4kit|host IMAGE|DIR FILES CHUNK_BYTES FILE_BYTES\n');
  process.exit(2);
}
const p: InterleavedParams = { files: Number(files), chunkBytes: Number(chunk), fileBytes: Number(bytes) };
const n = chunksPerFile(p);

if (mode === 'ext4kit') {
  const fs = await Ext4.open(target);
  try {
    const handles = [];
    for (let f = 0; f < p.files; f++) handles.push(await fs.open(`/${fileName(f)}`, 'w', 0o644));
    for (let i = 0; i < n; i++) {
      for (let f = 0; f < p.files; f++) {
        const data = chunkOf(f, i, p);
        await handles[f]!.write(data, 0, data.length, i * p.chunkBytes);
      }
    }
    for (const h of handles) await h.close();
  } finally {
    await fs.close();
  }
} else {
  const fds: number[] = [];
  for (let f = 0; f < p.files; f++) fds.push(openSync(join(target, fileName(f)), 'w', 0o644));
  for (let i = 0; i < n; i++) {
    for (let f = 0; f < p.files; f++) {
      const data = chunkOf(f, i, p);
      writeSync(fds[f]!, data, 0, data.length, i * p.chunkBytes);
    }
  }
  for (const fd of fds) closeSync(fd);
}
