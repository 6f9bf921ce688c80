// Data-path tools through an ext4kit FUSE mount: xfs_io (pwrite, pread, falloc, fpunch, fzero,
// seek -d/-h, fsync), fio with crc32c verification and fsync, the seeded fsx-style checker
// (fuse-fsx.py; shown to catch a server that loses writes), and the seed's bigalloc reproducer:
// concurrent small appenders, fsync and truncate loops, then invariants, contents, e2fsck and
// the kernel's view.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Ext4 } from '../src/node.ts';
import type { FuseBackend } from '../src/fuse/backend.ts';
import { e2fsck, loopMountSupport, withLoopMount } from './support/oracles.ts';
import { tmpImagePath, tmpDirPath, cleanupTemp } from './support/images.ts';
import { fuseSkipReason, sh, shOk, withFuse } from './fuse-support.ts';

const base = fuseSkipReason();
if (base) console.log(`# fuse-tools: skipping: ${base}`);
const loop = base ? { ok: false } : await loopMountSupport();
const FSX = join(import.meta.dirname, 'fuse-fsx.py');
after(() => cleanupTemp());

async function image(name: string, blockSize: number, bigalloc: boolean): Promise<string> {
  const img = tmpImagePath(name);
  await Ext4.mkfs(img, { sizeBytes: 256 << 20, blockSize, ...(bigalloc ? { features: 'bigalloc', clusterBytes: 65536 } : {}) });
  return img;
}

async function assertClean(img: string): Promise<void> {
  const r = await e2fsck(img);
  assert.equal(r.exitCode, 0, `e2fsck -fn:\n${r.output}`);
}

test('xfs_io: pwrite, pread, falloc, fpunch, fzero, seek -d/-h, fsync', { skip: fuseSkipReason(['xfs_io']) }, async () => {
  const img = await image('xfsio', 4096, false);
  await withFuse(img, async (mnt) => {
    const out = await shOk(`f=${mnt}/x
      xfs_io -f -c "pwrite -S 0x61 0 100k" -c "pwrite -S 0x62 1m 64k" -c fsync -c "falloc 2m 1m" -c "fpunch 4k 8k" -c "fzero 1m 4k" $f >/dev/null
      xfs_io -c "pread -v 4094 4" -c "pread -v 12286 4" -c "pread -v 1052670 4" $f | grep '^0'
      xfs_io -c "seek -a -r 0" $f
      stat -c 'size %s' $f`);
    assert.match(out, /00000ffe:\s+61 61 00 00/, 'punched block reads as zeroes');
    assert.match(out, /00002ffe:\s+00 00 61 61/, 'data resumes after the punched range');
    assert.match(out, /00100ffe:\s+00 00 62 62/, 'zeroed block reads as zeroes');
    // The kernel's ext4 answers the same: data 0..4k, hole 4k..12k, data to 100k, hole, data
    // 1m+4k..1m+64k, then unwritten (a hole for SEEK_DATA) to the end.
    const seeks = [...out.matchAll(/^(DATA|HOLE)\s+(\d+)$/gm)].map((m) => `${m[1]} ${m[2]}`);
    assert.deepEqual(seeks, ['DATA 0', 'HOLE 4096', 'DATA 12288', 'HOLE 102400', 'DATA 1052672', 'HOLE 1114112']);
    assert.match(out, /size 3145728/);
  });
  await assertClean(img);
});

test('fio: random read/write, 3 jobs, crc32c verify, fsync every 16 writes', { skip: fuseSkipReason(['fio']), timeout: 300_000 }, async () => {
  const img = await image('fio', 4096, true);
  await withFuse(img, async (mnt) => {
    const out = await shOk(`cd ${mnt} && fio --verify_state_save=0 --name=rw --directory=${mnt} --rw=randrw --bs=4k --size=6m --numjobs=3 --verify=crc32c --verify_fatal=1 --fsync=16 --ioengine=psync --group_reporting`, { timeoutMs: 240_000 });
    assert.match(out, /err= 0/);
  });
  await assertClean(img);
});

