// Reading a host directory tree for copy-in, ahead of the copy, on a worker thread
// (host-tree-worker.ts): the main thread asks for each directory's listing and each entry in the
// order it creates them, and gets them without waiting on the host disk whenever the walker is
// ahead. Records come back exactly in that order; asking for anything else is a bug.
import { isUtf8 } from 'node:buffer';
import type { BigIntStats } from 'node:fs';
import { Worker } from 'node:worker_threads';

export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
const SLASH = 0x2f;

/** The lstat fields copy-in uses (plain data: it crosses threads). */
export interface HostStat {
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  size: number;
  /** Device number of a character or block device (glibc's dev_t, as lstat gives it). */
  rdev: bigint;
  dev: bigint;
  ino: bigint;
  atimeNs: bigint;
  mtimeNs: bigint;
}

export function hostStatOf(st: BigIntStats): HostStat {
  return {
    mode: Number(st.mode), uid: Number(st.uid), gid: Number(st.gid), nlink: Number(st.nlink), size: Number(st.size),
    rdev: st.rdev, dev: st.dev, ino: st.ino, atimeNs: st.atimeNs, mtimeNs: st.mtimeNs,
  };
}

export const isDirStat = (st: HostStat): boolean => (st.mode & S_IFMT) === S_IFDIR;
export const isFileStat = (st: HostStat): boolean => (st.mode & S_IFMT) === 0o100000;
export const isSymlinkStat = (st: HostStat): boolean => (st.mode & S_IFMT) === 0o120000;

/**
 * The walker stops when this many posted batches are unconsumed, and goes on once the main
 * thread has consumed all but RESUME_AHEAD of them: one wake-up per few batches. A wake-up
 * (Atomics.notify on a sleeping thread) can cost the main thread milliseconds of wall time on a
 * busy host, where the scheduler runs the woken walker at once.
 */
export const MAX_BATCHES_AHEAD = 4;
export const RESUME_AHEAD = 1;

export interface HostError { code?: string; message: string }

export interface HostRecord {
  kind: 'listing' | 'entry';
  host: Uint8Array;
  /** listing: the directory's names, as readdir gave them. */
  names?: Uint8Array[];
  /** entry: lstat (missing when lstat failed). */
  st?: HostStat;
  /** entry: where a small regular file's contents sit in the batch's data. */
  dataOffset?: number;
  dataLen?: number;
  error?: HostError;
}

export interface HostBatch { records: HostRecord[]; data: ArrayBuffer; done: boolean }

export interface HostTreeWorkerData {
  root: Uint8Array;
  smallFileBytes: number;
  /** Int32 count of batches posted and not yet consumed (the walker waits when it is too high). */
  counter: SharedArrayBuffer;
}

/** A listing or entry as copy-in consumes it. */
export interface HostEntry {
  host: Buffer;
  st: HostStat;
  /** Contents of a small regular file (absent for other entries and further hard-link names). */
  data?: Uint8Array;
}

/** True when the name's bytes are valid UTF-8 (the library takes string paths). */
export function isUtf8Name(bytes: Uint8Array): boolean {
  return isUtf8(bytes);
}

export function joinHost(dir: Uint8Array, name: Uint8Array): Buffer {
  const slash = dir.length > 0 && dir[dir.length - 1] === SLASH ? 0 : 1;
  const out = Buffer.allocUnsafe(dir.length + slash + name.length);
  out.set(dir, 0);
  if (slash) out[dir.length] = SLASH;
  out.set(name, dir.length + slash);
  return out;
}

const asBuffer = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

/** Where the worker's code is: the bundle's sibling file, or the TypeScript source through tsx. */
function spawnWalker(data: HostTreeWorkerData): Worker {
  // The walker keeps little: a small heap keeps the process's peak memory down.
  const resourceLimits = { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 64 };
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new Worker(new URL('./host-tree-worker.mjs', here), { workerData: data, resourceLimits });
  const tsx = import.meta.resolve('tsx/esm/api');
  const src = new URL('./host-tree-worker.ts', here).href;
  const boot = `import(${JSON.stringify(tsx)}).then(({ register }) => { register(); return import(${JSON.stringify(src)}); })`;
  return new Worker(boot, { eval: true, workerData: data, resourceLimits });
}

