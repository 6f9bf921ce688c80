// Small-file create+fsync rate: creates COUNT files of 4 KiB, each written and fsynced before it
// is closed, in one directory. Usage:
//   journal-fsync.ts ext4kit IMAGE COUNT   (through the API into an existing image; open to close)
//   journal-fsync.ts host DIR COUNT        (node:fs into a host directory, e.g. a loop mount)
// With BENCH_INNER_MS_FILE set, writes the milliseconds of the create+fsync loop there.
import { closeSync, fsyncSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Ext4 } from '../../src/node.ts';

const [mode, target, countArg] = process.argv.slice(2);
if ((mode !== 'ext4kit' && mode !== 'host') || !target || !countArg || !/^\d+$/.test(countArg)) {
  process.stderr.write('usage: journal-fsync.ts ext4kit IMAGE COUNT | host DIR COUNT\n');
  process.exit(2);
}
const count = Number(countArg);
const data = new Uint8Array(4096);
let loopMs = 0;
if (mode === 'ext4kit') {
  const fs = await Ext4.open(target);
  await fs.mkdir('/fsync');
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    data[0] = i & 0xff; data[1] = (i >>> 8) & 0xff;
    const fh = await fs.open(`/fsync/f${i}`, 'w');
    await fh.write(data, 0, data.length, 0);
    await fh.sync();
    await fh.close();
  }
  loopMs = performance.now() - t0;
  await fs.close();
} else {
  const dir = join(target, 'fsync');
  mkdirSync(dir);
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    data[0] = i & 0xff; data[1] = (i >>> 8) & 0xff;
    const fd = openSync(join(dir, `f${i}`), 'w');
    writeSync(fd, data);
    fsyncSync(fd);
    closeSync(fd);
  }
  loopMs = performance.now() - t0;
}
if (process.env.BENCH_INNER_MS_FILE) writeFileSync(process.env.BENCH_INNER_MS_FILE, String(loopMs));
