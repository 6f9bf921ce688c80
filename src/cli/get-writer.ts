// The host side of `ext4kit get -r` for plain regular files: create the file (O_EXCL|O_NOFOLLOW),
// copy its mapped ranges from the image, set times, owner and mode through the same descriptor.
// The walk of the image (main thread) only describes each file; the host calls run here, in
// batches of many files, on worker threads once the copy is large enough (postMessage per file
// cost more than it saved), so the image's parsing overlaps the host's syscalls.
import {
  closeSync, constants, fchmodSync, fchownSync, ftruncateSync, futimesSync, openSync, readSync, writeSync,
} from 'node:fs';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

/** One regular file to create on the host: everything the host calls need, nothing of the image. */
export interface FileOp {
  /** Host path (created with O_EXCL|O_NOFOLLOW: its parent directory already exists). */
  host: Buffer;
  openMode: number;
  sizeBytes: number;
  /** Flat triples (image byte offset, file byte offset, length): ranges already range-checked. */
  ranges: number[];
  /** Inline data (written at 0) instead of ranges. */
  inline?: Uint8Array;
  atimeSec: number;
  mtimeSec: number;
  /** -1: leave the owner as created. */
  uid: number;
  gid: number;
  /** -1: the mode given to open is already right. */
  chmod: number;
}

/** A host error as it crosses a thread: the fields the CLI's error line uses. */
export interface WireError { message: string; code?: string; errno?: number; syscall?: string; path?: string }

export function toWire(e: unknown): WireError {
  const x = e as NodeJS.ErrnoException;
  return { message: x?.message ?? String(e), code: x?.code, errno: x?.errno, syscall: x?.syscall, path: x?.path };
}

export function fromWire(w: WireError): Error {
  return Object.assign(new Error(w.message), { code: w.code, errno: w.errno, syscall: w.syscall, path: w.path });
}

const CHUNK_BYTES = 1 << 20;
const CREATE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/** Runs file ops with one reused buffer; `imageFd` is read with pread (shared by every thread). */
export class FileOpRunner {
  private readonly buf = Buffer.allocUnsafe(CHUNK_BYTES);
  constructor(private readonly imageFd: number) {}

  run(op: FileOp): void {
    const fd = openSync(op.host, CREATE, op.openMode);
    try {
      let endBytes = 0;
      if (op.inline) endBytes = writeAll(fd, op.inline, 0);
      const r = op.ranges;
      for (let i = 0; i < r.length; i += 3) {
        let from = r[i]!;
        let pos = r[i + 1]!;
        const end = pos + r[i + 2]!;
        while (pos < end) {
          const n = Math.min(CHUNK_BYTES, end - pos);
          this.readImage(from, n);
          endBytes = writeAll(fd, this.buf.subarray(0, n), pos);
          pos += n;
          from += n;
        }
      }
      // Only a trailing hole (or unwritten tail) leaves the host file short.
      if (endBytes !== op.sizeBytes) ftruncateSync(fd, op.sizeBytes);
      futimesSync(fd, op.atimeSec, op.mtimeSec);
      // chown clears set-id bits: it goes first.
      if (op.uid >= 0) fchownSync(fd, op.uid, op.gid);
      if (op.chmod >= 0) fchmodSync(fd, op.chmod);
    } finally {
      closeSync(fd);
    }
  }

  /** `n` bytes of the image at `at` into the buffer; past the image file's end reads zeros. */
  private readImage(at: number, n: number): void {
    let got = 0;
    while (got < n) {
      const k = readSync(this.imageFd, this.buf, got, n - got, at + got);
      if (k === 0) {
        this.buf.fill(0, got, n);
        return;
      }
      got += k;
    }
  }
}

function writeAll(fd: number, data: Uint8Array, position: number): number {
  let done = 0;
  while (done < data.length) done += writeSync(fd, data, done, data.length - done, position + done);
  return position + data.length;
}

/** A message to a writer thread and its answer. */
export interface WriterBatch { id: number; ops: FileOp[] }
export interface WriterReply { id: number; error?: WireError }

const BATCH_FILES = 128;
const BATCH_BYTES = 8 << 20;
/** A file larger than this goes to a writer thread even in a small copy. */
const INLINE_MAX_BYTES = 1 << 20;

export interface HostWriterOptions {
  /** Worker threads to use (0: every op on the calling thread). */
  workers: number;
  /** Files done on the calling thread before any worker starts (small copies never start one). */
  inlineFiles: number;
}

