// `ext4kit get -r` hands plain files to writer threads (src/cli/get-writer.ts) in batches. The
// copy through the threads must be the same as the copy on the main thread (bytes, holes, modes
// with set-id bits, owners, ns times, hard links), and a host error on a thread must come back
// as the same system error (EEXIST for an existing name or a planted symlink, never followed).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { lstatSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync, openSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { Ext4, NodeFileDevice } from '../src/node.ts';
import { getFromImage } from '../src/cli/get.ts';
import { HostWriter, type FileOp } from '../src/cli/get-writer.ts';
import { timeArg, tsArg, tsNs, tsSafe } from '../src/cli/get-host.ts';
import { metaOf } from '../src/cli/get-inode.ts';
import type { Node } from '../src/fs/mount.ts';
import { NameSet } from '../src/cli/get-paths.ts';
import { cleanupTemp, tmpDirPath, tmpImagePath } from './support/images.ts';

after(cleanupTemp);

const isRoot = process.getuid?.() === 0;

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

async function makeImage(): Promise<string> {
  const img = tmpImagePath('get-writers');
  await Ext4.mkfs(img, { sizeBytes: 64 * 1024 * 1024 });
  const fs = await Ext4.open(img);
  await fs.mkdir('/d');
  await fs.mkdir('/d/sub');
  for (let i = 0; i < 300; i++) await fs.writeFile(`/d/sub/f${i}`, pattern(i * 37, i + 1));
  await fs.writeFile('/d/small', pattern(100, 7));
  await fs.writeFile('/d/setuid', pattern(5000, 8));
  await fs.chmod('/d/setuid', 0o4755);
  await fs.writeFile('/d/sticky-open', pattern(10, 9));
  await fs.chmod('/d/sticky-open', 0o1777);
  await fs.writeFile('/d/world', pattern(20, 10));
  await fs.chmod('/d/world', 0o666);
  // 3 MiB with a hole in the middle and a trailing hole: written at 0 and at 2 MiB, size 5 MiB.
  const h = await fs.open('/d/holes', 'w');
  await h.write(pattern(1 << 20, 11), 0, 1 << 20, 0);
  await h.write(pattern(1 << 20, 12), 0, 1 << 20, 2 << 20);
  await h.close();
  await fs.truncate('/d/holes', 5 << 20);
  await fs.writeFile('/d/h1', pattern(3000, 13));
  await fs.link('/d/h1', '/d/h2');
  await fs.link('/d/h1', '/d/sub/h3');
  await fs.writeFile('/d/owned', pattern(64, 14));
  await fs.chown('/d/owned', 1234, 5678);
  await fs.symlink('small', '/d/link');
  await fs.lchown('/d/link', 4321, 0);
  await fs.mkdir('/d/odir');
  await fs.chown('/d/odir', 0, 5678);
  for (const p of ['/d/small', '/d/setuid', '/d/holes', '/d/h1', '/d/owned', '/d/sub/f7']) {
    await fs.utimes(p, { sec: 1_600_000_000, nsec: 123_456_000 }, { sec: 1_500_000_000, nsec: 987_654_000 });
  }
  await fs.close();
  return img;
}

async function copyOut(img: string, workers: number): Promise<string> {
  const dest = tmpDirPath(`get-writers-${workers}`);
  const fs = await Ext4.open(img, { readOnly: true });
  const raw = await NodeFileDevice.open(img, { readOnly: true });
  try {
    await getFromImage(fs, '/d', dest, {
      recursive: true, warn: () => undefined,
      data: { readInto: (at, t) => raw.readInto(at, t), hostFd: raw.hostFd, baseBytes: 0 },
      writers: { workers, inlineFiles: 0 },
    });
  } finally {
    await raw.close();
    await fs.close();
  }
  return join(dest, 'd');
}

/**
 * Every entry's type, mode, owner, size, allocated-or-not, times (ns), link count and bytes.
 * Every stat comes before any read (a read moves the atime a hard link's other names show).
 */
function describeTree(root: string): string[] {
  const out: string[] = [];
  const sums: Array<[number, string]> = [];
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const p = join(root, r);
      const st = lstatSync(p, { bigint: true });
      const base = `${r} mode=${st.mode.toString(8)} uid=${st.uid} gid=${st.gid} nlink=${st.nlink}`;
      if (st.isSymbolicLink()) out.push(`${base} -> ${readlinkSync(p)}`);
      else if (st.isDirectory()) {
        out.push(base);
        walk(r);
      } else {
        sums.push([out.length, p]);
        out.push(`${base} size=${st.size} blocks=${st.blocks} atime=${st.atimeNs} mtime=${st.mtimeNs}`);
      }
    }
  };
  walk('');
  for (const [i, p] of sums) out[i] += ` sum=${readFileSync(p).reduce((a, b) => (a * 31 + b) >>> 0, 7)}`;
  return out;
}

