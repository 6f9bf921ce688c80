// The library entry point: serve an open Ext4 filesystem on a directory through FUSE until the
// directory is unmounted (umount, fusermount3 -u, or FuseMount.unmount()), then write
// everything back and close the filesystem.
import { readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { writeFile } from 'node:fs/promises';
import type { Ext4 } from '../api/ext4.ts';
import type { Mount } from '../fs/mount.ts';
import { Ext4Backend } from './ext4-backend.ts';
import { ReadOnlyBackend } from './ro-backend.ts';
import type { FuseBackend } from './backend.ts';
import { FuseSession, type SessionStats } from './session.ts';
import { FuseDevice, MountError, unmountPath } from './transport.ts';
import { MAX_WRITE_BYTES } from './protocol.ts';

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
  /**
   * Let the main thread block in read(2) on /dev/fuse while no request is in flight (default
   * true: no thread hand-off per request; see transport.ts). An embedding program whose event
   * loop must never block for a few milliseconds while requests flow sets false: every request
   * then comes from the reader worker. EXT4KIT_FUSE_WORKER_READS=1 sets the default to false.
   */
  mainThreadReads?: boolean;
  /** Wraps the backend (fault injection in tests). */
  wrapBackend?: (b: FuseBackend) => FuseBackend;
}

export interface FuseMount {
  readonly mountpoint: string;
  /** Served read-only: asked for, or because ext4kit cannot write this image (see readOnlyReason). */
  readonly readOnly: boolean;
  /** Why ext4kit cannot write the image (it is then served read-only even without readOnly). */
  readonly readOnlyReason: string | undefined;
  readonly stats: SessionStats;
  /** Requests read by the main thread itself and by the reader worker (see transport.ts). */
  readonly readsBy: { readonly main: number; readonly worker: number };
  /** Settles when the connection has ended and the filesystem is closed (rejects if closing failed). */
  readonly closed: Promise<void>;
  /** Detaches the mount (lazily) and waits for closed. */
  unmount(): Promise<void>;
  /** Engine accounting check, for tests. */
  checkInvariants(): Promise<void>;
}

/** Refuses a mountpoint that is missing, not a directory or not empty. */
export function checkMountpoint(dir: string): void {
  let st: ReturnType<typeof statSync>;
  try { st = statSync(dir); } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
    throw new MountError(code, code === 'ENOTCONN' ? `mountpoint ${dir} is a dead FUSE mount: run 'umount -l ${dir}' first` : `mountpoint ${dir} does not exist`);
  }
  if (!st.isDirectory()) throw new MountError('ENOTDIR', `mountpoint ${dir} is not a directory`);
  if (readdirSync(dir).length) throw new MountError('ENOTEMPTY', `mountpoint ${dir} is not empty`);
}

/**
 * Readahead of a FUSE mount starts at 128 KiB, so sequential reads arrive as 128 KiB READs;
 * with 1 MiB (max_pages allows it) each request carries 8× more. Best effort (root, sysfs).
 * The mount's device number comes from mountinfo: a stat of the mountpoint from this thread
 * would wait on this very server.
 */
async function raiseReadahead(dir: string, log: (line: string) => void): Promise<void> {
  try {
    const unescapeOctal = (p: string) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    // realpath of the parent only: resolving the mountpoint itself would ask this server.
    const abs = join(realpathSync(dirname(resolve(dir))), basename(resolve(dir)));
    const line = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').reverse()
      .find((l) => unescapeOctal(l.split(' ')[4] ?? '') === abs && / - fuse\.ext4kit /.test(l));
    const dev = line?.split(' ')[2];
    if (!dev) throw new Error(`${abs} not found in mountinfo`);
    await writeFile(`/sys/class/bdi/${dev}/read_ahead_kb`, String(MAX_WRITE_BYTES / 1024));
  } catch (e) {
    log(`ext4kit mount: readahead stays at the default (${(e as Error).message})`);
  }
}

/**
 * Serves `ext4` on the empty directory `dir` (root and /dev/fuse needed) and resolves once the
 * kernel has finished the handshake. The server runs on this thread's event loop: use the
 * mount from other processes (or worker threads doing synchronous calls), not with node:fs
 * from this thread: those calls wait in the libuv threadpool, which the server's own image I/O
 * needs too, and a few of them at once deadlock.
 */
export async function mount(ext4: Ext4, dir: string, opts: FuseMountOptions = {}): Promise<FuseMount> {
  checkMountpoint(dir);
  const log = opts.log ?? (() => undefined);
  // An image ext4kit can open but not write (block-mapped files, inline-data directories,
  // features the writer refuses) is served read-only, with one warning, as fuse2fs does.
  const engineMount = (ext4 as unknown as { mount: Mount }).mount;
  const readOnlyReason = engineMount.readOnly ? engineMount.readOnlyReason : undefined;
  const readOnly = (opts.readOnly ?? false) || readOnlyReason !== undefined;
  if (readOnlyReason !== undefined && !opts.readOnly) {
    log(`ext4kit mount: warning: ${opts.source ?? 'the image'} cannot be written by ext4kit (${readOnlyReason}); mounted read-only`);
  }
  const shown = { uid: opts.uid, gid: opts.gid, umask: opts.umask };
  const engine = readOnlyReason !== undefined ? new ReadOnlyBackend(ext4, shown) : new Ext4Backend(ext4, { readOnly, ...shown });
  const backend = opts.wrapBackend ? opts.wrapBackend(engine) : engine;
  const device = await FuseDevice.mount(dir, {
    source: opts.source ?? 'ext4kit', readOnly, allowOther: opts.allowOther ?? false,
    uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0,
    ...(opts.mainThreadReads !== undefined ? { mainThreadReads: opts.mainThreadReads } : {}),
  });
  const session = new FuseSession(backend, (r, p) => device.reply(r, p), { log, cacheSeconds: opts.cacheSeconds ?? 1, sendConsumesBytes: true });
  let finish!: () => void;
  const gone = new Promise<void>((resolve) => { finish = resolve; });
  // The main thread reads requests itself only while this function and commits are not waiting.
  let starting = true;
  let committing: Promise<void> | undefined;
  device.start((req) => session.handle(req), (why) => {
    log(`ext4kit mount: connection ended (${why}); writing back`);
    finish();
  }, () => starting || committing !== undefined, () => session.pokeNodeId);
  await Promise.race([session.initialized, gone]);
  await raiseReadahead(dir, log);
  // Periodic commit: only when something changed since the last one, never two at once.
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
    log(`ext4kit mount: requests read by the main thread ${device.readsBy.main}, by the reader worker ${device.readsBy.worker}`);
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
  starting = false;
  device.kick();
  return {
    mountpoint: dir,
    readOnly,
    readOnlyReason,
    stats: session.stats,
    readsBy: device.readsBy,
    closed,
    unmount: async () => {
      const r = await unmountPath(dir, true);
      if (!r.ok) throw new MountError('EBUSY', `umount ${dir} failed: ${r.stderr.trim()}`);
      await closed;
    },
    checkInvariants: () => engine.checkInvariants(),
  };
}
