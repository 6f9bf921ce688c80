// The host side of `ext4kit get -r` for plain regular files: create the file (O_EXCL|O_NOFOLLOW),
// copy its mapped ranges from the image, set times, owner and mode through the same descriptor.
// The walk of the image (main thread) only describes each file; the host calls run here, in
// batches of many files, on worker threads once the copy is large enough (postMessage per file
// cost more than it saved), so the image's parsing overlaps the host's syscalls.
import {
  closeSync, constants, fchmodSync, fchownSync, ftruncateSync, futimesSync, openSync, readSync, writeSync,
} from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
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

/** A small file's range is served from one read of the image covering several files. */
const SMALL_RANGE_BYTES = 128 << 10;
/** Unused image bytes read between two files of one such read, at most. */
const GAP_BYTES = 32 << 10;

/** Runs file ops with one reused buffer; `imageFd` is read with pread (shared by every thread). */
export class FileOpRunner {
  private readonly buf = Buffer.allocUnsafe(CHUNK_BYTES);
  /** The image bytes [winStart, winEnd) of the last grouped read, and the planned reads. */
  private readonly win = Buffer.allocUnsafe(CHUNK_BYTES);
  private winStart = 0;
  private winEnd = 0;
  private readonly planned = new Map<number, number>();

  constructor(private readonly imageFd: number) {}

  /**
   * Runs a batch in order. Small files lie next to each other in most images (mke2fs -d and
   * ext4kit allocate them in walk order): their ranges are read with one pread per run of
   * nearby ranges (at most 1 MiB, gaps under 32 KiB) instead of one per file.
   */
  runBatch(ops: readonly FileOp[]): void {
    this.planned.clear();
    this.winStart = this.winEnd = 0;
    let start = -1;
    let end = -1;
    for (const op of ops) {
      const r = op.ranges;
      for (let i = 0; i < r.length; i += 3) {
        const from = r[i]!;
        const len = r[i + 2]!;
        if (len > SMALL_RANGE_BYTES) continue;
        if (start >= 0 && from >= end && from - end <= GAP_BYTES && from + len - start <= CHUNK_BYTES) {
          end = from + len;
        } else {
          if (start >= 0) this.planned.set(start, end);
          start = from;
          end = from + len;
        }
      }
    }
    if (start >= 0) this.planned.set(start, end);
    for (const op of ops) this.run(op);
  }

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
        const grouped = this.grouped(from, end - pos);
        if (grouped) {
          endBytes = writeAll(fd, grouped, pos);
          continue;
        }
        while (pos < end) {
          const n = Math.min(CHUNK_BYTES, end - pos);
          readImage(this.imageFd, this.buf, from, n);
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

  /** The image bytes [from, from + n) out of a grouped read, or undefined when not planned. */
  private grouped(from: number, n: number): Uint8Array | undefined {
    if (n > SMALL_RANGE_BYTES) return undefined;
    if (from < this.winStart || from + n > this.winEnd) {
      const end = this.planned.get(from);
      if (end === undefined) return undefined;
      readImage(this.imageFd, this.win, from, end - from);
      this.winStart = from;
      this.winEnd = end;
    }
    return this.win.subarray(from - this.winStart, from - this.winStart + n);
  }
}

/** `n` bytes of the image at `at` into `buf`; past the image file's end reads zeros. */
function readImage(imageFd: number, buf: Buffer, at: number, n: number): void {
  let got = 0;
  while (got < n) {
    const k = readSync(imageFd, buf, got, n - got, at + got);
    if (k === 0) {
      buf.fill(0, got, n);
      return;
    }
    got += k;
  }
}

function writeAll(fd: number, data: Uint8Array, position: number): number {
  let done = 0;
  while (done < data.length) done += writeSync(fd, data, done, data.length - done, position + done);
  return position + data.length;
}

/** A message to a writer thread (ops packed by OpPacker, the buffer transferred) and its answer. */
export interface WriterBatch { id: number; packed: ArrayBuffer; lenBytes: number }
export interface WriterReply { id: number; error?: WireError; packed: ArrayBuffer }

/** Per op: 10 numbers, the range triples, then the path and inline bytes (8-byte aligned). */
const HEAD_NUMBERS = 10;
const align8 = (n: number): number => (n + 7) & ~7;

/**
 * Packs ops into one growing buffer: a batch crosses to a thread as one transferred buffer
 * (the structured clone of an object per file cost the main thread ~5 µs a file).
 */
export class OpPacker {
  /** Buffers the threads have handed back (a fresh one costs page faults on every batch). */
  readonly spare: ArrayBuffer[] = [];
  private buf = new ArrayBuffer(1 << 16);
  private f64 = new Float64Array(this.buf);
  private u8 = new Uint8Array(this.buf);
  lenBytes = 0;
  count = 0;

  add(op: FileOp): void {
    const inlineLen = op.inline?.length ?? 0;
    const need = 8 * (HEAD_NUMBERS + op.ranges.length) + align8(op.host.length) + align8(inlineLen);
    if (this.lenBytes + need > this.buf.byteLength) this.grow(this.lenBytes + need);
    let at = this.lenBytes / 8;
    const f = this.f64;
    f[at++] = op.host.length; f[at++] = op.openMode; f[at++] = op.sizeBytes; f[at++] = op.ranges.length / 3;
    f[at++] = inlineLen; f[at++] = op.atimeSec; f[at++] = op.mtimeSec; f[at++] = op.uid; f[at++] = op.gid; f[at++] = op.chmod;
    for (const r of op.ranges) f[at++] = r;
    let b = at * 8;
    this.u8.set(op.host, b);
    b += align8(op.host.length);
    if (op.inline) this.u8.set(op.inline, b);
    this.lenBytes = b + align8(inlineLen);
    this.count++;
  }

