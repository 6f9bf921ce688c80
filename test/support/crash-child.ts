// Child process for the kill -9 interoperability test: opens IMAGE writable, creates files,
// fsyncs each and prints "acked PATH LEN SEED" once fsync returned, until it is killed.
import { Ext4 } from '../../src/node.ts';
import type { Ext4WritableHandle } from '../../src/api/ext4.ts';
import { fillPattern } from './byte-model.ts';

async function main(): Promise<void> {
  const image = process.argv[2]!;
  const fs = await Ext4.open(image);
  await fs.mkdir('/k');
  for (let i = 0; ; i++) {
    const path = `/k/f${i}`;
    const len = 500 + ((i * 7919) % 20_000);
    const data = fillPattern(len, 1000 + i);
    const fh = await fs.open(path, 'w') as Ext4WritableHandle;
    await fh.write(data, 0, len, 0);
    await fh.sync();
    await fh.close();
    process.stdout.write(`acked ${path} ${len} ${1000 + i}\n`);
    // Some unacknowledged work in flight as well: a rename and an unlink.
    if (i % 5 === 4) await fs.rename(`/k/f${i - 1}`, `/k/g${i - 1}`);
  }
}
main().catch((e) => { process.stderr.write(`${(e as Error).stack}\n`); process.exit(70); });
