// Workload "fuse": the same programs through three mounts of the same mke2fs image: ext4kit's
// FUSE server (`ext4kit mount -f`), fuse2fs (e2fsprogs' FUSE server) and the kernel's ext4 on a
// loop device. Rows: dd 1 GiB write + fsync, dd 1 GiB read (cold), untar of a 20,000-file tree,
// fio 4 KiB random writes with fsync, create/stat/unlink of 10,000 files, creation of 100,000
// files (the memory bound: the kernel remembers every one). Every timed run
// includes mount and unmount (for the FUSE servers, unmount waits for the server's write-back),
// and the servers' peak RSS and CPU time (the kernel's own threads are not counted for any row).
// Targets (issue 9): write ≥ 3× fuse2fs and ≥ 50 % of the kernel; never slower than fuse2fs;
// ext4kit's RSS ≤ 256 MiB.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { haveCommand, runTool, toolPath } from '../../test/support/oracles.ts';
import { cached, type BenchContext, type Competitor, type Section, type SectionResult, type Workload } from '../harness.ts';
import { generateBenchTree, type BenchTreeOptions } from '../tree.ts';
import { findRow, pass, unmountLeftover } from '../populate.ts';

const MKE2FS_ENV = { E2FSPROGS_LIBMAGIC_SUPPRESS: '1' };
const FILE_MIB = Number(process.env.BENCH_FUSE_MIB ?? 1024);
const FIO_MIB = Number(process.env.BENCH_FUSE_FIO_MIB ?? 64);
const RSS_LIMIT_KIB = 256 * 1024;
const MANY_FILES = Number(process.env.BENCH_FUSE_MANY_FILES ?? 100_000);
const TREE: BenchTreeOptions = { seed: 20, dirs: 200, smallFiles: 20_000, smallMaxBytes: 8192, largeFiles: 0, largeBytes: 0, symlinks: 20 };

type Kind = 'ext4kit' | 'fuse2fs' | 'kernel';

/** bash lines mounting IMG on MNT (the server as a child of the script) and unmounting it. */
function mountLines(ctx: BenchContext, kind: Kind, ro: boolean): { up: string; down: string } {
  const waitUp = 'for i in $(seq 300); do mountpoint -q "$MNT" && break; sleep 0.05; done; mountpoint -q "$MNT"';
  switch (kind) {
    case 'ext4kit':
      return { up: `"${process.execPath}" "${join(ctx.repoRoot, 'bin/ext4kit.js')}" mount -f ${ro ? '-o ro ' : ''}"$IMG" "$MNT" 2>/dev/null & pid=$!; ${waitUp}`, down: 'umount "$MNT"; wait $pid' };
    case 'fuse2fs':
      return { up: `fuse2fs "$IMG" "$MNT" -f -o fakeroot${ro ? ',ro' : ''} 2>/dev/null & pid=$!; ${waitUp}`, down: 'umount "$MNT"; wait $pid' };
    case 'kernel':
      return { up: `mount -o loop${ro ? ',ro' : ''} "$IMG" "$MNT"`, down: 'umount "$MNT"' };
  }
}

async function mke2fs(image: string, size: string): Promise<void> {
  await rm(image, { force: true });
  const r = await runTool(toolPath('mke2fs'), ['-q', '-F', '-t', 'ext4', '-b', '4096', image, size], { env: MKE2FS_ENV, timeoutMs: 120_000 });
  if (r.exitCode !== 0) throw new Error(`mke2fs: ${r.stderr.trim()}`);
}

async function e2fsckClean(image: string, what: string): Promise<void> {
  const r = await runTool(toolPath('e2fsck'), ['-fn', image], { timeoutMs: 600_000 });
  if (r.exitCode !== 0) throw new Error(`${what}: e2fsck -fn exit ${r.exitCode}\n${(r.stdout + r.stderr).trim().split('\n').slice(0, 10).join('\n')}`);
}

const NAMES: Record<Kind, string> = { ext4kit: 'ext4kit mount', fuse2fs: 'fuse2fs', kernel: 'kernel loop mount' };

function unavailable(kind: Kind, ctx: BenchContext, needs?: { cmd: string; pkg: string }): () => Promise<string | undefined> {
  return async () => {
    if (!ctx.isRoot) return 'mounting needs root';
    if (kind === 'fuse2fs' && !haveCommand('fuse2fs')) return 'fuse2fs not installed (Debian package fuse2fs)';
    if (kind !== 'kernel' && !haveCommand('fusermount3')) return 'fuse3 not installed (Debian package fuse3)';
    if (needs && !haveCommand(needs.cmd)) return `${needs.cmd} not installed (Debian package ${needs.pkg})`;
    return undefined;
  };
}