describe('get -r through writer threads', () => {
  test('the copy through 2 threads equals the copy on the main thread, and the image', async () => {
    const img = await makeImage();
    const threads = describeTree(await copyOut(img, 2));
    const main = describeTree(await copyOut(img, 0));
    assert.deepEqual(threads, main);
    const line = (name: string) => threads.find((l) => l.startsWith(`${name} `)) ?? '';
    assert.match(line('setuid'), /mode=104755 /);
    assert.match(line('sticky-open'), /mode=101777 /);
    assert.match(line('world'), /mode=100666 /);
    assert.match(line('small'), /atime=1600000000123456000 mtime=1500000000987654000 /);
    assert.match(line('h1'), /nlink=3 /);
    assert.match(line('sub/h3'), /nlink=3 /);
    // 2 MiB of data in a 5 MiB file: the holes stayed holes.
    assert.match(line('holes'), /size=5242880 blocks=4096 /);
    if (isRoot) {
      assert.match(line('owned'), /uid=1234 gid=5678 /);
      assert.match(line('odir'), /uid=0 gid=5678 /);
      assert.match(line('link'), /uid=4321 gid=0 /);
      assert.match(line('sub'), /uid=0 gid=0 /);
    }
    assert.equal(threads.length, 300 + 1 + 11);
  });

  test('a host error (on a writer thread or not) comes back as the system error; symlinks are not followed', async () => {
    const dir = tmpDirPath('get-writers-err');
    writeFileSync(join(dir, 'taken'), 'old');
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'keep');
    symlinkSync(victim, join(dir, 'planted'));
    const imageFd = openSync('/dev/zero', 'r');
    try {
      for (const [name, workers] of [['taken', 1], ['planted', 1], ['taken', 0], ['planted', 0]] as const) {
        const w = new HostWriter(imageFd, { workers, inlineFiles: 0 });
        const op = (n: string): FileOp => ({
          host: Buffer.from(join(dir, n)), openMode: 0o644, sizeBytes: 10, ranges: [0, 0, 10],
          atimeSec: 1, mtimeSec: 1, uid: -1, gid: -1, chmod: -1,
        });
        w.add(op(`ok-before-${name}-${workers}`), 10);
        w.add(op(name), 10);
        try {
          await assert.rejects(w.drain(), (e: NodeJS.ErrnoException) => e.code === 'EEXIST' && e.syscall === 'open' && typeof e.errno === 'number');
        } finally {
          await w.close();
        }
        assert.equal(lstatSync(join(dir, `ok-before-${name}-${workers}`)).size, 10);
      }
      assert.equal(readFileSync(victim, 'utf8'), 'keep');
      assert.equal(readFileSync(join(dir, 'taken'), 'utf8'), 'old');
    } finally {
      closeSync(imageFd);
    }
  });
});

describe('get -r times as numbers', () => {
  test('tsArg and tsSafe give what timeArg and the BigInt range check gave, nsec folded as the BigInt sum did', () => {
    const secs = [0, 1, 59, 1_500_000_000, 2 ** 31 - 1, 2 ** 31, 2 ** 33 + 5, -1, -2, -(2 ** 31)];
    const nsecs = [0, 1, 999, 1000, 123_456_789, 999_999_999, 1_000_000_000, 2 ** 30 - 1];
    for (const sec of secs) {
      for (const raw of nsecs) {
        const node = { ino: 12, inode: { mode: 0o100644, linksCount: 1, uid: 0, gid: 0, sizeBytes: 0, flags: 0, atime: { sec, nsec: raw }, mtime: { sec, nsec: raw } } } as unknown as Node;
        const t = metaOf(node).atime;
        const ns = BigInt(sec) * 1_000_000_000n + BigInt(raw);
        assert.equal(tsNs(t), ns, `${sec}.${raw}`);
        assert.ok(t.nsec >= 0 && t.nsec < 1e9);
        assert.equal(tsArg(t), timeArg(ns), `${sec}.${raw}`);
        assert.equal(tsSafe(t), ns >= 0n && ns < (1n << 31n) * 1_000_000_000n, `${sec}.${raw}`);
      }
    }
  });
});

describe('get -r duplicate names', () => {
  test('NameSet refuses a name met twice, and tells apart names whose hashes collide', () => {
    const enc = (x: string) => new TextEncoder().encode(x);
    const set = new NameSet();
    // "costarring" and "liquid" share a 32-bit FNV-1a hash.
    assert.equal(set.add(enc('costarring')), true);
    assert.equal(set.add(enc('liquid')), true);
    assert.equal(set.add(enc('liquid')), false);
    assert.equal(set.add(enc('costarring')), false);
    assert.equal(set.add(new Uint8Array([0xff, 0xfe])), true);
    assert.equal(set.add(new Uint8Array([0xff, 0xfe])), false);
    assert.equal(set.add(enc('liqui')), true);
  });
});
