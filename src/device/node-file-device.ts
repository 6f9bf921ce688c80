// A block device over a host file with positional I/O (the only node:fs user in the core's reach).
// Sparse files are fine: holes read as zeros and are never materialised by reads.
//
// I/O uses synchronous pread/pwrite on a raw descriptor: ext4 metadata work is dominated by
// many small (1–4 KiB) requests, for which a promise-based FileHandle costs ~5x the syscall
// itself. Image files live on local storage, so the event loop blocks only for page-cache time.
// Writes stay synchronous (requests complete in issue order, which the engine relies on); only
// early write-out of written data to the disk runs on a libuv thread (see startWriteOut).
import { Buffer } from 'node:buffer';
import { openSync, closeSync, fstatSync, ftruncateSync, readSync, writeSync, writevSync, fdatasync } from 'node:fs';
import { type BlockDevice, checkRange, readOnlyError } from './block-device.ts';
import { ioError } from '../errors/ext4-error.ts';

/** Bytes written between early write-out requests (see startWriteOut). */
const WRITE_OUT_BYTES = 32 << 20;

export class NodeFileDevice implements BlockDevice {
  private fd: number | undefined;
  /** Bytes written since the last flush or write-out request. */
  private unflushed = 0;
  private writeOut: Promise<void> | undefined;
  private writeOutError: unknown;
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
    let done = 0;
    try {
      while (done < data.length) done += writeSync(this.handle, data, done, data.length - done, offsetBytes + done);
    } catch (e) {
      throw ioError(`write of ${data.length} bytes at ${offsetBytes} failed`, e);
    }
    this.wrote(data.length);
  }

  /** One pwritev per call (data writeback hands over page runs without gathering them first). */
  async writev(offsetBytes: number, chunks: readonly Uint8Array[]): Promise<void> {
    if (this.readOnly) throw readOnlyError();
    let len = 0;
    for (const c of chunks) len += c.length;
    checkRange(this, offsetBytes, len);
    let done = 0;
    let rest = chunks.slice();
    try {
      while (done < len) {
        const n = writevSync(this.handle, rest, offsetBytes + done);
        if (n <= 0) throw new Error('pwritev wrote nothing');
        done += n;
        if (done >= len) break;
        // Short write: drop what went out, keep the unwritten tail of a partly written chunk.
        let skip = n;
        while (skip >= rest[0]!.length) { skip -= rest[0]!.length; rest.shift(); }
        rest = [rest[0]!.subarray(skip), ...rest.slice(1)];
      }
    } catch (e) {
      throw ioError(`write of ${len} bytes at ${offsetBytes} failed`, e);
    }
    this.wrote(len);
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
    // The descriptor must outlive a write-out running on another thread.
    while (this.writeOut) await this.writeOut;
    const fd = this.fd;
    this.fd = undefined;
    closeSync(fd);
  }
}
