// Benchmark input trees (seeded, deterministic) and content manifests used to check that every
// tool's output holds exactly the input: type, size and SHA-256 of each file, symlink targets.
import { createCipheriv, createHash } from 'node:crypto';
import { mkdir, readdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mulberry32 } from '../test/support/fixture-tree.ts';

export interface BenchTreeOptions {
  seed: number;
  /** Directories in all, as top-level directories each holding subdirectories. */
  dirs: number;
  smallFiles: number;
  /** Small file sizes are uniform in [0, smallMaxBytes]. */
  smallMaxBytes: number;
  largeFiles: number;
  largeBytes: number;
  symlinks: number;
}

export const READ_TREE_DEFAULT: BenchTreeOptions = {
  seed: 42,
  dirs: 1000,
  smallFiles: 20_000,
  smallMaxBytes: 8192,
  largeFiles: 4,
  largeBytes: 64 * 1024 * 1024,
  symlinks: 50,
};

/** Deterministic pseudo-random bytes: AES-128-CTR of zeros under a key derived from the seed. */
export class ByteStream {
  private readonly cipher;
  constructor(seed: number) {
    const key = createHash('sha256').update(`ext4kit-bench-${seed}`).digest().subarray(0, 16);
    this.cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  }
  next(n: number): Buffer {
    return this.cipher.update(Buffer.alloc(n));
  }
}

async function mapLimit<T>(items: T[], limit: number, fn: (x: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (i < items.length) await fn(items[i++]!);
  }));
}

export interface TreeStats {
  dirs: number;
  files: number;
  symlinks: number;
  dataBytes: number;
}

/** Writes the tree under `root` (which must be empty or missing). */
export async function generateBenchTree(root: string, o: BenchTreeOptions): Promise<TreeStats> {
  const rand = mulberry32(o.seed);
  const int = (lo: number, hi: number) => lo + Math.floor((rand() / 0x1_0000_0000) * (hi - lo + 1));
  const bytes = new ByteStream(o.seed);
  await mkdir(root, { recursive: true });

  const top = Math.max(1, Math.round(Math.sqrt(o.dirs / 10)));
  const dirs: string[] = [];
  for (let t = 0; t < top; t++) dirs.push(`t${String(t).padStart(2, '0')}`);
  for (let i = 0; dirs.length < o.dirs; i++) dirs.push(`${dirs[i % top]}/sub${String(i).padStart(4, '0')}`);
  for (const d of dirs) await mkdir(join(root, d), { recursive: true });

  const files: Array<{ path: string; data: Buffer }> = [];
  let dataBytes = 0;
  for (let i = 0; i < o.smallFiles; i++) {
    const size = int(0, o.smallMaxBytes);
    files.push({ path: `${dirs[int(0, dirs.length - 1)]}/f${String(i).padStart(5, '0')}.dat`, data: bytes.next(size) });
    dataBytes += size;
  }
  await mapLimit(files, 32, (f) => writeFile(join(root, f.path), f.data));

  if (o.largeFiles > 0) {
    await mkdir(join(root, 'large'));
    for (let i = 0; i < o.largeFiles; i++) {
      // In 8 MiB pieces so that the generator never holds a whole large file.
      const chunk = 8 * 1024 * 1024;
      const path = join(root, 'large', `big-${i}.bin`);
      await writeFile(path, '');
      for (let off = 0; off < o.largeBytes; off += chunk) await writeFile(path, bytes.next(Math.min(chunk, o.largeBytes - off)), { flag: 'a' });
      dataBytes += o.largeBytes;
    }
  }

  for (let i = 0; i < o.symlinks; i++) {
    const from = dirs[int(0, dirs.length - 1)]!;
    const to = files[int(0, files.length - 1)]!.path;
    await symlink(`${'../'.repeat(from.split('/').length)}${to}`, join(root, from, `link${i}`));
  }
  return { dirs: dirs.length + (o.largeFiles > 0 ? 1 : 0), files: files.length + o.largeFiles, symlinks: o.symlinks, dataBytes };
}

// ---- manifests -----------------------------------------------------------------------------------

/**
 * One line per entry, sorted by path: `d PATH`, `f PATH SIZE SHA256`, `l PATH TARGET`, `? PATH`.
 * Names are compared as raw bytes (latin1 round-trip). `lost+found` at the root is left out
 * (mke2fs makes it; tools copy it or not).
 */
export async function treeManifest(root: string): Promise<string[]> {
  const lines: string[] = [];
  const jobs: Array<{ rel: string; abs: string; idx: number }> = [];
  const walk = async (absDir: Buffer, rel: string): Promise<void> => {
    const entries = await readdir(absDir, { withFileTypes: true, encoding: 'buffer' });
    for (const e of entries) {
      const name = e.name.toString('latin1');
      const childRel = rel ? `${rel}/${name}` : name;
      if (!rel && name === 'lost+found') continue;
      const abs = Buffer.concat([absDir, Buffer.from('/'), e.name]);
      if (e.isDirectory()) {
        lines.push(`d ${childRel}`);
        await walk(abs, childRel);
      } else if (e.isSymbolicLink()) {
        lines.push(`l ${childRel} ${(await readlink(abs, { encoding: 'buffer' })).toString('latin1')}`);
      } else if (e.isFile()) {
        jobs.push({ rel: childRel, abs: abs.toString('latin1'), idx: lines.length });
        lines.push('');
      } else lines.push(`? ${childRel}`);
    }
  };
  await walk(Buffer.from(root), '');
  await mapLimit(jobs, 8, async (j) => {
    const data = await readFile(Buffer.from(j.abs, 'latin1'));
    lines[j.idx] = `f ${j.rel} ${data.length} ${createHash('sha256').update(data).digest('hex')}`;
  });
  return lines.sort();
}

/** Throws with the first differences when `actualRoot` does not hold what `expected` lists. */
export async function verifyTree(expected: string[], actualRoot: string, what: string): Promise<void> {
  const actual = await treeManifest(actualRoot);
  const exp = new Set(expected);
  const act = new Set(actual);
  const missing = expected.filter((l) => !act.has(l));
  const extra = actual.filter((l) => !exp.has(l));
  if (missing.length === 0 && extra.length === 0) return;
  const show = (ls: string[]) => ls.slice(0, 5).map((l) => `    ${l.slice(0, 120)}`).join('\n');
  throw new Error(
    `${what}: output differs from the input tree (${missing.length} expected entries missing or different, ${extra.length} unexpected)` +
      (missing.length ? `\n  expected:\n${show(missing)}` : '') +
      (extra.length ? `\n  found:\n${show(extra)}` : ''),
  );
}
