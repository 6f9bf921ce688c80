// A block device over a Uint8Array: tests, browsers, and small images built in memory.
import { type BlockDevice, checkRange, readOnlyError } from './block-device.ts';

export class MemoryDevice implements BlockDevice {
  readonly bytes: Uint8Array;
  readonly readOnly: boolean;
  constructor(bytesOrSize: Uint8Array | number, opts: { readOnly?: boolean } = {}) {
    this.bytes = typeof bytesOrSize === 'number' ? new Uint8Array(bytesOrSize) : bytesOrSize;
    this.readOnly = opts.readOnly ?? false;
  }
  get sizeBytes(): number { return this.bytes.length; }
  async read(offsetBytes: number, lenBytes: number): Promise<Uint8Array> {
    checkRange(this, offsetBytes, lenBytes);
    return this.bytes.slice(offsetBytes, offsetBytes + lenBytes);
  }
  async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    if (this.readOnly) throw readOnlyError();
    checkRange(this, offsetBytes, data.length);
    this.bytes.set(data, offsetBytes);
  }
  async writev(offsetBytes: number, chunks: readonly Uint8Array[]): Promise<void> {
    if (this.readOnly) throw readOnlyError();
    let len = 0;
    for (const c of chunks) len += c.length;
    checkRange(this, offsetBytes, len);
    for (const c of chunks) { this.bytes.set(c, offsetBytes); offsetBytes += c.length; }
  }
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}
