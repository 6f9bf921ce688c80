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
    const r = await runTool('python3', ['-c', SHUTDOWN_LOGFLUSH, mnt]);
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
