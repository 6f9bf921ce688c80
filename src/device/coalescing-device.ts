// Write coalescing in front of any device: a write that continues the previous one is appended
// to a buffer instead of going to the device, so thousands of small files laid out one after
// another (mkfs -d, put) cost one device write per MiB instead of one per file.
//
// The wrapper behaves like a device that completes requests in the order they were issued:
//  - fast paths (append to the buffer, start a new buffer, a read that misses it) run at once,
//    and only while nothing is queued;
//  - everything else (writing the buffer out, large writes, reads that overlap the buffer,
//    flush, close) goes through one FIFO queue, and while the queue is busy every new request
//    joins it. So a write issued after another never lands before it, and a read sees every
//    write issued before it. (The schedule explorer found a lost-buffer race in an earlier,
//    unqueued version.)
//  - write-behind: when the device has writeDetached (a host file), a full buffer goes out on a
//    worker thread while the caller goes on filling a second buffer. Requests that overlap a
//    detached write wait for it; flush() and close() wait for all of them and report a failure.
import { type BlockDevice, checkRange, readOnlyError, writeChunks } from './block-device.ts';

/** Buffer size: large enough to amortize a system call, small enough to keep memory flat. */
const DEFAULT_CAPACITY_BYTES = 1 << 20;
/** Buffers at least this large go out detached when the device can (smaller: not worth a thread hop). */
const DETACH_MIN_BYTES = 64 * 1024;
/** Detached write-outs in flight at most (each holds one buffer). */
const MAX_DETACHED = 2;

interface DetachedWrite {
  readonly startBytes: number;
  readonly endBytes: number;
  /** Settles (never rejects) once the write is done; a failure is kept in detachedError. */
  done: Promise<void>;
}

