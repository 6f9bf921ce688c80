// A small static HTTP server on 127.0.0.1 for device and browser tests: serves files or buffers,
// answers single `Range: bytes=A-B` requests with 206 and Content-Range, sends an ETag, honours
// If-Range, and logs every request (method, path, range) so tests can count them.
import { createServer, type Server } from 'node:http';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';

export interface Served {
  /** A host file (read per request, so sparse multi-GiB images cost nothing) or bytes. */
  file?: string;
  bytes?: Uint8Array;
  type?: string;
  etag?: string;
}

export interface RangeServer {
  url: string;
  log: { path: string; range: string | undefined; status: number }[];
  /** Replace or add what a path serves. */
  routes: Map<string, Served>;
  /** When set, Range headers are ignored (200 with the whole body) — a server a device must refuse. */
  ignoreRange: boolean;
  /** Request bodies received by POST, by path. */
  posted: Map<string, Buffer>;
  close(): Promise<void>;
}

export async function startRangeServer(routes: Record<string, Served>): Promise<RangeServer> {
  const state: Omit<RangeServer, 'url' | 'close'> = { log: [], routes: new Map(Object.entries(routes)), ignoreRange: false, posted: new Map() };
  const server: Server = createServer((req, res) => {
    void (async () => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      if (req.method === 'POST') {
        const parts: Buffer[] = [];
        for await (const c of req) parts.push(c as Buffer);
        state.posted.set(path, Buffer.concat(parts));
        res.writeHead(204).end();
        return;
      }
      const served = state.routes.get(path);
      const rangeHeader = typeof req.headers.range === 'string' ? req.headers.range : undefined;
      const finish = (status: number) => state.log.push({ path, range: rangeHeader, status });
      if (!served) { finish(404); res.writeHead(404).end(); return; }
      const size = served.file !== undefined ? (await stat(served.file)).size : served.bytes!.length;
      const etag = served.etag ?? `"${size}"`;
      const headers: Record<string, string> = { 'content-type': served.type ?? 'application/octet-stream', 'accept-ranges': 'bytes', etag, 'cache-control': 'no-store' };
      let first = 0;
      let last = size - 1;
      let status = 200;
      const m = rangeHeader === undefined || state.ignoreRange ? null : /^bytes=(\d+)-(\d*)$/.exec(rangeHeader);
      const ifRange = req.headers['if-range'];
      if (m && (ifRange === undefined || ifRange === etag)) {
        first = Number(m[1]);
        last = m[2] === '' ? size - 1 : Math.min(size - 1, Number(m[2]));
        if (first > last) { finish(416); res.writeHead(416, { 'content-range': `bytes */${size}` }).end(); return; }
        status = 206;
        headers['content-range'] = `bytes ${first}-${last}/${size}`;
      }
      headers['content-length'] = String(last - first + 1);
      finish(status);
      res.writeHead(status, headers);
      if (req.method === 'HEAD') { res.end(); return; }
      if (served.bytes) { res.end(Buffer.from(served.bytes.buffer, served.bytes.byteOffset + first, last - first + 1)); return; }
      createReadStream(served.file!, { start: first, end: last }).on('error', (e) => res.destroy(e)).pipe(res);
    })().catch((e: unknown) => { res.destroy(e as Error); });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  });
}