/** One section: every competitor runs `body` (bash, with $MNT) on a fresh (or the given read-only) image. */
function section(ctx: BenchContext, id: string, title: string, body: string, opts: {
  roImage?: string; verify?: (img: string) => Promise<void>; verifyOnly?: Kind[]; needs?: { cmd: string; pkg: string };
  notes?: string[]; verdicts?: (r: SectionResult) => string[];
}): Section {
  const mnt = join(ctx.scratchDir, `${id}-mnt`);
  const competitors = (['ext4kit', 'fuse2fs', 'kernel'] as const).map((kind): Competitor => {
    const img = opts.roImage ?? join(ctx.scratchDir, `${id}-${kind}.img`);
    const script = join(ctx.scratchDir, `${id}-${kind}.sh`);
    const m = mountLines(ctx, kind, opts.roImage !== undefined);
    return {
      name: NAMES[kind],
      baseline: kind === 'ext4kit',
      unavailable: unavailable(kind, ctx, opts.needs),
      prepare: async () => {
        await unmountLeftover(mnt);
        await mkdir(mnt, { recursive: true });
        if (!opts.roImage) await mke2fs(img, `${Math.max(2, Math.ceil(FILE_MIB / 1024) + 1)}G`);
        await writeFile(script, `set -e\nIMG='${img}'\nMNT='${mnt}'\n${m.up}\n${body}\n${m.down}\n`);
      },
      command: () => ({ cmd: 'bash', args: [script] }),
      ...(opts.verify && (!opts.verifyOnly || opts.verifyOnly.includes(kind)) ? { verify: () => opts.verify!(img), verifyEvery: 'first' as const } : {}),
      cleanup: async () => { await unmountLeftover(mnt); if (!opts.roImage) await rm(img, { force: true }); },
      timeoutMs: 20 * 60_000,
    };
  });
  return {
    title, competitors,
    notes: ['each run: mount, the programs, unmount (FUSE servers: until the server exited after write-back); mke2fs -b 4096 image, untimed',
      'CPU: user + sys of the script and the server it waited for; the kernel row does its work in kernel threads (loop device, writeback), not counted',
      ...(opts.notes ?? [])],
    ...(opts.verdicts ? { verdicts: opts.verdicts } : {}),
  };
}

function ratioVerdicts(s: SectionResult, targets: { vsFuse2fs?: number; vsKernel?: number }): string[] {
  const me = findRow(s, 'ext4kit');
  const f2 = findRow(s, 'fuse2fs');
  const k = findRow(s, 'kernel');
  const out: string[] = [];
  if (me?.medianMs && f2?.medianMs) {
    const x = f2.medianMs / me.medianMs;
    out.push(`${pass(x >= (targets.vsFuse2fs ?? 1))} speed vs fuse2fs: ${x.toFixed(2)}× (target ≥ ${targets.vsFuse2fs ?? 1}×)`);
  }
  if (me?.medianMs && k?.medianMs && targets.vsKernel) {
    const x = k.medianMs / me.medianMs;
    out.push(`${pass(x >= targets.vsKernel)} speed vs the kernel: ${(x * 100).toFixed(0)} % (target ≥ ${targets.vsKernel * 100} %)`);
  }
  if (me?.medianCpuMs && f2?.medianCpuMs) out.push(`info CPU time vs fuse2fs: ext4kit ${(me.medianCpuMs / 1000).toFixed(2)} s, fuse2fs ${(f2.medianCpuMs / 1000).toFixed(2)} s (${(f2.medianCpuMs / me.medianCpuMs).toFixed(2)}×)`);
  // The bound holds for every run: the largest over the cold and the warm rows.
  const rssKiB = Math.max(0, ...s.results.filter((r) => r.name.startsWith('ext4kit')).map((r) => r.peakRssKiB ?? 0));
  if (rssKiB > 0) out.push(`${pass(rssKiB <= RSS_LIMIT_KIB)} ext4kit peak RSS ${(rssKiB / 1024).toFixed(0)} MiB, largest over cold and warm runs (target ≤ 256 MiB)`);
  return out;
}

