// Workload "mkfs": format a new sparse image file with ext4kit and with mke2fs, for a small and a
// huge filesystem. The first run of each is checked with `e2fsck -fn`.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { haveCommand, runTool, toolPath } from '../../test/support/oracles.ts';
import { ext4kitCli, type Competitor, type Section, type Workload } from '../harness.ts';

const SIZES: Array<{ label: string; arg: string; bytes: number }> = [
  { label: '1 GiB', arg: '1G', bytes: 1024 ** 3 },
  { label: '2 TiB', arg: '2T', bytes: 2 * 1024 ** 4 },
];

async function e2fsckClean(image: string, what: string): Promise<void> {
  const r = await runTool(toolPath('e2fsck'), ['-fn', image], { timeoutMs: 600_000 });
  if (r.exitCode !== 0) throw new Error(`${what}: e2fsck -fn exit ${r.exitCode}\n${(r.stdout + r.stderr).trim().split('\n').slice(0, 10).join('\n')}`);
}

export const mkfs: Workload = {
  id: 'mkfs',
  title: 'mkfs',
  inDefaultSet: true,
  async sections(ctx) {
    const cli = ext4kitCli(ctx.repoRoot, 'mkfs');
    return SIZES.map((size): Section => {
      const image = join(ctx.scratchDir, `mkfs-${size.arg}.img`);
      const common = {
        prepare: () => rm(image, { force: true }),
        cleanup: () => rm(image, { force: true }),
        verifyEvery: 'first' as const,
        coldCache: true,
      };
      const ext4kit: Competitor = 'missing' in cli
        ? {
            ...common,
            name: 'ext4kit Ext4.mkfs',
            baseline: true,
            command: () => ({ cmd: process.execPath, args: ['--import', 'tsx', join(ctx.repoRoot, 'bench/tools/mkfs.ts'), image, String(size.bytes)], cwd: ctx.repoRoot }),
            verify: () => e2fsckClean(image, 'ext4kit'),
            note: `the CLI is not ready (${cli.missing}): bench/tools/mkfs.ts calls Ext4.mkfs in a child process instead`,
          }
        : {
            ...common,
            name: 'ext4kit mkfs',
            baseline: true,
            command: () => ({ cmd: cli.cmd, args: [...cli.args, '-q', image, size.arg], cwd: ctx.repoRoot }),
            verify: () => e2fsckClean(image, 'ext4kit mkfs'),
            note: `spawned as \`node bin/ext4kit.js mkfs -q IMAGE ${size.arg}\` (the CLI bundle: start-up included)`,
          };
      const mke2fs: Competitor = {
        ...common,
        name: 'mke2fs',
        unavailable: async () => (haveCommand('mke2fs') ? undefined : 'mke2fs not installed'),
        command: () => ({ cmd: toolPath('mke2fs'), args: ['-q', '-F', '-t', 'ext4', image, size.arg], env: { E2FSPROGS_LIBMAGIC_SUPPRESS: '1' } }),
        verify: () => e2fsckClean(image, 'mke2fs'),
        note: `mke2fs -q -F -t ext4 IMAGE ${size.arg} (host /etc/mke2fs.conf)`,
      };
      const startup: Competitor | undefined = 'missing' in cli
        ? undefined
        : {
            name: 'ext4kit --version',
            coldCache: true,
            command: () => ({ cmd: cli.cmd, args: [cli.args[0]!, '--version'], cwd: ctx.repoRoot }),
            note: 'reference row: start-up of node + the CLI bundle alone, included in the ext4kit mkfs row',
          };
      return {
        title: `mkfs ${size.label} (new sparse file)`,
        competitors: startup ? [ext4kit, mke2fs, startup] : [ext4kit, mke2fs],
        notes: ['the image file is deleted before every run (untimed); both tools create it sparse and fsync at the end; e2fsck -fn after the first run of each (untimed)'],
      };
    });
  },
};
