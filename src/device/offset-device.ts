// A window [offsetBytes, offsetBytes + sizeBytes) of another device, seen as a whole device: a
// partition inside a disk image (`ext4kit ls disk.img?offset=1048576`, as debugfs reads it).
import { type BlockDevice, checkRange, readOnlyError } from './block-device.ts';
import { Ext4Error } from '../errors/ext4-error.ts';

export class OffsetDevice implements BlockDevice {
  readonly sizeBytes: number;
  constructor(private readonly inner: BlockDevice, readonly offsetBytes: number, sizeBytes?: number) {
    const size = sizeBytes ?? inner.sizeBytes - offsetBytes;
    if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0 || !Number.isSafeInteger(size) || size <= 0 || offsetBytes + size > inner.sizeBytes) {
      throw new Ext4Error('EINVAL', `EINVAL: offset ${offsetBytes}${sizeBytes === undefined ? '' : ` and size ${sizeBytes}`} do not fit in a device of ${inner.sizeBytes} bytes`);
    }
    this.sizeBytes = size;
  }
  get readOnly(): boolean { return this.inner.readOnly; }
  read(offsetBytes: number, lenBytes: number): Promise<Uint8Array> {
    checkRange(this, offsetBytes, lenBytes);
    return this.inner.read(this.offsetBytes + offsetBytes, lenBytes);
  }
  async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    if (this.readOnly) throw readOnlyError();
    checkRange(this, offsetBytes, data.length);
    return this.inner.write(this.offsetBytes + offsetBytes, data);
  }
  async writev(offsetBytes: number, chunks: readonly Uint8Array[]): Promise<void> {
    if (this.readOnly) throw readOnlyError();
    let len = 0;
    for (const c of chunks) len += c.length;
    checkRange(this, offsetBytes, len);
    if (this.inner.writev) return this.inner.writev(this.offsetBytes + offsetBytes, chunks);
    const buf = new Uint8Array(len);
    let at = 0;
    for (const c of chunks) { buf.set(c, at); at += c.length; }
    return this.inner.write(this.offsetBytes + offsetBytes, buf);
  }
  flush(): Promise<void> { return this.inner.flush(); }
  close(): Promise<void> { return this.inner.close(); }
}
