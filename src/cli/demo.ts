// `ext4kit demo`: generates a small example tree in a temporary directory (directories, text
// files, a 2 MiB binary file, a symlink, a hard link, an xattr), builds a bigalloc image from it
// with `mkfs -d`, then shows `info`, `ls -l -R /` and, when e2fsprogs is installed, e2fsck's verdict.
import { spawn } from 'node:child_process';
import { link, lutimes, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ext4 } from '../node.ts';
import { parseArgs } from './args.ts';
import { formatInfo } from './info.ts';
import { listPath } from './ls.ts';
import { run as mkfsRun } from './mkfs.ts';

export const DEMO_USAGE = `usage: ext4kit demo [--keep]
  generates an example tree, builds a 64 MiB bigalloc image (16 KiB clusters) from it with
  'ext4kit mkfs -d', shows its summary and listing, and checks it with e2fsck -fn when installed
  --keep  keep the temporary directory (tree and image) and print its path
example:
  ext4kit demo --keep`;

/** 2023-11-14 22:13:20 UTC: every example entry gets this mtime, so the listing is the same each run. */
const T0 = 1_700_000_000;

/** Deterministic bytes (xorshift32), so that the image is the same from run to run. */
function pseudoRandom(n: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i + 4 <= n; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out.writeUInt32LE(x, i);
  }
  return out;
}

function tryRun(cmd: string, args: string[], cwd: string): Promise<{ code: number; stdout: string } | undefined> {
  return new Promise((resolvePromise) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let stdout = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.resume();
    child.on('error', () => resolvePromise(undefined));
    child.on('close', (code) => resolvePromise({ code: code ?? -1, stdout }));
  });
}

/** The example tree; returns whether the xattr could be set on this host. */
async function makeExampleTree(root: string): Promise<boolean> {
  const dirs = ['etc', 'home/ada/notes', 'srv/www', 'var/log'];
  for (const d of dirs) await mkdir(join(root, d), { recursive: true });
  const text: Record<string, string> = {
    'etc/hostname': 'ext4kit-demo\n',
    'etc/motd': 'Built by ext4kit mkfs -d: pure TypeScript, no root, no loop devices.\n',
    'home/ada/notes/todo.txt': '- try bigalloc\n- run e2fsck -fn\n- copy it back out with ext4kit get -r\n',
    'srv/www/index.html': '<!doctype html>\n<title>ext4kit</title>\n<p>Hello from an ext4 image.</p>\n',
    'var/log/boot.log': Array.from({ length: 40 }, (_, i) => `[${String(i).padStart(4, ' ')}.000] step ${i} ok\n`).join(''),
  };
  for (const [p, body] of Object.entries(text)) await writeFile(join(root, p), body, { mode: 0o644 });
  await writeFile(join(root, 'srv/www/blob.bin'), pseudoRandom(2 * 1024 * 1024, 0x5eed), { mode: 0o644 });
  await symlink('notes/todo.txt', join(root, 'home/ada/todo'));
  await link(join(root, 'etc/hostname'), join(root, 'srv/www/hostname'));
  const xattr = await tryRun('setfattr', ['-n', 'user.comment', '-v', 'set on the host, kept by mkfs -d', join(root, 'srv/www/index.html')], root);
  // Times last, children before parents (creating an entry changes its directory's mtime).
  const t = T0;
  for (const p of [...Object.keys(text), 'srv/www/blob.bin']) await utimes(join(root, p), t, t);
  await lutimes(join(root, 'home/ada/todo'), t, t);
  for (const d of ['home/ada/notes', 'home/ada', 'home', 'srv/www', 'srv', 'var/log', 'var', 'etc', '.']) await utimes(join(root, d), t, t);
  return xattr?.code === 0;
}

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { flags: ['keep'], maxPositionals: 0, usage: DEMO_USAGE });
  const write = (s: string) => process.stdout.write(s);
  const dir = await mkdtemp(join(tmpdir(), 'ext4kit-demo-'));
  const cwd = process.cwd();
  try {
    // Relative names keep the printed commands and mkfs's summary short.
    process.chdir(dir);
    const hasXattr = await makeExampleTree(join(dir, 'tree'));
    const mkfsArgs = ['-O', 'bigalloc', '-C', '16384', '-L', 'ext4kit-demo', '-d', 'tree', 'demo.img', '64M'];
    write(`# an example tree: 4 directories, text files, a 2 MiB binary file, a symlink, a hard link${hasXattr ? ', a user.* xattr' : ''}\n`);
    write(`$ ext4kit mkfs ${mkfsArgs.join(' ')}\n`);
    const code = await mkfsRun(mkfsArgs);
    if (code !== 0) return code;
    const fs = await Ext4.open('demo.img', { readOnly: true });
    try {
      write('\n$ ext4kit info demo.img\n');
      write(formatInfo(fs.info()));
      write('\n$ ext4kit ls -l -R demo.img /\n');
      await listPath(fs, '/', { long: true, recursive: true, all: false, inode: false }, write);
      if (hasXattr) {
        const value = new TextDecoder().decode(await fs.getxattr('/srv/www/index.html', 'user.comment'));
        write(`\n# xattrs of /srv/www/index.html, read back from the image:\n  user.comment="${value}"\n`);
      }
    } finally {
      await fs.close();
    }
    const fsck = await tryRun('e2fsck', ['-fn', 'demo.img'], dir);
    if (fsck) {
      const verdict = fsck.stdout.trim().split('\n').pop() ?? '';
      write(`\n$ e2fsck -fn demo.img\n${verdict}\n(exit ${fsck.code}${fsck.code === 0 ? ': clean' : ': PROBLEMS FOUND'})\n`);
      if (fsck.code !== 0) return 1;
    } else {
      write('\n(e2fsck not installed: install e2fsprogs to have the image checked)\n');
    }
    if (args.flags.has('keep')) write(`\ntree and image kept in ${dir}\n`);
  } finally {
    process.chdir(cwd);
    if (!args.flags.has('keep')) await rm(dir, { recursive: true, force: true });
  }
  return 0;
}
