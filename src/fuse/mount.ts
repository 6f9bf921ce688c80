// The library entry point: serve an open Ext4 filesystem on a directory through FUSE until the
// directory is unmounted (umount, fusermount3 -u, or FuseMount.unmount()), then write
// everything back and close the filesystem.
import { readdirSync, statSync } from 'node:fs';
import type { Ext4 } from '../api/ext4.ts';
import { Ext4Backend } from './ext4-backend.ts';
import type { FuseBackend } from './backend.ts';
import { FuseSession, type SessionStats } from './session.ts';
import { FuseDevice, MountError, unmountPath } from './transport.ts';

export interface FuseMountOptions {
  readOnly?: boolean;
  /** Let users other than the mounting one in (allow_other). */
  allowOther?: boolean;
  /** Mount source shown by mount(8) and used to refuse a second mount of the same image. */
  source?: string;
  /** Operator messages (default: none). */
  log?: (line: string) => void;
  /** Owner and permission mask shown for every inode (like vfat's uid=/gid=/umask=); unset: the on-disk values. */
  uid?: number;
  gid?: number;
  umask?: number;
  /** Attribute/entry cache lifetime handed to the kernel (default 1 s). */
  cacheSeconds?: number;
  /**
   * Seconds between automatic commits of everything changed (the kernel's ext4 commits every
   * 5 s): bounds what a crash can lose and the memory held by inodes seen since. 0: never.
   */
  commitSeconds?: number;
  /** Wraps the backend (fault injection in tests). */
  wrapBackend?: (b: FuseBackend) => FuseBackend;
}

export interface FuseMount {
  readonly mountpoint: string;
  readonly stats: SessionStats;
  /** Settles when the connection has ended and the filesystem is closed (rejects if closing failed). */
  readonly closed: Promise<void>;
  /** Detaches the mount (lazily) and waits for closed. */
  unmount(): Promise<void>;
  /** Engine accounting check, for tests. */
  checkInvariants(): Promise<void>;
}

/** Refuses a mountpoint that is missing, not a directory or not empty. */
export function checkMountpoint(dir: string): void {
  let st;
  try { st = statSync(dir); } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
    throw new MountError(code, code === 'ENOTCONN' ? `mountpoint ${dir} is a dead FUSE mount: run 'umount -l ${dir}' first` : `mountpoint ${dir} does not exist`);
  }
  if (!st.isDirectory()) throw new MountError('ENOTDIR', `mountpoint ${dir} is not a directory`);
  if (readdirSync(dir).length) throw new MountError('ENOTEMPTY', `mountpoint ${dir} is not empty`);
}

export async function mount(ext4: Ext4, dir: string, opts: FuseMountOptions = {}): Promise<FuseMount> {
  checkMountpoint(dir);
  const engine = new Ext4Backend(ext4, { readOnly: opts.readOnly ?? false, uid: opts.uid, gid: opts.gid, umask: opts.umask });
  const backend = opts.wrapBackend ? opts.wrapBackend(engine) : engine;
  const device = await FuseDevice.mount(dir, {
    source: opts.source ?? 'ext4kit', readOnly: opts.readOnly ?? false, allowOther: opts.allowOther ?? false,
    uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0,
  });
  const log = opts.log ?? (() => undefined);
  const session = new FuseSession(backend, (r) => device.reply(r), { log, cacheSeconds: opts.cacheSeconds ?? 1 });
  let finish!: () => void;
  const gone = new Promise<void>((resolve) => { finish = resolve; });
  device.start((req) => session.handle(req), (why) => {
    log(`ext4kit mount: connection ended (${why}); writing back`);
    finish();
  });
  // Periodic commit: only when something changed since the last one, never two at once.
  let committing: Promise<void> | undefined;
  let committedAt = 0;
  const commitMs = (opts.commitSeconds ?? 5) * 1000;
  const timer = commitMs > 0 ? setInterval(() => {
    if (committing || session.isDegraded || session.stats.mutations === committedAt) return;
    committedAt = session.stats.mutations;
    committing = ext4.sync().catch((e: unknown) => {
      log(`ext4kit mount: periodic commit failed: ${e instanceof Error ? e.message : String(e)}`);
    }).finally(() => { committing = undefined; });
  }, commitMs) : undefined;
  const closed = (async () => {
    await gone;
    if (timer) clearInterval(timer);
    await session.drain();
    if (committing) await committing;
    try {
      await backend.close();
    } finally {
      device.close();
    }
  })();
  closed.catch(() => undefined);
  return {
    mountpoint: dir,
    stats: session.stats,
    closed,
    unmount: async () => {
      const r = await unmountPath(dir, true);
      if (!r.ok) throw new MountError('EBUSY', `umount ${dir} failed: ${r.stderr.trim()}`);
      await closed;
    },
    checkInvariants: () => engine.checkInvariants(),
  };
}
