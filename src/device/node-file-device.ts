// A block device over a host file with positional I/O (the only node:fs user in the core's reach).
// Sparse files are fine: holes read as zeros and are never materialised by reads.
import { open, type FileHandle } from 'node:fs/promises';
import { type BlockDevice, checkRange, readOnlyError } from './block-device.ts';
import { ioError } from '../errors/ext4-error.ts';

export class NodeFileDevice implements BlockDevice {
  private constructor(private readonly fh: FileHandle, public readonly sizeBytes: number, public readonly readOnly: boolean) {}

  static async open(path: string, opts: { readOnly?: boolean } = {}): Promise<NodeFileDevice> {
    const readOnly = opts.readOnly ?? false;
    let fh: FileHandle;
    try {
      fh = await open(path, readOnly ? 'r' : 'r+');
    } catch (e) {
      throw ioError(`cannot open image '${path}': ${(e as Error).message}`, e);
    }
    const st = await fh.stat();
    return new NodeFileDevice(fh, st.size, readOnly);
  }

  /** Creates (or truncates) a sparse image file of `sizeBytes`. */
  static async create(path: string, sizeBytes: number): Promise<NodeFileDevice> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'w+');
      await fh.truncate(sizeBytes);
    } catch (e) {
      throw ioError(`cannot create image '${path}': ${(e as Error).message}`, e);
    }
    return new NodeFileDevice(fh, sizeBytes, false);
  }

  async read(offsetBytes: number, lenBytes: number): Promise<Uint8Array> {
    checkRange(this, offsetBytes, lenBytes);
    const buf = new Uint8Array(lenBytes);
    let done = 0;
    try {
      while (done < lenBytes) {
        const { bytesRead } = await this.fh.read(buf, done, lenBytes - done, offsetBytes + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
    } catch (e) {
      throw ioError(`read of ${lenBytes} bytes at ${offsetBytes} failed`, e);
    }
    return buf;
  }

  async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    if (this.readOnly) throw readOnlyError();
    checkRange(this, offsetBytes, data.length);
    let done = 0;
    try {
      while (done < data.length) {
        const { bytesWritten } = await this.fh.write(data, done, data.length - done, offsetBytes + done);
        done += bytesWritten;
      }
    } catch (e) {
      throw ioError(`write of ${data.length} bytes at ${offsetBytes} failed`, e);
    }
  }

  async flush(): Promise<void> {
    if (!this.readOnly) await this.fh.datasync();
  }
  async close(): Promise<void> { await this.fh.close(); }
}
