// A block device over a host file with positional I/O (the only node:fs user in the core's reach).
// Sparse files are fine: holes read as zeros and are never materialised by reads.
//
// I/O uses synchronous pread/pwrite on a raw descriptor: ext4 metadata work is dominated by
// many small (1–4 KiB) requests, for which a promise-based FileHandle costs ~5x the syscall
// itself. Image files live on local storage, so the event loop blocks only for page-cache time.
// Small writes stay synchronous. Gather writes of ASYNC_WRITE_MIN_BYTES or more (file data from
// writeback) run on a libuv thread, so the main thread goes on (copying the next data into the
// page cache) while the host copies this data into its own; several may be in flight. Ordering
// is kept where it matters (ordersOverlaps): a request overlapping a write in flight waits for
// it, requests behind a waiting one queue in issue order, flush() waits for every write. Early
// write-out of written data to the disk also runs on a libuv thread (see startWriteOut).
import { Buffer } from 'node:buffer';
import { openSync, closeSync, fstatSync, ftruncateSync, readSync, writeSync, writev as writevAsync, writevSync, fdatasync } from 'node:fs';
import { type BlockDevice, checkRange, readOnlyError } from './block-device.ts';
import { ioError } from '../errors/ext4-error.ts';

/** Bytes written between early write-out requests (see startWriteOut). */
const WRITE_OUT_BYTES = 32 << 20;
/** Gather writes at least this large run on a libuv thread. */
const ASYNC_WRITE_MIN_BYTES = 1 << 20;

/** A write running on a libuv thread: bytes [startBytes, endBytes) of the device. */
interface InFlight { startBytes: number; endBytes: number; done: Promise<void> }

export class NodeFileDevice implements BlockDevice {
  private fd: number | undefined;
  /** Bytes written since the last flush or write-out request. */
  private unflushed = 0;
  private writeOut: Promise<void> | undefined;
  private writeOutError: unknown;
  /** Writes running on libuv threads. */
  private readonly inFlight = new Set<InFlight>();
  /** Requests waiting for an overlapping write in flight (or for one that does): issue order. */
  private waiting = 0;
  private tail: Promise<unknown> = Promise.resolve();
  readonly ordersOverlaps = true;
  /** Test hook: requests no longer wait for overlapping writes in flight (the ordering bug). */
  ignoreOverlapsForTest = false;
  private constructor(fd: number, public readonly sizeBytes: number, public readonly readOnly: boolean) {
    this.fd = fd;
  }

  static async open(path: string, opts: { readOnly?: boolean } = {}): Promise<NodeFileDevice> {
    const readOnly = opts.readOnly ?? false;
    try {
      const fd = openSync(path, readOnly ? 'r' : 'r+');
      return new NodeFileDevice(fd, fstatSync(fd).size, readOnly);
    } catch (e) {
      throw ioError(`cannot open image '${path}': ${(e as Error).message}`, e);
    }
  }

  /** Creates (or truncates) a sparse image file of `sizeBytes`. */
  static async create(path: string, sizeBytes: number): Promise<NodeFileDevice> {
    try {
      const fd = openSync(path, 'w+');
      ftruncateSync(fd, sizeBytes);
      return new NodeFileDevice(fd, sizeBytes, false);
    } catch (e) {
      throw ioError(`cannot create image '${path}': ${(e as Error).message}`, e);
    }
  }

  /** The host descriptor, for preads on other threads (`get -r`'s writers); valid until close. */
  get hostFd(): number {
    return this.handle;
  }

  private get handle(): number {
    if (this.fd === undefined) throw ioError('device is closed');
    return this.fd;
  }

  async read(offsetBytes: number, lenBytes: number): Promise<Uint8Array> {
    checkRange(this, offsetBytes, lenBytes);
    if (this.mustWait(offsetBytes, lenBytes)) await this.later(offsetBytes, lenBytes, () => undefined);
    // Not zero-filled first: every byte is read or, past a short file's end, zeroed by readInto.
    const buf = new Uint8Array(Buffer.allocUnsafeSlow(lenBytes).buffer, 0, lenBytes);
    this.readInto(offsetBytes, buf);
    return buf;
  }

