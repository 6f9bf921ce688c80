// A read-only block device over a browser Blob/File (also works with Node's Blob).
import { type BlockDevice, checkRange, readOnlyError } from './block-device.ts';
import { ioError } from '../errors/ext4-error.ts';

export class BlobDevice implements BlockDevice {
  readonly readOnly = true;
  constructor(private readonly blob: Blob) {}
  get sizeBytes(): number { return this.blob.size; }
  async read(offsetBytes: number, lenBytes: number): Promise<Uint8Array> {
    checkRange(this, offsetBytes, lenBytes);
    try {
      return new Uint8Array(await this.blob.slice(offsetBytes, offsetBytes + lenBytes).arrayBuffer());
    } catch (e) {
      throw ioError(`blob read of ${lenBytes} bytes at ${offsetBytes} failed`, e);
    }
  }
  async write(): Promise<void> { throw readOnlyError(); }
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}
