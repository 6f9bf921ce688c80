// `npm run bench [-- WORKLOAD...]`: runs the default workloads (or the named ones) and prints one
// table per section. Progress goes to stderr, tables to stdout; results also land in
// $BENCH_CACHE/results/latest.json. Environment: BENCH_RUNS (default 3), BENCH_CACHE,
// BENCH_MKFS_D_FALLBACK=1 (mkfs-d-*: time bench/tools/mkfs-d.ts, the API stand-in, instead of the CLI).
import { execFileSync } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultCacheDir, formatMs, formatSection, loadLine, machineFacts, runSection, type BenchContext, type SectionResult, type Workload } from './harness.ts';
import { readTree } from './workloads/read-tree.ts';
import { mkfs } from './workloads/mkfs.ts';
import { ext2fsProbe } from './workloads/ext2fs-probe.ts';
import { mkfsDSmall } from './workloads/mkfs-d-small.ts';
import { mkfsDLarge } from './workloads/mkfs-d-large.ts';
import { interleaved } from './workloads/interleaved.ts';
import { delallocWrite } from './workloads/delalloc-write.ts';
import { fuse } from './workloads/fuse.ts';
import { journal } from './workloads/journal.ts';

/** Every workload, in the order they run. Adding one = one file in workloads/ and one line here. */
const WORKLOADS: Workload[] = [readTree, mkfs, mkfsDSmall, mkfsDLarge, delallocWrite, interleaved, journal, ext2fsProbe, fuse];

function usage(): string {
  return [
    'usage: npm run bench [-- [--list] [WORKLOAD...]]',
    ...WORKLOADS.map((w) => `  ${w.id.padEnd(14)} ${w.title}${w.inDefaultSet ? '' : ' (not in the default set)'}`),
  ].join('\n');
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h') || argv.includes('--list')) {
    process.stdout.write(usage() + '\n');
    return 0;
  }
  const unknown = argv.filter((a) => !WORKLOADS.some((w) => w.id === a));
  if (unknown.length) {
    process.stderr.write(`unknown workload: ${unknown.join(', ')}\n${usage()}\n`);
    return 2;
  }
  const chosen = argv.length ? WORKLOADS.filter((w) => argv.includes(w.id)) : WORKLOADS.filter((w) => w.inDefaultSet);

  const runs = Number(process.env.BENCH_RUNS ?? 3);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`BENCH_RUNS must be a positive integer, not '${process.env.BENCH_RUNS}'`);
  const cacheDir = defaultCacheDir();
  const scratchDir = join(cacheDir, 'scratch');
  await rm(scratchDir, { recursive: true, force: true });
  await mkdir(scratchDir, { recursive: true });
  const ctx: BenchContext = {
    repoRoot: join(dirname(fileURLToPath(import.meta.url)), '..'),
    cacheDir,
    scratchDir,
    runs,
    isRoot: typeof process.getuid === 'function' && process.getuid() === 0,
    log: (msg) => process.stderr.write(`[bench] ${msg}\n`),
  };

  // The CLI runs from its bundle when that is up to date: rebuild it so no row measures tsx.
  execFileSync(process.execPath, [join(ctx.repoRoot, 'scripts/build-cli.mjs')], { stdio: ['ignore', 'ignore', 'inherit'] });
  const started = Date.now();
  process.stdout.write(`# ext4kit benchmarks\n${machineFacts(ctx).map((l) => `  ${l}`).join('\n')}\n\n`);
  const all: SectionResult[] = [];
  for (const w of chosen) {
    ctx.log(`workload ${w.id}: ${w.title}`);
    for (const section of await w.sections(ctx)) {
      ctx.log(`section: ${section.title}`);
      const result = await runSection(ctx, w.id, section);
      all.push(result);
      process.stdout.write(`${formatSection(result, runs)}\n  * ${loadLine()} (after the section)\n\n`);
    }
  }
  process.stdout.write(`total time ${formatMs(Date.now() - started)}\n`);
  await mkdir(join(cacheDir, 'results'), { recursive: true });
  await writeFile(join(cacheDir, 'results', 'latest.json'), JSON.stringify({ date: new Date().toISOString(), facts: machineFacts(ctx), sections: all }, null, 2));
  await rm(scratchDir, { recursive: true, force: true });
  return all.some((s) => s.results.some((r) => r.failed)) ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`bench: ${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = 1;
  },
);
