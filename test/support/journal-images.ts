// Images whose journal needs recovery, for the replay tests: made by the kernel (loop mount,
// a workload, EXT4_IOC_SHUTDOWN with LOGFLUSH, umount) or by debugfs journal commands.
import { copyFile, mkdir, rename, rm, symlink, writeFile, unlink, rmdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import { makeImage, tmpImagePath } from './images.ts';
import { runTool, toolPath, withLoopMount, debugfs } from './oracles.ts';

/** EXT4_IOC_SHUTDOWN = _IOR('X', 125, __u32); flag 1 = LOGFLUSH (commit the log, then stop). */
const SHUTDOWN_LOGFLUSH = `import fcntl,os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); fcntl.ioctl(fd, 0x8004587D, b'\\x01\\0\\0\\0')`;

export interface KernelCrashOptions {
  blockSize: 1024 | 4096;
  /** mke2fs -O list, e.g. '^metadata_csum' or 'metadata_csum,64bit'. */
  features?: string;
  sizeBytes?: number;
  /** Extra mount options (e.g. 'journal_checksum'). */
  mountOptions?: string[];
  /** Number of sync rounds before the shutdown (more transactions in the log). */
  rounds?: number;
}

/**
 * A fresh ext4 image, loop mounted; files, directories, symlinks, xattrs, renames, unlinks and
 * rmdirs with a sync between rounds; then EXT4_IOC_SHUTDOWN(LOGFLUSH) and umount. The image keeps
 * needs_recovery and a log of the last transactions (the shutdown stops checkpointing).
 */
export async function kernelCrashImage(opts: KernelCrashOptions): Promise<string> {
  const img = await makeImage({ blockSize: opts.blockSize, sizeBytes: opts.sizeBytes ?? 32 << 20, features: opts.features, type: 'ext4' });
  await withLoopMount(img, async (mnt) => {
    const rounds = opts.rounds ?? 3;
    for (let r = 0; r < rounds; r++) {
      const d = join(mnt, `r${r}`);
      await mkdir(join(d, 'sub/deep'), { recursive: true });
      for (let i = 0; i < 30; i++) await writeFile(join(d, `f${i}`), `round ${r} file ${i}\n`.repeat(1 + i * 37));
      await writeFile(join(d, 'sub/deep/big'), Buffer.alloc(200_000, r + 1));
      await symlink(`f${r}`, join(d, 'link'));
      await runTool('setfattr', ['-n', 'user.round', '-v', `r${r}`, join(d, 'f1')]).catch(() => undefined);
      if (r > 0) {
        const p = join(mnt, `r${r - 1}`);
        await rename(join(p, 'f2'), join(p, 'f2-renamed'));
        await rename(join(p, 'f3'), join(p, 'f4'));
        await unlink(join(p, 'f5'));
        await rm(join(p, 'sub'), { recursive: true });
        await rmdir(join(d, 'sub/deep')).catch(() => undefined);
      }
      const fh = await open(join(d, 'f6'), 'r+');
      await fh.truncate(3);
      await fh.close();
      await runTool('sync', ['-f', mnt]);
    }
    // One more round of changes that only the log holds.
    await mkdir(join(mnt, 'last/a/b/c'), { recursive: true });
    await writeFile(join(mnt, 'last/a/b/c/file'), 'after the last sync\n');
    await rename(join(mnt, 'r0'), join(mnt, 'last/r0-moved'));
    await runTool('sync', ['-f', mnt]);
    await writeFile(join(mnt, 'last/unsynced'), 'x'.repeat(5000));
    // An orphan: unlinked while still open at the crash (on the orphan list, or in the orphan file).
    const held = await open(join(mnt, 'last/held'), 'w');
    await held.write(Buffer.alloc(70_000, 7));
    await held.sync();
    await unlink(join(mnt, 'last/held'));
    await runTool('sync', ['-f', mnt]);
    const r = await runTool('python3', ['-c', SHUTDOWN_LOGFLUSH, mnt]);
    await held.close().catch(() => undefined);
    if (r.exitCode !== 0) throw new Error(`EXT4_IOC_SHUTDOWN failed: ${r.stderr}`);
  }, { options: opts.mountOptions });
  return img;
}

/** A copy of `img` (the original stays untouched). */
export async function copyImage(img: string, name: string): Promise<string> {
  const out = tmpImagePath(name);
  await copyFile(img, out);
  return out;
}

/** The journal inode's contents (debugfs dump <8>). */
export async function dumpJournal(img: string): Promise<string> {
  const out = tmpImagePath('journal');
  await debugfs(img, `dump <8> ${out}`);
  return out;
}

/** Runs a debugfs command file with -w (debugfs journal writing: jo/jw/jc). */
export async function debugfsWrite(img: string, commands: string[]): Promise<void> {
  const file = tmpImagePath('cmds');
  await writeFile(file, commands.join('\n') + '\n');
  const r = await runTool(toolPath('debugfs'), ['-w', '-f', file, img]);
  if (r.exitCode !== 0) throw new Error(`debugfs -w failed: ${r.stderr}`);
}

// Rounds of small creates/unlinks with `sync -f`, watching the log in the backing file (the
// journal is one contiguous run starting at byte JOFF): as soon as a block near the start of the
// log belongs to a transaction at or after s_sequence while s_start is still further on, the live
// log crosses the journal end; then shut down with LOGFLUSH.
const WRAP_WORKLOAD = (mnt: string, img: string, joff: number, bs: number) => `
import os,fcntl,struct,sys
MAGIC=0xc03b3998
f=os.open('${img}', os.O_RDONLY)
def be(off): return struct.unpack('>I', os.pread(f, 4, off))[0]
def wrapped():
    seq=be(${joff}+0x18); start=be(${joff}+0x1c)
    if start <= 40: return False
    for j in range(1, 30):
        o=${joff}+j*${bs}
        if be(o)==MAGIC and ((be(o+8)-seq) & 0xffffffff) < 0x80000000: return True
    return False
for i in range(2000):
    p='${mnt}/d%d'%(i%7); os.makedirs(p, exist_ok=True)
    with open('%s/f%d'%(p,i),'w') as fh: fh.write('x'*(i*13%3000))
    if i%3==0 and i>3: os.unlink('${mnt}/d%d/f%d'%((i-3)%7,i-3))
    os.system('sync -f ${mnt}')
    if wrapped():
        d=os.open('${mnt}', os.O_RDONLY); fcntl.ioctl(d, 0x8004587D, b'\\x01\\0\\0\\0'); print(i); sys.exit(0)
sys.exit(3)
`;

/**
 * A 64 MiB, 1 KiB-block image with the default 4096-block journal whose live log crosses the
 * end of the journal (small create/unlink + sync rounds until it does, then a LOGFLUSH shutdown).
 */
export async function kernelWrapImage(): Promise<{ img: string; rounds: number }> {
  const img = await makeImage({ blockSize: 1024, sizeBytes: 64 << 20, type: 'ext4' });
  const first = Number((await debugfs(img, 'bmap <8> 0')).trim());
  const last = Number((await debugfs(img, 'bmap <8> 4095')).trim());
  if (last - first !== 4095) throw new Error(`journal is not contiguous (${first}..${last})`);
  let rounds = -1;
  await withLoopMount(img, async (mnt) => {
    const r = await runTool('python3', ['-c', WRAP_WORKLOAD(mnt, img, first * 1024, 1024)], { timeoutMs: 300_000 });
    if (r.exitCode !== 0) throw new Error(`wrap workload: exit ${r.exitCode} ${r.stderr}`);
    rounds = Number(r.stdout.trim());
  });
  return { img, rounds };
}

/**
 * A fast_commit image (4 KiB blocks) where fsync wrote fast commits after the last full commit,
 * then EXT4_IOC_SHUTDOWN with NOLOGFLUSH: the fast-commit area holds data for the next tid.
 */
export async function kernelFastCommitImage(): Promise<string> {
  const img = await makeImage({ blockSize: 4096, sizeBytes: 32 << 20, features: 'fast_commit', type: 'ext4' });
  await withLoopMount(img, async (mnt) => {
    await mkdir(join(mnt, 'd'));
    await writeFile(join(mnt, 'd/old'), 'a\n');
    await runTool('sync', ['-f', mnt]);
    const py = `import os,fcntl
fd=os.open('${mnt}/d/new', os.O_CREAT|os.O_WRONLY); os.write(fd, b'fsynced data\\n'*100); os.fsync(fd); os.close(fd)
fd=os.open('${mnt}/d/old', os.O_WRONLY|os.O_APPEND); os.write(fd, b'more\\n'); os.fsync(fd); os.close(fd)
d=os.open('${mnt}', os.O_RDONLY); fcntl.ioctl(d, 0x8004587D, b'\\x02\\0\\0\\0')`;
    const r = await runTool('python3', ['-c', py]);
    if (r.exitCode !== 0) throw new Error(`fast-commit workload failed: ${r.stderr}`);
  });
  return img;
}

/**
 * A fast_commit image (4 KiB blocks) whose fast-commit area holds, after one full commit: a new
 * file written and fsynced, an append to an older file, a new directory with a file in it, a
 * hard link and an unlink (each followed by an fsync), then EXT4_IOC_SHUTDOWN with NOLOGFLUSH.
 */
export async function kernelFastCommitMixedImage(): Promise<string> {
  const img = await makeImage({ blockSize: 4096, sizeBytes: 32 << 20, features: 'fast_commit', type: 'ext4' });
  await withLoopMount(img, async (mnt) => {
    await mkdir(join(mnt, 'd'));
    await writeFile(join(mnt, 'd/old'), 'a\n');
    await runTool('sync', ['-f', mnt]);
    const py = `import os,fcntl
m='${mnt}'
fd=os.open(m+'/d/new', os.O_CREAT|os.O_WRONLY); os.write(fd, b'fsynced data\\n'*100); os.fsync(fd); os.close(fd)
fd=os.open(m+'/d/old', os.O_WRONLY|os.O_APPEND); os.write(fd, b'more\\n'); os.fsync(fd); os.close(fd)
os.mkdir(m+'/d/sub'); fd=os.open(m+'/d/sub/x', os.O_CREAT|os.O_WRONLY); os.write(fd, b'x'*10000); os.fsync(fd); os.close(fd)
os.link(m+'/d/new', m+'/d/newlink'); os.unlink(m+'/d/old'); fd=os.open(m+'/d/newlink', os.O_WRONLY); os.fsync(fd); os.close(fd)
d=os.open(m, os.O_RDONLY); fcntl.ioctl(d, 0x8004587D, b'\\x02\\0\\0\\0')`;
    const r = await runTool('python3', ['-c', py]);
    if (r.exitCode !== 0) throw new Error(`fast-commit workload failed: ${r.stderr}`);
  });
  return img;
}

/**
 * A fast_commit image whose fast commits change ranges of older files: a 300 KB append, a
 * truncate to 5000 bytes (DEL_RANGE) and an overwrite inside a file, each fsynced, then
 * EXT4_IOC_SHUTDOWN with NOLOGFLUSH.
 */
export async function kernelFastCommitRangesImage(): Promise<string> {
  const img = await makeImage({ blockSize: 4096, sizeBytes: 64 << 20, features: 'fast_commit', type: 'ext4' });
  await withLoopMount(img, async (mnt) => {
    await mkdir(join(mnt, 'd'));
    for (let i = 1; i <= 3; i++) await writeFile(join(mnt, `d/base${i}`), Buffer.from(Array.from({ length: 200_000 }, (_, k) => (k * 31 + i) & 0xff)));
    await runTool('sync', ['-f', mnt]);
    const py = `import os,fcntl
m='${mnt}'
fd=os.open(m+'/d/base1', os.O_WRONLY|os.O_APPEND); os.write(fd, bytes(range(256))*1200); os.fsync(fd); os.close(fd)
fd=os.open(m+'/d/base2', os.O_WRONLY); os.ftruncate(fd, 5000); os.fsync(fd); os.close(fd)
fd=os.open(m+'/d/base3', os.O_WRONLY); os.pwrite(fd, b'z'*5000, 50000); os.fsync(fd); os.close(fd)
d=os.open(m, os.O_RDONLY); fcntl.ioctl(d, 0x8004587D, b'\\x02\\0\\0\\0')`;
    const r = await runTool('python3', ['-c', py]);
    if (r.exitCode !== 0) throw new Error(`fast-commit workload failed: ${r.stderr}`);
  });
  return img;
}
