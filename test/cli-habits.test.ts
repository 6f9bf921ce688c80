// The command line's habits that users bring from cp, cat, mke2fs and debugfs: a refused mkfs
// never touches the file; SRC/. and '-' for stdin/stdout; '--' ends options; clear errors for a
// missing image or a directory; --json; IMAGE?offset=N; mke2fs sizes; `check`; examples in help.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, open, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanupTemp, tmpDirPath, tmpImagePath } from './support/images.ts';
import { debugfs, e2fsck, haveE2fsprogs } from './support/oracles.ts';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'ext4kit.js');
const skip = haveE2fsprogs() ? false : 'e2fsprogs not installed (Debian package e2fsprogs)';
const MiB = 1024 * 1024;

interface CliResult { code: number; stdout: Buffer; stderr: string }

function cli(args: readonly string[], stdin?: Buffer): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    // A command that refuses before reading its input closes the pipe: EPIPE here is fine.
    if (stdin) child.stdin!.on('error', () => undefined).end(stdin);
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr });
    });
  });
}

async function ok(...args: string[]): Promise<Buffer> {
  const r = await cli(args);
  assert.equal(r.code, 0, `ext4kit ${args.join(' ')} exit ${r.code}: ${r.stderr}`);
  return r.stdout;
}

function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (i * 7 + seed + (i >>> 9)) & 0xff;
  return b;
}

async function fsckClean(image: string): Promise<void> {
  const r = await e2fsck(image);
  assert.equal(r.exitCode, 0, r.output);
}

after(cleanupTemp);