export class HostTreeReader {
  private readonly worker: Worker;
  private readonly ahead: Int32Array;
  private readonly batches: HostBatch[] = [];
  private records: HostRecord[] = [];
  private data = new Uint8Array(0);
  private next = 0;
  private done = false;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;

  constructor(root: Uint8Array, smallFileBytes: number) {
    const counter = new SharedArrayBuffer(4);
    this.ahead = new Int32Array(counter);
    this.worker = spawnWalker({ root, smallFileBytes, counter });
    this.worker.on('message', (b: HostBatch) => { this.batches.push(b); this.wake?.(); });
    this.worker.on('error', (e) => { this.failure = e; this.wake?.(); });
    this.worker.on('exit', (code) => {
      if (!this.done && !this.failure && code !== 0) this.failure = new Error(`host tree reader exited with code ${code}`);
      this.wake?.();
    });
  }

  /**
   * The next record, which must be of `kind` for host path `host`: at once (no promise) when its
   * batch has arrived, which is nearly always, as the walker runs ahead. Two async layers per
   * entry cost more main-thread CPU than the record itself.
   */
  private take(kind: HostRecord['kind'], host: Buffer): HostRecord | Promise<HostRecord> {
    if (this.next >= this.records.length && !this.nextBatch() && (!this.done || this.failure)) return this.takeLater(kind, host);
    return this.check(kind, host);
  }

  /** The record at the cursor (undefined past the end), checked against what copy-in expects. */
  private check(kind: HostRecord['kind'], host: Buffer): HostRecord {
    const r = this.records[this.next++];
    if (!r || r.kind !== kind || Buffer.compare(r.host, host) !== 0) {
      throw new Error(`host tree reader out of step: wanted ${kind} of '${host.toString()}', got ${r ? `${r.kind} of '${asBuffer(r.host).toString()}'` : 'the end'}`);
    }
    return r;
  }

  /** Moves to the next arrived batch with records; false when none has arrived (or the walk is over). */
  private nextBatch(): boolean {
    while (this.next >= this.records.length) {
      const b = this.batches.shift();
      if (!b) return false;
      this.records = b.records;
      this.data = new Uint8Array(b.data);
      this.next = 0;
      this.done = b.done;
      // Only the drop to RESUME_AHEAD wakes the walker (it sleeps until then, see host-tree-worker.ts).
      if (Atomics.sub(this.ahead, 0, 1) === RESUME_AHEAD + 1) Atomics.notify(this.ahead, 0);
    }
    return true;
  }

  private async takeLater(kind: HostRecord['kind'], host: Buffer): Promise<HostRecord> {
    while (!this.nextBatch()) {
      if (this.failure) throw this.failure;
      if (this.done) break;
      await new Promise<void>((r) => { this.wake = r; });
      this.wake = undefined;
    }
    return this.check(kind, host);
  }

  /** readdir of `dir` (names as bytes). */
  async listing(dir: Buffer): Promise<Buffer[]> {
    const r = await this.take('listing', dir);
    if (r.error) throw hostError(r.error, 'scandir', dir);
    return r.names!.map(asBuffer);
  }

  /** lstat of `host`, with the contents of a small regular file (at once when the walker is ahead). */
  entry(host: Buffer): HostEntry | Promise<HostEntry> {
    const r = this.take('entry', host);
    return r instanceof Promise ? r.then((rec) => this.entryOf(rec, host)) : this.entryOf(r, host);
  }

  private entryOf(r: HostRecord, host: Buffer): HostEntry {
    if (r.error || !r.st) throw hostError(r.error ?? { message: 'no stat' }, 'lstat', host);
    const e: HostEntry = { host, st: r.st };
    if (r.dataOffset !== undefined) e.data = this.data.subarray(r.dataOffset, r.dataOffset + r.dataLen!);
    return e;
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}

function hostError(e: HostError, syscall: string, path: Buffer): Error {
  const err = new Error(`${e.message}`) as NodeJS.ErrnoException;
  err.code = e.code;
  err.syscall = syscall;
  err.path = path.toString();
  return err;
}
