// The data of the "interleaved" workload, shared by the writer (bench/tools/interleaved.ts) and
// the checker (bench/workloads/interleaved.ts): chunk i of file f is a window of a 4 MiB seeded
// random pool at an offset that depends on (f, i), so that every chunk is incompressible, costs
// nothing to produce (no copy) and a misplaced or missing chunk changes the file's SHA-256.
import { createHash } from 'node:crypto';
import { ByteStream } from './tree.ts';

export interface InterleavedParams {
  files: number;
  chunkBytes: number;
  fileBytes: number;
}

const POOL_BYTES = 4 << 20;
let pool: Buffer | undefined;

export function chunkOf(file: number, i: number, p: InterleavedParams): Buffer {
  pool ??= new ByteStream(2024).next(POOL_BYTES);
  const len = Math.min(p.chunkBytes, p.fileBytes - i * p.chunkBytes);
  const slots = Math.floor((POOL_BYTES - p.chunkBytes) / 64);
  const off = (((file * 1_000_003 + i * 4099) % slots) + slots) % slots * 64;
  return pool.subarray(off, off + len);
}

export function chunksPerFile(p: InterleavedParams): number {
  return Math.ceil(p.fileBytes / p.chunkBytes);
}

export function fileName(file: number): string {
  return `file${file}.bin`;
}

/** SHA-256 (hex) of every file's expected content. */
export function expectedHashes(p: InterleavedParams): string[] {
  const out: string[] = [];
  for (let f = 0; f < p.files; f++) {
    const h = createHash('sha256');
    for (let i = 0; i < chunksPerFile(p); i++) h.update(chunkOf(f, i, p));
    out.push(h.digest('hex'));
  }
  return out;
}