  /**
   * Fills `target` from `offsetBytes` without allocating (bulk copies out of the image reuse one
   * buffer). Bytes past the end of a host file shorter than `sizeBytes` read as zeros.
   */
  readInto(offsetBytes: number, target: Uint8Array): void {
    const lenBytes = target.length;
    checkRange(this, offsetBytes, lenBytes);
    // Synchronous: it cannot wait. Callers (read-only exports) issue no writes meanwhile.
    if (this.overlapping(offsetBytes, lenBytes)) throw ioError(`read of ${lenBytes} bytes at ${offsetBytes} overlaps a write in flight`);
    let done = 0;
    try {
      while (done < lenBytes) {
        const n = readSync(this.handle, target, done, lenBytes - done, offsetBytes + done);
        if (n === 0) break;
        done += n;
      }
    } catch (e) {
      throw ioError(`read of ${lenBytes} bytes at ${offsetBytes} failed`, e);
    }
    if (done < lenBytes) target.fill(0, done);
  }

  async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    if (this.readOnly) throw readOnlyError();
    checkRange(this, offsetBytes, data.length);
    if (this.mustWait(offsetBytes, data.length)) await this.later(offsetBytes, data.length, () => this.writeNow(offsetBytes, data));
    else this.writeNow(offsetBytes, data);
  }

  private writeNow(offsetBytes: number, data: Uint8Array): void {
    let done = 0;
    try {
      while (done < data.length) done += writeSync(this.handle, data, done, data.length - done, offsetBytes + done);
    } catch (e) {
      throw ioError(`write of ${data.length} bytes at ${offsetBytes} failed`, e);
    }
    this.wrote(data.length);
  }

  /**
   * One pwritev per call (data writeback hands over page runs without gathering them first);
   * from ASYNC_WRITE_MIN_BYTES on, on a libuv thread (the chunks must stay unchanged until the
   * promise settles, as for every write).
   */
  async writev(offsetBytes: number, chunks: readonly Uint8Array[]): Promise<void> {
    if (this.readOnly) throw readOnlyError();
    let len = 0;
    for (const c of chunks) len += c.length;
    checkRange(this, offsetBytes, len);
    if (len < ASYNC_WRITE_MIN_BYTES) {
      if (this.mustWait(offsetBytes, len)) await this.later(offsetBytes, len, () => this.writevNow(offsetBytes, len, chunks));
      else this.writevNow(offsetBytes, len, chunks);
      return;
    }
    let w: InFlight | undefined;
    if (this.mustWait(offsetBytes, len)) await this.later(offsetBytes, len, () => { w = this.startWritev(offsetBytes, len, chunks); });
    else w = this.startWritev(offsetBytes, len, chunks);
    await w!.done;
  }

  /** Starts a gather write on a libuv thread and registers it until it settles. */
  private startWritev(offsetBytes: number, len: number, chunks: readonly Uint8Array[]): InFlight {
    const fd = this.handle;
    const w: InFlight = { startBytes: offsetBytes, endBytes: offsetBytes + len, done: Promise.resolve() };
    w.done = new Promise<void>((resolve, reject) => {
      let done = 0;
      let rest = chunks.slice();
      const step = (): void => {
        writevAsync(fd, rest, offsetBytes + done, (err, n) => {
          if (!err && n <= 0) err = new Error('pwritev wrote nothing');
          if (err) { reject(ioError(`write of ${len} bytes at ${offsetBytes} failed`, err)); return; }
          done += n;
          if (done >= len) { resolve(); return; }
          rest = dropWritten(rest, n);
          step();
        });
      };
      step();
    }).finally(() => {
      this.inFlight.delete(w);
      if (this.fd !== undefined) this.wrote(len);
    });
    this.inFlight.add(w);
    return w;
  }

  private writevNow(offsetBytes: number, len: number, chunks: readonly Uint8Array[]): void {
    let done = 0;
    let rest = chunks.slice();
    try {
      while (done < len) {
        const n = writevSync(this.handle, rest, offsetBytes + done);
        if (n <= 0) throw new Error('pwritev wrote nothing');
        done += n;
        if (done >= len) break;
        rest = dropWritten(rest, n);
      }
    } catch (e) {
      throw ioError(`write of ${len} bytes at ${offsetBytes} failed`, e);
    }
    this.wrote(len);
  }

  /** Whether a write in flight overlaps [offsetBytes, offsetBytes + lenBytes). */
  private overlapping(offsetBytes: number, lenBytes: number): boolean {
    if (this.ignoreOverlapsForTest) return false;
    for (const w of this.inFlight) if (w.startBytes < offsetBytes + lenBytes && offsetBytes < w.endBytes) return true;
    return false;
  }

  /** A request must queue: an earlier one is queued, or a write in flight overlaps it. */
  private mustWait(offsetBytes: number, lenBytes: number): boolean {
    return this.waiting > 0 || this.overlapping(offsetBytes, lenBytes);
  }

  /**
   * Runs `op` once every earlier queued request has run and no write in flight overlaps
   * [offsetBytes, offsetBytes + lenBytes) (Infinity: all of them). Errors of those writes
   * belong to their own callers.
   */
  private later<T>(offsetBytes: number, lenBytes: number, op: () => T): Promise<T> {
    this.waiting++;
    const run = this.tail.then(async () => {
      for (;;) {
        let hit: InFlight | undefined;
        for (const w of this.inFlight) if (w.startBytes < offsetBytes + lenBytes && offsetBytes < w.endBytes && !this.ignoreOverlapsForTest) { hit = w; break; }
        if (!hit) break;
        await hit.done.catch(() => undefined);
      }
      return op();
    }).finally(() => { this.waiting--; });
    this.tail = run.catch(() => undefined);
    return run;
  }

  private wrote(n: number): void {
    this.unflushed += n;
    if (this.unflushed >= WRITE_OUT_BYTES && !this.writeOut) this.startWriteOut();
  }

  /**
   * Starts writing the image's dirty host pages to disk on a libuv thread, without waiting, so
   * that the disk works while we go on and the next flush() finds little left to do (the
   * host's own background writeback would start only at its dirty thresholds, gigabytes away
   * on a large machine). An fdatasync may report a write-out error once only: a failure is kept
   * and thrown by the next flush().
   */
  private startWriteOut(): void {
    const fd = this.handle;
    this.unflushed = 0;
    this.writeOut = new Promise<void>((resolve) => {
      fdatasync(fd, (err) => {
        if (err) this.writeOutError ??= err;
        this.writeOut = undefined;
        resolve();
      });
    });
  }

  async flush(): Promise<void> {
    if (this.readOnly) return;
    // Covers every write issued before it: queued ones and those in flight.
    if (this.waiting > 0 || this.inFlight.size > 0) await this.later(0, Infinity, () => undefined);
    while (this.writeOut) await this.writeOut;
    const err = this.writeOutError;
    this.writeOutError = undefined;
    if (err !== undefined) throw ioError('flush failed', err);
    this.unflushed = 0;
    // On a libuv thread: the caller's other work (a bulk copy whose commit runs in the
    // background) goes on meanwhile; writes issued during it are not covered by this flush.
    const fd = this.handle;
    await new Promise<void>((resolve, reject) => fdatasync(fd, (e) => (e ? reject(ioError('flush failed', e)) : resolve())));
  }

  async close(): Promise<void> {
    if (this.fd === undefined) return;
    // The descriptor must outlive writes and a write-out running on other threads.
    if (this.waiting > 0 || this.inFlight.size > 0) await this.later(0, Infinity, () => undefined);
    while (this.writeOut) await this.writeOut;
    const fd = this.fd;
    this.fd = undefined;
    closeSync(fd);
  }
}

/** The chunks left after the first `n` bytes went out (the tail of a partly written chunk kept). */
function dropWritten(chunks: Uint8Array[], n: number): Uint8Array[] {
  let i = 0;
  let skip = n;
  while (skip >= chunks[i]!.length) { skip -= chunks[i]!.length; i++; }
  return [chunks[i]!.subarray(skip), ...chunks.slice(i + 1)];
}
