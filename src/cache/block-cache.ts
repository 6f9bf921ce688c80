// Metadata block cache: an LRU over the device, keyed by block number, that merges concurrent
// reads of the same block. Knows nothing of ext4. Cached buffers are shared: callers must not
// mutate what `read` returns.
import { type BlockDevice } from '../device/block-device.ts';
import { ioError } from '../errors/ext4-error.ts';

export class BlockCache {
  private readonly lru = new Map<number, Uint8Array>();
  private readonly inflight = new Map<number, Promise<Uint8Array>>();
  /** Blocks whose newest copy is not at home on the device yet (committed to a log, not checkpointed). */
  private readonly pinned = new Map<number, Uint8Array>();

  constructor(
    readonly device: BlockDevice,
    readonly blockSize: number,
    readonly blocksCount: number,
    private readonly capacityBlocks = 4096,
  ) {}

  async read(block: number): Promise<Uint8Array> {
    const hit = this.lru.get(block);
    if (hit) {
      this.lru.delete(block);
      this.lru.set(block, hit);
      return hit;
    }
    const pin = this.pinned.get(block);
    if (pin) return pin;
    const pending = this.inflight.get(block);
    if (pending) return pending;
    if (!Number.isSafeInteger(block) || block < 0 || block >= this.blocksCount) {
      throw ioError(`block ${block} is outside the filesystem (${this.blocksCount} blocks)`);
    }
    const p = this.device.read(block * this.blockSize, this.blockSize).then((bytes) => {
      this.inflight.delete(block);
      this.lru.set(block, bytes);
      if (this.lru.size > this.capacityBlocks) this.lru.delete(this.lru.keys().next().value!);
      return bytes;
    }, (e: unknown) => {
      this.inflight.delete(block);
      throw e;
    });
    this.inflight.set(block, p);
    return p;
  }

  /** Uncached read of `count` consecutive blocks (file data). */
  async readRange(block: number, count: number): Promise<Uint8Array> {
    if (block < 0 || count < 0 || block + count > this.blocksCount) {
      throw ioError(`blocks ${block}+${count} are outside the filesystem`);
    }
    const bytes = await this.device.read(block * this.blockSize, count * this.blockSize);
    if (this.pinned.size) {
      for (let k = 0; k < count; k++) {
        const pin = this.pinned.get(block + k);
        if (pin) bytes.set(pin, k * this.blockSize);
      }
    }
    return bytes;
  }

  /**
   * Until `unpin`, reads of the block return `bytes` when it is not cached: its newest copy is
   * durable elsewhere (a journal) but not yet written to its home location.
   */
  pin(block: number, bytes: Uint8Array): void { this.pinned.set(block, bytes); }

  /** The block's home location holds `bytes` (or the block was freed): reads may go to the device again. */
  unpin(block: number, bytes?: Uint8Array): void {
    if (bytes === undefined || this.pinned.get(block) === bytes) this.pinned.delete(block);
  }

  /** Replaces a cached block after a write (the write path's hook). */
  put(block: number, bytes: Uint8Array): void {
    this.lru.delete(block);
    this.lru.set(block, bytes);
  }

  /** Forgets a block (freed metadata). */
  drop(block: number): void { this.lru.delete(block); }

  clear(): void { this.lru.clear(); }
}
