// Write coalescing in front of any device: a write that continues the previous one is appended
// to a buffer instead of going to the device, so thousands of small files laid out one after
// another (mkfs -d, put) cost one device write per MiB instead of one per file. The buffer is
// written out before anything that could observe or reorder it: a read or write overlapping it, a
// write elsewhere, flush() and close(). Reads therefore always see every earlier write, and the
// device sees writes in their original order where they overlap.
import { type BlockDevice, checkRange, readOnlyError } from './block-device.ts';

/** Buffer size: large enough to amortize a system call, small enough to keep memory flat. */
const DEFAULT_CAPACITY_BYTES = 1 << 20;

export class CoalescingDevice implements BlockDevice {
  private readonly buf: Uint8Array;
  /** Device offset of the buffered bytes, and how many there are (0: nothing buffered). */
  private startBytes = 0;
  private lenBytes = 0;
  /** Write-outs issued and not yet complete (an asynchronous device may take a while). */
  private readonly inflight = new Set<{ start: number; end: number; done: Promise<unknown> }>();

  constructor(private readonly inner: BlockDevice, capacityBytes = DEFAULT_CAPACITY_BYTES) {
    this.buf = new Uint8Array(capacityBytes);
  }

  get sizeBytes(): number { return this.inner.sizeBytes; }
  get readOnly(): boolean { return this.inner.readOnly; }

  async read(offsetBytes: number, lenBytes: number): Promise<Uint8Array> {
    await this.settle(offsetBytes, lenBytes);
    return this.inner.read(offsetBytes, lenBytes);
  }

  async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    // Errors belong to this write, not to whichever later call writes the buffer out.
    if (this.inner.readOnly) throw readOnlyError();
    checkRange(this, offsetBytes, data.length);
    // Decide and change the buffer with no await in between; after waiting, decide again
    // (other writes may have run meanwhile).
    for (;;) {
      if (this.lenBytes > 0 && offsetBytes === this.startBytes + this.lenBytes && this.lenBytes + data.length <= this.buf.length) {
        this.buf.set(data, this.lenBytes);
        this.lenBytes += data.length;
        return;
      }
      if (this.lenBytes === 0 && !this.inflightOverlaps(offsetBytes, data.length)) {
        // Large writes gain nothing from a copy.
        if (data.length * 2 > this.buf.length) return this.issue(offsetBytes, data);
        this.buf.set(data, 0);
        this.startBytes = offsetBytes;
        this.lenBytes = data.length;
        return;
      }
      await this.writeOut();
      await this.settle(offsetBytes, data.length);
    }
  }

  async flush(): Promise<void> {
    await this.writeOut();
    for (const f of [...this.inflight]) await f.done;
    await this.inner.flush();
  }

  async close(): Promise<void> {
    await this.flush();
    await this.inner.close();
  }

  /** Before touching [offset, offset+len) on the device: buffered bytes there go out, and device writes there complete. */
  private async settle(offsetBytes: number, lenBytes: number): Promise<void> {
    const end = offsetBytes + lenBytes;
    if (this.lenBytes && offsetBytes < this.startBytes + this.lenBytes && end > this.startBytes) await this.writeOut();
    for (const f of [...this.inflight]) if (offsetBytes < f.end && end > f.start) await f.done;
  }

  private inflightOverlaps(offsetBytes: number, lenBytes: number): boolean {
    for (const f of this.inflight) if (offsetBytes < f.end && offsetBytes + lenBytes > f.start) return true;
    return false;
  }

  private async writeOut(): Promise<void> {
    if (!this.lenBytes) return;
    const len = this.lenBytes;
    this.lenBytes = 0;
    // A copy: an asynchronous device may still be reading it while later writes refill the buffer.
    await this.issue(this.startBytes, this.buf.slice(0, len));
  }

  /** A device write, tracked until it completes so that overlapping reads and writes wait for it. */
  private async issue(offsetBytes: number, data: Uint8Array): Promise<void> {
    const done = this.inner.write(offsetBytes, data);
    const entry = { start: offsetBytes, end: offsetBytes + data.length, done: done.catch(() => undefined) };
    this.inflight.add(entry);
    try { await done; } finally { this.inflight.delete(entry); }
  }
}