/**
 * Two writer threads (one on a single-CPU host), starting after the first 128 files.
 * EXT4KIT_GET_WORKERS=N sets the number and starts them with the first file (tests use it to
 * run small copies through the threads; 0 keeps every host call on the main thread).
 */
export function defaultWriterOptions(): HostWriterOptions {
  const env = process.env.EXT4KIT_GET_WORKERS;
  if (env !== undefined && /^\d+$/.test(env)) return { workers: Math.min(8, Number(env)), inlineFiles: 0 };
  return { workers: Math.min(2, availableParallelism()), inlineFiles: 128 };
}

/** Where a writer thread's code is: the bundle's sibling file, or the TypeScript source through tsx. */
function spawnWriter(imageFd: number): Worker {
  const resourceLimits = { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 64 };
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new Worker(new URL('./get-writer-worker.mjs', here), { workerData: { imageFd }, resourceLimits });
  const tsx = import.meta.resolve('tsx/esm/api');
  const src = new URL('./get-writer-worker.ts', here).href;
  const boot = `import(${JSON.stringify(tsx)}).then(({ register }) => { register(); return import(${JSON.stringify(src)}); })`;
  return new Worker(boot, { eval: true, workerData: { imageFd }, resourceLimits });
}

interface Lane { worker: Worker; pending: number }

/**
 * Takes file ops in walk order and runs them in batches: the first `inlineFiles` on this thread,
 * the rest on worker threads (each batch to the least busy). Every op's parent directory exists
 * before the op is queued, and no op depends on another, so batches may finish in any order.
 * The first failure is thrown by the next `add` or by `drain`.
 */
export class HostWriter {
  private readonly runner: FileOpRunner;
  private readonly lanes: Lane[] = [];
  private batch: FileOp[] = [];
  private batchBytes = 0;
  private queued = 0;
  private nextId = 0;
  private failure: Error | undefined;
  private idle: (() => void) | undefined;

  constructor(private readonly imageFd: number, private readonly opts: HostWriterOptions) {
    this.runner = new FileOpRunner(imageFd);
  }

  add(op: FileOp, dataBytes: number): void {
    if (this.failure) throw this.failure;
    if (this.opts.workers === 0 || (this.queued < this.opts.inlineFiles && dataBytes <= INLINE_MAX_BYTES)) {
      this.queued++;
      this.runner.run(op);
      return;
    }
    this.queued++;
    this.batch.push(op);
    this.batchBytes += dataBytes;
    if (this.batch.length >= BATCH_FILES || this.batchBytes >= BATCH_BYTES) this.send();
  }

  private send(): void {
    if (this.batch.length === 0) return;
    const lane = this.pickLane();
    lane.pending++;
    lane.worker.postMessage({ id: this.nextId++, ops: this.batch } satisfies WriterBatch);
    this.batch = [];
    this.batchBytes = 0;
  }

  private pickLane(): Lane {
    if (this.lanes.length < this.opts.workers && this.lanes.every((l) => l.pending > 0)) {
      const lane: Lane = { worker: spawnWriter(this.imageFd), pending: 0 };
      lane.worker.on('message', (r: WriterReply) => {
        lane.pending--;
        if (r.error && !this.failure) this.failure = fromWire(r.error);
        this.wakeIfIdle();
      });
      lane.worker.on('error', (e) => {
        this.failure ??= e;
        lane.pending = 0;
        this.wakeIfIdle();
      });
      lane.worker.on('exit', () => {
        if (lane.pending > 0) {
          this.failure ??= new Error('a host writer thread stopped early');
          lane.pending = 0;
          this.wakeIfIdle();
        }
      });
      this.lanes.push(lane);
      return lane;
    }
    let best = this.lanes[0]!;
    for (const l of this.lanes) if (l.pending < best.pending) best = l;
    return best;
  }

  private wakeIfIdle(): void {
    if (this.idle && this.lanes.every((l) => l.pending === 0)) {
      const wake = this.idle;
      this.idle = undefined;
      wake();
    }
  }

  /** Waits for every queued op; throws the first failure. */
  async drain(): Promise<void> {
    if (!this.failure) this.send();
    if (this.lanes.some((l) => l.pending > 0)) await new Promise<void>((resolve) => { this.idle = resolve; });
    if (this.failure) throw this.failure;
  }

  /** Stops the threads (after drain, or after a failure elsewhere). */
  async close(): Promise<void> {
    await Promise.all(this.lanes.map((l) => l.worker.terminate()));
    this.lanes.length = 0;
  }
}
