// Workload "journal": writes into an EXISTING image through the jbd2 log (ordered mode, lazy
// checkpointing) against the same without a log and against the kernel:
//   - `ext4kit put -r` of the 20,000-file tree and of 8 × 64 MiB files into a fresh
//     `ext4kit mkfs -q IMAGE 1G` image (journaled; baseline), into one made with
//     `-O ^has_journal` (no log), and the kernel: loop mount of the journaled image + cp -a + sync
//     + umount. Targets: journaled ≤ 1.3× no log, and ≤ 1.0× the kernel (same-round medians).
//   - small-file create+fsync (4 KiB each, fsync before close): ext4kit's API vs node:fs on a
//     kernel loop mount of the same kind of image; the rates are printed (no target).
// The images are made untimed before every run; the first run of each row is checked with
// e2fsck -fn and a debugfs rdump compared with the tree's manifest.
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { debugfsRdump, loopMountSupport, runTool, toolPath } from '../../test/support/oracles.ts';
import { cached, ext4kitCli, median, rowOf, sameRoundRatio, type BenchContext, type Competitor, type Section, type SectionResult, type Workload } from '../harness.ts';
import { generateBenchTree, treeManifest, verifyTree, type BenchTreeOptions, type TreeStats } from '../tree.ts';
import { pass, ratioVerdict, rssVerdict, unmountLeftover } from '../populate.ts';

const IMAGE_ARG = '1G';
/** Journaled put -r within this multiple of the same without a log (same-round median). */
const NO_LOG_TARGET = 1.3;
/** ...and no slower than the kernel's loop mount. */
const KERNEL_TARGET = 1.0;
const FSYNC_FILES = 2000;

// The same trees (and cache entries) as mkfs-d-small and mkfs-d-large.
const SMALL: BenchTreeOptions = { seed: 11, dirs: 1000, smallFiles: 20_000, smallMaxBytes: 8192, largeFiles: 0, largeBytes: 0, symlinks: 0 };
const LARGE: BenchTreeOptions = { seed: 12, dirs: 1, smallFiles: 0, smallMaxBytes: 0, largeFiles: 8, largeBytes: 64 * 1024 * 1024, symlinks: 0 };

async function treeInput(ctx: BenchContext, id: string, tree: BenchTreeOptions): Promise<{ tree: string; manifest: string[]; stats: TreeStats }> {
  const input = await cached(ctx, id, JSON.stringify({ v: 1, tree }), async (d) => {
    const stats = await generateBenchTree(join(d, 'tree'), tree);
    await writeFile(join(d, 'manifest.txt'), (await treeManifest(join(d, 'tree'))).join('\n'));
    await writeFile(join(d, 'stats.json'), JSON.stringify(stats));
  });
  return {
    tree: join(input, 'tree'),
    manifest: (await readFile(join(input, 'manifest.txt'), 'utf8')).split('\n'),
    stats: JSON.parse(await readFile(join(input, 'stats.json'), 'utf8')) as TreeStats,
  };
}