export class CoalescingDevice implements BlockDevice {
  private buf: Uint8Array;
  /** Buffers returned by finished detached writes, reused. */
  private readonly spare: Uint8Array[] = [];
  private readonly detached: DetachedWrite[] = [];
  /** The first failure of a detached write, thrown by the next flush() or close(). */
  private detachedError: unknown;
  /** Device offset of the buffered bytes, and how many there are (0: nothing buffered). */
  private startBytes = 0;
  private lenBytes = 0;
  /** Queued or running requests; the fast paths wait while there are any. */
  private queued = 0;
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly inner: BlockDevice, private readonly capacityBytes = DEFAULT_CAPACITY_BYTES) {
    this.buf = new Uint8Array(capacityBytes);
  }

  get sizeBytes(): number { return this.inner.sizeBytes; }
  get readOnly(): boolean { return this.inner.readOnly; }

  async read(offsetBytes: number, lenBytes: number): Promise<Uint8Array> {
    if (this.queued === 0 && !this.buffers(offsetBytes, lenBytes) && !this.inFlight(offsetBytes, lenBytes)) return this.inner.read(offsetBytes, lenBytes);
    return this.enqueue(async () => {
      if (this.buffers(offsetBytes, lenBytes)) await this.writeOut();
      await this.settle(offsetBytes, lenBytes);
      return this.inner.read(offsetBytes, lenBytes);
    });
  }

  async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    // Errors belong to this write, not to whichever later call writes the buffer out.
    if (this.inner.readOnly) throw readOnlyError();
    checkRange(this, offsetBytes, data.length);
    if (this.queued === 0 && this.tryBuffer(offsetBytes, data)) return;
    return this.enqueue(async () => {
      if (this.tryBuffer(offsetBytes, data)) return;
      await this.writeOut();
      // Large writes gain nothing from a copy.
      if (this.tryBuffer(offsetBytes, data)) return;
      await this.settle(offsetBytes, data.length);
      await this.inner.write(offsetBytes, data);
    });
  }

  /** Gather write: buffered like write() when small, else passed on whole (pwritev). */
  async writev(offsetBytes: number, chunks: readonly Uint8Array[]): Promise<void> {
    if (this.inner.readOnly) throw readOnlyError();
    let len = 0;
    for (const c of chunks) len += c.length;
    checkRange(this, offsetBytes, len);
    if (len * 2 <= this.buf.length) {
      // Small: the chunks as consecutive writes (each appends to the one before).
      let at = offsetBytes;
      const all: Array<Promise<void>> = [];
      for (const c of chunks) { all.push(this.write(at, c)); at += c.length; }
      await Promise.all(all);
      return;
    }
    return this.enqueue(async () => {
      await this.writeOut();
      await this.settle(offsetBytes, len);
      await writeChunks(this.inner, offsetBytes, chunks);
    });
  }

  flush(): Promise<void> {
    return this.enqueue(async () => {
      await this.writeOut();
      await this.settleAll();
      await this.inner.flush();
    });
  }

  close(): Promise<void> {
    return this.enqueue(async () => {
      try {
        await this.writeOut();
        await this.settleAll();
        await this.inner.flush();
      } finally {
        await this.settleAll();
        await this.inner.close();
      }
    });
  }

  /** Whether [offset, offset+len) overlaps the buffered bytes. */
  private buffers(offsetBytes: number, lenBytes: number): boolean {
    return this.lenBytes > 0 && offsetBytes < this.startBytes + this.lenBytes && offsetBytes + lenBytes > this.startBytes;
  }

  /** Appends to the buffer, or starts it when empty; false when the write cannot be buffered. */
  private tryBuffer(offsetBytes: number, data: Uint8Array): boolean {
    if (this.lenBytes > 0) {
      if (offsetBytes !== this.startBytes + this.lenBytes || this.lenBytes + data.length > this.buf.length) return false;
      this.buf.set(data, this.lenBytes);
      this.lenBytes += data.length;
      return true;
    }
    if (data.length * 2 > this.buf.length) return false;
    this.buf.set(data, 0);
    this.startBytes = offsetBytes;
    this.lenBytes = data.length;
    return true;
  }

  private enqueue<T>(op: () => Promise<T>): Promise<T> {
    this.queued++;
    const run = this.tail.then(op).finally(() => { this.queued--; });
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Whether [offset, offset+len) overlaps a detached write still in flight. */
  private inFlight(offsetBytes: number, lenBytes: number): boolean {
    for (const d of this.detached) if (offsetBytes < d.endBytes && offsetBytes + lenBytes > d.startBytes) return true;
    return false;
  }

  /** Waits for every detached write overlapping [offset, offset+len) (only from inside the queue). */
  private async settle(offsetBytes: number, lenBytes: number): Promise<void> {
    for (;;) {
      const d = this.detached.find((w) => offsetBytes < w.endBytes && offsetBytes + lenBytes > w.startBytes);
      if (!d) return;
      await d.done;
    }
  }

  /** Waits for every detached write, then reports (once) the first that failed. */
  private async settleAll(): Promise<void> {
    while (this.detached.length > 0) await this.detached[0]!.done;
    const err = this.detachedError;
    if (err === undefined) return;
    this.detachedError = undefined;
    throw err;
  }

  /** Writes the buffer to the device (only from inside the queue). */
  private async writeOut(): Promise<void> {
    if (!this.lenBytes) return;
    const startBytes = this.startBytes;
    const len = this.lenBytes;
    this.lenBytes = 0;
    // An older detached write of an overlapping range must land first.
    await this.settle(startBytes, len);
    if (!this.inner.writeDetached || len < DETACH_MIN_BYTES) {
      // No copy: nothing refills the buffer before this write completes (fast paths wait for the queue).
      await this.inner.write(startBytes, this.buf.subarray(0, len));
      return;
    }
    while (this.detached.length >= MAX_DETACHED) await this.detached[0]!.done;
    // The full buffer goes to the device as it is; new writes fill another one.
    const full = this.buf;
    this.buf = this.spare.pop() ?? new Uint8Array(this.capacityBytes);
    const w: DetachedWrite = { startBytes, endBytes: startBytes + len, done: Promise.resolve() };
    w.done = this.inner.writeDetached(startBytes, full.subarray(0, len)).then(
      () => undefined,
      (e: unknown) => { this.detachedError ??= e; },
    ).finally(() => {
      this.detached.splice(this.detached.indexOf(w), 1);
      this.spare.push(full);
    });
    this.detached.push(w);
  }
}
