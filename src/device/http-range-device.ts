// A read-only block device over an image on a web server, read with HTTP Range requests
// (`Range: bytes=A-B` → 206 Partial Content), so that a large remote image can be listed and a
// few files read without downloading it.
//
// The image is cut into chunks (64 KiB by default) kept in an LRU cache. A read asks only for the
// chunks it misses, and consecutive missing chunks go out as one request; concurrent reads of the
// same chunk share one request. Sequential reads (each starting where the previous one ended, as
// a file stream does) get a read-ahead window that doubles up to `maxReadAheadBytes`.
// `requestCount` and `bytesFetched` say what it cost.
//
// The first request (`open`) fetches chunk 0 (superblock and group descriptors of a small image)
// and learns the size from Content-Range. Later responses must be 206 with the asked range; an
// ETag seen at open is sent as If-Range, so a changed image fails with EIO instead of mixing
// versions. Servers must allow Range (and, cross-origin, expose Content-Range through CORS).
import { type BlockDevice, checkRange, readOnlyError } from './block-device.ts';
import { Ext4Error, ioError } from '../errors/ext4-error.ts';

export interface HttpRangeDeviceOptions {
  /** Bytes per cached chunk, a power of two ≥ 4096 (default 64 KiB). */
  chunkBytes?: number;
  /** Cache capacity in bytes (default 32 MiB); least recently used chunks are dropped. */
  cacheBytes?: number;
  /** Largest read-ahead window for sequential reads (default 4 MiB; 0 turns read-ahead off). */
  maxReadAheadBytes?: number;
  /** Extra request headers (authorization...). */
  headers?: Record<string, string>;
  /** The fetch to use (default: globalThis.fetch). */
  fetch?: typeof fetch;
}

const DEFAULT_CHUNK_BYTES = 64 * 1024;
const DEFAULT_CACHE_BYTES = 32 * 1024 * 1024;
const DEFAULT_MAX_READ_AHEAD_BYTES = 4 * 1024 * 1024;

/** `bytes A-B/TOTAL` → numbers; undefined when absent or malformed. */
function parseContentRange(header: string | null): { first: number; last: number; total: number } | undefined {
  const m = header === null ? null : /^bytes (\d+)-(\d+)\/(\d+)$/.exec(header.trim());
  if (!m) return undefined;
  const r = { first: Number(m[1]), last: Number(m[2]), total: Number(m[3]) };
  return Number.isSafeInteger(r.total) && r.first <= r.last && r.last < r.total ? r : undefined;
}

export class HttpRangeDevice implements BlockDevice {
  readonly readOnly = true;
  /** HTTP requests made so far (including the one in `open`). */
  requestCount = 0;
  /** Response body bytes received so far. */
  bytesFetched = 0;

  private readonly cache = new Map<number, Uint8Array>();
  private readonly inFlight = new Map<number, Promise<void>>();
  private readonly maxCachedChunks: number;
  private readonly maxReadAheadChunks: number;
  private readAheadChunks = 0;
  private lastEndBytes = -1;
  private closed = false;

  private constructor(
    readonly url: string,
    readonly sizeBytes: number,
    private readonly chunkBytes: number,
    private readonly etag: string | undefined,
    private readonly opts: HttpRangeDeviceOptions,
  ) {
    this.maxCachedChunks = Math.max(4, Math.floor((opts.cacheBytes ?? DEFAULT_CACHE_BYTES) / chunkBytes));
    this.maxReadAheadChunks = Math.floor((opts.maxReadAheadBytes ?? DEFAULT_MAX_READ_AHEAD_BYTES) / chunkBytes);
  }

