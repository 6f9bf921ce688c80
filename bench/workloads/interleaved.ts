// Workload "interleaved": 8 files written at the same time, in 64 KiB chunks round-robin (chunk 0
// of every file, then chunk 1 of every file, ...) until each is 128 MiB, then closed. ext4kit:
// one process, Ext4.open(IMAGE), 8 handles, handle.write(chunk, 0, len, pos), close, fs.close().
// Kernel: the same loop with fs.writeSync into a loop-mounted ext4, then sync and umount. What
// matters is the layout: extents per file (filefrag on a read-only loop mount, physically
// contiguous runs), against the ideal of one extent per 128 MiB (ext4's longest extent is 32768
// blocks = 128 MiB at 4 KiB blocks, and filefrag merges adjacent extents anyway). Target:
// ext4kit's count ideal wherever the kernel's is no better; peak RSS under 256 MiB.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Ext4 } from '../../src/node.ts';
import { loopMountSupport, runTool, toolPath, withLoopMount } from '../../test/support/oracles.ts';
import { formatMs, type BenchContext, type Competitor, type Section, type SectionResult, type Workload } from '../harness.ts';
import { chunksPerFile, expectedHashes, fileName, type InterleavedParams } from '../interleaved-data.ts';
import { EXT4KIT_EXTRA_FEATURES, findRow, pass, rssVerdict, unmountLeftover } from '../populate.ts';

/** 8 × 128 MiB in 64 KiB chunks (the pattern at full size: about 17 s per ext4kit run here). */
const PARAMS: InterleavedParams = { files: 8, chunkBytes: 64 * 1024, fileBytes: 128 * 1024 * 1024 };
const IMAGE_BYTES = 2 * 1024 ** 3;
const IMAGE_ARG = '2G';
const BLOCK = 4096;
/** ext4's longest initialized extent, in blocks. */
const MAX_EXTENT_BLOCKS = 32768;

function idealExtents(p: InterleavedParams): number {
  return Math.ceil(Math.ceil(p.fileBytes / BLOCK) / MAX_EXTENT_BLOCKS);
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const b of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(b as Buffer);
  return h.digest('hex');
}

/** `filefrag` on each file: physically contiguous runs (adjacent extents count as one). */
async function filefragCounts(mnt: string, p: InterleavedParams): Promise<number[]> {
  const paths = Array.from({ length: p.files }, (_, f) => join(mnt, fileName(f)));
  const r = await runTool(toolPath('filefrag'), paths, { timeoutMs: 120_000 });
  if (r.exitCode !== 0) throw new Error(`filefrag failed: ${r.stderr.trim().split('\n').slice(0, 3).join(' ')}`);
  return paths.map((path) => {
    const line = r.stdout.split('\n').find((l) => l.startsWith(`${path}: `));
    const m = line ? /: (\d+) extents? found$/.exec(line) : null;
    if (!m) throw new Error(`filefrag: no count for ${path}`);
    return Number(m[1]);
  });
}

/** Extents per file through ext4kit's own mappings(), merged when physically contiguous. */
async function apiCounts(image: string, p: InterleavedParams): Promise<number[]> {
  const fs = await Ext4.open(image, { readOnly: true });
  try {
    const out: number[] = [];
    for (let f = 0; f < p.files; f++) {
      let runs = 0;
      let nextFile = -1;
      let nextPhys = -1;
      for await (const m of fs.mappings(`/${fileName(f)}`)) {
        const fileBlock = Number(m.fileBlock);
        const fsBlock = Number(m.fsBlock);
        if (fileBlock !== nextFile || fsBlock !== nextPhys) runs++;
        nextFile = fileBlock + m.countBlocks;
        nextPhys = fsBlock + m.countBlocks;
      }
      out.push(runs);
    }
    return out;
  } finally {
    await fs.close();
  }
}

/** e2fsck -fn, then every file's size and SHA-256 read back through a read-only loop mount, and its extents. */
async function checkImage(image: string, what: string, p: InterleavedParams, expected: () => string[]): Promise<number[]> {
  const r = await runTool(toolPath('e2fsck'), ['-fn', image], { timeoutMs: 600_000 });
  if (r.exitCode !== 0) throw new Error(`${what}: e2fsck -fn exit ${r.exitCode}\n${(r.stdout + r.stderr).trim().split('\n').slice(0, 10).join('\n')}`);
  const want = expected();
  return withLoopMount(image, async (mnt) => {
    for (let f = 0; f < p.files; f++) {
      const got = await sha256File(join(mnt, fileName(f)));
      if (got !== want[f]) throw new Error(`${what}: ${fileName(f)} read back through a loop mount has SHA-256 ${got}, expected ${want[f]}`);
    }
    return filefragCounts(mnt, p);
  }, { readOnly: true, options: ['noload'] });
}

function summarize(counts: number[]): string {
  return counts.join(' ');
}

