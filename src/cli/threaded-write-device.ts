// A device for bulk builds (mkfs -d): large writes go to the image through libuv's thread pool
// (fs.write on a descriptor of its own) so that the page-cache copy of several MiB runs on
// another core while the build goes on; everything else goes to the inner device. A request
// that overlaps a write still running waits for it, and flush/close wait for all of them.
import { closeSync, fdatasync, openSync, write } from 'node:fs';
import type { BlockDevice } from '../device/block-device.ts';
import { checkRange } from '../device/block-device.ts';
import { ioError } from '../errors/ext4-error.ts';

/** Writes at least this large run on the thread pool. */
const THREADED_MIN_BYTES = 32 << 10;
/**
 * Bytes written between early write-outs: an fdatasync started on the pool (not waited for)
 * keeps the disk busy during the build, so that the final flush finds less left to write. Not
 * more often: the host filesystem's writeback of the image slows the pwrites running beside it
 * (warm 8 x 64 MiB build, strace: every 32 MiB, 16 fdatasyncs took 0.58-0.75 s and the pwrites
 * 1.9-2.3 s in all; with one fdatasync at the end 0.28-0.41 s and 1.1-1.3 s), and a warm build
 * waited on that; a tree under 256 MiB now has its one flush at the end, as mke2fs -d does.
 */
const WRITE_OUT_BYTES = 256 << 20;

interface Pending { start: number; end: number; done: Promise<void> }

export class ThreadedWriteDevice implements BlockDevice {
  private readonly fd: number;
  private readonly pending = new Set<Pending>();
  private error: unknown;
  private unflushedBytes = 0;
  private writeOut: Promise<void> | undefined;

  /** `path` is the file holding `inner`'s bytes, `inner`'s byte 0 at `baseBytes` of it. */
  constructor(private readonly inner: BlockDevice, path: string, private readonly baseBytes = 0) {
    this.fd = openSync(path, 'r+');
  }

  get sizeBytes(): number { return this.inner.sizeBytes; }
  get readOnly(): boolean { return this.inner.readOnly; }

  private async settle(start: number, end: number): Promise<void> {
    for (const p of [...this.pending]) if (p.start < end && start < p.end) await p.done;
    if (this.error !== undefined) {
      const e = this.error;
      this.error = undefined;
      throw ioError('threaded image write failed', e);
    }
  }

  async read(offsetBytes: number, lenBytes: number): Promise<Uint8Array> {
    await this.settle(offsetBytes, offsetBytes + lenBytes);
    return this.inner.read(offsetBytes, lenBytes);
  }

  async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    checkRange(this, offsetBytes, data.length);
    const end = offsetBytes + data.length;
    await this.settle(offsetBytes, end);
    if (data.length < THREADED_MIN_BYTES) return this.inner.write(offsetBytes, data);
    // The caller may reuse `data` once this resolves: resolve when the thread is done with it.
    const done = new Promise<void>((resolve) => {
      const step = (at: number): void => {
        write(this.fd, data, at, data.length - at, this.baseBytes + offsetBytes + at, (err, n) => {
          if (err || n === 0) {
            this.error ??= err ?? new Error('write wrote nothing');
            resolve();
          } else if (at + n < data.length) {
            step(at + n);
          } else {
            resolve();
          }
        });
      };
      step(0);
    });
    const p: Pending = { start: offsetBytes, end, done };
    this.pending.add(p);
    void done.then(() => this.pending.delete(p));
    await done;
    this.unflushedBytes += data.length;
    if (this.unflushedBytes >= WRITE_OUT_BYTES && !this.writeOut) {
      this.unflushedBytes = 0;
      this.writeOut = new Promise<void>((resolve) => fdatasync(this.fd, (err) => {
        if (err) this.error ??= err;
        this.writeOut = undefined;
        resolve();
      }));
    }
  }

  async flush(): Promise<void> {
    while (this.writeOut) await this.writeOut;
    await this.settle(0, Number.MAX_SAFE_INTEGER);
    await this.inner.flush();
  }

  async close(): Promise<void> {
    try {
      while (this.writeOut) await this.writeOut;
      await this.settle(0, Number.MAX_SAFE_INTEGER);
    } finally {
      closeSync(this.fd);
      await this.inner.close();
    }
  }
}
