// ext4kit in a real browser: headless Debian Chromium driven by playwright-core loads a page
// from a local HTTP server (an esbuild browser bundle of src/index.ts, the test page and a 2 GiB
// sparse image served with Range support). In the page: open the image by Range requests (the
// request count is printed), list, read, stream a file, build an image in a MemoryDevice, read
// it back through FileDevice and POST its bytes. Node checks the bytes and runs e2fsck -fn.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { Ext4 } from '../src/node.ts';
import { cleanupTemp, tmpDirPath, tmpImagePath } from './support/images.ts';
import { debugfs, e2fsck, haveE2fsprogs } from './support/oracles.ts';
import { startRangeServer, type RangeServer } from './support/range-server.ts';
import { nodeBuiltinsIn } from './support/bundle-check.ts';

const CHROMIUM = '/usr/bin/chromium';
const HERE = dirname(fileURLToPath(import.meta.url));
const GiB = 1024 ** 3;
const BIG_BYTES = 2 * 1024 * 1024 + 4321;

const skip = !existsSync(CHROMIUM) ? `${CHROMIUM} not found (Debian package chromium; .ci/run installs it)`
  : !haveE2fsprogs() ? 'e2fsprogs not installed (Debian package e2fsprogs)' : false;

function pattern(len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = (i * 31 + (i >>> 10)) & 0xff;
  return out;
}

const PAGE = `<!doctype html><meta charset="utf-8"><title>ext4kit browser test</title><script src="/bundle.js"></script>`;

describe('ext4kit in headless Chromium', { skip }, () => {
  let server: RangeServer;
  let results: Record<string, unknown> = {};
  const consoleLines: string[] = [];

  before(async () => {
    const img = tmpImagePath('browser-2g');
    await Ext4.mkfs(img, { sizeBytes: 2 * GiB });
    const fs = await Ext4.open(img);
    await fs.mkdir('/docs');
    await fs.writeFile('/docs/hello.txt', 'hello, browser\n');
    await fs.writeFile('/docs/other.txt', 'other\n');
    await fs.writeFile('/big.bin', pattern(BIG_BYTES));
    await fs.close();
    const bundle = await build({
      entryPoints: [join(HERE, 'support', 'browser-page.ts')], bundle: true, platform: 'browser', format: 'iife',
      target: 'es2022', write: false, logLevel: 'silent',
    });
    const js = bundle.outputFiles[0]!.text;
    assert.deepEqual(nodeBuiltinsIn(js), [], 'the browser bundle must not import node: built-ins');
    server = await startRangeServer({
      '/': { bytes: new TextEncoder().encode(PAGE), type: 'text/html' },
      '/bundle.js': { bytes: new TextEncoder().encode(js), type: 'text/javascript' },
      '/disk.img': { file: img },
    });
    const { chromium } = await import('playwright-core');
    const profile = tmpDirPath('chromium-profile');
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync'],
      timeout: 60_000,
    });
    try {
      const page = context.pages()[0] ?? await context.newPage();
      page.on('console', (m) => {
        if (m.text().startsWith('Failed to load resource')) return; // /favicon.ico
        consoleLines.push(m.text());
        process.stdout.write(`# chromium console: ${m.text()}\n`);
      });
      page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
      await page.goto(`${server.url}/`);
      results = await page.evaluate(async (url) => {
        const g = globalThis as unknown as { runExt4kit: (u: string) => Promise<Record<string, unknown>> };
        return g.runExt4kit(url);
      }, '/disk.img');
    } finally {
      await context.close();
    }
  });
  after(async () => {
    await server?.close();
    await cleanupTemp();
  });

  test('a 2 GiB image opens by a handful of Range requests; list, read and stream match', () => {
    assert.deepEqual(results.root, ['big.bin', 'docs', 'lost+found']);
    assert.deepEqual(results.docs, ['hello.txt', 'other.txt']);
    assert.equal(results.hello, 'hello, browser\n');
    assert.equal(results.bigBytes, BIG_BYTES);
    assert.equal(results.bigSha256, createHash('sha256').update(pattern(BIG_BYTES)).digest('hex'));
    assert.equal(results.imageBytes, 2 * GiB);
    const imgRequests = server.log.filter((l) => l.path === '/disk.img');
    assert.equal(results.totalRequests, imgRequests.length, 'the device counter matches the server log');
    assert.ok(imgRequests.every((l) => l.status === 206 && l.range !== undefined), 'every image request was a Range request');
    // Open reads the superblock, the group descriptors and (with a journal) the jbd2 superblock.
    assert.ok((results.openRequests as number) <= 4, `open took ${String(results.openRequests)} requests`);
    assert.ok((results.readRequests as number) <= 8, `open+list+read took ${String(results.readRequests)} requests`);
    assert.ok((results.totalRequests as number) <= 16, `with the stream: ${String(results.totalRequests)} requests`);
    assert.ok(consoleLines.some((l) => l.startsWith('HttpRangeDevice in Chromium:')), 'the page printed the request count');
  });

  test('an image built in a MemoryDevice in the page is clean for e2fsck and reads back', async () => {
    assert.equal(results.downloadUrl, true);
    assert.deepEqual(results.fileDeviceList, ['copy.bin', 'in-browser.txt', 'link']);
    assert.equal(results.uploadStatus, 204);
    const bytes = server.posted.get('/upload/built.img');
    assert.ok(bytes, 'the page sent the image');
    assert.equal(bytes.length, 16 * 1024 * 1024);
    const img = tmpImagePath('from-browser');
    await writeFile(img, bytes);
    const fsck = await e2fsck(img);
    assert.equal(fsck.exitCode, 0, fsck.output);
    assert.equal(await debugfs(img, 'cat /made/in-browser.txt'), 'written by Chromium\n');
    const fs = await Ext4.open(img, { readOnly: true });
    try {
      assert.deepEqual(Buffer.from(await fs.readFile('/made/copy.bin')), Buffer.from(pattern(BIG_BYTES).subarray(0, 200_000)));
      assert.equal(await fs.readlink('/made/link'), 'in-browser.txt');
      assert.equal(fs.info().label, 'from-page');
    } finally {
      await fs.close();
    }
  });
});
