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
import { type BlockDevice, checkRange, readOnlyError, writeChunks } from './block-device.ts';

/** Buffer size: large enough to amortize a system call, small enough to keep memory flat. */
const DEFAULT_CAPACITY_BYTES = 1 << 20;

export class CoalescingDevice implements BlockDevice {
  private readonly buf: Uint8Array;
  /** Device offset of the buffered bytes, and how many there are (0: nothing buffered). */
  private startBytes = 0;
  private lenBytes = 0;
  /** Queued or running requests; the fast paths wait while there are any. */
  private queued = 0;
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly inner: BlockDevice, capacityBytes = DEFAULT_CAPACITY_BYTES) {
    this.buf = new Uint8Array(capacityBytes);
  }

  get sizeBytes(): number { return this.inner.sizeBytes; }
  get readOnly(): boolean { return this.inner.readOnly; }
  get ordersOverlaps(): boolean | undefined { return this.inner.ordersOverlaps; }

  async read(offsetBytes: number, lenBytes: number): Promise<Uint8Array> {
    if (this.queued === 0 && !this.buffers(offsetBytes, lenBytes)) return this.inner.read(offsetBytes, lenBytes);
    return this.enqueue(async () => {
      if (this.buffers(offsetBytes, lenBytes)) await this.writeOut();
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
      if (!this.tryBuffer(offsetBytes, data)) await this.inner.write(offsetBytes, data);
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
    if (!this.inner.ordersOverlaps) {
      return this.enqueue(async () => {
        await this.writeOut();
        await writeChunks(this.inner, offsetBytes, chunks);
      });
    }
    // The inner device orders overlapping requests itself: the queue moves on once the write
    // is issued (later requests may run while it is in flight, e.g. more writeback data).
    let issued: Promise<void> | undefined;
    await this.enqueue(async () => {
      await this.writeOut();
      issued = writeChunks(this.inner, offsetBytes, chunks);
      issued.catch(() => undefined);
    });
    await issued;
  }

  flush(): Promise<void> {
    return this.enqueue(async () => {
      await this.writeOut();
      await this.inner.flush();
    });
  }

  close(): Promise<void> {
    return this.enqueue(async () => {
      await this.writeOut();
      await this.inner.flush();
      await this.inner.close();
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

  /** Writes the buffer to the device (only from inside the queue). */
  private async writeOut(): Promise<void> {
    if (!this.lenBytes) return;
    const len = this.lenBytes;
    this.lenBytes = 0;
    // No copy: nothing refills the buffer before this write completes (fast paths wait for the queue).
    await this.inner.write(this.startBytes, this.buf.subarray(0, len));
  }
}
