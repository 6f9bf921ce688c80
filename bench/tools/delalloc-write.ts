// Large delayed-allocation writes through the API: opens IMAGE (an empty ext4 image), writes
// MIB MiB to /big with FileHandle.write of CHUNK_MIB-MiB aligned buffers, closes the file and the
// filesystem (which writes everything back and flushes the device: the same durability as
// `dd conv=fsync`). Usage: delalloc-write.ts IMAGE MIB [CHUNK_MIB]
// With BENCH_INNER_MS_FILE set, writes the milliseconds from Ext4.open to the end of fs.close
// there (the write itself, without node and tsx start-up).
import { writeFileSync } from 'node:fs';
import { Ext4 } from '../../src/node.ts';

const [image, mib, chunkArg] = process.argv.slice(2);
if (!image || !mib || !/^\d+$/.test(mib)) {
  process.stderr.write('usage: delalloc-write.ts IMAGE MIB [CHUNK_MIB]\n');
  process.exit(2);
}
const chunkBytes = Number(chunkArg ?? 8) * 1024 * 1024;
const totalBytes = Number(mib) * 1024 * 1024;
// Incompressible-looking but cheap: a pattern that differs per MiB (checked afterwards by the bench).
const buf = new Uint8Array(chunkBytes);
const t0 = performance.now();
const fs = await Ext4.open(image);
const fh = await fs.open('/big', 'w');
for (let pos = 0; pos < totalBytes; pos += chunkBytes) {
  const n = Math.min(chunkBytes, totalBytes - pos);
  for (let m = 0; m < n; m += 1 << 20) buf[m] = ((pos + m) >>> 20) & 0xff;
  await fh.write(buf.subarray(0, n), 0, n, pos);
}
await fh.close();
await fs.close();
if (process.env.BENCH_INNER_MS_FILE) writeFileSync(process.env.BENCH_INNER_MS_FILE, String(performance.now() - t0));
