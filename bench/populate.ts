// Shared by the "mkfs -d" workloads (mkfs-d-small, mkfs-d-large): format a new image and fill it
// with a host tree, four ways, each checked afterwards (untimed) with `e2fsck -fn` and a
// `debugfs rdump` compared with the tree's manifest (SHA-256 of every file):
//   ext4kit mkfs -d   node bin/ext4kit.js mkfs -q -d TREE IMAGE SIZE            (baseline)
//   mke2fs -d         mke2fs -q -F -t ext4 -O orphan_file,metadata_csum_seed -d TREE IMAGE SIZE
//   ext2fs (npm)      mke2fs empty image (untimed), then bench/tools/ext2fs-copy-in.cjs (timed)
//   kernel            mke2fs empty image (untimed), then mount -o loop + cp -a + sync + umount (timed)
// ext4kit's defaults are mke2fs 1.47's upstream ones (orphan_file, metadata_csum_seed), which the
// host's /etc/mke2fs.conf (Debian) leaves out: mke2fs -d and the kernel row get them with -O so
// that the three have the same geometry and features (checked: dumpe2fs -h features per row).
// The ext2fs row cannot have orphan_file (its libext2fs is 1.44-era and refuses to mount it).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { debugfsRdump, dumpe2fsHeader, haveCommand, loopMountSupport, runTool, toolPath } from '../test/support/oracles.ts';
import { baselineOf, cached, ext4kitCli, formatKiB, formatMs, rowOf, sameRoundRatio, type BenchContext, type CacheMode, type Competitor, type CompetitorResult, type Section, type SectionResult } from './harness.ts';
import { generateBenchTree, treeManifest, verifyTree, type BenchTreeOptions, type TreeStats } from './tree.ts';
import { ensureExt2fs } from './workloads/ext2fs-probe.ts';

/** Features that ext4kit has by default and the host's mke2fs.conf does not. */
export const EXT4KIT_EXTRA_FEATURES = 'orphan_file,metadata_csum_seed';
/** The issue's memory target for ext4kit, whatever the image size. */
export const RSS_TARGET_KIB = 256 * 1024;

export interface PopulateSpec {
  /** Workload id: names the cached input and the scratch files. */
  id: string;
  tree: BenchTreeOptions;
  imageBytes: number;
  /** SIZE argument for the tools, e.g. '1G'. */
  imageArg: string;
  /** Target (cold cache): ext4kit's time within this multiple of mke2fs -d's (same-round median ratio). */
  mke2fsRatioTarget: number;
  /** Target (warm cache, issue 11): ext4kit's time within this multiple of mke2fs -d's. */
  mke2fsWarmRatioTarget: number;
  /** Target: ext2fs's median at least this multiple of ext4kit's. */
  ext2fsSpeedupTarget: number;
  /** Runs of the ext2fs row at most (it is slow). */
  ext2fsMaxRuns?: number;
  describe: (stats: TreeStats) => string;
}

const MKE2FS_ENV = { E2FSPROGS_LIBMAGIC_SUPPRESS: '1' };

/** How to run `ext4kit mkfs -d`: the CLI when it has -d, else the API stand-in. */
export function mkfsDCommand(ctx: BenchContext): { cli: true; cmd: string; args: string[] } | { cli: false; why: string } {
  if (process.env.BENCH_MKFS_D_FALLBACK) return { cli: false, why: 'BENCH_MKFS_D_FALLBACK is set' };
  const cli = ext4kitCli(ctx.repoRoot, 'mkfs');
  if ('missing' in cli) return { cli: false, why: cli.missing };
  const help = spawnSync(cli.cmd, [...cli.args, '--help'], { encoding: 'utf8', cwd: ctx.repoRoot, timeout: 60_000 });
  if (!/^\s*-d DIR/m.test(`${help.stdout}${help.stderr}`)) return { cli: false, why: '`ext4kit mkfs --help` lists no -d DIR yet' };
  return { cli: true, ...cli };
}

