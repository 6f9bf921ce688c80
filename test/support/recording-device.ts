// A BlockDevice that records every write and flush in issue order (like dm-log-writes), with
// markers the workload adds: what it changed ("change") and what a returned fsync/sync/close
// acknowledged ("ack"). crash-states.ts turns the log into the images a power cut could leave.
import type { BlockDevice } from '../../src/device/block-device.ts';
import { MemoryDevice } from '../../src/device/memory-device.ts';

/**
 * What must hold after a crash at any later point:
 *  - exact: the path exists with exactly these bytes (null: the path does not exist);
 *  - prefix: the path exists and starts with these bytes (an appender's fsynced part).
 */
export interface Expectation { path: string; kind: 'exact' | 'prefix'; value: Uint8Array | null }

export type RecEvent =
  | { kind: 'write'; offsetBytes: number; data: Uint8Array }
  | { kind: 'flush' }
  /** A persistence point: `expects` held when the operation started at event index `since`. */
  | { kind: 'ack'; since: number; expects: Expectation[]; label: string }
  /**
   * An operation on `path` started: 'set' gives the path a new whole value (null: removed),
   * 'append' only adds bytes at the end (prefix expectations stay valid; `value`, when given, is
   * the bytes appended), 'other' leaves it unknown.
   */
  | { kind: 'change'; path: string; how: 'set' | 'append' | 'other'; value?: Uint8Array | null };

export class RecordingDevice implements BlockDevice {
  readonly events: RecEvent[] = [];
  /** The image before the first recorded write. */
  readonly base: Uint8Array;
  writes = 0;
  flushes = 0;
  private seed: number;
  /**
   * `latency`: writes complete after 0..latency event-loop turns, in any order, and are logged
   * when they complete (as dm-log-writes logs completed writes): a flush covers only writes
   * that completed before it was issued, like a real disk's cache flush.
   */
  constructor(readonly inner: MemoryDevice, private readonly latency = 0, seed = 1) {
    this.base = inner.bytes.slice();
    this.seed = seed >>> 0 || 1;
  }
  private async delay(): Promise<void> {
    if (!this.latency) return;
    let x = this.seed;
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    this.seed = x;
    for (let n = x % (this.latency + 1); n > 0; n--) await new Promise<void>((r) => setImmediate(r));
  }
  get sizeBytes(): number { return this.inner.sizeBytes; }
  get readOnly(): boolean { return this.inner.readOnly; }
  read(offsetBytes: number, lenBytes: number): Promise<Uint8Array> { return this.inner.read(offsetBytes, lenBytes); }
  async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    // Copied when issued: the caller may reuse its buffer once the write settles.
    const copy = data.slice();
    await this.delay();
    this.events.push({ kind: 'write', offsetBytes, data: copy });
    this.writes++;
    await this.inner.write(offsetBytes, copy);
  }
  async writev(offsetBytes: number, chunks: readonly Uint8Array[]): Promise<void> {
    const copies = chunks.map((c) => c.slice());
    await this.delay();
    let at = offsetBytes;
    for (const c of copies) { this.events.push({ kind: 'write', offsetBytes: at, data: c }); this.writes++; at += c.length; }
    await this.inner.writev(offsetBytes, copies);
  }
  async flush(): Promise<void> {
    this.events.push({ kind: 'flush' });
    this.flushes++;
    await this.inner.flush();
  }
  async close(): Promise<void> { await this.inner.close(); }

  /** Index the next event will get (an operation's start, for `ack`). */
  get now(): number { return this.events.length; }
  /** `value`: the new whole value ('set'), or the bytes appended at the end ('append', optional). */
  change(path: string, how: 'set' | 'append' | 'other', value?: Uint8Array | null): void {
    const v = how === 'set' ? { value: value === null ? null : value!.slice() } : how === 'append' && value ? { value: value.slice() } : {};
    this.events.push({ kind: 'change', path, how, ...v });
  }
  ack(since: number, expects: Expectation[], label: string): void {
    this.events.push({ kind: 'ack', since, expects: expects.map((e) => ({ ...e, value: e.value ? e.value.slice() : null })), label });
  }
}