describe('mkfs never harms a file it refuses to format', { skip }, () => {
  test('a failed mkfs leaves an existing file byte-identical', async () => {
    const keep = tmpImagePath('keep');
    const before = pattern(3 * MiB, 1);
    await writeFile(keep, before);
    const refusals: Array<[string[], number, RegExp]> = [
      [['-O', 'nosuchfeature'], 1, /EINVAL: .*nosuchfeature/],
      [['-b', '3000'], 1, /EINVAL: .*block size 3000/],
      [['-L', 'a-label-longer-than-16'], 1, /EINVAL/],
      [['-U', 'not-a-uuid'], 1, /EINVAL/],
      [['-C', '16384'], 1, /EINVAL: .*bigalloc/],
      [['-d', '/nonexistent-dir-for-ext4kit'], 1, /ENOENT/],
      [['-t', 'xfs'], 2, /usage: ext4kit mkfs/],
    ];
    for (const [opts, code, msg] of refusals) {
      const r = await cli(['mkfs', ...opts, keep, '16M']);
      assert.equal(r.code, code, `${opts.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, msg);
      assert.ok(before.equals(await readFile(keep)), `mkfs ${opts.join(' ')} changed the file`);
    }
    // Too small for a filesystem: refused by the layout, still before the file is opened.
    const small = await cli(['mkfs', keep, '8k']);
    assert.equal(small.code, 1, small.stderr);
    assert.ok(before.equals(await readFile(keep)), 'a too-small mkfs changed the file');
    // A refused mkfs of a new path creates nothing.
    const fresh = tmpImagePath('never-created');
    assert.equal((await cli(['mkfs', '-O', 'nosuchfeature', fresh, '16M'])).code, 1);
    await assert.rejects(stat(fresh), { code: 'ENOENT' });
  });

  test('SIZE is read as mke2fs reads it: units, sectors, and plain numbers as blocks', async () => {
    const cases: Array<[string[], string, number]> = [
      [[], '8m', 8 * MiB],
      [[], '8192', 8 * MiB], // 1 KiB blocks without -b
      [['-b', '4096'], '2048', 8 * MiB], // blocks of -b
      [[], '16384s', 8 * MiB], // 512-byte sectors
      [[], '8MiB', 8 * MiB],
    ];
    for (const [opts, size, bytes] of cases) {
      const img = tmpImagePath('size');
      await ok('mkfs', '-q', ...opts, img, size);
      assert.equal((await stat(img)).size, bytes, `mkfs ${opts.join(' ')} ${size}`);
      await fsckClean(img);
    }
  });

  test('mkfs --json prints the summary as JSON', async () => {
    const img = tmpImagePath('json');
    const j = JSON.parse((await ok('mkfs', '--json', '-L', 'jsonlabel', img, '16M')).toString()) as Record<string, unknown>;
    assert.equal(j.label, 'jsonlabel');
    assert.equal(j.image, img);
    assert.equal((j.blocksCount as number) * (j.blockSize as number), 16 * MiB);
  });
});

describe('files and streams', { skip }, () => {
  test('put -r SRC/. DEST copies the contents (cp convention); put -r SRC DEST copies SRC itself', async () => {
    const src = join(tmpDirPath('put-src'), 'src');
    await mkdir(join(src, 'sub'), { recursive: true });
    await writeFile(join(src, 'a.txt'), 'A');
    await writeFile(join(src, 'sub', 'b.txt'), 'B');
    const img = tmpImagePath('put-dot');
    await ok('mkfs', '-q', img, '16M');
    await ok('put', '-r', img, `${src}/.`, '/');
    const root = JSON.parse((await ok('ls', '--json', img, '/')).toString()) as Array<{ name: string }>;
    assert.deepEqual(root.map((e) => e.name).sort(), ['a.txt', 'lost+found', 'sub']);
    assert.equal((await ok('cat', img, '/sub/b.txt')).toString(), 'B');
    await ok('mkdir', img, '/into');
    await ok('put', '-r', img, src, '/into');
    assert.equal((await ok('cat', img, '/into/src/a.txt')).toString(), 'A');
    await fsckClean(img);
  });

  test("'-': put from stdin to a path, get to stdout", async () => {
    const img = tmpImagePath('stdio');
    await ok('mkfs', '-q', img, '32M');
    const data = pattern(5 * MiB + 17, 2);
    const put = await cli(['put', img, '-', '/from-stdin.bin'], data);
    assert.equal(put.code, 0, put.stderr);
    const got = await ok('get', img, '/from-stdin.bin', '-');
    assert.ok(data.equals(got), 'get - returned different bytes');
    // Replaces an existing file, as cp does.
    assert.equal((await cli(['put', img, '-', '/from-stdin.bin'], Buffer.from('short'))).code, 0);
    assert.equal((await ok('get', img, '/from-stdin.bin', '-')).toString(), 'short');
    await fsckClean(img);
    assert.equal(await debugfs(img, 'cat /from-stdin.bin'), 'short');
    // IMAGE '-': an image piped in, for commands that only read.
    const piped = await cli(['cat', '-', '/from-stdin.bin'], await readFile(img));
    assert.equal(piped.code, 0, piped.stderr);
    assert.equal(piped.stdout.toString(), 'short');
    const writes = await cli(['rm', '-', '/from-stdin.bin'], await readFile(img));
    assert.equal(writes.code, 2);
    assert.match(writes.stderr, /can only be read/);
    // A directory cannot be written to stdout.
    const dir = await cli(['get', img, '/lost+found', '-']);
    assert.equal(dir.code, 1);
    assert.match(dir.stderr, /EISDIR/);
  });

  test("'--' ends options: rm IMG -- -h removes a file named -h", async () => {
    const img = tmpImagePath('dashdash');
    await ok('mkfs', '-q', img, '16M');
    assert.equal((await cli(['put', img, '-', '/-h'], Buffer.from('x'))).code, 0);
    const r = await cli(['rm', img, '--', '-h']);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout.toString(), /usage/);
    const names = (await ok('ls', img, '/')).toString().trim().split('\n');
    assert.deepEqual(names, ['lost+found']);
    await fsckClean(img);
  });

  test('a missing image is ENOENT and a directory is EISDIR, naming the path', async () => {
    const dir = tmpDirPath('not-an-image');
    const missing = join(dir, 'missing.img');
    for (const cmd of [['ls'], ['info'], ['cat', '/x'], ['put', '/etc/hostname', '/h'], ['check']]) {
      const [name, ...rest] = cmd as [string, ...string[]];
      const a = await cli([name, dir, ...rest]);
      assert.equal(a.code, 1, `${name} on a directory: ${a.stderr}`);
      assert.equal(a.stderr, `ext4kit: EISDIR: illegal operation on a directory, open '${dir}'\n`);
      const b = await cli([name, missing, ...rest]);
      assert.equal(b.code, 1, `${name} on a missing image: ${b.stderr}`);
      assert.equal(b.stderr, `ext4kit: ENOENT: no such file or directory, open '${missing}'\n`);
    }
  });

  test('--json for ls, stat and info', async () => {
    const img = tmpImagePath('json2');
    await ok('mkfs', '-q', img, '16M');
    assert.equal((await cli(['put', img, '-', '/f'], Buffer.from('12345'))).code, 0);
    await ok('ln', '-s', img, 'f', '/link');
    const ls = JSON.parse((await ok('ls', '--json', img, '/')).toString()) as Array<Record<string, unknown>>;
    const f = ls.find((e) => e.name === 'f')!;
    assert.equal(f.size, 5);
    assert.equal(f.type, 'regular file');
    assert.equal(ls.find((e) => e.name === 'link')!.target, 'f');
    const st = JSON.parse((await ok('stat', '--json', img, '/f')).toString()) as Record<string, unknown>;
    assert.equal(st.ino, f.ino);
    const info = JSON.parse((await ok('info', '--json', img)).toString()) as Record<string, unknown>;
    assert.equal((info.blocksCount as number) * (info.blockSize as number), 16 * MiB);
  });
});

describe('a filesystem inside a disk image (IMAGE?offset=N, --offset)', { skip }, () => {
  test('mkfs, put, ls and get through an offset; the bytes before it are untouched', async () => {
    const disk = tmpImagePath('disk');
    const head = pattern(MiB, 3);
    await writeFile(disk, head);
    const fh = await open(disk, 'r+');
    await fh.truncate(MiB + 16 * MiB);
    await fh.close();
    await ok('mkfs', '-q', '--offset', '1M', disk);
    await ok('mkdir', `${disk}?offset=1048576`, '/part');
    assert.equal((await cli(['put', '--offset', '2048s', disk, '-', '/part/x'], Buffer.from('in a partition'))).code, 0);
    assert.equal((await ok('get', `${disk}?offset=1M`, '/part/x', '-')).toString(), 'in a partition');
    assert.deepEqual((await ok('ls', `${disk}?offset=1M`, '/')).toString().trim().split('\n'), ['lost+found', 'part']);
    const all = await readFile(disk);
    assert.ok(head.equals(all.subarray(0, MiB)), 'the bytes before the partition changed');
    const part = tmpImagePath('part');
    await writeFile(part, all.subarray(MiB));
    await fsckClean(part);
    assert.equal(await debugfs(part, 'cat /part/x'), 'in a partition');
    // Without the offset there is no filesystem at the start of the disk.
    const bare = await cli(['ls', disk]);
    assert.equal(bare.code, 1);
    const both = await cli(['ls', '--offset', '1M', `${disk}?offset=1M`]);
    assert.equal(both.code, 2);
  });
});

describe('ext4kit check', { skip }, () => {
  test('passes a clean image without writing to it, says what it does not check, and fails a corrupt one', async () => {
    const img = tmpImagePath('check');
    await ok('mkfs', '-q', img, '16M');
    assert.equal((await cli(['put', img, '-', '/file'], pattern(300_000, 4))).code, 0);
    const before = await readFile(img);
    const r = await cli(['check', img]);
    assert.equal(r.code, 0, r.stderr + r.stdout.toString());
    const out = r.stdout.toString();
    assert.match(out, /: OK\n/);
    assert.match(out, /1 files \(300000 bytes\)/);
    assert.match(out, /not checked here \(run e2fsck -fn\)/);
    assert.ok(before.equals(await readFile(img)), 'check wrote to the image');
    // Break the file's extent header magic (i_block at byte 40 of its inode).
    const imap = await debugfs(img, 'imap /file');
    const m = /located at block (\d+), offset 0x([0-9a-f]+)/.exec(imap);
    assert.ok(m, imap);
    const info = JSON.parse((await ok('info', '--json', img)).toString()) as { blockSize: number };
    const at = Number(m[1]) * info.blockSize + parseInt(m[2]!, 16) + 40;
    const bad = Buffer.from(before);
    assert.equal(bad.readUInt16LE(at), 0xf30a);
    bad.writeUInt16LE(0x1234, at);
    await writeFile(img, bad);
    const f = await cli(['check', '--json', img]);
    assert.equal(f.code, 1, f.stdout.toString());
    const j = JSON.parse(f.stdout.toString()) as { ok: boolean; failure: string };
    assert.equal(j.ok, false);
    assert.match(j.failure, /^(EUCLEAN|EBADMSG): /);
  });
});

test('every command has --help with an example', async () => {
  const top = (await ok('--help')).toString();
  const names = [...top.matchAll(/^ {2}([a-z]+) /gm)].map((m) => m[1]!);
  assert.ok(names.length >= 14 && names.includes('check') && names.includes('mkfs'), top);
  for (const name of names) {
    const r = await cli([name, '--help']);
    assert.equal(r.code, 0, `${name} --help: ${r.stderr}`);
    assert.match(r.stdout.toString(), /^usage: ext4kit /, name);
    assert.match(r.stdout.toString(), /\nexample:\n {2}ext4kit /, `${name} --help has no example`);
  }
});
