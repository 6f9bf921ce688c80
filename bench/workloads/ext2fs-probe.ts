// Probe for the `ext2fs` npm package (balena's libext2fs compiled to WASM), the competitor of a
// later "copy a host tree into an image" workload (issue 3). Not in the default set: run it with
// `npm run bench -- ext2fs-probe`. It checks that the package can be installed, installs it
// OUTSIDE the repository ($TMPDIR/ext2fs-probe; never in this project's package.json), copies a
// small tree into a fresh image through it, checks the result (e2fsck -fn, debugfs rdump against
// the tree's manifest, extent flags) and times that copy against `mke2fs -d` of the same tree.
//
// What the copy-in workload needs from ext2fs (read from ext2fs 4.2.5: README, lib/*.js):
//  - No mkfs: the image must be made first (`mke2fs -q -F -t ext4 IMAGE SIZE`, untimed or timed as
//    part of the ext2fs row; ext4kit `mkfs -d` and `mke2fs -d` format and fill in one step, so
//    the fair row is "mke2fs (empty) + ext2fs copy-in" and it should say so).
//  - `const { mount, umount } = require('ext2fs')` (CommonJS; the WASM is inlined in
//    lib/libext2fs.js). `mount(disk, offset)` takes a disk object with
//    `read(buf, bufOff, len, fileOff)`, `write(...)`, `discard(off, len)`, `flush()` (async; the
//    `file-disk` package has one, bench/tools/ext2fs-copy-in.cjs has a 30-line FileDisk) and
//    returns an fs-like object; use `.promises`. Always `umount(fs)`: it writes the bitmaps,
//    group descriptors and superblock back and calls flush().
//  - Per host entry: `mkdir(path, mode)`; `open(path, 'w', mode)` + `handle.write(buf, 0, len,
//    pos)` in chunks + `close()` (write() IGNORES its offset argument: pass buffers that start
//    at 0); `symlink(target, path)`; `link(existing, path)` for hard links; `chown(path, uid, gid)`
//    (not for symlinks: lchown opens with O_WRONLY|O_NOFOLLOW and fails); `chmod` if the mode was
//    not given at creation.
//  - Cannot do: set times (utimes/futimes throw "not yet implemented": every inode gets the
//    copy time), xattrs (no API), device nodes/FIFOs/sockets (no mknod), holes (no seek/punch:
//    sparse host files are written out in full unless the copier skips zero runs itself).
//  - Files it creates are block-mapped, not extent-mapped (i_flags has no EXTENTS_FL, checked
//    below): "extents per file" via filefrag on a loop mount still works (filefrag -v reports
//    runs of blocks), but compare it knowing that the layout is ext2/3-style with indirect blocks.
//  - Every call goes through one global queue and an Asyncify'd WASM ccall; run it in a child
//    process (the module also installs process-wide uncaughtException/unhandledRejection
//    handlers that rethrow). libext2fs is 1.44-era: images with features it does not know
//    (mke2fs 1.47's orphan_file is off in the pinned config) would fail to mount.
//  - Measure: wall time and peak RSS of `NODE_PATH=$TMPDIR/ext2fs-probe/node_modules node
//    bench/tools/ext2fs-copy-in.cjs IMAGE TREE`; then e2fsck -fn and compare the tree (mode,
//    owner, content; not times).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeImage } from '../../test/support/images.ts';
import { haveCommand, runTool, toolPath } from '../../test/support/oracles.ts';
import { cached, type Competitor, type Section, type Workload } from '../harness.ts';
import { extentColumns, extentStats } from '../metrics.ts';
import { generateBenchTree, treeManifest, verifyTree, type BenchTreeOptions } from '../tree.ts';

const PROBE_TREE: BenchTreeOptions = {
  seed: 7,
  dirs: 100,
  smallFiles: 2000,
  smallMaxBytes: 8192,
  largeFiles: 2,
  largeBytes: 16 * 1024 * 1024,
  symlinks: 20,
};
const IMAGE_BYTES = 512 * 1024 * 1024;

export function ext2fsInstallDir(): string {
  return process.env.EXT2FS_DIR ?? join(tmpdir(), 'ext2fs-probe');
}

