// Workload "mkfs-d-large": `mkfs -d` of 8 incompressible 64 MiB files into a new 1 GiB image:
// ext4kit vs mke2fs -d vs the ext2fs npm package vs the kernel (loop mount + cp -a). Target:
// ext4kit within 1.2× of mke2fs -d, at least 10× faster than ext2fs, peak RSS under 256 MiB.
// See bench/populate.ts for the commands and checks.
import { populateSection } from '../populate.ts';
import type { Workload } from '../harness.ts';
import type { BenchTreeOptions } from '../tree.ts';

const TREE: BenchTreeOptions = {
  seed: 12,
  dirs: 1,
  smallFiles: 0,
  smallMaxBytes: 0,
  largeFiles: 8,
  largeBytes: 64 * 1024 * 1024,
  symlinks: 0,
};

export const mkfsDLarge: Workload = {
  id: 'mkfs-d-large',
  title: 'mkfs -d: 8 × 64 MiB incompressible files into 1 GiB',
  inDefaultSet: true,
  async sections(ctx) {
    return [
      await populateSection(ctx, {
        id: 'mkfs-d-large',
        tree: TREE,
        imageBytes: 1024 ** 3,
        imageArg: '1G',
        mke2fsRatioTarget: 1.2,
        mke2fsWarmRatioTarget: 0.6,
        ext2fsSpeedupTarget: 10,
        ext2fsMaxRuns: 1,
        describe: () => `${TREE.largeFiles} × ${TREE.largeBytes / 1024 ** 2} MiB random files`,
      }),
    ];
  },
};
