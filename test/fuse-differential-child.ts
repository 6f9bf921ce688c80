// Child of the unprivileged FUSE differential (test/fuse-differential.test.ts): runs one seeded
// sequence through node:fs on a kernel ext4 mount and on an ext4kit mount, as whichever uid it
// was started with (setpriv), and prints the mismatches as JSON on stdout.
// argv: KERNEL_ROOT EXT4KIT_ROOT SEED OPS
import { NodeFsBackend } from './support/differential/nodefs-backend.ts';
import { randomSequence, type Op } from './support/differential/ops.ts';
import { runSequence } from './support/differential/runner.ts';
import type { Outcome } from './support/differential/backend.ts';

const [kroot, froot, seed, ops] = process.argv.slice(2) as [string, string, string, string];
process.umask(0);
const classify = (op: Op, _e: Outcome, _a: Outcome): string | undefined =>
  op.k === 'write' && op.len === 0 ? 'kept: Node skips write(2) for 0 bytes' : undefined;
const kernel = new NodeFsBackend(kroot, 'kernel');
const mounted = new NodeFsBackend(froot, 'ext4kit mount');
try {
  const r = await runSequence(randomSequence(Number(seed), Number(ops)), kernel, mounted, { blocks: true }, classify);
  await kernel.sync();
  await mounted.sync();
  process.stdout.write(JSON.stringify({ uid: process.getuid?.(), mismatches: r.mismatches }) + '\n');
} finally {
  kernel.close();
  mounted.close();
}