/** `npm view ext2fs version`, then `npm install ext2fs@VERSION` in the install dir if needed. */
export async function ensureExt2fs(log: (m: string) => void): Promise<{ version: string; nodePath: string } | { missing: string }> {
  const dir = ext2fsInstallDir();
  const pkg = join(dir, 'node_modules', 'ext2fs', 'package.json');
  const view = spawnSync('npm', ['view', 'ext2fs', 'version'], { encoding: 'utf8', timeout: 60_000 });
  const wanted = view.status === 0 ? view.stdout.trim() : undefined;
  const installed = existsSync(pkg) ? (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version : undefined;
  if (!wanted && !installed) return { missing: `npm view ext2fs version failed: ${(view.stderr || String(view.error)).trim().split('\n').pop()}` };
  if (installed && (!wanted || installed === wanted)) return { version: installed, nodePath: join(dir, 'node_modules') };
  log(`installing ext2fs@${wanted} into ${dir} (outside the repository)`);
  await mkdir(dir, { recursive: true });
  if (!existsSync(join(dir, 'package.json'))) await writeFile(join(dir, 'package.json'), '{ "private": true }\n');
  const r = spawnSync('npm', ['install', '--no-audit', '--no-fund', `ext2fs@${wanted}`], { cwd: dir, encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) return { missing: `npm install ext2fs failed: ${r.stderr.trim().split('\n').slice(-3).join(' ')}` };
  return { version: wanted!, nodePath: join(dir, 'node_modules') };
}

export const ext2fsProbe: Workload = {
  id: 'ext2fs-probe',
  title: 'probe the ext2fs npm package (copy a small tree in)',
  inDefaultSet: false,
  async sections(ctx) {
    const ext2fs = await ensureExt2fs(ctx.log);
    const input = await cached(ctx, 'ext2fs-probe', JSON.stringify({ v: 1, PROBE_TREE }), async (d) => {
      await generateBenchTree(join(d, 'tree'), PROBE_TREE);
      await writeFile(join(d, 'manifest.txt'), (await treeManifest(join(d, 'tree'))).join('\n'));
    });
    const tree = join(input, 'tree');
    const manifest = (await readFile(join(input, 'manifest.txt'), 'utf8')).split('\n');
    const image = join(ctx.scratchDir, 'ext2fs-probe.img');
    const rdump = join(ctx.scratchDir, 'ext2fs-probe-out');
    const notes: string[] = [];

    /** e2fsck -fn, then debugfs rdump compared with the tree. */
    const check = async (what: string): Promise<void> => {
      const f = await runTool(toolPath('e2fsck'), ['-fn', image], { timeoutMs: 300_000 });
      if (f.exitCode !== 0) throw new Error(`${what}: e2fsck -fn exit ${f.exitCode}\n${(f.stdout + f.stderr).trim().split('\n').slice(0, 10).join('\n')}`);
      await rm(rdump, { recursive: true, force: true });
      await mkdir(rdump);
      await runTool(toolPath('debugfs'), ['-R', `rdump / ${rdump}`, image], { timeoutMs: 300_000 });
      await verifyTree(manifest, rdump, what);
      await rm(rdump, { recursive: true, force: true });
    };
    const emptyImage = async (): Promise<void> => {
      await rm(image, { force: true });
      await makeImage({ blockSize: 4096, sizeBytes: IMAGE_BYTES, out: image });
    };

    const ext2fsRow: Competitor = {
      name: 'ext2fs (npm) copy-in',
      unavailable: async () => ('missing' in ext2fs ? ext2fs.missing : undefined),
      prepare: emptyImage,
      command: () => ({
        cmd: process.execPath,
        args: [join(ctx.repoRoot, 'bench/tools/ext2fs-copy-in.cjs'), image, tree],
        env: { NODE_PATH: 'missing' in ext2fs ? '' : ext2fs.nodePath },
      }),
      verify: async () => {
        await check('ext2fs copy-in');
        const st = await runTool(toolPath('debugfs'), ['-R', 'stat /large/big-0.bin', image]);
        const flags = /Flags: (0x[0-9a-f]+)/.exec(st.stdout)?.[1];
        const extents = flags !== undefined && (parseInt(flags, 16) & 0x80000) !== 0;
        notes.push(`ext2fs ${'missing' in ext2fs ? '?' : ext2fs.version}: files it writes have i_flags ${flags ?? '?'} (${extents ? 'extent-mapped' : 'block-mapped, no EXTENTS_FL'})`);
      },
      verifyEvery: 'first',
      metrics: async () => extentColumns(await extentStats(image)),
      cleanup: () => rm(image, { force: true }),
      note: 'into an empty image made by mke2fs beforehand (untimed); times cannot be set through ext2fs',
    };
    const mke2fsRow: Competitor = {
      name: 'mke2fs -d',
      baseline: true,
      unavailable: async () => (haveCommand('mke2fs') ? undefined : 'mke2fs not installed'),
      prepare: async () => {
        await rm(image, { force: true });
        const fh = await open(image, 'w');
        await fh.truncate(IMAGE_BYTES);
        await fh.close();
      },
      command: () => ({ cmd: toolPath('mke2fs'), args: ['-q', '-F', '-t', 'ext4', '-b', '4096', '-d', tree, image], env: { E2FSPROGS_LIBMAGIC_SUPPRESS: '1' } }),
      verify: () => check('mke2fs -d'),
      verifyEvery: 'first',
      metrics: async () => extentColumns(await extentStats(image)),
      cleanup: () => rm(image, { force: true }),
      note: 'formats and fills in one step (stand-in baseline until ext4kit mkfs -d exists)',
    };
    const section: Section = {
      title: `ext2fs probe: copy ${PROBE_TREE.smallFiles + PROBE_TREE.largeFiles} files (${PROBE_TREE.largeFiles} × ${PROBE_TREE.largeBytes / 1024 ** 2} MiB) into a ${IMAGE_BYTES / 1024 ** 2} MiB image`,
      competitors: [mke2fsRow, ext2fsRow],
      notes,
    };
    return [section];
  },
};