export const interleaved: Workload = {
  id: 'interleaved',
  title: 'interleaved writes: 8 files × 128 MiB in 64 KiB chunks, then extents per file',
  inDefaultSet: true,
  async sections(ctx: BenchContext) {
    const p = PARAMS;
    const image = join(ctx.scratchDir, 'interleaved.img');
    const mnt = join(ctx.scratchDir, 'interleaved-mnt');
    const tool = join(ctx.repoRoot, 'bench/tools/interleaved.ts');
    const toolArgs = [String(p.files), String(p.chunkBytes), String(p.fileBytes)];
    let hashes: string[] | undefined;
    const expected = () => (hashes ??= expectedHashes(p));
    const ideal = idealExtents(p);
    const extents = new Map<string, { filefrag: number[]; api?: number[] }>();
    const removeImage = () => rm(image, { force: true });
    const canMount = async () => {
      const s = await loopMountSupport();
      return s.ok ? undefined : `needs loop mounts to check the result: ${s.reason}`;
    };

    const ext4kit: Competitor = {
      name: 'ext4kit API',
      baseline: true,
      unavailable: canMount,
      prepare: async () => {
        await removeImage();
        await Ext4.mkfs(image, { sizeBytes: IMAGE_BYTES });
      },
      command: () => ({ cmd: process.execPath, args: ['--import', 'tsx', tool, 'ext4kit', image, ...toolArgs], cwd: ctx.repoRoot }),
      verify: async () => {
        const filefrag = await checkImage(image, 'ext4kit API', p, expected);
        extents.set('ext4kit API', { filefrag, api: await apiCounts(image, p) });
      },
      verifyEvery: 'first',
      metrics: async () => {
        const e = extents.get('ext4kit API')!;
        return { 'extents per file (filefrag)': summarize(e.filefrag), 'ext4kit mappings()': summarize(e.api ?? []), ideal: String(ideal) };
      },
      cleanup: removeImage,
      note: `Ext4.mkfs(IMAGE, { sizeBytes: ${IMAGE_ARG} }) first (untimed, ext4kit defaults), then bench/tools/interleaved.ts ext4kit IMAGE (timed: node + tsx start-up, open, writes, closes, fs.close())`,
    };

    const kernel: Competitor = {
      name: 'kernel fs.writeSync',
      unavailable: canMount,
      prepare: async () => {
        await unmountLeftover(mnt);
        await removeImage();
        const args = ['-q', '-F', '-t', 'ext4', '-O', EXT4KIT_EXTRA_FEATURES, image, IMAGE_ARG];
        const r = await runTool(toolPath('mke2fs'), args, { env: { E2FSPROGS_LIBMAGIC_SUPPRESS: '1' }, timeoutMs: 120_000 });
        if (r.exitCode !== 0) throw new Error(`mke2fs ${args.join(' ')}: exit ${r.exitCode}: ${r.stderr.trim()}`);
        await mkdir(mnt, { recursive: true });
      },
      command: () => ({
        cmd: 'sh',
        args: ['-c', 'm="$2"; mount -t ext4 -o loop "$1" "$m" || exit 1; shift 2; "$@"; s=$?; sync; umount "$m" || s=1; exit $s', 'sh', image, mnt, process.execPath, '--import', 'tsx', tool, 'host', mnt, ...toolArgs],
        cwd: ctx.repoRoot,
      }),
      verify: async () => {
        extents.set('kernel fs.writeSync', { filefrag: await checkImage(image, 'kernel fs.writeSync', p, expected) });
      },
      verifyEvery: 'first',
      metrics: async () => ({ 'extents per file (filefrag)': summarize(extents.get('kernel fs.writeSync')!.filefrag), ideal: String(ideal) }),
      cleanup: async () => {
        await unmountLeftover(mnt);
        await removeImage();
        if (existsSync(mnt)) await rmdir(mnt).catch(() => undefined);
      },
      note: `mke2fs -q -F -t ext4 -O ${EXT4KIT_EXTRA_FEATURES} IMAGE ${IMAGE_ARG} first (untimed), then mount -o loop + bench/tools/interleaved.ts host MNT (same loop, fs.writeSync) + sync + umount (timed); peak RSS is node's (kernel memory not counted)`,
    };

    const section: Section = {
      title: `interleaved writes: ${p.files} files × ${p.fileBytes / 1024 ** 2} MiB, ${p.chunkBytes / 1024} KiB chunks round-robin (${chunksPerFile(p)} chunks per file) into a ${IMAGE_ARG} image`,
      competitors: [ext4kit, kernel],
      notes: [
        'data: incompressible (windows of a seeded random pool); after the first run of each: e2fsck -fn exit 0, every file\'s SHA-256 read back through a read-only loop mount, ' +
          'filefrag per file on that mount (physically contiguous runs: adjacent extents count as one), all untimed',
        `ideal: ${ideal} extent per ${p.fileBytes / 1024 ** 2} MiB file (ext4's longest extent is ${MAX_EXTENT_BLOCKS} blocks = ${(MAX_EXTENT_BLOCKS * BLOCK) / 1024 ** 2} MiB at 4 KiB blocks)`,
      ],
      verdicts: (s: SectionResult) => {
        const mine = extents.get('ext4kit API')?.filefrag;
        const theirs = extents.get('kernel fs.writeSync')?.filefrag;
        const out: string[] = [];
        if (!mine) out.push(`${pass(undefined)} extents: no ext4kit result`);
        else {
          const bad = mine.map((n, f) => ({ n, f, bound: Math.max(ideal, theirs?.[f] ?? ideal) })).filter((x) => x.n > x.bound);
          out.push(
            `${pass(bad.length === 0)} extents ideal where the kernel's are no better: ext4kit ${summarize(mine)}; kernel ${theirs ? summarize(theirs) : '(no result)'}; ideal ${ideal} per file` +
              (bad.length ? ` — ${bad.length}/${mine.length} files above max(ideal, kernel's)` : ''),
          );
        }
        const b = s.results.find((r) => r.baseline);
        const k = findRow(s, 'kernel');
        if (b?.medianMs !== undefined && k?.medianMs !== undefined)
          out.push(`info time: ext4kit ${formatMs(b.medianMs)} vs kernel ${formatMs(k.medianMs)} (${(b.medianMs / k.medianMs).toFixed(2)}× the kernel's; no target)`);
        out.push(rssVerdict(s));
        return out;
      },
    };
    return [section];
  },
};
