// Workload "delalloc-write": a 1 GiB file written through the API with FileHandle.write of 8 MiB
// aligned buffers into an empty image (delayed allocation, then writeback and a device flush at
// close), against `dd if=/dev/zero of=F bs=1M count=1024 conv=fsync` on the same disk, in the
// same rounds. Target (issue 11): ext4kit's write bandwidth at least 70 % of dd's.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { debugfs, runTool, toolPath } from '../../test/support/oracles.ts';
import { baselineOf, ext4kitCli, formatMs, median, rowOf, type Competitor, type SectionResult, type Workload } from '../harness.ts';
import { pass, rssVerdict } from '../populate.ts';

const MIB = 1024;
const IMAGE_ARG = '2G';
const TARGET = 0.7;

export const delallocWrite: Workload = {
  id: 'delalloc-write',
  title: `large delayed-allocation write (${MIB} MiB) vs dd conv=fsync`,
  inDefaultSet: true,
  async sections(ctx) {
    const image = join(ctx.scratchDir, 'delalloc.img');
    const ddOut = join(ctx.scratchDir, 'dd.out');
    const innerFile = join(ctx.scratchDir, 'delalloc-inner-ms.txt');
    const inner: Record<string, number[]> = { cold: [], warm: [] };
    const cli = ext4kitCli(ctx.repoRoot, 'mkfs');
    const ext4kit: Competitor = {
      name: 'ext4kit FileHandle.write',
      baseline: true,
      unavailable: async () => ('missing' in cli ? cli.missing : undefined),
      prepare: async () => {
        await rm(image, { force: true });
        await rm(innerFile, { force: true });
        if ('missing' in cli) return;
        const r = spawnSync(cli.cmd, [...cli.args, '-q', image, IMAGE_ARG], { cwd: ctx.repoRoot, encoding: 'utf8' });
        if (r.status !== 0) throw new Error(`ext4kit mkfs: ${r.stderr}`);
      },
      command: () => ({ cmd: process.execPath, args: ['--import', 'tsx', join(ctx.repoRoot, 'bench/tools/delalloc-write.ts'), image, String(MIB), '8'], cwd: ctx.repoRoot, env: { BENCH_INNER_MS_FILE: innerFile } }),
      verify: async ({ mode, index }) => {
        inner[mode]![index] = Number(readFileSync(innerFile, 'utf8'));
        const r = await runTool(toolPath('e2fsck'), ['-fn', image], { timeoutMs: 600_000 });
        if (r.exitCode !== 0) throw new Error(`e2fsck -fn exit ${r.exitCode}: ${r.stdout.slice(0, 400)}`);
        const st = await debugfs(image, 'stat /big');
        if (!new RegExp(`Size: ${MIB * 1024 * 1024}\\b`).test(st)) throw new Error(`/big has the wrong size:\n${st.slice(0, 400)}`);
      },
      cleanup: () => rm(image, { force: true }),
      note: `node --import tsx bench/tools/delalloc-write.ts IMAGE ${MIB} 8 into a fresh \`ext4kit mkfs -q IMAGE ${IMAGE_ARG}\` (untimed): ` +
        'open, FileHandle.write of 8 MiB buffers, close, fs.close (writeback + fdatasync); wall time includes node + tsx start-up (~0.3 s), the verdict uses the in-process time; e2fsck -fn and the size checked after every run',
    };
    const dd: Competitor = {
      name: 'dd conv=fsync',
      prepare: () => rm(ddOut, { force: true }),
      command: () => ({ cmd: 'dd', args: ['if=/dev/zero', `of=${ddOut}`, 'bs=1M', `count=${MIB}`, 'conv=fsync', 'status=none'] }),
      cleanup: () => rm(ddOut, { force: true }),
      note: `dd if=/dev/zero of=F bs=1M count=${MIB} conv=fsync, F next to the image (same filesystem, same disk)`,
    };
    return [{
      title: `large write: ${MIB} MiB through FileHandle.write (delayed allocation) vs dd conv=fsync`,
      competitors: [ext4kit, dd],
      notes: ['both write to the bench scratch directory on the same host filesystem; the page cache is dropped before every cold run'],
      verdicts: (s: SectionResult) => {
        const out: string[] = [];
        for (const m of ['cold', 'warm'] as const) {
          const d = rowOf(s, 'dd', m);
          const b = baselineOf(s, m);
          const xs = inner[m]!.filter((x) => x !== undefined);
          if (!d?.runs.length || !xs.length || b?.failed) {
            out.push(`${pass(undefined)} write bandwidth ≥ ${TARGET * 100} % of dd conv=fsync (${m} cache): no result`);
            continue;
          }
          // Same-round fractions: dd's time / ext4kit's in-process time.
          const fr = xs.map((ms, i) => (d.runs[i] ? d.runs[i]!.wallMs / ms : NaN)).filter((x) => Number.isFinite(x));
          const f = median(fr);
          const mibs = (ms: number) => `${(MIB / (ms / 1000)).toFixed(0)} MiB/s`;
          out.push(`${pass(f >= TARGET)} write bandwidth ≥ ${TARGET * 100} % of dd conv=fsync (${m} cache): ext4kit ${mibs(median(xs))} ` +
            `(in-process ${formatMs(median(xs))}), dd ${mibs(d.medianMs!)}, same-round median ${(f * 100).toFixed(0)} %`);
        }
        out.push(rssVerdict(s));
        return out;
      },
    }];
  },
};