  /** Hands the packed bytes over and starts a fresh buffer. */
  take(): { packed: ArrayBuffer; lenBytes: number } {
    const out = { packed: this.buf, lenBytes: this.lenBytes };
    this.buf = this.spare.pop() ?? new ArrayBuffer(Math.max(1 << 16, this.lenBytes));
    this.f64 = new Float64Array(this.buf);
    this.u8 = new Uint8Array(this.buf);
    this.lenBytes = 0;
    this.count = 0;
    return out;
  }

  private grow(min: number): void {
    const next = new ArrayBuffer(Math.max(min, this.buf.byteLength * 2));
    new Uint8Array(next).set(this.u8.subarray(0, this.lenBytes));
    this.buf = next;
    this.f64 = new Float64Array(next);
    this.u8 = new Uint8Array(next);
  }
}

/** The ops OpPacker packed, in order. */
export function* unpackOps(packed: ArrayBuffer, lenBytes: number): Generator<FileOp> {
  const f = new Float64Array(packed);
  const u8 = new Uint8Array(packed);
  let b = 0;
  while (b < lenBytes) {
    let at = b / 8;
    const pathLen = f[at++]!; const openMode = f[at++]!; const sizeBytes = f[at++]!; const nRanges = f[at++]!;
    const inlineLen = f[at++]!; const atimeSec = f[at++]!; const mtimeSec = f[at++]!; const uid = f[at++]!; const gid = f[at++]!; const chmod = f[at++]!;
    const ranges = Array.from(f.subarray(at, at + 3 * nRanges));
    b = (at + 3 * nRanges) * 8;
    const host = Buffer.from(packed, b, pathLen);
    b += align8(pathLen);
    const inline = inlineLen > 0 ? u8.subarray(b, b + inlineLen) : undefined;
    b += align8(inlineLen);
    yield { host, openMode, sizeBytes, ranges, inline, atimeSec, mtimeSec, uid, gid, chmod };
  }
}

const BATCH_FILES = 256;
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
 * Two writer threads (one on a single-CPU host), starting after the first 128 files, when a CPU
 * is idle (1-minute load average under the CPU count). The threads overlap the
 * host calls with the walk but cost ~20 % more CPU in all (thread start-up, wake-ups): on a busy
 * host, with no CPU to overlap on, the copy is faster without them.
 * EXT4KIT_GET_WORKERS=N sets the number and starts them with the first file (tests use it to
 * run small copies through the threads; 0 keeps every host call on the main thread).
 */
export function defaultWriterOptions(): HostWriterOptions {
  const env = process.env.EXT4KIT_GET_WORKERS;
  if (env !== undefined && /^\d+$/.test(env)) return { workers: Math.min(8, Number(env)), inlineFiles: 0 };
  const cpus = availableParallelism();
  const idle = loadavg()[0]! < cpus;
  return { workers: idle ? Math.min(2, cpus) : 0, inlineFiles: 128 };
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
  private readonly batch = new OpPacker();
  private local: FileOp[] = [];
  private localBytes = 0;
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
      // On this thread, in batches too (nearby small files share a pread).
      this.queued++;
      this.local.push(op);
      this.localBytes += dataBytes;
      if (this.local.length >= BATCH_FILES || this.localBytes >= BATCH_BYTES) this.runLocal();
      return;
    }
    this.queued++;
    this.batch.add(op);
    this.batchBytes += dataBytes;
    if (this.batch.count >= BATCH_FILES || this.batchBytes >= BATCH_BYTES) this.send();
  }

  private runLocal(): void {
    const ops = this.local;
    this.local = [];
    this.localBytes = 0;
    this.runner.runBatch(ops);
  }

  private send(): void {
    if (this.batch.count === 0) return;
    const lane = this.pickLane();
    lane.pending++;
    const { packed, lenBytes } = this.batch.take();
    lane.worker.postMessage({ id: this.nextId++, packed, lenBytes } satisfies WriterBatch, [packed]);
    this.batchBytes = 0;
  }

  private pickLane(): Lane {
    if (this.lanes.length < this.opts.workers && this.lanes.every((l) => l.pending > 0)) {
      const lane: Lane = { worker: spawnWriter(this.imageFd), pending: 0 };
      lane.worker.on('message', (r: WriterReply) => {
        lane.pending--;
        this.batch.spare.push(r.packed);
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
    if (!this.failure) {
      this.runLocal();
      this.send();
    }
    if (this.lanes.some((l) => l.pending > 0)) await new Promise<void>((resolve) => { this.idle = resolve; });
    if (this.failure) throw this.failure;
  }

  /** Stops the threads (after drain, or after a failure elsewhere). */
  async close(): Promise<void> {
    await Promise.all(this.lanes.map((l) => l.worker.terminate()));
    this.lanes.length = 0;
  }
}
