// Which ext4kit servers run where: one small JSON file per image (the lock that refuses a
// second mount of it) naming the server's pid and mountpoint, in /run/ext4kit (or
// $EXT4KIT_RUN_DIR). A file whose pid is gone is stale and ignored.
import { mkdirSync, openSync, closeSync, readFileSync, readdirSync, rmSync, writeSync, realpathSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import { MountError } from './transport.ts';

export interface ServerRecord { pid: number; image: string; mountpoint: string }

const runDir = (): string => process.env.EXT4KIT_RUN_DIR ?? '/run/ext4kit';

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

const canonical = (p: string): string => { try { return realpathSync(p); } catch { return resolve(p); } };
const fileFor = (image: string): string => join(runDir(), `${createHash('sha256').update(canonical(image)).digest('hex').slice(0, 24)}.json`);

/** Where a background server logs when no logfile= is given: beside its lock record. */
export function defaultLogPath(image: string): string { return fileFor(image).replace(/\.json$/, '.log'); }

/** Takes the image's lock for this process; EBUSY naming the mountpoint when another server holds it. */
export function lockImage(image: string, mountpoint: string): () => void {
  mkdirSync(runDir(), { recursive: true });
  const file = fileFor(image);
  const rec: ServerRecord = { pid: process.pid, image: canonical(image), mountpoint: canonical(mountpoint) };
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx', 0o644);
      writeSync(fd, JSON.stringify(rec));
      closeSync(fd);
      return () => { try { if (readRecord(file)?.pid === process.pid) rmSync(file); } catch { /* gone */ } };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const other = readRecord(file);
      if (other && alive(other.pid) && other.pid !== process.pid) {
        throw new MountError('EBUSY', `${image} is already mounted by ext4kit (pid ${other.pid}) on ${other.mountpoint}`);
      }
      rmSync(file, { force: true });
    }
  }
  throw new MountError('EBUSY', `cannot take the lock of ${image}`);
}

function readRecord(file: string): ServerRecord | undefined {
  try { return JSON.parse(readFileSync(file, 'utf8')) as ServerRecord; } catch { return undefined; }
}

/** The live server serving `mountpoint`, if any. */
export function serverFor(mountpoint: string): ServerRecord | undefined {
  const want = canonical(mountpoint);
  let names: string[];
  try { names = readdirSync(runDir()); } catch { return undefined; }
  for (const n of names) {
    const r = readRecord(join(runDir(), n));
    if (r && r.mountpoint === want && alive(r.pid)) return r;
  }
  return undefined;
}

/** Waits until `pid` has exited (the server finished writing back), up to `timeoutMs`. */
export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (alive(pid)) {
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}