  /** Opens `url`: one Range request for the first chunk, which also gives the image's size. */
  static async open(url: string, opts: HttpRangeDeviceOptions = {}): Promise<HttpRangeDevice> {
    const chunkBytes = opts.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 4096 || (chunkBytes & (chunkBytes - 1)) !== 0) {
      throw new Ext4Error('EINVAL', `EINVAL: chunkBytes must be a power of two of at least 4096, got ${chunkBytes}`);
    }
    const res = await HttpRangeDevice.fetchRange(url, opts, 0, chunkBytes - 1, undefined);
    const range = parseContentRange(res.headers.get('content-range'));
    if (res.status !== 206 || range === undefined || range.first !== 0) {
      await res.body?.cancel().catch(() => undefined);
      throw new Ext4Error('ENOTSUP', `ENOTSUP: ${url} does not answer Range requests (status ${res.status}, ` +
        `Content-Range ${res.headers.get('content-range') ?? 'missing'}; cross-origin servers must expose it)`, { detail: 'http-range' });
    }
    const dev = new HttpRangeDevice(url, range.total, chunkBytes, res.headers.get('etag') ?? undefined, opts);
    dev.requestCount = 1;
    await dev.store(res, 0, range);
    return dev;
  }

  private static async fetchRange(url: string, opts: HttpRangeDeviceOptions, first: number, last: number, etag: string | undefined): Promise<Response> {
    const headers: Record<string, string> = { ...opts.headers, Range: `bytes=${first}-${last}` };
    if (etag !== undefined) headers['If-Range'] = etag;
    try {
      return await (opts.fetch ?? globalThis.fetch)(url, { headers, cache: 'no-store' });
    } catch (e) {
      throw ioError(`HTTP range request for bytes ${first}-${last} of ${url} failed: ${(e as Error).message}`, e);
    }
  }

  /** Reads a 206 body starting at chunk `firstChunk` into the cache. */
  private async store(res: Response, firstChunk: number, range: { first: number; last: number }): Promise<void> {
    let body: Uint8Array;
    try {
      body = new Uint8Array(await res.arrayBuffer());
    } catch (e) {
      throw ioError(`HTTP body of bytes ${range.first}-${range.last} of ${this.url} failed: ${(e as Error).message}`, e);
    }
    this.bytesFetched += body.length;
    if (body.length !== range.last - range.first + 1) {
      throw ioError(`HTTP body of bytes ${range.first}-${range.last} of ${this.url} has ${body.length} bytes`);
    }
    for (let at = 0, chunk = firstChunk; at < body.length; at += this.chunkBytes, chunk++) {
      this.remember(chunk, body.subarray(at, Math.min(body.length, at + this.chunkBytes)));
    }
  }

  private remember(chunk: number, bytes: Uint8Array): void {
    this.cache.delete(chunk);
    this.cache.set(chunk, bytes);
    while (this.cache.size > this.maxCachedChunks) {
      const oldest = this.cache.keys().next().value as number;
      this.cache.delete(oldest);
    }
  }

  private chunkCount(): number {
    return Math.ceil(this.sizeBytes / this.chunkBytes);
  }

  /** Fetches chunks [first, last] in one request. */
  private fetchChunks(first: number, last: number): Promise<void> {
    const job = (async () => {
      const firstByte = first * this.chunkBytes;
      const lastByte = Math.min(this.sizeBytes, (last + 1) * this.chunkBytes) - 1;
      this.requestCount++;
      const res = await HttpRangeDevice.fetchRange(this.url, this.opts, firstByte, lastByte, this.etag);
      const range = parseContentRange(res.headers.get('content-range'));
      if (res.status !== 206 || range === undefined || range.first !== firstByte || range.last !== lastByte || range.total !== this.sizeBytes) {
        await res.body?.cancel().catch(() => undefined);
        throw this.badResponse(res, firstByte, lastByte);
      }
      await this.store(res, first, range);
    })();
    for (let c = first; c <= last; c++) this.inFlight.set(c, job);
    const done = job.finally(() => {
      for (let c = first; c <= last; c++) if (this.inFlight.get(c) === job) this.inFlight.delete(c);
    });
    return done;
  }

  async read(offsetBytes: number, lenBytes: number): Promise<Uint8Array> {
    if (this.closed) throw ioError(`read from closed device ${this.url}`);
    checkRange(this, offsetBytes, lenBytes);
    const out = new Uint8Array(lenBytes);
    if (lenBytes === 0) return out;
    const first = Math.floor(offsetBytes / this.chunkBytes);
    const last = Math.floor((offsetBytes + lenBytes - 1) / this.chunkBytes);
    // Sequential reads grow the read-ahead window; a jump resets it.
    if (offsetBytes === this.lastEndBytes && this.maxReadAheadChunks > 0) {
      this.readAheadChunks = Math.min(this.maxReadAheadChunks, Math.max(1, this.readAheadChunks * 2));
    } else {
      this.readAheadChunks = 0;
    }
    this.lastEndBytes = offsetBytes + lenBytes;
    if (last - first + 1 > this.maxCachedChunks / 2) return this.readUncached(offsetBytes, lenBytes);
    for (let attempt = 0; ; attempt++) {
      const waits = new Set<Promise<void>>();
      let runStart = -1;
      const flushRun = (end: number) => {
        if (runStart < 0) return;
        let runEnd = end;
        // Read ahead past the end of the read, up to the window, stopping at cached chunks.
        if (end === last) {
          const limit = Math.min(this.chunkCount() - 1, last + this.readAheadChunks);
          while (runEnd < limit && !this.cache.has(runEnd + 1) && !this.inFlight.has(runEnd + 1)) runEnd++;
        }
        waits.add(this.fetchChunks(runStart, runEnd));
        runStart = -1;
      };
      for (let c = first; c <= last; c++) {
        const pending = this.inFlight.get(c);
        if (this.cache.has(c) || pending) {
          flushRun(c - 1);
          if (pending) waits.add(pending);
        } else if (runStart < 0) {
          runStart = c;
        }
      }
      flushRun(last);
      if (waits.size > 0) await Promise.all(waits);
      // A chunk evicted again before it was copied (a read larger than the cache) is fetched anew.
      let missing = false;
      for (let c = first; c <= last; c++) {
        const bytes = this.cache.get(c);
        if (!bytes) { missing = true; continue; }
        this.remember(c, bytes);
        const chunkStart = c * this.chunkBytes;
        const from = Math.max(offsetBytes, chunkStart);
        const to = Math.min(offsetBytes + lenBytes, chunkStart + bytes.length);
        out.set(bytes.subarray(from - chunkStart, to - chunkStart), from - offsetBytes);
      }
      if (!missing) return out;
      if (attempt >= 2) throw ioError(`read of ${lenBytes} bytes at ${offsetBytes} does not fit the range cache of ${this.url}`);
    }
  }

  /** A read too large for the cache: one request straight into the result. */
  private async readUncached(offsetBytes: number, lenBytes: number): Promise<Uint8Array> {
    const lastByte = offsetBytes + lenBytes - 1;
    this.requestCount++;
    const res = await HttpRangeDevice.fetchRange(this.url, this.opts, offsetBytes, lastByte, this.etag);
    const range = parseContentRange(res.headers.get('content-range'));
    if (res.status !== 206 || range === undefined || range.first !== offsetBytes || range.last !== lastByte || range.total !== this.sizeBytes) {
      await res.body?.cancel().catch(() => undefined);
      throw this.badResponse(res, offsetBytes, lastByte);
    }
    const body = new Uint8Array(await res.arrayBuffer().catch((e: unknown) => {
      throw ioError(`HTTP body of bytes ${offsetBytes}-${lastByte} of ${this.url} failed: ${(e as Error).message}`, e);
    }));
    this.bytesFetched += body.length;
    if (body.length !== lenBytes) throw ioError(`HTTP body of bytes ${offsetBytes}-${lastByte} of ${this.url} has ${body.length} bytes`);
    return body;
  }

  private badResponse(res: Response, firstByte: number, lastByte: number): Ext4Error {
    return ioError(`HTTP range request for bytes ${firstByte}-${lastByte} of ${this.url} got status ${res.status}, ` +
      `Content-Range ${res.headers.get('content-range') ?? 'missing'} (the image changed, or the server ignores Range)`);
  }

  async write(_offsetBytes: number, _data: Uint8Array): Promise<void> { throw readOnlyError(); }
  async flush(): Promise<void> {}
  async close(): Promise<void> {
    this.closed = true;
    this.cache.clear();
  }
}