/** A run killed by its timeout may leave the image mounted: take it down before going on. */
export async function unmountLeftover(mnt: string): Promise<void> {
  const mounted = readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mnt);
  if (mounted) await runTool(toolPath('umount'), [mnt], { timeoutMs: 120_000 });
}

async function e2fsckClean(image: string, what: string): Promise<void> {
  const r = await runTool(toolPath('e2fsck'), ['-fn', image], { timeoutMs: 600_000 });
  if (r.exitCode !== 0) throw new Error(`${what}: e2fsck -fn exit ${r.exitCode}\n${(r.stdout + r.stderr).trim().split('\n').slice(0, 10).join('\n')}`);
}

async function mke2fsEmpty(image: string, size: string, features?: string): Promise<void> {
  await rm(image, { force: true });
  const args = ['-q', '-F', '-t', 'ext4', ...(features ? ['-O', features] : []), image, size];
  const r = await runTool(toolPath('mke2fs'), args, { env: MKE2FS_ENV, timeoutMs: 120_000 });
  if (r.exitCode !== 0) throw new Error(`mke2fs ${args.join(' ')}: exit ${r.exitCode}: ${r.stderr.trim()}`);
}

export function findRow(s: SectionResult, prefix: string): CompetitorResult | undefined {
  return s.results.find((r) => r.name.startsWith(prefix));
}

export function pass(ok: boolean | undefined): string {
  return ok === undefined ? 'N/A ' : ok ? 'PASS' : 'FAIL';
}

/** The RSS target line for the baseline rows (largest peak over every cache mode). */
export function rssVerdict(s: SectionResult): string {
  const bases = s.results.filter((r) => r.baseline);
  const known = bases.map((r) => r.peakRssKiB).filter((k): k is number => k !== undefined);
  const kib = known.length ? Math.max(...known) : undefined;
  return `${pass(kib === undefined ? undefined : kib <= RSS_TARGET_KIB)} peak RSS ≤ 256 MiB: ${bases[0]?.name ?? 'ext4kit'} ${kib === undefined ? 'unknown' : formatKiB(kib)} (largest over cold and warm runs)`;
}

/** One PASS/FAIL line: the baseline's same-round ratio to row `ref` in `mode` against `target`. */
export function ratioVerdict(s: SectionResult, ref: string, mode: CacheMode, target: number, label: string): string {
  const b = baselineOf(s, mode);
  const r = rowOf(s, ref, mode);
  const ratio = sameRoundRatio(b, r);
  return `${pass(ratio === undefined ? undefined : ratio <= target)} ${label} (${mode} cache): ` +
    (ratio === undefined ? 'no result' : `${formatMs(b!.medianMs!)} vs ${formatMs(r!.medianMs!)}, same-round median ratio ${ratio.toFixed(2)}× (target ≤ ${target}×)${cpuNote(b!, r!)}`);
}

/** The CPU (user + sys) medians and their ratio: what a busy host distorts least (not judged). */
function cpuNote(b: CompetitorResult, r: CompetitorResult): string {
  if (b.medianCpuMs === undefined || r.medianCpuMs === undefined || r.medianCpuMs <= 0) return '';
  return `; CPU ${formatMs(b.medianCpuMs)} vs ${formatMs(r.medianCpuMs)} = ${(b.medianCpuMs / r.medianCpuMs).toFixed(2)}×`;
}