function mkfsImage(ctx: BenchContext, image: string, noJournal: boolean): void {
  const cli = ext4kitCli(ctx.repoRoot, 'mkfs');
  if ('missing' in cli) throw new Error(cli.missing);
  const r = spawnSync(cli.cmd, [...cli.args, '-q', ...(noJournal ? ['-O', '^has_journal'] : []), image, IMAGE_ARG], { cwd: ctx.repoRoot, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ext4kit mkfs: ${r.stderr}`);
}

async function e2fsckClean(image: string, what: string): Promise<void> {
  const r = await runTool(toolPath('e2fsck'), ['-fn', image], { timeoutMs: 600_000 });
  if (r.exitCode !== 0) throw new Error(`${what}: e2fsck -fn exit ${r.exitCode}\n${(r.stdout + r.stderr).trim().split('\n').slice(0, 10).join('\n')}`);
}

const kernelUnavailable = async (): Promise<string | undefined> => {
  const s = await loopMountSupport();
  return s.ok ? undefined : s.reason;
};

async function putSection(ctx: BenchContext, id: string, treeOpts: BenchTreeOptions, label: string): Promise<Section> {
  const { tree, manifest, stats } = await treeInput(ctx, id, treeOpts);
  const image = join(ctx.scratchDir, `journal-${id}.img`);
  const dumpDir = join(ctx.scratchDir, `journal-${id}-rdump`);
  const mnt = join(ctx.scratchDir, `journal-${id}-mnt`);
  const put = ext4kitCli(ctx.repoRoot, 'put');
  const check = (what: string) => async (): Promise<void> => {
    await e2fsckClean(image, what);
    await rm(dumpDir, { recursive: true, force: true });
    try {
      await debugfsRdump(image, dumpDir);
      await verifyTree(manifest, dumpDir, what);
    } finally {
      await rm(dumpDir, { recursive: true, force: true });
    }
  };
  const removeImage = () => rm(image, { force: true });
  const ext4kitRow = (noJournal: boolean): Competitor => ({
    name: noJournal ? 'ext4kit put -r, no log' : 'ext4kit put -r, journaled',
    baseline: !noJournal,
    unavailable: async () => ('missing' in put ? put.missing : undefined),
    prepare: async () => { await removeImage(); mkfsImage(ctx, image, noJournal); },
    command: () => ('missing' in put ? { cmd: 'false', args: [] } : { cmd: put.cmd, args: [...put.args, '-r', image, `${tree}/.`, '/'], cwd: ctx.repoRoot }),
    verify: check(noJournal ? 'ext4kit put -r, no log' : 'ext4kit put -r, journaled'),
    verifyEvery: 'first',
    cleanup: removeImage,
    note: `ext4kit mkfs -q ${noJournal ? '-O ^has_journal ' : ''}IMAGE ${IMAGE_ARG} (untimed), then node bin/ext4kit.js put -r IMAGE TREE/. / (timed, CLI bundle start-up included)`,
  });
  const kernel: Competitor = {
    name: 'kernel mount+cp -a',
    unavailable: kernelUnavailable,
    prepare: async () => { await unmountLeftover(mnt); await removeImage(); mkfsImage(ctx, image, false); await mkdir(mnt, { recursive: true }); },
    command: () => ({ cmd: 'sh', args: ['-c', 'mount -t ext4 -o loop "$1" "$2" || exit 1; cp -a "$3/." "$2/"; s=$?; sync; umount "$2" || s=1; exit $s', 'sh', image, mnt, tree] }),
    verify: check('kernel mount+cp -a'),
    verifyEvery: 'first',
    cleanup: async () => { await unmountLeftover(mnt); await removeImage(); if (existsSync(mnt)) await rmdir(mnt).catch(() => undefined); },
    note: `the same journaled ext4kit mkfs image (untimed), then mount -o loop, cp -a TREE/. MNT/, sync, umount (timed); peak RSS is cp's`,
  };
  return {
    title: `put -r into an existing ${IMAGE_ARG} image: ${label}`,
    competitors: [ext4kitRow(false), ext4kitRow(true), kernel],
    notes: [`tree: ${stats.files} files, ${stats.dirs} directories, ${(stats.dataBytes / 1024 ** 2).toFixed(0)} MiB of data (cached; shared with the mkfs -d workloads)`],
    verdicts: (s) => [
      ratioVerdict(s, 'ext4kit put -r, no log', 'warm', NO_LOG_TARGET, `journaled put -r within ${NO_LOG_TARGET}× of the same without a log`),
      ratioVerdict(s, 'ext4kit put -r, no log', 'cold', NO_LOG_TARGET, `journaled put -r within ${NO_LOG_TARGET}× of the same without a log`),
      ratioVerdict(s, 'kernel', 'warm', KERNEL_TARGET, `journaled put -r no slower than the kernel's loop mount`),
      ratioVerdict(s, 'kernel', 'cold', KERNEL_TARGET, `journaled put -r no slower than the kernel's loop mount`),
      rssVerdict(s),
    ],
  };
}

async function fsyncSection(ctx: BenchContext): Promise<Section> {
  const image = join(ctx.scratchDir, 'journal-fsync.img');
  const mnt = join(ctx.scratchDir, 'journal-fsync-mnt');
  const tool = join(ctx.repoRoot, 'bench/tools/journal-fsync.ts');
  const inner: Record<string, Record<string, number[]>> = { ext4kit: { cold: [], warm: [] }, kernel: { cold: [], warm: [] } };
  const innerFile = (who: string) => join(ctx.scratchDir, `journal-fsync-${who}-ms.txt`);
  const verifyCount = async (who: string, mode: 'cold' | 'warm', index: number): Promise<void> => {
    inner[who]![mode]![index] = Number(readFileSync(innerFile(who), 'utf8'));
    await e2fsckClean(image, who);
    const ls = await runTool(toolPath('debugfs'), ['-R', 'ls -p /fsync', image]);
    const n = ls.stdout.split('\n').filter((l) => /\/f\d+\//.test(l)).length;
    if (n !== FSYNC_FILES) throw new Error(`${who}: ${n} files in /fsync, expected ${FSYNC_FILES}`);
  };
  const ext4kit: Competitor = {
    name: 'ext4kit create+fsync',
    baseline: true,
    prepare: async () => { await rm(image, { force: true }); mkfsImage(ctx, image, false); },
    command: () => ({ cmd: process.execPath, args: ['--import', 'tsx', tool, 'ext4kit', image, String(FSYNC_FILES)], cwd: ctx.repoRoot, env: { BENCH_INNER_MS_FILE: innerFile('ext4kit') } }),
    verify: ({ mode, index }) => verifyCount('ext4kit', mode, index),
    cleanup: () => rm(image, { force: true }),
    note: `node --import tsx bench/tools/journal-fsync.ts ext4kit IMAGE ${FSYNC_FILES}: open, then per file open/write 4 KiB/FileHandle.sync/close, then close`,
  };
  const kernel: Competitor = {
    name: 'kernel create+fsync',
    unavailable: kernelUnavailable,
    prepare: async () => { await unmountLeftover(mnt); await rm(image, { force: true }); mkfsImage(ctx, image, false); await mkdir(mnt, { recursive: true }); },
    command: () => ({
      cmd: 'sh',
      args: ['-c', 'mount -t ext4 -o loop "$1" "$2" || exit 1; "$3" --import tsx "$4" host "$2" "$5"; s=$?; umount "$2" || s=1; exit $s', 'sh', image, mnt, process.execPath, tool, String(FSYNC_FILES)],
      cwd: ctx.repoRoot,
      env: { BENCH_INNER_MS_FILE: innerFile('kernel') },
    }),
    verify: ({ mode, index }) => verifyCount('kernel', mode, index),
    cleanup: async () => { await unmountLeftover(mnt); await rm(image, { force: true }); if (existsSync(mnt)) await rmdir(mnt).catch(() => undefined); },
    note: `the same image on a loop mount; bench/tools/journal-fsync.ts host MNT ${FSYNC_FILES} (node:fs openSync/writeSync/fsyncSync/closeSync)`,
  };
  return {
    title: `small-file create+fsync: ${FSYNC_FILES} files of 4 KiB, each fsynced`,
    competitors: [ext4kit, kernel],
    notes: ['rates from the create+fsync loop alone (in-process time, without node start-up, mount or close)'],
    verdicts: (s: SectionResult) => {
      const out: string[] = [];
      for (const m of ['cold', 'warm'] as const) {
        const a = inner.ext4kit![m]!.filter((x) => x !== undefined);
        const k = inner.kernel![m]!.filter((x) => x !== undefined);
        if (!a.length || !k.length) { out.push(`${pass(undefined)} create+fsync rate (${m}): no result`); continue; }
        const rate = (ms: number) => `${(FSYNC_FILES / (ms / 1000)).toFixed(0)} files/s`;
        const ratio = sameRoundRatio(rowOf(s, 'ext4kit', m), rowOf(s, 'kernel', m));
        s.notes.push(`create+fsync (${m}): ext4kit ${rate(median(a))}, kernel ${rate(median(k))}; whole-run same-round ratio ${ratio?.toFixed(2) ?? '?'}×`);
      }
      out.push(rssVerdict(s));
      return out;
    },
  };
}

export const journal: Workload = {
  id: 'journal',
  title: 'journaled writes into an existing image: put -r (small files, large files) and create+fsync',
  inDefaultSet: true,
  async sections(ctx) {
    return [
      await putSection(ctx, 'mkfs-d-small', SMALL, '20,000 small files (0–8 KiB) in 1,000 directories'),
      await putSection(ctx, 'mkfs-d-large', LARGE, '8 × 64 MiB files'),
      await fsyncSection(ctx),
    ];
  },
};
