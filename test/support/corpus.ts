// The e2fsprogs test-image corpus (../shared/corpus/e2fsprogs beside the repository): its index and
// fresh, writable copies of its images.
import { createReadStream, createWriteStream, existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { tmpImagePath } from './images.ts';

export interface CorpusEntry {
  id: string;
  /** 'clean', 'clean_replay', 'corrupt', 'sb_corrupt', 'not_fs', 'journal_dev', ... */
  verdict: string;
  category: string;
  /** Feature names as dumpe2fs spells them; empty when unknown. */
  features: string[];
  /** Block and cluster size in bytes; null when the image has no readable superblock. */
  blocksize: number | null;
  clustersize: number | null;
  /** What `e2fsck -fn` returned on the image. */
  e2fsckExit: number;
  /** null when unknown ('-'). */
  needsRecovery: boolean | null;
  sizeBytes: number;
  description: string;
}

/** The corpus directory; EXT4KIT_CORPUS overrides the default location. */
export function corpusDir(): string {
  return process.env.EXT4KIT_CORPUS ?? fileURLToPath(new URL('../../../shared/corpus/e2fsprogs', import.meta.url));
}

export function corpusAvailable(): { ok: boolean; reason?: string } {
  const dir = corpusDir();
  if (!existsSync(join(dir, 'INDEX.tsv'))) return { ok: false, reason: `no e2fsprogs corpus at ${dir} (INDEX.tsv missing)` };
  return { ok: true };
}

let cached: CorpusEntry[] | undefined;

function num(s: string | undefined): number | null {
  return s === undefined || s === '-' || s === '' || !/^\d+$/.test(s) ? null : Number(s);
}

/** Entries of INDEX.tsv, in file order. Throws when the corpus is missing or the index malformed. */
export function listCorpus(): CorpusEntry[] {
  if (cached) return cached;
  const text = readFileSync(join(corpusDir(), 'INDEX.tsv'), 'utf8');
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const header = lines.shift()?.split('\t') ?? [];
  const col = (name: string): number => {
    const i = header.indexOf(name);
    if (i < 0) throw new Error(`corpus INDEX.tsv: no column ${name}`);
    return i;
  };
  const c = {
    id: col('id'),
    verdict: col('verdict'),
    category: col('category'),
    size: col('size_bytes'),
    features: col('features'),
    blocksize: col('blocksize'),
    clustersize: col('clustersize'),
    exit: col('e2fsck_fn_exit'),
    recovery: col('needs_recovery'),
    description: col('description'),
  };
  cached = lines.map((line, i) => {
    const f = line.split('\t');
    const id = f[c.id] ?? '';
    const exit = num(f[c.exit]);
    if (!/^[A-Za-z0-9_.-]+$/.test(id) || exit === null) throw new Error(`corpus INDEX.tsv line ${i + 2} malformed: ${line}`);
    const feats = f[c.features] ?? '-';
    const rec = f[c.recovery];
    return {
      id,
      verdict: f[c.verdict] ?? '',
      category: f[c.category] ?? '',
      features: feats === '-' || feats === '' ? [] : feats.split(','),
      blocksize: num(f[c.blocksize]),
      clustersize: num(f[c.clustersize]),
      e2fsckExit: exit,
      needsRecovery: rec === 'yes' ? true : rec === 'no' ? false : null,
      sizeBytes: num(f[c.size]) ?? 0,
      description: f[c.description] ?? '',
    };
  });
  return cached;
}

/** Gunzips image `id` into a fresh temporary file (a new copy on every call) and returns its path. */
export async function extractCorpusImage(id: string): Promise<string> {
  if (!listCorpus().some((e) => e.id === id)) throw new Error(`corpus: unknown image ${id}`);
  const out = tmpImagePath(`corpus-${id}`);
  await pipeline(createReadStream(join(corpusDir(), `${id}.img.gz`)), createGunzip(), createWriteStream(out));
  return out;
}

/** Contents of the corpus's side files for `id` ('expect1', 'expect2', 'name'), if present. */
export function corpusSideFile(id: string, kind: 'expect1' | 'expect2' | 'expect' | 'name'): string | undefined {
  const p = join(corpusDir(), `${id}.${kind}`);
  return existsSync(p) ? readFileSync(p, 'utf8') : undefined;
}
