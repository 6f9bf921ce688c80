// The one path walk and the API facade: byte and string paths read the same bytes on both kinds
// of mount, the kernel's path semantics (trailing '/', '.', dangling symlinks, long names),
// resumable directory listings, recursive readdir against node:fs, `await using`, bigint stat,
// umask and abort signals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir as hostReaddir, readFile as hostReadFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ext4, MemoryDevice } from '../src/node.ts';
import { Ext4Error } from '../src/errors/ext4-error.ts';
import { pageAfter } from '../src/fs/readdir.ts';
import type { RawDirEntry } from '../src/dir/dir-read.ts';
import { e2fsck, haveE2fsprogs } from './support/oracles.ts';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'ext4kit.js');
const enc = (s: string) => new TextEncoder().encode(s);

async function freshDevice(blockSize = 4096): Promise<MemoryDevice> {
  const dev = new MemoryDevice(new Uint8Array(16 << 20));
  await Ext4.mkfs(dev, { sizeBytes: 16 << 20, blockSize, timeSec: 1_700_000_000 });
  return dev;
}

async function code(p: Promise<unknown>): Promise<string> {
  try { await p; } catch (e) { if (e instanceof Ext4Error) return e.code; throw e; }
  return 'ok';
}

test('byte paths and string paths read the same bytes, writable and read-only, before and after writeback', async () => {
  const dev = await freshDevice();
  const fs = await Ext4.open(dev);
  await fs.mkdir('/d/e', { recursive: true });
  await fs.writeFile('/d/e/f', 'hello world');
  const want = enc('hello world');
  // Before writeback: the data is only in the page cache.
  assert.deepEqual(await fs.readFile(enc('/d/e/f')), want);
  assert.deepEqual(await fs.readFile('/d/e/f'), want);
  const fh = await fs.open(enc('/d/e/f'), 'r');
  assert.deepEqual(await fh.readFile(), want);
  await fh.close();
  await fs.sync();
  assert.deepEqual(await fs.readFile(enc('/d/e/f')), want);
  assert.deepEqual(await fs.readFile('/d/e/f'), want);
  await fs.close();
  const ro = await Ext4.open(dev, { readOnly: true });
  assert.deepEqual(await ro.readFile(enc('/d/e/f')), want);
  assert.deepEqual(await ro.readFile('/d/e/f'), want);
  await ro.close();
});

