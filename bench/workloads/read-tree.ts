// Workload "read tree out": copy every file of an image (many small files in many directories
// plus a few large ones) to a host directory with ext4kit, debugfs rdump and the kernel (loop
// mount + tar). Every output is checked against the input tree's manifest.
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeImage } from '../../test/support/images.ts';
import { haveCommand, loopMountSupport, runTool, toolPath } from '../../test/support/oracles.ts';
import { cached, ext4kitCli, type BenchContext, type Competitor, type Section, type SectionResult, type Workload } from '../harness.ts';
import { ratioVerdict, rssVerdict } from '../populate.ts';
import { generateBenchTree, READ_TREE_DEFAULT, treeManifest, verifyTree } from '../tree.ts';

const IMAGE_BYTES = 1024 ** 3;

/** Outputs go to tmpfs when /dev/shm is one (issue 11 measures the export there): no disk in the way. */
function outputRoot(ctx: BenchContext): { dir: string; tmpfs: boolean } {
  const shm = readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === '/dev/shm' && l.split(' ')[2] === 'tmpfs');
  return shm ? { dir: join('/dev/shm', `ext4kit-bench-${process.pid}`), tmpfs: true } : { dir: ctx.scratchDir, tmpfs: false };
}

/** A run killed by its timeout leaves the image mounted: take it down before going on. */
async function unmountLeftover(mnt: string): Promise<void> {
  const mounted = readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mnt);
  if (mounted) await runTool(toolPath('umount'), [mnt], { timeoutMs: 120_000 });
}

/** The input image (`mke2fs -d`, 4 KiB blocks, ext4 defaults) and its manifest, built once. */
export async function readTreeInput(ctx: BenchContext): Promise<{ image: string; tree: string; manifest: string[]; summary: string }> {
  const opts = READ_TREE_DEFAULT;
  const key = JSON.stringify({ v: 1, opts, IMAGE_BYTES });
  const dir = await cached(ctx, 'read-tree', key, async (d) => {
    const stats = await generateBenchTree(join(d, 'tree'), opts);
    await makeImage({ dir: join(d, 'tree'), blockSize: 4096, sizeBytes: IMAGE_BYTES, out: join(d, 'image.img'), timeoutMs: 1_800_000 });
    await writeFile(join(d, 'manifest.txt'), (await treeManifest(join(d, 'tree'))).join('\n'));
    await writeFile(join(d, 'stats.json'), JSON.stringify(stats));
  });
  const stats = JSON.parse(await readFile(join(dir, 'stats.json'), 'utf8')) as { dirs: number; files: number; symlinks: number; dataBytes: number };
  return {
    image: join(dir, 'image.img'),
    tree: join(dir, 'tree'),
    manifest: (await readFile(join(dir, 'manifest.txt'), 'utf8')).split('\n'),
    summary:
      `image: ${IMAGE_BYTES / 1024 ** 3} GiB, mke2fs -d, 4 KiB blocks, ext4 defaults; ${stats.files} files ` +
      `(${opts.smallFiles} of 0–${opts.smallMaxBytes / 1024} KiB, ${opts.largeFiles} × ${opts.largeBytes / 1024 ** 2} MiB random), ` +
      `${stats.dirs} directories, ${stats.symlinks} symlinks, ${(stats.dataBytes / 1024 ** 2).toFixed(0)} MiB of data`,
  };
}

