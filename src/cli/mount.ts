// `ext4kit mount [-o OPTS] [-f] IMAGE MOUNTPOINT`: serves an image through FUSE. Without -f the
// command returns once the mount is ready and a detached server keeps serving; with -f it
// serves in the foreground and logs to stderr. Unmounting (umount, ext4kit umount, SIGINT or
// SIGTERM to the server) writes everything back and ends the server with status 0.
import { spawn } from 'node:child_process';
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Ext4 } from '../node.ts';
import { UsageError } from './args.ts';
import { mount as fuseMount, checkMountpoint, type FuseMount } from '../fuse/mount.ts';
import { MountError, unmountPath } from '../fuse/transport.ts';
import { defaultLogPath, lockImage } from '../fuse/server-registry.ts';

export const USAGE = `usage: ext4kit mount [-o OPTIONS] [-f] IMAGE MOUNTPOINT
  -f            stay in the foreground, log to stderr
  -o OPTIONS    comma-separated: ro, rw, allow_other, uid=N, gid=N, umask=OCTAL,
                logfile=PATH (uid/gid/umask: owner and permission mask shown for every
                file; logfile: where a background server logs, by default
                /run/ext4kit/<id>.log beside its lock, or $EXT4KIT_RUN_DIR/<id>.log)
Permission checks are the kernel's (default_permissions). An image ext4kit can read but
not write (ext2/ext3 block-mapped files, inline-data directories, unsupported features) is
mounted read-only with a warning.
example:
  ext4kit mount disk.img /mnt/disk && cp -a ./tree /mnt/disk/ && ext4kit umount /mnt/disk`;

interface MountArgs {
  foreground: boolean;
  readOnly: boolean;
  allowOther: boolean;
  uid?: number;
  gid?: number;
  umask?: number;
  logFile?: string;
  image: string;
  mountpoint: string;
}

function parse(argv: readonly string[]): MountArgs {
  const fail = (m: string): never => { throw new UsageError(m, USAGE); };
  const out: Partial<MountArgs> & { foreground: boolean; readOnly: boolean; allowOther: boolean } = { foreground: false, readOnly: false, allowOther: false };
  const pos: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-f') out.foreground = true;
    else if (a === '-o' || a.startsWith('-o')) {
      const list = a === '-o' ? argv[++i] ?? fail('-o needs a value') : a.slice(2);
      for (const o of list.split(',').filter(Boolean)) {
        const [k, v] = o.split('=', 2) as [string, string | undefined];
        const num = (base: number) => {
          const n = v === undefined ? NaN : parseInt(v, base);
          if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) fail(`bad value in -o ${o}`);
          return n;
        };
        if (k === 'ro') out.readOnly = true;
        else if (k === 'rw') out.readOnly = false;
        else if (k === 'allow_other') out.allowOther = true;
        else if (k === 'uid') out.uid = num(10);
        else if (k === 'gid') out.gid = num(10);
        else if (k === 'umask') out.umask = num(8) & 0o7777;
        else if (k === 'logfile') out.logFile = v || fail('logfile= needs a path');
        else if (k === 'default_permissions' || k === 'defaults') { /* always on */ }
        else fail(`unknown mount option '${k}'`);
      }
    } else if (a === '--') { pos.push(...argv.slice(i + 1)); break; }
    else if (a.startsWith('-') && a !== '-') fail(`unknown option ${a}`);
    else pos.push(a);
  }
  if (pos.length !== 2) fail('needs IMAGE and MOUNTPOINT');
  // A log inside the mount would wait on the server that writes it.
  if (out.logFile && (resolve(out.logFile) + '/').startsWith(resolve(pos[1]!) + '/')) fail('logfile= must be outside the mountpoint');
  return { ...out, image: pos[0]!, mountpoint: pos[1]! };
}