export async function populateSection(ctx: BenchContext, spec: PopulateSpec): Promise<Section> {
  const input = await cached(ctx, spec.id, JSON.stringify({ v: 1, tree: spec.tree }), async (d) => {
    const stats = await generateBenchTree(join(d, 'tree'), spec.tree);
    await writeFile(join(d, 'manifest.txt'), (await treeManifest(join(d, 'tree'))).join('\n'));
    await writeFile(join(d, 'stats.json'), JSON.stringify(stats));
  });
  const tree = join(input, 'tree');
  const manifest = (await readFile(join(input, 'manifest.txt'), 'utf8')).split('\n');
  const stats = JSON.parse(await readFile(join(input, 'stats.json'), 'utf8')) as TreeStats;
  const image = join(ctx.scratchDir, `${spec.id}.img`);
  const dumpDir = join(ctx.scratchDir, `${spec.id}-rdump`);
  const mnt = join(ctx.scratchDir, `${spec.id}-mnt`);
  const features = new Map<string, string>();

  /** e2fsck -fn, then debugfs rdump compared with the tree (SHA-256 of every file). */
  const check = (what: string) => async (): Promise<void> => {
    await e2fsckClean(image, what);
    await rm(dumpDir, { recursive: true, force: true });
    try {
      await debugfsRdump(image, dumpDir);
      await verifyTree(manifest, dumpDir, what);
    } finally {
      await rm(dumpDir, { recursive: true, force: true });
    }
    if (!features.has(what)) features.set(what, (await dumpe2fsHeader(image))['Filesystem features'] ?? '?');
  };
  const removeImage = () => rm(image, { force: true });
  const common = { cleanup: removeImage, verifyEvery: 'first' as const, coldCache: true };

  const how = mkfsDCommand(ctx);
  const ext4kit: Competitor = how.cli
    ? {
        ...common,
        name: 'ext4kit mkfs -d',
        baseline: true,
        prepare: removeImage,
        command: () => ({ cmd: how.cmd, args: [...how.args, '-q', '-d', tree, image, spec.imageArg], cwd: ctx.repoRoot }),
        verify: check('ext4kit mkfs -d'),
        note: `node bin/ext4kit.js mkfs -q -d TREE IMAGE ${spec.imageArg} (the CLI bundle dist/cli.mjs, rebuilt at the start of the run; start-up, about 0.1 s, included)`,
      }
    : {
        ...common,
        name: 'ext4kit API mkfs+copy (fallback)',
        baseline: true,
        prepare: removeImage,
        command: () => ({ cmd: process.execPath, args: ['--import', 'tsx', join(ctx.repoRoot, 'bench/tools/mkfs-d.ts'), tree, image, String(spec.imageBytes)], cwd: ctx.repoRoot }),
        verify: check('ext4kit API mkfs+copy (fallback)'),
        note: `FALLBACK: the CLI has no mkfs -d (${how.why}); bench/tools/mkfs-d.ts does Ext4.mkfs + a copy through the public API`,
      };

  const mke2fs: Competitor = {
    ...common,
    name: 'mke2fs -d',
    unavailable: async () => (haveCommand('mke2fs') ? undefined : 'mke2fs not installed'),
    prepare: removeImage,
    command: () => ({ cmd: toolPath('mke2fs'), args: ['-q', '-F', '-t', 'ext4', '-O', EXT4KIT_EXTRA_FEATURES, '-d', tree, image, spec.imageArg], env: MKE2FS_ENV }),
    verify: check('mke2fs -d'),
    note: `mke2fs -q -F -t ext4 -O ${EXT4KIT_EXTRA_FEATURES} -d TREE IMAGE ${spec.imageArg}`,
  };

  const ext2fs = await ensureExt2fs(ctx.log);
  const ext2fsRow: Competitor = {
    ...common,
    name: 'ext2fs (npm) copy-in',
    unavailable: async () => ('missing' in ext2fs ? ext2fs.missing : undefined),
    prepare: () => mke2fsEmpty(image, spec.imageArg),
    command: () => ({
      cmd: process.execPath,
      args: [join(ctx.repoRoot, 'bench/tools/ext2fs-copy-in.cjs'), image, tree],
      env: { NODE_PATH: 'missing' in ext2fs ? '' : ext2fs.nodePath },
    }),
    verify: check('ext2fs (npm) copy-in'),
    maxRuns: spec.ext2fsMaxRuns,
    modes: ['cold'],
    note:
      `ext2fs ${'missing' in ext2fs ? '?' : ext2fs.version}: mke2fs -q -F -t ext4 IMAGE ${spec.imageArg} first (untimed, ~30 ms; no orphan_file: ` +
      `its libext2fs cannot mount it), then bench/tools/ext2fs-copy-in.cjs IMAGE TREE (timed); its files are block-mapped; ` +
      `it cannot set times${spec.ext2fsMaxRuns !== undefined ? `; at most ${spec.ext2fsMaxRuns} run(s), it is slow` : ''}`,
  };

  const kernel: Competitor = {
    ...common,
    name: 'kernel mount+cp -a',
    unavailable: async () => {
      const s = await loopMountSupport();
      return s.ok ? undefined : s.reason;
    },
    prepare: async () => {
      await unmountLeftover(mnt);
      await mke2fsEmpty(image, spec.imageArg, EXT4KIT_EXTRA_FEATURES);
      await mkdir(mnt, { recursive: true });
    },
    command: () => ({
      cmd: 'sh',
      args: ['-c', 'mount -t ext4 -o loop "$1" "$2" || exit 1; cp -a "$3/." "$2/"; s=$?; sync; umount "$2" || s=1; exit $s', 'sh', image, mnt, tree],
    }),
    verify: check('kernel mount+cp -a'),
    cleanup: async () => {
      await unmountLeftover(mnt);
      await removeImage();
      if (existsSync(mnt)) await rmdir(mnt).catch(() => undefined);
    },
    note:
      `mke2fs -q -F -t ext4 -O ${EXT4KIT_EXTRA_FEATURES} IMAGE ${spec.imageArg} first (untimed), then mount -o loop, cp -a TREE/. MNT/, sync, umount (timed); ` +
      'peak RSS is cp\'s (kernel memory not counted)',
  };

  return {
    title: `mkfs -d: ${spec.describe(stats)} into a new ${spec.imageArg} image`,
    competitors: [ext4kit, mke2fs, ext2fsRow, kernel],
    notes: [
      `tree: ${stats.files} files, ${stats.dirs} directories, ${stats.symlinks} symlinks, ${(stats.dataBytes / 1024 ** 2).toFixed(0)} MiB of data (cached in ${input})`,
      'every run starts with no image file; cold rows drop the page cache first (the tree is read from disk by every tool), warm rows do not; ' +
        'after the first run of each: e2fsck -fn must exit 0 and debugfs rdump must match the tree (SHA-256 of every file), untimed',
    ],
    verdicts: (s) => {
      const base = features.get(ext4kit.name);
      const differ = [...features].filter(([k, v]) => k !== ext4kit.name && v !== base).map(([k]) => k);
      const out: string[] = [];
      if (features.size) s.notes.push(`features identical to ext4kit's: ${[...features.keys()].filter((k) => k !== ext4kit.name && !differ.includes(k)).join(', ') || 'none'}${differ.length ? `; different: ${differ.map((k) => `${k} (${features.get(k)})`).join('; ')}` : ''}`);
      const b = baselineOf(s, 'cold');
      const e = findRow(s, 'ext2fs');
      const bm = b?.medianMs;
      out.push(ratioVerdict(s, 'mke2fs -d', 'warm', spec.mke2fsWarmRatioTarget, `time within ${spec.mke2fsWarmRatioTarget}× of mke2fs -d (issue 11)`));
      out.push(ratioVerdict(s, 'mke2fs -d', 'cold', spec.mke2fsRatioTarget, `time within ${spec.mke2fsRatioTarget}× of mke2fs -d`));
      const speedup = bm !== undefined && e?.medianMs !== undefined ? e.medianMs / bm : undefined;
      out.push(`${pass(speedup === undefined ? undefined : speedup >= spec.ext2fsSpeedupTarget)} at least ${spec.ext2fsSpeedupTarget}× faster than ext2fs (npm): ` +
        (speedup === undefined ? `no result${e?.skipped ? ` (ext2fs skipped: ${e.skipped})` : e?.failed ? ' (ext2fs failed)' : ''}` : `${formatMs(e!.medianMs!)} / ${formatMs(bm!)} = ${speedup.toFixed(1)}×`));
      out.push(rssVerdict(s));
      return out;
    },
  };
}
