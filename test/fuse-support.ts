// Shared by the FUSE tests: whether mounts can run here (root, /dev/fuse, util-linux mount),
// a shell runner that never blocks the event loop (the server runs in this process), and a
// mount that is always taken down.
import { existsSync } from 'node:fs';
import { Ext4 } from '../src/node.ts';
import { mount, type FuseMount, type FuseMountOptions } from '../src/fuse/mount.ts';
import { haveCommand, haveE2fsprogs, runTool, type RunResult } from './support/oracles.ts';
import { tmpDirPath } from './support/images.ts';

/** A skip reason (naming the Debian package) or false. */
export function fuseSkipReason(tools: readonly string[] = []): string | false {
  if (process.platform !== 'linux') return `FUSE tests need Linux (platform is ${process.platform})`;
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'FUSE tests need root (mount(2) of /dev/fuse)';
  if (!existsSync('/dev/fuse')) return '/dev/fuse is missing (kernel module fuse)';
  if (!haveCommand('mount') || !haveCommand('umount')) return 'mount/umount missing (Debian package mount)';
  if (!haveE2fsprogs()) return 'e2fsck missing (Debian package e2fsprogs)';
  if (!haveCommand('fusermount3')) return 'fusermount3 missing (Debian package fuse3)';
  const pkg: Record<string, string> = { xfs_io: 'xfsprogs', fio: 'fio', git: 'git', tar: 'tar', python3: 'python3-minimal', rsync: 'rsync' };
  for (const t of tools) if (!haveCommand(t)) return `${t} missing (Debian package ${pkg[t] ?? t})`;
  return false;
}

/** bash -c `script`, asynchronously (a synchronous child would stall the in-process server). */
export async function sh(script: string, opts: { cwd?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return runTool('bash', ['-c', `set -e -o pipefail\n${script}`], { timeoutMs: opts.timeoutMs ?? 300_000, ...(opts.cwd ? { cwd: opts.cwd } : {}) });
}

export async function shOk(script: string, opts: { cwd?: string; timeoutMs?: number } = {}): Promise<string> {
  const r = await sh(script, opts);
  if (r.exitCode !== 0) throw new Error(`script failed (${r.exitCode}${r.timedOut ? ', timed out' : ''}):\n${script}\n--- stdout\n${r.stdout.slice(-4000)}\n--- stderr\n${r.stderr.slice(-4000)}`);
  return r.stdout;
}

/** Mounts `image` in this process, runs fn, and always unmounts (lazily as a last resort). */
export async function withFuse<T>(image: string, fn: (mnt: string, m: FuseMount) => Promise<T>, opts: FuseMountOptions = {}): Promise<T> {
  const fs = await Ext4.open(image);
  const mnt = tmpDirPath('fuse-mnt');
  const log: string[] = [];
  let m: FuseMount;
  try {
    // A caller's own log takes the server's reports (tests that expect some); otherwise any report fails the test.
    m = await mount(fs, mnt, { log: (l) => log.push(l), source: image, ...opts });
  } catch (e) {
    await fs.close();
    throw e;
  }
  try {
    return await fn(mnt, m);
  } finally {
    const r = await runTool('umount', [mnt], { timeoutMs: 60_000 });
    if (r.exitCode !== 0) await runTool('umount', ['-l', mnt], { timeoutMs: 60_000 });
    await m.closed;
    const bad = log.filter((l) => /internal error|failed/.test(l));
    if (bad.length) throw new Error(`server reported:\n${bad.join('\n')}`);
  }
}
