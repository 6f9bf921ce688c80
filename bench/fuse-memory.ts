// Memory of the FUSE server while the kernel remembers many inodes (issue 9: RSS ≤ 256 MiB
// whatever is written). Serves a fresh mke2fs image in this process (so the engine's caches
// can be counted), runs one workload through the mount, samples RSS every 100 ms and prints
// the peak, a process.memoryUsage() breakdown, the inode-cache counts and the heap bytes per
// inode the kernel still remembers (lookup count > 0).
//   node --expose-gc --import tsx bench/fuse-memory.ts untar            # the 20,000-file tree
//   node --expose-gc --import tsx bench/fuse-memory.ts create 100000    # empty files, 10 dirs
// Exit status 1 when the peak RSS is over 256 MiB. Needs root, /dev/fuse, fuse3, e2fsprogs, tar, python3.
import { existsSync, mkdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { writeHeapSnapshot } from 'node:v8';
import { Ext4 } from '../src/node.ts';
import { mount } from '../src/fuse/mount.ts';
import type { Filesystem } from '../src/fs/filesystem.ts';
import { runTool, toolPath } from '../test/support/oracles.ts';
import { generateBenchTree, type BenchTreeOptions } from './tree.ts';

const RSS_LIMIT_MIB = 256;
const TREE: BenchTreeOptions = { seed: 20, dirs: 200, smallFiles: 20_000, smallMaxBytes: 8192, largeFiles: 0, largeBytes: 0, symlinks: 20 };
const mib = (n: number) => (n / 2 ** 20).toFixed(1);

async function must(cmd: string, args: string[], timeoutMs = 1_800_000): Promise<string> {
  const r = await runTool(cmd, args, { timeoutMs, env: { E2FSPROGS_LIBMAGIC_SUPPRESS: '1' } });
  if (r.exitCode !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.exitCode}\n${r.stderr.slice(-2000)}`);
  return r.stdout;
}

async function run(what: string, nArg: string | undefined, mnt: string, tarball: string): Promise<void> {
  if (what === 'untar') { await must('tar', ['-C', mnt, '-xf', tarball]); return; }
  const n = Number(nArg ?? 100_000);
  await must('python3', ['-c', `import os,sys
m=sys.argv[1]; n=int(sys.argv[2])
for d in range(10): os.mkdir(os.path.join(m, 'd%d' % d))
for i in range(n): os.close(os.open(os.path.join(m, 'd%d' % (i % 10), 'f%d' % i), os.O_CREAT | os.O_WRONLY, 0o644))`, mnt, String(n)]);
}

async function main(): Promise<void> {
  const [what = 'untar', nArg] = process.argv.slice(2);
  const work = join(tmpdir(), 'ext4kit-fuse-memory');
  mkdirSync(work, { recursive: true });
  const tarball = join(work, 'tree.tar');
  if (what === 'untar' && !existsSync(tarball)) {
    await generateBenchTree(join(work, 'tree'), TREE);
    await must('tar', ['-C', work, '-cf', tarball, 'tree']);
    await rm(join(work, 'tree'), { recursive: true, force: true });
  }
  const img = join(work, 'fs.img');
  const mnt = join(work, 'mnt');
  await rm(img, { force: true });
  await runTool('umount', ['-l', mnt], { timeoutMs: 60_000 });
  mkdirSync(mnt, { recursive: true });
  await must(toolPath('mke2fs'), ['-q', '-F', '-t', 'ext4', '-b', '4096', '-N', '400000', img, '4G']);
  const ext4 = await Ext4.open(img);
  const fs = (ext4 as unknown as { fs: Filesystem }).fs;
  let engine: unknown;
  const m = await mount(ext4, mnt, { source: img, log: (l) => console.error(l), wrapBackend: (b) => { engine = b; return b; } });
  let peak = 0;
  const peaks = { heapTotal: 0, heapUsed: 0, external: 0, arrayBuffers: 0 };
  // FUSE_MEMORY_SNAPSHOT=FILE: one heap snapshot (live objects) once the kernel remembers 80 % of the files.
  const snapshotAt = Number(nArg ?? 20_000) * 0.8;
  let snapshotTaken = !process.env.FUSE_MEMORY_SNAPSHOT;
  const sample = () => {
    if (!snapshotTaken && ((engine as { known?: Map<number, number> }).known?.size ?? 0) >= snapshotAt) {
      snapshotTaken = true;
      console.log(`heap snapshot: ${writeHeapSnapshot(process.env.FUSE_MEMORY_SNAPSHOT)}`);
    }
    const u = process.memoryUsage();
    peak = Math.max(peak, u.rss);
    for (const k of Object.keys(peaks) as (keyof typeof peaks)[]) peaks[k] = Math.max(peaks[k], u[k]);
  };
  const timer = setInterval(sample, 100);
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  console.log(`mounted: rss ${mib(process.memoryUsage.rss())} MiB, heapUsed ${mib(heapBefore)} MiB`);
  const t0 = Date.now();
  try {
    await run(what, nArg, mnt, tarball);
  } catch (e) {
    await runTool('umount', ['-l', mnt], { timeoutMs: 60_000 });
    throw e;
  }
  const elapsedMs = Date.now() - t0;
  sample();
  gc?.();
  const u = process.memoryUsage();
  const remembered = (engine as { known?: Map<number, number> }).known?.size ?? Number.NaN;
  console.log(`workload ${what}${nArg ? ` ${nArg}` : ''}: ${(elapsedMs / 1000).toFixed(1)} s`);
  console.log(`peak RSS ${mib(peak)} MiB (limit ${RSS_LIMIT_MIB}) ${peak <= RSS_LIMIT_MIB * 2 ** 20 ? 'PASS' : 'FAIL'}`);
  console.log(`peaks while running: ${Object.entries(peaks).map(([k, v]) => `${k} ${mib(v)}`).join(' ')} MiB`);
  console.log(`after gc: rss ${mib(u.rss)} heapUsed ${mib(u.heapUsed)} heapTotal ${mib(u.heapTotal)} external ${mib(u.external)} arrayBuffers ${mib(u.arrayBuffers)} MiB`);
  const strays = [...fs.icache.dirty].filter((oi) => fs.icache.open.get(oi.ino) !== oi && oi.inode.linksCount !== 0).length;
  console.log(`inode cache: ${fs.icache.open.size} in memory, ${fs.icache.dirty.size} dirty (${strays} of them linked but no longer cached: lost on the next iget); kernel remembers ${remembered} inodes`);
  if (remembered > 0) console.log(`heap growth per remembered inode: ${((u.heapUsed - heapBefore) / remembered).toFixed(0)} bytes`);
  clearInterval(timer);
  await must('umount', [mnt]);
  await m.closed;
  const r = await runTool(toolPath('e2fsck'), ['-fn', img], { timeoutMs: 600_000 });
  console.log(`e2fsck -fn exit ${r.exitCode}`);
  await rm(img, { force: true });
  process.exitCode = peak <= RSS_LIMIT_MIB * 2 ** 20 && r.exitCode === 0 ? 0 : 1;
}

await main();
