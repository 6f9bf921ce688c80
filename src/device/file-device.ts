// A read-only block device over a browser File or Blob (a file input, drag and drop, a fetched
// Blob; Node's Blob works too). Reads are slices of the Blob: nothing is loaded up front.
import { type BlockDevice, checkRange, readOnlyError } from './block-device.ts';
import { ioError } from '../errors/ext4-error.ts';

export class FileDevice implements BlockDevice {
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
  async write(_offsetBytes: number, _data: Uint8Array): Promise<void> { throw readOnlyError(); }
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}
