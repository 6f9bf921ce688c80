// The I/O seam: everything ext4kit reads or writes goes through this interface.
// Offsets and lengths are in bytes; implementations may be asked for any range inside `sizeBytes`.

export interface BlockDevice {
  /** Total size of the image in bytes. */
  readonly sizeBytes: number;
  /** True when writes are refused (browser Blob, or a file opened read-only). */
  readonly readOnly: boolean;
  /** Reads exactly `lenBytes` at `offsetBytes`; a range past the end is an EIO. */
  read(offsetBytes: number, lenBytes: number): Promise<Uint8Array>;
  /**
   * Writes all of `data` at `offsetBytes`. The device may read `data` until the promise
   * settles; bytes the caller changes meanwhile may reach the disk in either version.
   */
  write(offsetBytes: number, data: Uint8Array): Promise<void>;
  /**
   * Optional gather write: the chunks, one after the other, at `offsetBytes` (same contract as
   * write). Callers go through `writeChunks`, which falls back to one copy and write().
   */
  writev?(offsetBytes: number, chunks: readonly Uint8Array[]): Promise<void>;
  /**
   * Set by a device whose requests may overlap in time (large writes on another thread) but
   * which orders them itself: a request issued while an earlier one is still in flight waits
   * for it when their ranges overlap (a read sees every write issued before it, a later write
   * lands last), and flush() covers every write issued before it. Writes to disjoint ranges
   * may complete in any order. A wrapper may then issue a large write and go on without
   * waiting for it. Unset: the device completes requests in the order they were issued.
   */
  readonly ordersOverlaps?: boolean;
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

/** Writes `chunks` back to back at `offsetBytes`, with the device's gather write when it has one. */
export async function writeChunks(dev: BlockDevice, offsetBytes: number, chunks: readonly Uint8Array[]): Promise<void> {
  if (chunks.length === 1) return dev.write(offsetBytes, chunks[0]!);
  if (dev.writev) return dev.writev(offsetBytes, chunks);
  let len = 0;
  for (const c of chunks) len += c.length;
  const buf = new Uint8Array(len);
  let at = 0;
  for (const c of chunks) { buf.set(c, at); at += c.length; }
  return dev.write(offsetBytes, buf);
}

export function readOnlyError(): Ext4Error {
  return new Ext4Error('EROFS', 'EROFS: read-only file system, device write');
}