test('fsx-style checker: seeded pwrite/pread/truncate/fallocate/mmap against a shadow copy (1 KiB/64 KiB bigalloc and 4 KiB)', { skip: fuseSkipReason(['python3']), timeout: 300_000 }, async () => {
  for (const [bs, big] of [[1024, true], [4096, false]] as const) {
    const img = await image(`fsx-${bs}`, bs, big);
    await withFuse(img, async (mnt, m) => {
      const out = await shOk(`python3 ${FSX} ${mnt}/a 11 400 1500000 & a=$!; python3 ${FSX} ${mnt}/b 12 400 1500000 & b=$!; wait $a; wait $b`, { timeoutMs: 240_000 });
      assert.match(out, /operations ok/);
      await m.checkInvariants();
    });
    await assertClean(img);
  }
});

test('the fsx checker catches a server that silently loses one write in 40', { skip: fuseSkipReason(['python3']), timeout: 120_000 }, async () => {
  const img = await image('fsx-broken', 4096, false);
  let writes = 0;
  const dropSome = (b: FuseBackend): FuseBackend => new Proxy(b, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (prop === 'write') return async (fh: number, off: number, data: Uint8Array, caller: never) => (++writes % 40 === 0 ? data.length : target.write(fh, off, data, caller));
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  await withFuse(img, async (mnt) => {
    const r = await sh(`python3 ${FSX} ${mnt}/a 11 400 1500000`, { timeoutMs: 100_000 });
    assert.notEqual(r.exitCode, 0, 'the checker must notice lost writes');
    assert.match(r.stderr, /fsx: seed 11: .*expected/);
  }, { wrapBackend: dropSome });
});

for (const bs of [1024, 4096]) {
  test(`seed reproducer on bigalloc ${bs / 1024} KiB/64 KiB: concurrent sub-cluster appenders, fsync and truncate loops`, { skip: fuseSkipReason(['xfs_io']), timeout: 300_000 }, async () => {
    const img = await image(`repro-${bs}`, bs, true);
    const src = tmpDirPath('repro-src');
    await shOk(`for k in 1 2 3 4; do head -c 3000000 /dev/urandom > ${src}/s$k; done`);
    let sums = '';
    await withFuse(img, async (mnt, m) => {
      await shOk(`
        cd ${mnt}
        append() { k=$1; off=0; i=0
          while [ $off -lt 1500000 ]; do
            n=$(( (i * 7919 + k * 131) % 30000 + 500 ))   # pieces below one cluster
            dd if=${src}/s$k of=f$k bs=64k iflag=skip_bytes,count_bytes skip=$off count=$n oflag=append conv=notrunc status=none
            off=$((off + n)); i=$((i + 1))
          done
          head -c $off ${src}/s$k > ${src}/want$k; }
        syncer() { for i in $(seq 40); do for k in 1 2 3 4; do [ -e f$k ] && xfs_io -c fsync f$k; done; sync; done; }
        trunc() { for i in $(seq 60); do
            xfs_io -f -c "pwrite -S 0x5a $((i * 4000)) 9000" -c fsync t >/dev/null
            truncate -s $(( (i * 6151) % 200000 )) t
            xfs_io -c "fpunch $(( (i * 3001) % 100000 )) 5000" t
          done; }
        append 1 & append 2 & append 3 & append 4 & syncer & trunc & wait
        for k in 1 2 3 4; do cmp f$k ${src}/want$k; done
      `, { timeoutMs: 280_000 });
      await m.checkInvariants();
      sums = await shOk(`cd ${mnt} && md5sum f1 f2 f3 f4 t`);
    });
    await assertClean(img);
    if (loop.ok) {
      await withLoopMount(img, async (kmnt) => {
        assert.equal(await shOk(`cd ${kmnt} && md5sum f1 f2 f3 f4 t`), sums, 'the kernel reads what the mount wrote');
      }, { readOnly: true, options: ['noload'] });
    }
  });
}
