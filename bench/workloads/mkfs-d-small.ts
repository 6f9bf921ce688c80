// Workload "mkfs-d-small": `mkfs -d` of many small files (20,000 files of 0–8 KiB in 1,000
// directories) into a new 1 GiB image: ext4kit vs mke2fs -d vs the ext2fs npm package vs the
// kernel (loop mount + cp -a). Target: ext4kit within 1.5× of mke2fs -d, at least 10× faster than
// ext2fs, peak RSS under 256 MiB. See bench/populate.ts for the commands and checks.
import { populateSection } from '../populate.ts';
import type { Workload } from '../harness.ts';
import type { BenchTreeOptions } from '../tree.ts';

const TREE: BenchTreeOptions = {
  seed: 11,
  dirs: 1000,
  smallFiles: 20_000,
  smallMaxBytes: 8192,
  largeFiles: 0,
  largeBytes: 0,
  symlinks: 0,
};

export const mkfsDSmall: Workload = {
  id: 'mkfs-d-small',
  title: 'mkfs -d: 20,000 small files into 1 GiB',
  inDefaultSet: true,
  async sections(ctx) {
    return [
      await populateSection(ctx, {
        id: 'mkfs-d-small',
        tree: TREE,
        imageBytes: 1024 ** 3,
        imageArg: '1G',
        mke2fsRatioTarget: 1.5,
        mke2fsWarmRatioTarget: 1.0,
        ext2fsSpeedupTarget: 10,
        ext2fsMaxRuns: 1,
        describe: (s) => `${s.files} files of 0–${TREE.smallMaxBytes / 1024} KiB in ${s.dirs} directories`,
      }),
    ];
  },
};