export async function run(argv: string[]): Promise<number> {
  const args = parse(argv);
  if (!args.foreground) return startBackground(argv);
  const notify = process.env.EXT4KIT_MOUNT_NOTIFY === '1' && typeof process.send === 'function';
  // Warnings given before the mount is ready reach the command's stderr (relayed by a background start).
  const warnings: string[] = [];
  // A background server has no terminal: its lines go to the log file (errors met while
  // serving stay findable); a foreground one writes stderr, and the log file when asked.
  const logFile = args.logFile ?? (notify ? defaultLogPath(args.image) : undefined);
  let logBroken = false;
  const log = (line: string) => {
    if (/: warning: /.test(line)) warnings.push(line);
    if (!notify) process.stderr.write(line + '\n');
    if (logFile && !logBroken) {
      try {
        mkdirSync(dirname(logFile), { recursive: true });
        appendFileSync(logFile, `${new Date().toISOString()} [${process.pid}] ${line}\n`);
      } catch (e) {
        logBroken = true;
        if (!notify) process.stderr.write(`ext4kit mount: cannot write ${logFile}: ${(e as Error).message}\n`);
      }
    }
  };
  let unlock: (() => void) | undefined;
  try {
    checkMountpoint(args.mountpoint);
    unlock = lockImage(args.image, args.mountpoint);
    const fs = await Ext4.open(args.image);
    for (const w of fs.info().journal?.warnings ?? []) log(`ext4kit: warning: ${args.image}: ${w}`);
    let m: FuseMount;
    try {
      m = await fuseMount(fs, args.mountpoint, {
        readOnly: args.readOnly, allowOther: args.allowOther, source: args.image, log,
        ...(args.uid !== undefined ? { uid: args.uid } : {}), ...(args.gid !== undefined ? { gid: args.gid } : {}),
        ...(args.umask !== undefined ? { umask: args.umask } : {}),
      });
    } catch (e) {
      await fs.close().catch(() => undefined);
      throw e;
    }
    const stop = () => { void unmountPath(args.mountpoint, true); };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    process.on('SIGHUP', stop);
    log(`ext4kit: ${args.image} mounted on ${args.mountpoint}${m.readOnly ? ' (read-only)' : ''}`);
    if (notify) { process.send!({ ready: true, warnings }); process.disconnect?.(); }
    await m.closed;
    log(`ext4kit: ${args.mountpoint} unmounted; ${args.image} written back (${m.stats.requests} requests)`);
    return 0;
  } catch (e) {
    if (notify) {
      const why = e instanceof Error ? `${(e as { code?: string }).code ?? 'ERROR'}: ${e.message}` : String(e);
      log(`ext4kit mount: ${why}`);
      if (process.connected) {
        process.send!({ error: why });
        process.disconnect?.();
      }
      return 1;
    }
    if (e instanceof MountError) { process.stderr.write(`ext4kit mount: ${e.message}\n`); return 1; }
    throw e;
  } finally {
    unlock?.();
  }
}

/** Re-runs this command with -f as a detached server and waits until it is mounted. */
async function startBackground(argv: string[]): Promise<number> {
  const script = process.argv[1]!;
  const child = spawn(process.execPath, [...process.execArgv, script, 'mount', '-f', ...argv], {
    detached: true, stdio: ['ignore', 'ignore', 'ignore', 'ipc'], env: { ...process.env, EXT4KIT_MOUNT_NOTIFY: '1' },
  });
  const outcome = await new Promise<{ ready?: boolean; error?: string; warnings?: string[] }>((resolve) => {
    child.on('message', (m: { ready?: boolean; error?: string; warnings?: string[] }) => resolve(m));
    child.on('exit', (code) => resolve({ error: `server exited with status ${code} before the mount was ready` }));
    child.on('error', (e) => resolve({ error: e.message }));
  });
  if (child.connected) child.disconnect();
  child.unref();
  for (const w of outcome.warnings ?? []) process.stderr.write(w + '\n');
  if (outcome.ready) return 0;
  process.stderr.write(`ext4kit mount: ${outcome.error}\n`);
  return 1;
}
