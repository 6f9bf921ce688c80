// End-to-end tests of the ext4kit command line (`node bin/ext4kit.js ...`), checked against
// e2fsprogs (e2fsck, dumpe2fs, debugfs) and against the host tree an image was made from.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, link, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, truncate, utimes, writeFile, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanupTemp, compareTrees, makeImage, MKE2FS_D_COMPARE, tmpDirPath, tmpImagePath } from './support/images.ts';
import { debugfs, dumpe2fsHeader, e2fsck, haveCommand, haveE2fsprogs } from './support/oracles.ts';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'ext4kit.js');
const noE2fsprogs = haveE2fsprogs() ? false : 'e2fsprogs not installed';
const MiB = 1024 * 1024;
const T0 = 1_700_000_000;

interface CliResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

function cli(...args: string[]): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr });
    });
  });
}

async function ok(...args: string[]): Promise<string> {
  const r = await cli(...args);
  assert.equal(r.code, 0, `ext4kit ${args.join(' ')} exited ${r.code}:\n${r.stderr}`);
  return r.stdout.toString('utf8');
}

function assertOneLineError(r: CliResult, code?: string): void {
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line on stderr, got:\n${r.stderr}`);
  assert.match(lines[0]!, code ? new RegExp(`^ext4kit: ${code}: `) : /^ext4kit: E[A-Z0-9]+: /);
}

/** Every path below `root` ('/'-separated, relative), depth first. */
async function hostPaths(root: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await readdir(join(root, rel))).sort()) {
    const p = rel ? `${rel}/${name}` : name;
    out.push(p);
    if ((await lstat(join(root, p))).isDirectory()) out.push(...(await hostPaths(root, p)));
  }
  return out;
}

/** Replaces the only occurrence of `from` in the image by `to` (same length). */
async function patchImage(image: string, from: string, to: string): Promise<void> {
  assert.equal(from.length, to.length);
  const bytes = await readFile(image);
  const needle = Buffer.from(from);
  const at = bytes.indexOf(needle);
  assert.ok(at >= 0, `'${from}' not found in ${image}`);
  assert.equal(bytes.indexOf(needle, at + 1), -1, `'${from}' occurs more than once in ${image}`);
  const fh = await open(image, 'r+');
  try {
    await fh.write(Buffer.from(to), 0, to.length, at);
  } finally {
    await fh.close();
  }
}

after(async () => {
  await cleanupTemp();
});

describe('ext4kit mkfs', { skip: noE2fsprogs }, () => {
  const cases: Array<{ name: string; args: string[]; size: string; expect?: Record<string, string> }> = [
    { name: 'ext4 defaults', args: ['-T', String(T0), '-L', 'cli-test'], size: '64M', expect: { 'Filesystem volume name': 'cli-test', 'Block size': '1024' } },
    { name: 'ext4 4 KiB blocks', args: ['-b', '4096', '-U', '11111111-2222-4333-8444-555555555555', '-E', 'hash_seed=66666666-7777-4888-9999-aaaaaaaaaaaa'], size: '128M',
      expect: { 'Filesystem UUID': '11111111-2222-4333-8444-555555555555', 'Directory Hash Seed': '66666666-7777-4888-9999-aaaaaaaaaaaa', 'Block count': '32768' } },
    { name: 'bigalloc', args: ['-O', 'bigalloc', '-b', '4096', '-C', '16K'], size: '64M', expect: { 'Cluster size': '16384' } },
    { name: 'ext2', args: ['-t', 'ext2', '-N', '1000', '-m', '1'], size: '16M', expect: { 'Reserved block count': '163' } },
    { name: 'ext2 with 128-byte inodes', args: ['-t', 'ext2', '-I', '128', '-i', '8192'], size: String(24 * 1024) /* 1 KiB blocks, as mke2fs counts */, expect: { 'Inode size': '128', 'Inode count': '3072' } },
    { name: 'ext3', args: ['-t', 'ext3', '-b', '4096'], size: '64M', expect: { 'Journal inode': '8' } },
  ];
  // mkfs cannot yet lay out a journal with a block map (no extents): ENOTSUP.
  const todo: Record<string, string> = { ext3: 'mkfs: journal without the extent feature is ENOTSUP' };
  for (const c of cases) {
    test(c.name, { todo: todo[c.name] }, async () => {
      const image = tmpImagePath('mkfs');
      const out = await ok('mkfs', ...c.args, image, c.size);
      assert.match(out, /blocks of \d+ bytes/);
      const fsck = await e2fsck(image);
      assert.equal(fsck.exitCode, 0, fsck.output);
      const header = await dumpe2fsHeader(image);
      for (const [k, v] of Object.entries(c.expect ?? {})) assert.equal(header[k], v, k);
      // The file is sparse: mkfs writes metadata only.
      const st = await stat(image);
      assert.ok(st.blocks * 512 < st.size, `image not sparse: ${st.blocks * 512} of ${st.size} bytes allocated`);
    });
  }

  test('fixed time gives a reproducible image', async () => {
    const a = tmpImagePath('repro-a');
    const b = tmpImagePath('repro-b');
    await ok('mkfs', '-q', '-T', String(T0), a, '8M');
    await ok('mkfs', '-q', '-T', String(T0), b, '8M');
    assert.ok((await readFile(a)).equals(await readFile(b)));
  });

  test('bad options are usage errors', async () => {
    const image = tmpImagePath('bad');
    for (const args of [['mkfs', image, '12Q'], ['mkfs', '-t', 'xfs', image, '8M'], ['mkfs', '-E', 'stride=4', image, '8M'], ['mkfs', '-Z', image, '8M'], ['mkfs']]) {
      const r = await cli(...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /usage: ext4kit mkfs/);
    }
    // An option value the library refuses is an Ext4Error (exit 1), not a crash.
    const r = await cli('mkfs', '-b', '3000', image, '8M');
    assert.equal(r.code, 1, r.stderr);
    assertOneLineError(r, 'EINVAL');
  });
});

describe('ext4kit info', { skip: noE2fsprogs }, () => {
  const infoKeys: Array<[string, string, (v: unknown) => string]> = [
    ['label', 'Filesystem volume name', (v) => (v === '' ? '<none>' : String(v))],
    ['uuid', 'Filesystem UUID', String],
    ['blocksCount', 'Block count', String],
    ['freeBlocks', 'Free blocks', String],
    ['reservedBlocks', 'Reserved block count', String],
    ['inodesCount', 'Inode count', String],
    ['freeInodes', 'Free inodes', String],
    ['blockSize', 'Block size', String],
    ['inodeSize', 'Inode size', String],
    ['blocksPerGroup', 'Blocks per group', String],
    ['inodesPerGroup', 'Inodes per group', String],
    ['firstDataBlock', 'First block', String],
    ['hashSeed', 'Directory Hash Seed', String],
    ['defaultHashVersion', 'Default directory hash', String],
    ['journalInode', 'Journal inode', String],
    ['flexBgSize', 'Flex block group size', String],
    ['reservedGdtBlocks', 'Reserved GDT blocks', String],
    ['state', 'Filesystem state', String],
    ['checksumType', 'Checksum type', String],
  ];

  for (const geometry of [
    { name: '1 KiB blocks', blockSize: 1024 as const, sizeBytes: 32 * MiB },
    { name: 'bigalloc 4 KiB / 64 KiB', blockSize: 4096 as const, sizeBytes: 64 * MiB, clusterBytes: 65536 },
  ]) {
    test(`--json matches dumpe2fs -h (${geometry.name})`, async () => {
      const image = await makeImage({ ...geometry, extra: ['-L', 'info-test'] });
      const json = JSON.parse(await ok('info', '--json', image)) as Record<string, unknown>;
      const header = await dumpe2fsHeader(image);
      for (const [key, label, fmt] of infoKeys) {
        if (header[label] === undefined) continue;
        assert.equal(fmt(json[key]), header[label], `${key} vs '${label}'`);
      }
      assert.deepEqual([...(json.features as string[])].sort(), header['Filesystem features']!.split(/\s+/).sort());
      if (geometry.clusterBytes) assert.equal(json.clusterSize, Number(header['Cluster size']));
      assert.equal(json.created, new Date(1_700_000_000_000).toISOString());
    });
  }

  test('text output uses dumpe2fs labels and values', async () => {
    const image = await makeImage({ blockSize: 4096, sizeBytes: 64 * MiB });
    const text = await ok('info', image);
    const header = await dumpe2fsHeader(image);
    const skip = new Set(['Filesystem created', 'Last mount time', 'Last write time', 'Filesystem features', 'Filesystem state']);
    let compared = 0;
    for (const line of text.trim().split('\n')) {
      const m = /^([^:]+):\s+(.*)$/.exec(line);
      assert.ok(m, `malformed line '${line}'`);
      if (skip.has(m[1]!) || header[m[1]!] === undefined) continue;
      assert.equal(m[2], header[m[1]!], m[1]);
      compared++;
    }
    assert.ok(compared >= 20, `only ${compared} lines compared`);
  });
});

describe('reading an image made with mke2fs -d', { skip: noE2fsprogs }, () => {
  let src: string;
  let image: string;
  const outside = () => join(dirname(src), 'outside-target');
  let xattrs = false;

  before(async () => {
    src = tmpDirPath('tree');
    await mkdir(outside());
    await writeFile(join(src, 'hello.txt'), 'hello world\n');
    await mkdir(join(src, 'dir/nested'), { recursive: true });
    const random = Buffer.alloc(70_000);
    for (let i = 0; i < random.length; i++) random[i] = (i * 2654435761) >>> 24;
    await writeFile(join(src, 'dir/nested/deep.bin'), random);
    await writeFile(join(src, 'empty'), '');
    // Sparse: data at the start and one byte 3 MiB in, a hole in between and none at the end.
    await writeFile(join(src, 'sparse'), 'head');
    const fh = await open(join(src, 'sparse'), 'r+');
    await fh.write(Buffer.from('x'), 0, 1, 3 * MiB);
    await fh.close();
    await writeFile(join(src, 'tail-hole'), 'abc');
    await truncate(join(src, 'tail-hole'), 2 * MiB);
    await symlink('../hello.txt', join(src, 'dir/rel-link'));
    await symlink('does/not/exist', join(src, 'dangling'));
    await symlink(outside(), join(src, 'escape-link'));
    await symlink('x'.repeat(300), join(src, 'slow-link'));
    await link(join(src, 'hello.txt'), join(src, 'dir/hard'));
    await writeFile(join(src, 'setuid'), '#!/bin/sh\n');
    await chmod(join(src, 'setuid'), 0o4755);
    await writeFile(join(src, 'private'), 'secret');
    await chmod(join(src, 'private'), 0o640);
    await mkdir(join(src, 'sticky'));
    await chmod(join(src, 'sticky'), 0o1777);
    await mkdir(join(src, 'readonly-dir'));
    await writeFile(join(src, 'readonly-dir/inside'), 'inside a 0555 directory');
    await chmod(join(src, 'readonly-dir'), 0o555);
    if (haveCommand('setfattr')) {
      const r = await new Promise<number>((res) => {
        spawn('setfattr', ['-n', 'user.note', '-v', 'kept', join(src, 'hello.txt')]).on('close', (c) => res(c ?? 1)).on('error', () => res(1));
      });
      xattrs = r === 0;
    }
    // Whole seconds: mke2fs -d keeps only those.
    let t = T0;
    for (const p of await hostPaths(src)) {
      if (!(await lstat(join(src, p))).isSymbolicLink()) await utimes(join(src, p), t + 7, t);
      t += 3600;
    }
    image = await makeImage({ dir: src, blockSize: 1024, sizeBytes: 16 * MiB });
  });

  test('ls -l -i matches debugfs ls -p', async () => {
    for (const dir of ['/', '/dir']) {
      const out = await ok('ls', '-l', '-i', image, dir);
      const ours = new Map<string, string>();
      for (const line of out.trim().split('\n')) {
        const m = /^\s*(\d+) (\S{10})\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+) \d{4}-\d\d-\d\d \d\d:\d\d:\d\d (.+?)(?: -> .*)?$/.exec(line);
        assert.ok(m, `unparsed ls line '${line}'`);
        ours.set(m[7]!, `${m[1]} ${m[2]} ${m[4]} ${m[5]} ${m[6]}`);
      }
      const theirs = new Map<string, string>();
      for (const line of (await debugfs(image, `ls -p ${dir}`)).trim().split('\n')) {
        const f = line.split('/');
        if (f.length < 7) continue;
        const [, ino, mode, uid, gid, name, size] = f;
        if (name === '.' || name === '..') continue;
        const st = await lstat(join(src, dir, name!)).catch(() => undefined);
        const perm = st ? (st.isSymbolicLink() ? 'l' : st.isDirectory() ? 'd' : '-') : 'd';
        // debugfs leaves the size of directories empty.
        const shownSize = size === '' ? ours.get(name!)?.split(' ')[4] : size;
        theirs.set(name!, `${ino} ${perm}${modeBits(parseInt(mode!, 8))} ${uid} ${gid} ${shownSize}`);
      }
      assert.deepEqual(ours, theirs, dir);
    }
    const link = await ok('ls', '-l', image, '/dir/rel-link');
    assert.match(link, /^lrwxrwxrwx .* \/dir\/rel-link -> \.\.\/hello\.txt\n$/);
  });

  test('ls -R -a lists every path', async () => {
    const out = await ok('ls', '-R', image, '/');
    const listed: string[] = [];
    let dir = '';
    for (const line of out.split('\n')) {
      if (line.endsWith(':')) dir = line.slice(0, -1);
      else if (line !== '') listed.push(`${dir === '/' ? '' : dir.slice(1) + '/'}${line}`);
    }
    const expected = [...(await hostPaths(src)), 'lost+found'].sort();
    assert.deepEqual(listed.sort(), expected);
    const all = await ok('ls', '-a', image, '/dir');
    assert.deepEqual(all.trim().split('\n'), ['.', '..', 'hard', 'nested', 'rel-link']);
  });

  test('cat reproduces file bytes', async () => {
    for (const p of ['hello.txt', 'dir/nested/deep.bin', 'empty', 'sparse', 'tail-hole', 'dir/rel-link', 'readonly-dir/inside']) {
      const r = await cli('cat', image, `/${p}`);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stdout.equals(await readFile(join(src, p))), p);
    }
    const both = await cli('cat', image, '/hello.txt', '/private');
    assert.equal(both.stdout.toString(), 'hello world\nsecret');
    const dir = await cli('cat', image, '/dir');
    assert.equal(dir.code, 1);
    assertOneLineError(dir, 'EISDIR');
  });

  test('stat matches debugfs stat', async () => {
    for (const p of ['/hello.txt', '/dir', '/setuid', '/sticky', '/slow-link', '/sparse']) {
      const json = JSON.parse(await ok('stat', '--json', image, p)) as Record<string, unknown>;
      const d = await debugfs(image, `stat ${p}`);
      const field = (re: RegExp) => re.exec(d)?.[1];
      assert.equal(json.ino, Number(field(/Inode: (\d+)/)), `${p} ino`);
      assert.equal(parseInt(json.modeOctal as string, 8), parseInt(field(/Mode:\s+(\d+)/)!, 8), `${p} mode`);
      assert.equal(json.nlink, Number(field(/Links: (\d+)/)), `${p} links`);
      assert.equal(json.size, Number(field(/Size: (\d+)/)), `${p} size`);
      assert.equal(json.blocks, Number(field(/Blockcount: (\d+)/)), `${p} blocks`);
      assert.equal(json.flags, parseInt(field(/Flags: (0x[0-9a-f]+)/)!, 16), `${p} flags`);
      assert.equal(json.uid, Number(field(/User:\s+(\d+)/)), `${p} uid`);
      assert.equal(BigInt(json.mtimeNs as string) / 1_000_000_000n, BigInt(parseInt(field(/mtime: (0x[0-9a-f]+)/)!, 16)), `${p} mtime`);
      const host = await lstat(join(src, p));
      assert.equal(BigInt(json.mtimeNs as string), BigInt(Math.floor(host.mtimeMs / 1000)) * 1_000_000_000n, `${p} mtime vs host`);
    }
    const text = await ok('stat', image, '/slow-link');
    assert.match(text, /File: \/slow-link -> x{300}\n/);
    assert.match(text, /Access: \(0777\/lrwxrwxrwx\)/);
    assert.match(text, /Modify: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{9} \+0000/);
  });

  test('get -r reproduces the tree', async () => {
    const dest = join(tmpDirPath('get'), 'out');
    const r = await cli('get', '-r', image, '/', dest);
    assert.equal(r.code, 0, r.stderr);
    const diffs = await compareTrees(src, dest, { ...MKE2FS_D_COMPARE, xattrs });
    assert.deepEqual(diffs, []);
    // Holes stay holes.
    const sparse = await stat(join(dest, 'sparse'));
    assert.ok(sparse.blocks * 512 < 64 * 1024, `sparse copy allocates ${sparse.blocks * 512} bytes`);
    const tail = await stat(join(dest, 'tail-hole'));
    assert.equal(tail.size, 2 * MiB);
    assert.ok(tail.blocks * 512 < 64 * 1024);
    // The symlink pointing outside was created, never followed.
    assert.equal((await lstat(join(dest, 'escape-link'))).isSymbolicLink(), true);
    assert.deepEqual(await readdir(outside()), []);
    assert.equal((await stat(join(dest, 'readonly-dir'))).mode & 0o7777, 0o555);
  });

  test('get of a subtree into an existing directory, and of one file', async () => {
    const host = tmpDirPath('get-sub');
    await ok('get', '-r', image, '/dir', host);
    assert.deepEqual(await compareTrees(join(src, 'dir'), join(host, 'dir'), { ...MKE2FS_D_COMPARE, hardLinks: false, root: true }), []);
    await ok('get', image, '/dir/rel-link', join(host, 'copy.txt'));
    assert.equal(await readFile(join(host, 'copy.txt'), 'utf8'), 'hello world\n');
    const again = await cli('get', image, '/hello.txt', join(host, 'copy.txt'));
    assert.equal(again.code, 1);
    assertOneLineError(again, 'EEXIST');
    await ok('get', '-f', image, '/private', join(host, 'copy.txt'));
    assert.equal(await readFile(join(host, 'copy.txt'), 'utf8'), 'secret');
    assert.equal((await stat(join(host, 'copy.txt'))).mode & 0o7777, 0o640);
    const dir = await cli('get', image, '/dir', join(host, 'nope'));
    assert.equal(dir.code, 1);
    assertOneLineError(dir, 'EISDIR');
  });
});

const asNobody = typeof process.getuid === 'function' && process.getuid() === 0 && haveCommand('setpriv');

describe('get as an unprivileged user', { skip: noE2fsprogs || (asNobody ? false : 'needs root and setpriv') }, () => {
  test('read-only and unsearchable directories are filled before their modes are set', async () => {
    const work = await mkdtemp(join(tmpdir(), 'ext4kit-cli-nobody-'));
    try {
      const src = join(work, 'src');
      await mkdir(join(src, 'locked/sub'), { recursive: true });
      await writeFile(join(src, 'locked/sub/f'), 'a');
      await mkdir(join(src, 'ro'));
      await writeFile(join(src, 'ro/g'), 'b');
      await chmod(join(src, 'locked'), 0o000);
      await chmod(join(src, 'ro'), 0o555);
      const image = await makeImage({ dir: src, blockSize: 1024, sizeBytes: 8 * MiB, out: join(work, 'i.img') });
      await chmod(image, 0o644);
      await chmod(work, 0o777);
      const dest = join(work, 'out');
      const r = await new Promise<number>((res, rej) => {
        const child = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, BIN, 'get', '-r', image, '/', dest], { stdio: 'inherit' });
        child.on('error', rej).on('close', (c) => res(c ?? -1));
      });
      assert.equal(r, 0);
      assert.equal((await lstat(join(dest, 'locked'))).mode & 0o7777, 0o000);
      assert.equal((await lstat(join(dest, 'ro'))).mode & 0o7777, 0o555);
      await chmod(join(dest, 'locked'), 0o700);
      assert.equal(await readFile(join(dest, 'locked/sub/f'), 'utf8'), 'a');
      assert.equal(await readFile(join(dest, 'ro/g'), 'utf8'), 'b');
      assert.equal((await lstat(join(dest, 'ro/g'))).uid, 65534);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});

describe('get keeps nanosecond times', { skip: noE2fsprogs }, () => {
  test('mtime and atime to the nanosecond', async () => {
    const src = tmpDirPath('ns-tree');
    await writeFile(join(src, 'f'), 'data');
    await mkdir(join(src, 'd'));
    const image = await makeImage({ dir: src, blockSize: 1024, sizeBytes: 8 * MiB });
    // i_mtime_extra / i_atime_extra: nanoseconds << 2 (epoch bits 0).
    await debugfs(image, ['sif /f mtime_extra ' + (123456789 << 2), 'sif /f atime_extra ' + (987654321 << 2), 'sif /d mtime_extra ' + (1 << 2)].join('\n'), { write: true });
    const want = JSON.parse(await ok('stat', '--json', image, '/f')) as { mtimeNs: string; atimeNs: string };
    assert.match(want.mtimeNs, /123456789$/);
    const dest = join(tmpDirPath('ns-out'), 'out');
    await ok('get', '-r', image, '/', dest);
    const f = await lstat(join(dest, 'f'), { bigint: true });
    const wantD = JSON.parse(await ok('stat', '--json', image, '/d')) as { mtimeNs: string };
    const d = await lstat(join(dest, 'd'), { bigint: true });
    if (haveCommand('touch')) {
      assert.equal(f.mtimeNs, BigInt(want.mtimeNs));
      assert.equal(f.atimeNs, BigInt(want.atimeNs));
      assert.equal(d.mtimeNs, BigInt(wantD.mtimeNs));
    } else {
      assert.equal(f.mtimeNs / 1000n, BigInt(want.mtimeNs) / 1000n);
    }
  });
});

describe('exit codes', { skip: noE2fsprogs }, () => {
  test('a corrupt superblock is exit 1 with one line', async () => {
    const image = await makeImage({ blockSize: 1024, sizeBytes: 8 * MiB });
    const fh = await open(image, 'r+');
    await fh.write(Buffer.from([0x00, 0x00]), 0, 2, 1024 + 0x38); // s_magic
    await fh.close();
    for (const args of [['info', image], ['ls', image], ['get', '-r', image, '/', join(tmpDirPath('corrupt'), 'out')]]) {
      const r = await cli(...args);
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
      assertOneLineError(r);
    }
  });

  test('a missing image or path is exit 1', async () => {
    const missing = await cli('info', join(tmpDirPath('missing'), 'none.img'));
    assert.equal(missing.code, 1);
    assertOneLineError(missing);
    const image = await makeImage({ blockSize: 1024, sizeBytes: 8 * MiB });
    const r = await cli('stat', image, '/no/such');
    assert.equal(r.code, 1);
    assertOneLineError(r, 'ENOENT');
  });

  test('usage errors are exit 2', async () => {
    for (const args of [[], ['frobnicate'], ['ls'], ['ls', '--bogus', 'x.img'], ['cat', 'x.img'], ['stat', 'a', 'b', 'c'], ['get', '-r', 'x.img'], ['info', '-x', 'x.img']]) {
      const r = await cli(...args);
      assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
      assert.match(r.stderr, /usage: ext4kit/);
    }
    const help = await cli('ls', '--help');
    assert.equal(help.code, 0);
    assert.match(help.stdout.toString(), /usage: ext4kit ls/);
  });
});

test('get -r sets modes the umask would narrow and owners other than its own', { skip: noE2fsprogs }, async () => {
  // get gives a new file its mode at creation when the umask keeps it whole, and chowns only
  // when the owner differs from the creator's: both shortcuts must leave the same result.
  const src = tmpDirPath('modes-src');
  const modes: Array<[string, number]> = [['m600', 0o600], ['m400', 0o400], ['m644', 0o644], ['m666', 0o666], ['m777', 0o777], ['m000', 0o000], ['m2755', 0o2755]];
  for (const [name, mode] of modes) {
    await writeFile(join(src, name), name);
    await chmod(join(src, name), mode);
  }
  const isRoot = process.getuid?.() === 0;
  if (isRoot) await chown(join(src, 'm600'), 1234, 5678);
  const image = await makeImage({ dir: src, blockSize: 1024, sizeBytes: 8 * MiB });
  const dest = tmpDirPath('modes-out');
  const old = process.umask(0o077);
  let r: CliResult;
  try {
    r = await cli('get', '-r', image, '/', dest);
  } finally {
    process.umask(old);
  }
  assert.equal(r.code, 0, r.stderr);
  for (const [name, mode] of modes) {
    const st = await lstat(join(dest, name));
    assert.equal((st.mode & 0o7777).toString(8), mode.toString(8), name);
    if (isRoot) assert.deepEqual([st.uid, st.gid], name === 'm600' ? [1234, 5678] : [0, 0], name);
  }
});

test('get -r into a directory with a default ACL still gives exact modes', { skip: noE2fsprogs || (haveCommand('setfattr') ? false : 'setfattr not installed (package attr)') }, async () => {
  const src = tmpDirPath('acl-src');
  await mkdir(join(src, 'sub'));
  for (const p of ['f644', 'sub/g644']) await writeFile(join(src, p), p);
  const image = await makeImage({ dir: src, blockSize: 1024, sizeBytes: 8 * MiB });
  const dest = tmpDirPath('acl-out');
  // Default ACL user::rwx group::r-x mask::r-x other::--- (binary xattr form): new files lose
  // their "other" bits whatever the umask says.
  const acl = '0x0200000001000700ffffffff04000500ffffffff10000500ffffffff20000000ffffffff';
  const set = await new Promise<number>((res) => {
    spawn('setfattr', ['-n', 'system.posix_acl_default', '-v', acl, dest]).on('close', (c) => res(c ?? 1)).on('error', () => res(1));
  });
  if (set !== 0) return; // the host filesystem has no POSIX ACLs: nothing to check
  const r = await cli('get', '-r', image, '/', dest);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(((await lstat(join(dest, 'f644'))).mode & 0o777).toString(8), '644');
  assert.equal(((await lstat(join(dest, 'sub', 'g644'))).mode & 0o777).toString(8), '644');
});

describe('get never writes outside DEST', { skip: noE2fsprogs }, () => {
  async function hostileImage(build: (src: string) => Promise<void>, features = '^metadata_csum'): Promise<string> {
    const src = tmpDirPath('hostile-src');
    await build(src);
    return makeImage({ dir: src, blockSize: 1024, sizeBytes: 8 * MiB, features });
  }

  async function getInto(image: string): Promise<{ r: CliResult; host: string; dest: string }> {
    const host = tmpDirPath('hostile-host');
    const dest = join(host, 'dest');
    const r = await cli('get', '-r', image, '/', dest);
    return { r, host, dest };
  }

  test("a directory entry named '../escape'", async () => {
    const image = await hostileImage(async (src) => {
      await mkdir(join(src, 'sub'));
      await writeFile(join(src, 'sub', 'zz_escape'), 'pwned');
    });
    await patchImage(image, 'zz_escape', '../escape');
    const { r, host, dest } = await getInto(image);
    assert.equal(r.code, 1, r.stderr);
    assertOneLineError(r, 'EUCLEAN');
    assert.deepEqual(await readdir(host), ['dest']);
    assert.equal(existsSync(join(dest, 'escape')), false);
  });

  test("an entry named 'a/b' and an empty-looking name", async () => {
    const image = await hostileImage(async (src) => {
      await writeFile(join(src, 'aXb'), 'x');
    });
    await patchImage(image, 'aXb', 'a/b');
    const { r, host } = await getInto(image);
    assert.equal(r.code, 1, r.stderr);
    assertOneLineError(r, 'EUCLEAN');
    assert.deepEqual(await readdir(host), ['dest']);
  });

  test('a symlink to outside followed by a directory of the same name', async () => {
    const outsideHost = tmpDirPath('victim');
    const image = await hostileImage(async (src) => {
      await symlink(outsideHost, join(src, 'link_out_1'));
      await mkdir(join(src, 'link_out_2'));
      await writeFile(join(src, 'link_out_2', 'planted'), 'pwned');
    });
    await patchImage(image, 'link_out_2', 'link_out_1');
    const { r, host } = await getInto(image);
    assert.notEqual(r.code, 0);
    assert.notEqual(r.code, 70, r.stderr);
    assert.deepEqual(await readdir(outsideHost), []);
    assert.deepEqual(await readdir(host), ['dest']);
  });

  test('a name listed twice in one directory is EUCLEAN', async () => {
    const image = await hostileImage(async (src) => {
      await writeFile(join(src, 'twin_1'), 'first');
      await writeFile(join(src, 'twin_2'), 'second');
    });
    await patchImage(image, 'twin_2', 'twin_1');
    const { r, host } = await getInto(image);
    assert.equal(r.code, 1, r.stderr);
    assertOneLineError(r, 'EUCLEAN');
    assert.match(r.stderr, /more than once/);
    assert.deepEqual(await readdir(host), ['dest']);
  });

  test('an entry pointing at a cleared (unused) inode is EUCLEAN', async () => {
    const image = await hostileImage(async (src) => {
      await mkdir(join(src, 'd'));
      await writeFile(join(src, 'd', 'gone'), 'x');
    });
    await debugfs(image, 'clri /d/gone', { write: true });
    const { r, host } = await getInto(image);
    assert.equal(r.code, 1, r.stderr);
    assertOneLineError(r, 'EUCLEAN');
    assert.match(r.stderr, /unused inode/);
    assert.deepEqual(await readdir(host), ['dest']);
  });

  test('a directory cycle is EUCLEAN', async () => {
    const image = await hostileImage(async (src) => {
      await mkdir(join(src, 'a/b'), { recursive: true });
    }, '');
    await debugfs(image, 'link /a /a/b/loop', { write: true });
    const { r, host } = await getInto(image);
    assert.equal(r.code, 1, r.stderr);
    assertOneLineError(r, 'EUCLEAN');
    assert.deepEqual(await readdir(host), ['dest']);
    const ls = await cli('ls', '-R', image, '/');
    assert.equal(ls.code, 1);
  });
});

function modeBits(mode: number): string {
  let s = '';
  const t = (shift: number, special: number, on: string, off: string) => {
    const b = (mode >> shift) & 7;
    const x = b & 1 ? (mode & special ? on : 'x') : mode & special ? off : '-';
    s += (b & 4 ? 'r' : '-') + (b & 2 ? 'w' : '-') + x;
  };
  t(6, 0o4000, 's', 'S');
  t(3, 0o2000, 's', 'S');
  t(0, 0o1000, 't', 'T');
  return s;
}
