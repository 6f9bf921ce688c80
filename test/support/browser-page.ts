// The script browser.test.ts bundles (esbuild, platform browser) and runs in Chromium. It uses
// only what a web page has: fetch, Blob, crypto.subtle, web streams. Results go back to Node as
// the return value of window.runExt4kit and, for the built image, an HTTP POST of its bytes.
import { Ext4, FileDevice, HttpRangeDevice, MemoryDevice } from '../../src/index.ts';

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

async function run(imageUrl: string): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  // 1. A remote image by Range requests.
  const dev = await HttpRangeDevice.open(imageUrl);
  const fs = await Ext4.open(dev, { readOnly: true });
  out.openRequests = dev.requestCount;
  out.root = (await fs.readdir('/')).sort();
  out.docs = (await fs.readdir('/docs')).sort();
  out.hello = new TextDecoder().decode(await fs.readFile('/docs/hello.txt'));
  out.readRequests = dev.requestCount;
  const reader = fs.createReadStream('/big.bin').getReader();
  const parts: Uint8Array[] = [];
  let streamed = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    streamed += value.length;
  }
  const all = new Uint8Array(streamed);
  let at = 0;
  for (const p of parts) { all.set(p, at); at += p.length; }
  out.bigBytes = streamed;
  out.bigSha256 = await sha256Hex(all);
  out.totalRequests = dev.requestCount;
  out.bytesFetched = dev.bytesFetched;
  out.imageBytes = dev.sizeBytes;
  await fs.close();
  console.log(`HttpRangeDevice in Chromium: ${out.openRequests} requests to open, ${out.readRequests} after listing and reading hello.txt, ` +
    `${out.totalRequests} after streaming ${streamed} bytes; ${dev.bytesFetched} of ${dev.sizeBytes} bytes fetched`);

  // 2. An image built in the page, then "downloaded" (a Blob URL) and sent back to the test.
  const mem = new MemoryDevice(16 * 1024 * 1024);
  await Ext4.mkfs(mem, { label: 'from-page' });
  const w = await Ext4.open(mem);
  await w.mkdir('/made');
  await w.writeFile('/made/in-browser.txt', new TextEncoder().encode('written by Chromium\n'));
  await w.writeFile('/made/copy.bin', all.subarray(0, 200_000));
  await w.symlink('in-browser.txt', '/made/link');
  await w.close();
  const blob = new Blob([mem.bytes as Uint8Array<ArrayBuffer>], { type: 'application/octet-stream' });
  out.downloadUrl = URL.createObjectURL(blob).startsWith('blob:');
  // 3. The same image read back through FileDevice (a File, as from an <input type=file>).
  const file = new File([blob], 'built.img');
  const r = await Ext4.open(new FileDevice(file), { readOnly: true });
  out.fileDeviceList = (await r.readdir('/made')).sort();
  await r.close();
  const post = await fetch('/upload/built.img', { method: 'POST', body: blob });
  out.uploadStatus = post.status;
  return out;
}

(globalThis as unknown as { runExt4kit: typeof run }).runExt4kit = run;