export const fuse: Workload = {
  id: 'fuse',
  title: `FUSE mount vs fuse2fs vs the kernel: dd ${FILE_MIB} MiB, untar 20,000 files, fio random writes, create/stat/unlink`,
  inDefaultSet: false,
  async sections(ctx) {
    const roDir = await cached(ctx, 'fuse-read-image', `v1-${FILE_MIB}`, async (dir) => {
      const img = join(dir, 'read.img');
      await mke2fs(img, `${Math.ceil(FILE_MIB / 1024) + 1}G`);
      const r = await runTool('bash', ['-c', `set -e; m=$(mktemp -d); mount -o loop '${img}' $m; head -c ${FILE_MIB}M /dev/urandom > $m/big; umount $m; rmdir $m`], { timeoutMs: 600_000 });
      if (r.exitCode !== 0) throw new Error(`building the read image: ${r.stderr}`);
    });
    const treeDir = await cached(ctx, 'fuse-tree-tar', 'v1', async (dir) => {
      await generateBenchTree(join(dir, 'tree'), TREE);
      const r = await runTool('tar', ['-C', dir, '-cf', join(dir, 'tree.tar'), 'tree'], { timeoutMs: 600_000 });
      if (r.exitCode !== 0) throw new Error(`tar: ${r.stderr}`);
      await rm(join(dir, 'tree'), { recursive: true, force: true });
    });
    const tarball = join(treeDir, 'tree.tar');
    const creates = `python3 - "$MNT" <<'PY'
import os, sys
d = os.path.join(sys.argv[1], 'many'); os.mkdir(d)
for i in range(10000): os.close(os.open(os.path.join(d, f'f{i}'), os.O_CREAT | os.O_WRONLY, 0o644))
for i in range(10000): os.stat(os.path.join(d, f'f{i}'))
for i in range(10000): os.unlink(os.path.join(d, f'f{i}'))
PY`;
    const manyCreates = `python3 - "$MNT" ${MANY_FILES} <<'PY'
import os, sys
m, n = sys.argv[1], int(sys.argv[2])
for d in range(10): os.mkdir(os.path.join(m, 'd%d' % d))
for i in range(n): os.close(os.open(os.path.join(m, 'd%d' % (i % 10), 'f%d' % i), os.O_CREAT | os.O_WRONLY, 0o644))
PY`;
    return [
      section(ctx, 'fuse-write', `dd bs=1M: write ${FILE_MIB} MiB + fsync`, `dd if=/dev/zero of="$MNT/big" bs=1M count=${FILE_MIB} conv=fsync status=none`, {
        verify: (img) => e2fsckClean(img, 'write'),
        verdicts: (s) => ratioVerdicts(s, { vsFuse2fs: 3, vsKernel: 0.5 }),
      }),
      section(ctx, 'fuse-read', `dd bs=1M: read ${FILE_MIB} MiB (cold cache)`, 'dd if="$MNT/big" of=/dev/null bs=1M status=none', {
        roImage: join(roDir, 'read.img'),
        notes: ['read-only mounts of one cached image'],
        verdicts: (s) => ratioVerdicts(s, {}),
      }),
      section(ctx, 'fuse-untar', 'tar -x of a 20,000-file tree (200 dirs, ≤ 8 KiB files)', `tar -C "$MNT" -xf '${tarball}'`, {
        verify: (img) => e2fsckClean(img, 'untar'),
        verdicts: (s) => ratioVerdicts(s, {}),
      }),
      section(ctx, 'fuse-fio', `fio: 4 KiB random writes over a ${FIO_MIB} MiB file, fsync every 32 writes`, `fio --name=randw --directory="$MNT" --rw=randwrite --bs=4k --size=${FIO_MIB}m --fsync=32 --ioengine=psync --randseed=42 --output=/dev/null`, {
        needs: { cmd: 'fio', pkg: 'fio' },
        verify: (img) => e2fsckClean(img, 'fio'),
        // fuse2fs 1.47.0 leaves extents past the allowed end after this workload (e2fsck -fn
        // fails): its time is shown, its image not judged.
        verifyOnly: ['ext4kit', 'kernel'],
        notes: ['e2fsck -fn after the first run of ext4kit and the kernel; fuse2fs 1.47.0 fails it here (extent ends beyond the allowed value), so its image is not checked'],
        verdicts: (s) => ratioVerdicts(s, {}),
      }),
      section(ctx, 'fuse-meta', 'create, stat, unlink 10,000 empty files (python3)', creates, {
        verify: (img) => e2fsckClean(img, 'create/stat/unlink'),
        verdicts: (s) => ratioVerdicts(s, {}),
      }),
      // Memory: the kernel keeps a lookup on every file created until FORGET, so the server must
      // not keep per-file state for all of them (issue 9: RSS ≤ 256 MiB whatever is written).
      section(ctx, 'fuse-many', `create ${MANY_FILES.toLocaleString('en-US')} empty files in 10 directories (python3), memory bound`, manyCreates, {
        verify: (img) => e2fsckClean(img, 'many files'),
        verdicts: (s) => ratioVerdicts(s, {}),
      }),
    ];
  },
};
