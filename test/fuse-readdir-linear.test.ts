// A large unindexed directory (no dir_index) listed through a writable FUSE mount while other
// entries are created and removed: READDIR pages come from the directory's kept sorted listing
// (fs/readdir.ts LiveListings), which follows every insert and unlink; no stable entry may be
// missed or listed twice, and the image stays clean.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Ext4 } from '../src/node.ts';
import { e2fsck } from './support/oracles.ts';
import { cleanupTemp, tmpImagePath } from './support/images.ts';
import { fuseSkipReason, shOk, withFuse } from './fuse-support.ts';

after(() => cleanupTemp());

const skip = fuseSkipReason(['python3']);
if (skip) console.log(`# fuse-readdir-linear: skipping: ${skip}`);

const STABLE = 5000;
const DOOMED = 500;

// Lists the directory `rounds` times (getdents64 with a 1 KiB buffer) and checks the stable entries.
const LISTER = `
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def listing(d):
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    buf = ctypes.create_string_buffer(1024)
    names = []
    try:
        while True:
            n = libc.syscall(217, fd, buf, 1024)
            if n < 0: raise OSError(ctypes.get_errno(), 'getdents64')
            if n == 0: return names
            off = 0
            while off < n:
                reclen = int.from_bytes(buf.raw[off + 16:off + 18], 'little')
                name = buf.raw[off + 19:off + reclen].split(b'\\0', 1)[0].decode()
                if name not in ('.', '..'): names.append(name)
                off += reclen
    finally:
        os.close(fd)
d, rounds, want = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for r in range(rounds):
    names = listing(d)
    stable = [n for n in names if n.startswith('s')]
    print(len(names), len(set(names)), len(stable), flush=True)
    if len(names) != len(set(names)): print('DUP', sorted(n for n in set(names) if names.count(n) > 1)[:5]); sys.exit(1)
    if len(set(stable)) != want: print('MISSING', want - len(set(stable))); sys.exit(1)
`;

const CHURN = `
import os, sys
d, stop, doomed = sys.argv[1], sys.argv[2], int(sys.argv[3])
i = 0
while not os.path.exists(stop) and i < 100000:
    open(os.path.join(d, 't%06d' % i), 'w').close()
    if i >= 20: os.unlink(os.path.join(d, 't%06d' % (i - 20)))
    if i < doomed: os.unlink(os.path.join(d, 'd%05d' % i))
    i += 1
print('churned', i, flush=True)
`;

test('an unindexed 5,000-entry directory listed through a writable mount (1 KiB getdents) while entries come and go', { skip, timeout: 10 * 60_000 }, async () => {
  const img = tmpImagePath('readdir-linear');
  await Ext4.mkfs(img, { sizeBytes: 128 << 20, timeSec: 1_700_000_000, features: '^dir_index' });
  const fs = await Ext4.open(img);
  await fs.mkdir('/big');
  for (let i = 0; i < STABLE; i++) await fs.writeFile(`/big/s${String(i).padStart(5, '0')}`, '');
  for (let i = 0; i < DOOMED; i++) await fs.writeFile(`/big/d${String(i).padStart(5, '0')}`, '');
  await fs.close();
  await withFuse(img, async (mnt) => {
    const dir = join(mnt, 'big');
    const stop = `${img}.stop`;
    const q = (s: string) => s.replace(/'/g, "'\\''");
    const out = await shOk(`
      python3 -c '${q(CHURN)}' ${dir} ${stop} ${DOOMED} > ${img}.churn & churn=$!
      sleep 0.3
      set +e
      python3 -c '${q(LISTER)}' ${dir} 4 ${STABLE}; status=$?
      touch ${stop}; wait $churn; cat ${img}.churn; exit $status
    `, { timeoutMs: 8 * 60_000 });
    const rounds = out.trim().split('\n').filter((l) => /^\d+ \d+ \d+$/.test(l));
    assert.equal(rounds.length, 4, out);
    for (const r of rounds) assert.equal(r.split(' ')[2], String(STABLE), out);
    const churned = Number(/churned (\d+)/.exec(out)?.[1]);
    assert.ok(churned > 50, `entries were added and removed during the listings (${churned})`);
  });
  const r = await e2fsck(img);
  assert.equal(r.exitCode, 0, r.output);
  const back = await Ext4.open(img, { readOnly: true });
  const names = (await back.readdir('/big')).filter((n) => n.startsWith('s'));
  assert.equal(names.length, STABLE);
  await back.close();
});
