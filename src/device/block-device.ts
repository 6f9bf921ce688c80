// The I/O seam: everything ext4kit reads or writes goes through this interface.
// Offsets and lengths are in bytes; implementations may be asked for any range inside `sizeBytes`.

export interface BlockDevice {
  /** Total size of the image in bytes. */
  readonly sizeBytes: number;
  /** True when writes are refused (browser Blob, or a file opened read-only). */
  readonly readOnly: boolean;
  /** Reads exactly `lenBytes` at `offsetBytes`; a range past the end is an EIO. */
  read(offsetBytes: number, lenBytes: number): Promise<Uint8Array>;
  /** Writes all of `data` at `offsetBytes`. */
  write(offsetBytes: number, data: Uint8Array): Promise<void>;
  /** Makes earlier writes durable. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

import { ioError, Ext4Error } from '../errors/ext4-error.ts';

/** Shared argument check for device implementations. */
export function checkRange(dev: { sizeBytes: number }, offsetBytes: number, lenBytes: number): void {
  if (!Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(lenBytes) || offsetBytes < 0 || lenBytes < 0 ||
      offsetBytes + lenBytes > dev.sizeBytes) {
    throw ioError(`device access out of range: ${lenBytes} bytes at ${offsetBytes} (device is ${dev.sizeBytes} bytes)`);
  }
}

export function readOnlyError(): Ext4Error {
  return new Ext4Error('EROFS', 'EROFS: read-only file system, device write');
}