test('writes accept byte paths: a name that is not UTF-8 round-trips through `ext4kit get -r`', { skip: haveE2fsprogs() ? false : 'e2fsprogs not installed (apt-get install e2fsprogs)' }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ext4kit-bytes-'));
  try {
    const image = join(dir, 'disk.img');
    await Ext4.mkfs(image, { sizeBytes: 16 << 20, timeSec: 1_700_000_000 });
    const name = new Uint8Array([0x6e, 0xff, 0xfe, 0x80]); // 'n' then bytes no UTF-8 decoder accepts
    const path = new Uint8Array([0x2f, 0x64, 0x2f, ...name]); // /d/<name>
    const fs = await Ext4.open(image);
    await fs.mkdir('/d');
    await fs.writeFile(path, 'raw name');
    assert.deepEqual(await fs.readFile(path), enc('raw name'));
    assert.equal((await fs.stat(path)).size, 8);
    await fs.close();
    assert.equal((await e2fsck(image)).exitCode, 0);
    const out = join(dir, 'out');
    const rc = await new Promise<number>((res, rej) => {
      spawn(process.execPath, [BIN, 'get', '-r', image, '/d', out], { stdio: 'inherit' }).on('close', (c) => res(c ?? -1)).on('error', rej);
    });
    assert.equal(rc, 0);
    const names = await hostReaddir(out, { encoding: 'buffer' });
    assert.deepEqual(names.map((b) => [...b]), [[...name]]);
    assert.equal((await hostReadFile(Buffer.concat([Buffer.from(out + '/'), Buffer.from(name)]))).toString(), 'raw name');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('path semantics follow the kernel: trailing slash, dot, dangling symlinks, long names, directories through handles', async () => {
  const dev = await freshDevice();
  const fs = await Ext4.open(dev);
  await fs.mkdir('/d');
  await fs.writeFile('/file', 'x');
  assert.equal(await code(fs.writeFile('/a/', 'x')), 'EISDIR');
  assert.equal(await code(fs.stat('/a')), 'ENOENT');
  assert.equal(await code(fs.stat('/file/')), 'ENOTDIR');
  assert.equal(await code(fs.stat('/file/.')), 'ENOTDIR');
  assert.equal((await fs.stat('/d/')).isDirectory(), true);
  assert.equal((await fs.stat('/d/.')).isDirectory(), true);
  assert.equal((await fs.stat('/d/../file')).size, 1);
  assert.equal(await code(fs.rmdir('/d/.')), 'EINVAL');
  assert.equal(await code(fs.stat('/d')), 'ok');
  assert.equal(await code(fs.rmdir('/')), 'EBUSY');
  assert.equal(await code(fs.unlink('/file/')), 'ENOTDIR');
  // Creating through a dangling symlink creates its target (open O_CREAT without O_EXCL).
  await fs.symlink('target', '/d/link');
  await fs.writeFile('/d/link', 'via link');
  assert.equal(await fs.readFile('/d/target', 'utf8'), 'via link');
  await fs.symlink('/d/abs-target', '/abs-link');
  await fs.writeFile('/abs-link', 'abs');
  assert.equal(await fs.readFile('/d/abs-target', 'utf8'), 'abs');
  assert.equal(await code(fs.writeFile('/d/link', 'x', { flag: 'wx' })), 'EEXIST');
  // Names over 255 bytes.
  const long = '/' + 'n'.repeat(256);
  assert.equal(await code(fs.writeFile(long, 'x')), 'ENAMETOOLONG');
  assert.equal(await code(fs.stat(long)), 'ENAMETOOLONG');
  assert.equal(await code(fs.mkdir(long)), 'ENAMETOOLONG');
  assert.equal(await code(fs.writeFile('/' + 'n'.repeat(255), 'x')), 'ok');
  // Symlink loops and walks through files.
  await fs.symlink('loop2', '/loop1');
  await fs.symlink('loop1', '/loop2');
  assert.equal(await code(fs.stat('/loop1')), 'ELOOP');
  assert.equal(await code(fs.stat('/file/x')), 'ENOTDIR');
  // A directory read through a handle.
  const fh = await fs.open('/d', 'r');
  assert.equal(await code(fh.read(new Uint8Array(10))), 'EISDIR');
  assert.equal(await code(fh.readFile()), 'EISDIR');
  await fh.close();
  assert.equal(await code(fs.readFile('/d')), 'EISDIR');
  await fs.close();
  // The same walk on a read-only mount.
  const ro = await Ext4.open(dev, { readOnly: true });
  assert.equal(await code(ro.stat('/file/')), 'ENOTDIR');
  assert.equal(await code(ro.stat(long)), 'ENAMETOOLONG');
  assert.equal(await code(ro.stat('/loop1')), 'ELOOP');
  assert.equal(await ro.readFile('/d/link', 'utf8'), 'via link');
  const rfh = await ro.open('/d', 'r');
  assert.equal(await code(rfh.readFile()), 'EISDIR');
  await rfh.close();
  await ro.close();
});

/**
 * Lists `dir` in pages of `pageSize` through `page`, calling `between` after each page; returns
 * how often each name came back.
 */
async function pagedListing(page: (cookie: number) => Promise<{ entries: Array<{ name: string; cookie: number }>; done: boolean }>, between: (round: number) => Promise<void>): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  let cookie = 0;
  for (let round = 0; round < 10_000; round++) {
    const p = await page(cookie);
    for (const e of p.entries) seen.set(e.name, (seen.get(e.name) ?? 0) + 1);
    if (p.done || p.entries.length === 0) return seen;
    cookie = p.entries[p.entries.length - 1]!.cookie;
    await between(round);
  }
  throw new Error('listing did not end');
}

/** Every name present before and after comes back exactly once; no name more than once. */
function checkListing(seen: Map<string, number>, stayed: Iterable<string>): string[] {
  const problems: string[] = [];
  for (const n of stayed) if (seen.get(n) !== 1) problems.push(`${n} returned ${seen.get(n) ?? 0} times`);
  for (const [n, c] of seen) if (c > 1) problems.push(`${n} returned ${c} times`);
  return problems;
}

test('readdirFrom: listing in pages while entries are inserted and deleted returns every stable entry exactly once', async () => {
  for (const blockSize of [1024, 4096]) {
    const dev = await freshDevice(blockSize);
    const fs = await Ext4.open(dev);
    await fs.mkdir('/big');
    const initial = Array.from({ length: 400 }, (_, i) => `entry-${i}`);
    for (const n of initial) await fs.writeFile(`/big/${n}`, '');
    const deleted = new Set<string>();
    let added = 0;
    const seen = await pagedListing((c) => fs.readdirFrom('/big', c, 17), async (round) => {
      // Delete a few (one already listed, one not yet) and add a few, every page.
      for (const k of [round * 7 % 400, (round * 13 + 200) % 400]) {
        const n = initial[k]!;
        if (deleted.has(n)) continue;
        deleted.add(n);
        await fs.unlink(`/big/${n}`);
      }
      for (let i = 0; i < 3; i++) await fs.writeFile(`/big/new-${added++}`, '');
    });
    const stayed = initial.filter((n) => !deleted.has(n));
    assert.deepEqual(checkListing(seen, [...stayed, '.', '..']), [], `block size ${blockSize}`);
    assert.ok(stayed.length > 300 && deleted.size > 20 && added > 50);
    await fs.close();
  }
});

test('the paged-listing check catches position-based cookies (a deliberately broken variant)', async () => {
  // Cookies that are positions in the current listing: an entry deleted before the cursor makes
  // the next page skip a stable entry.
  let entries: RawDirEntry[] = Array.from({ length: 60 }, (_, i) => ({ ino: 100 + i, name: enc(`e${i}`), fileType: 1 }));
  const broken = async (cookie: number) => {
    const slice = entries.slice(cookie, cookie + 7);
    return { entries: slice.map((e, k) => ({ name: new TextDecoder().decode(e.name), cookie: cookie + k + 1 })), done: cookie + 7 >= entries.length };
  };
  const real = async (cookie: number) => {
    const p = pageAfter(entries, cookie, 7, [0, 0, 0, 0]);
    return { entries: p.entries.map((e) => ({ name: new TextDecoder().decode(e.name), cookie: e.cookie })), done: p.done };
  };
  const run = async (page: typeof broken) => {
    entries = Array.from({ length: 60 }, (_, i) => ({ ino: 100 + i, name: enc(`e${i}`), fileType: 1 }));
    const gone = new Set<string>();
    const seen = await pagedListing(page, async (round) => {
      const victim = entries[round]!; // delete an entry at the front of the listing order
      gone.add(new TextDecoder().decode(victim.name));
      entries = entries.filter((e) => e !== victim);
    });
    const stayed = Array.from({ length: 60 }, (_, i) => `e${i}`).filter((n) => !gone.has(n));
    return checkListing(seen, stayed);
  };
  assert.notDeepEqual(await run(broken), []);
  assert.deepEqual(await run(real), []);
});

test('recursive readdir matches node:fs on the tree copied out by `ext4kit get -r`', { skip: haveE2fsprogs() ? false : 'e2fsprogs not installed (apt-get install e2fsprogs)' }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ext4kit-rec-'));
  try {
    const image = join(dir, 'disk.img');
    await Ext4.mkfs(image, { sizeBytes: 16 << 20, timeSec: 1_700_000_000 });
    const fs = await Ext4.open(image);
    await fs.mkdir('/t/a/b/c', { recursive: true });
    await fs.mkdir('/t/empty');
    for (const p of ['/t/x', '/t/a/y', '/t/a/b/z', '/t/a/b/c/w']) await fs.writeFile(p, p);
    await fs.symlink('a/y', '/t/link');
    await fs.close();
    const out = join(dir, 'out');
    const rc = await new Promise<number>((res, rej) => {
      spawn(process.execPath, [BIN, 'get', '-r', image, '/t', out], { stdio: 'inherit' }).on('close', (c) => res(c ?? -1)).on('error', rej);
    });
    assert.equal(rc, 0);
    const ro = await Ext4.open(image, { readOnly: true });
    const ours = (await ro.readdir('/t', { recursive: true })).sort();
    const host = (await hostReaddir(out, { recursive: true })).sort();
    assert.deepEqual(ours, host);
    assert.equal(ours.length, 9);
    const kinds = (list: Array<{ name: string; parentPath: string; isDirectory(): boolean; isSymbolicLink(): boolean }>, base: string) =>
      list.map((d) => `${d.parentPath.slice(base.length)}/${d.name}:${d.isDirectory() ? 'd' : d.isSymbolicLink() ? 'l' : 'f'}`).sort();
    assert.deepEqual(kinds(await ro.readdir('/t', { recursive: true, withFileTypes: true }), '/t'),
      kinds(await hostReaddir(out, { recursive: true, withFileTypes: true }), out));
    await ro.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('`await using` closes the filesystem and file handles', async () => {
  const dev = await freshDevice();
  let escaped: Ext4 | undefined;
  let handle: Awaited<ReturnType<Ext4['open']>> | undefined;
  {
    await using fs = await Ext4.open(dev);
    escaped = fs;
    {
      await using fh = await fs.open('/f', 'w');
      handle = fh;
      await fh.write('disposed');
    }
    assert.equal(await code(handle.write('x')), 'EBADF');
    assert.equal(await fs.readFile('/f', 'utf8'), 'disposed');
  }
  assert.equal(await code(escaped.stat('/f')), 'EBADF');
  // Closed means written back: the image is clean.
  const ro = await Ext4.open(dev, { readOnly: true });
  assert.equal(ro.info().state, 'clean');
  assert.equal(await ro.readFile('/f', 'utf8'), 'disposed');
  await ro.close();
});

test('stat({ bigint: true }), the umask, and readFile with an aborted signal', async () => {
  const dev = await freshDevice();
  const fs = await Ext4.open(dev, { umask: 0o027 });
  await fs.writeFile('/f', 'abc', { mode: 0o666 });
  await fs.mkdir('/d', { mode: 0o777 });
  assert.equal((await fs.stat('/f')).mode & 0o777, 0o640);
  assert.equal((await fs.stat('/d')).mode & 0o777, 0o750);
  const big = await fs.stat('/f', { bigint: true });
  const small = await fs.stat('/f');
  assert.equal(big.size, 3n);
  assert.equal(big.ino, BigInt(small.ino));
  assert.equal(big.mtimeNs, small.mtimeNs);
  assert.equal(typeof big.mode, 'bigint');
  const ac = new AbortController();
  ac.abort(new Error('stop'));
  await assert.rejects(fs.readFile('/f', { signal: ac.signal }), (e: Error & { code?: string }) => e.name === 'AbortError' && e.code === 'ABORT_ERR');
  await fs.close();
  const dflt = await Ext4.open(await freshDevice());
  await dflt.writeFile('/g', '', { mode: 0o666 });
  assert.equal((await dflt.stat('/g')).mode & 0o777, 0o644);
  await dflt.close();
});
