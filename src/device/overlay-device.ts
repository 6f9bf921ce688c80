// A copy-on-write overlay: reads see the base device with in-memory changes on top; writes go to
// memory only and never reach the base. A read-only open of an image that needs journal
// recovery replays into one of these, so readers see the recovered filesystem while the image
// file stays byte-identical.
import { type BlockDevice, checkRange } from './block-device.ts';

export class OverlayDevice implements BlockDevice {
  /** Changed chunks by index; each holds `chunkBytes` bytes (the last one may be shorter). */
  private readonly chunks = new Map<number, Uint8Array>();
  /** Whether the base refuses writes: the overlay reports it, so a volume on it stays read-only. */
  readonly readOnly: boolean;

  constructor(private readonly base: BlockDevice, private readonly chunkBytes = 4096) {
    this.readOnly = base.readOnly;
  }

  get sizeBytes(): number { return this.base.sizeBytes; }
  /** Bytes held in memory. */
  get overlayBytes(): number { return this.chunks.size * this.chunkBytes; }

  async read(offsetBytes: number, lenBytes: number): Promise<Uint8Array> {
    checkRange(this, offsetBytes, lenBytes);
    const out = await this.base.read(offsetBytes, lenBytes);
    if (this.chunks.size === 0 || lenBytes === 0) return out;
    const first = Math.floor(offsetBytes / this.chunkBytes);
    const last = Math.floor((offsetBytes + lenBytes - 1) / this.chunkBytes);
    for (let c = first; c <= last; c++) {
      const chunk = this.chunks.get(c);
      if (!chunk) continue;
      const cStart = c * this.chunkBytes;
      const from = Math.max(offsetBytes, cStart);
      const to = Math.min(offsetBytes + lenBytes, cStart + chunk.length);
      out.set(chunk.subarray(from - cStart, to - cStart), from - offsetBytes);
    }
    return out;
  }

  /** Writes into memory (whatever `readOnly` says: that flag describes the base). */
  async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    checkRange(this, offsetBytes, data.length);
    let at = 0;
    while (at < data.length) {
      const pos = offsetBytes + at;
      const c = Math.floor(pos / this.chunkBytes);
      const cStart = c * this.chunkBytes;
      let chunk = this.chunks.get(c);
      if (!chunk) {
        chunk = await this.base.read(cStart, Math.min(this.chunkBytes, this.sizeBytes - cStart));
        this.chunks.set(c, chunk);
      }
      const n = Math.min(data.length - at, cStart + chunk.length - pos);
      chunk.set(data.subarray(at, at + n), pos - cStart);
      at += n;
    }
  }

  /** Byte offsets of the chunks changed in memory, ascending, and the chunk size (to write a recovered view home). */
  changedChunks(): { offsetsBytes: number[]; chunkBytes: number } {
    return { offsetsBytes: [...this.chunks.keys()].sort((a, b) => a - b).map((c) => c * this.chunkBytes), chunkBytes: this.chunkBytes };
  }

  async flush(): Promise<void> {}
  async close(): Promise<void> { this.chunks.clear(); await this.base.close(); }
}
