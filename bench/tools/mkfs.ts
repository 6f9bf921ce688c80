// Stand-in for `ext4kit mkfs -q IMAGE SIZE` while the CLI lacks it: Ext4.mkfs on a new sparse
// file, in its own process so that the harness measures it like mke2fs. Usage: mkfs.ts IMAGE BYTES
import { Ext4 } from '../../src/node.ts';

const [image, size] = process.argv.slice(2);
if (!image || !size || !/^\d+$/.test(size)) {
  process.stderr.write('usage: mkfs.ts IMAGE BYTES\n');
  process.exit(2);
}
await Ext4.mkfs(image, { sizeBytes: Number(size) });
