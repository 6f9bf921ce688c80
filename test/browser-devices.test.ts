// The browser devices, exercised from Node against a real HTTP server (the same code runs in
// Chromium in browser.test.ts): HttpRangeDevice's request economy, caching and refusals, and
// FileDevice over a Blob.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { open, readFile } from 'node:fs/promises';
import { Ext4 } from '../src/node.ts';
import { FileDevice, HttpRangeDevice, BlobDevice, Ext4Error } from '../src/index.ts';
import { cleanupTemp, tmpImagePath } from './support/images.ts';
import { startRangeServer, type RangeServer } from './support/range-server.ts';

const GiB = 1024 ** 3;
const BIG_BYTES = 3 * 1024 * 1024 + 123;

async function hostBytes(path: string, offsetBytes: number, lenBytes: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(lenBytes);
    await fh.read(buf, 0, lenBytes, offsetBytes);
    return buf;
  } finally {
    await fh.close();
  }
}

function pattern(len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = (i * 131 + (i >>> 12)) & 0xff;
  return out;
}

describe('HttpRangeDevice', () => {
  let img = '';
  let server: RangeServer;
  before(async () => {
    img = tmpImagePath('range-2g');
    await Ext4.mkfs(img, { sizeBytes: 2 * GiB });
    const fs = await Ext4.open(img);
    await fs.mkdir('/docs');
    await fs.writeFile('/docs/hello.txt', new TextEncoder().encode('hello over http\n'));
    await fs.writeFile('/big.bin', pattern(BIG_BYTES));
    await fs.close();
    server = await startRangeServer({ '/disk.img': { file: img } });
  });
  after(async () => {
    await server.close();
    await cleanupTemp();
  });

  test('opening a 2 GiB image, listing and reading one file costs a handful of requests', async () => {
    server.log.length = 0;
    const dev = await HttpRangeDevice.open(`${server.url}/disk.img`);
    assert.equal(dev.sizeBytes, 2 * GiB);
    const fs = await Ext4.open(dev, { readOnly: true });
    assert.deepEqual((await fs.readdir('/')).sort(), ['big.bin', 'docs', 'lost+found']);
    assert.equal(new TextDecoder().decode(await fs.readFile('/docs/hello.txt')), 'hello over http\n');
    const smallCost = dev.requestCount;
    // A sequential stream of 3 MiB rides the read-ahead window: a few requests, not 48 chunks.
    const parts: Uint8Array[] = [];
    const reader = fs.createReadStream('/big.bin').getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
    }
    const streamed = Buffer.concat(parts);
    assert.ok(Buffer.from(pattern(BIG_BYTES)).equals(streamed), 'streamed bytes differ');
    await fs.close();
    process.stdout.write(`# HttpRangeDevice: open+list+read ${smallCost} requests, +3 MiB stream ${dev.requestCount - smallCost}, ${dev.bytesFetched} bytes fetched of ${dev.sizeBytes}\n`);
    assert.equal(dev.requestCount, server.log.length, 'the counter counts what the server saw');
    assert.ok(smallCost <= 8, `open+list+read took ${smallCost} requests`);
    assert.ok(dev.requestCount - smallCost <= 10, `the stream took ${dev.requestCount - smallCost} requests`);
    assert.ok(dev.bytesFetched < 8 * 1024 * 1024, `fetched ${dev.bytesFetched} bytes`);
  });

  test('concurrent reads of one chunk share a request; cached chunks cost none', async () => {
    const dev = await HttpRangeDevice.open(`${server.url}/disk.img`);
    const before = dev.requestCount;
    const reads = await Promise.all([0, 1, 2, 3].map((i) => dev.read(1_000_000 + i * 100, 100)));
    assert.equal(dev.requestCount, before + 1);
    const again = await dev.read(1_000_000, 400);
    assert.equal(dev.requestCount, before + 1);
    const direct = await hostBytes(img, 1_000_000, 400);
    assert.deepEqual(Buffer.concat(reads.map((r) => Buffer.from(r))), Buffer.from(direct));
    assert.deepEqual(Buffer.from(again), Buffer.from(direct));
    // A read bigger than the cache goes straight through, in one request.
    const small = await HttpRangeDevice.open(`${server.url}/disk.img`, { cacheBytes: 256 * 1024, maxReadAheadBytes: 0 });
    const n = small.requestCount;
    const wide = await small.read(0, 1024 * 1024);
    assert.equal(small.requestCount, n + 1);
    assert.deepEqual(Buffer.from(wide), await hostBytes(img, 0, 1024 * 1024));
  });

  test('a server that ignores Range is refused with ENOTSUP; an image changed under the device is EIO', async () => {
    server.ignoreRange = true;
    try {
      await assert.rejects(HttpRangeDevice.open(`${server.url}/disk.img`), (e: unknown) => e instanceof Ext4Error && e.code === 'ENOTSUP' && /Range/.test(e.message));
    } finally {
      server.ignoreRange = false;
    }
    await assert.rejects(HttpRangeDevice.open(`${server.url}/missing.img`), (e: unknown) => e instanceof Ext4Error && e.code === 'ENOTSUP' && /status 404/.test(e.message));
    const dev = await HttpRangeDevice.open(`${server.url}/disk.img`);
    server.routes.set('/disk.img', { file: img, etag: '"changed"' });
    try {
      await assert.rejects(dev.read(GiB, 512), (e: unknown) => e instanceof Ext4Error && e.code === 'EIO' && /status 200/.test(e.message));
    } finally {
      server.routes.set('/disk.img', { file: img });
    }
    await assert.rejects(dev.write(0, new Uint8Array(1)), (e: unknown) => e instanceof Ext4Error && e.code === 'EROFS');
    await assert.rejects(HttpRangeDevice.open('http://127.0.0.1:1/x.img'), (e: unknown) => e instanceof Ext4Error && e.code === 'EIO');
  });
});

describe('FileDevice', () => {
  test('reads an image held in a Blob; BlobDevice is the same class', async () => {
    const img = tmpImagePath('blob');
    await Ext4.mkfs(img, { sizeBytes: 8 * 1024 * 1024 });
    const w = await Ext4.open(img);
    await w.writeFile('/f', new Uint8Array([9, 8, 7]));
    await w.close();
    const dev = new FileDevice(new Blob([await readFile(img)]));
    const fs = await Ext4.open(dev, { readOnly: true });
    assert.deepEqual([...await fs.readFile('/f')], [9, 8, 7]);
    await fs.close();
    assert.equal(BlobDevice, FileDevice);
    await assert.rejects(dev.write(0, new Uint8Array(1)), (e: unknown) => e instanceof Ext4Error && e.code === 'EROFS');
    await assert.rejects(dev.read(dev.sizeBytes - 1, 2), (e: unknown) => e instanceof Ext4Error && e.code === 'EIO');
  });
});