export const readTree: Workload = {
  id: 'read-tree',
  title: 'read tree out',
  inDefaultSet: true,
  async sections(ctx) {
    const input = await readTreeInput(ctx);
    const root = outputRoot(ctx);
    const out = join(root.dir, 'read-tree-out');
    const fresh = (create: boolean) => async () => {
      await rm(out, { recursive: true, force: true });
      if (create) await mkdir(out, { recursive: true });
    };
    const verify = (what: string) => () => verifyTree(input.manifest, out, what);
    const cleanup = async () => {
      await rm(out, { recursive: true, force: true });
      if (root.tmpfs) await rmdir(root.dir).catch(() => undefined);
    };

    const cli = ext4kitCli(ctx.repoRoot, 'get');
    // The library alone, without the CLI's fidelity work (times, owners, xattrs, safety checks):
    // the baseline while the CLI lacks `get`, a reference row once it has it.
    const copyOut: Competitor = {
      name: 'ext4kit API copy-out',
      baseline: 'missing' in cli,
      prepare: fresh(true),
      command: () => ({ cmd: process.execPath, args: ['--import', 'tsx', join(ctx.repoRoot, 'bench/tools/copy-out.ts'), input.image, out], cwd: ctx.repoRoot }),
      verify: verify('ext4kit API copy-out'),
      cleanup,
      note: 'missing' in cli
        ? `the CLI is not ready (${cli.missing}): bench/tools/copy-out.ts copies through the public API instead (4 files in flight; contents, modes, symlinks; no times/owners)`
        : 'reference row: bench/tools/copy-out.ts, the public API without the CLI (4 files in flight; contents, modes, symlinks; no times/owners/xattrs)',
    };
    const get: Competitor | undefined = 'missing' in cli
      ? undefined
      : {
          name: 'ext4kit get -r',
          baseline: true,
          prepare: fresh(true),
          command: () => ({ cmd: cli.cmd, args: [...cli.args, '-r', input.image, '/', out], cwd: ctx.repoRoot }),
          verify: verify('ext4kit get -r'),
          cleanup,
          note: 'spawned as `node bin/ext4kit.js get -r IMAGE / OUT` (the CLI bundle: start-up included); keeps times, owners, hard links, xattrs; ' +
            'plain files are written by two threads only when the 1-minute load average is under the CPU count (EXT4KIT_GET_WORKERS=N forces N)',
        };

    const debugfs: Competitor = {
      name: 'debugfs rdump',
      unavailable: async () => (haveCommand('debugfs') ? undefined : 'debugfs not installed'),
      prepare: fresh(true),
      command: () => ({ cmd: toolPath('debugfs'), args: ['-R', `rdump / ${out}`, input.image] }),
      verify: verify('debugfs rdump'),
      cleanup,
    };

    const mnt = join(ctx.scratchDir, 'read-tree-mnt');
    const kernel: Competitor = {
      name: 'kernel mount + tar',
      unavailable: async () => {
        const s = await loopMountSupport();
        return s.ok ? undefined : s.reason;
      },
      prepare: async () => {
        await unmountLeftover(mnt);
        await fresh(true)();
        await mkdir(mnt, { recursive: true });
      },
      // Mount and unmount are part of the timed step, as opening the image is for the others.
      command: () => ({
        cmd: 'sh',
        args: ['-c', 'mount -t ext4 -o ro,loop "$1" "$2" || exit 1; tar -C "$2" -cf - . | tar -C "$3" -xf -; s=$?; umount "$2" || s=1; exit $s', 'sh', input.image, mnt, out],
      }),
      verify: verify('kernel mount + tar'),
      cleanup: async () => {
        await unmountLeftover(mnt);
        await cleanup();
        // Never recursive: a failed unmount would leave the image's tree under it.
        if (existsSync(mnt)) await rmdir(mnt).catch(() => undefined);
      },
      note: 'mount -o ro,loop, then tar -cf - . | tar -xf -, then umount, all timed; peak RSS is the largest tar process (kernel memory not counted)',
    };

    const section: Section = {
      title: 'read tree out (image → host directory)',
      competitors: get ? [get, debugfs, kernel, copyOut] : [copyOut, debugfs, kernel],
      notes: [input.summary, `outputs go to ${root.tmpfs ? `tmpfs (${root.dir})` : `the bench scratch directory (/dev/shm is not a tmpfs here)`} for every tool; each run starts from an empty output directory; outputs checked by SHA-256 of every file and every symlink target (untimed)`],
      verdicts: (s: SectionResult) => [
        ratioVerdict(s, 'debugfs rdump', 'warm', 1.0, `get -r within 1.0× of debugfs rdump${root.tmpfs ? ' to tmpfs' : ''} (issue 11)`),
        ratioVerdict(s, 'debugfs rdump', 'cold', 1.0, `get -r within 1.0× of debugfs rdump${root.tmpfs ? ' to tmpfs' : ''}`),
        rssVerdict(s),
      ],
    };
    return [section];
  },
};
