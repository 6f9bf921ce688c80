// node:fs on a directory as a differential backend: the kernel's ext4 on a loop mount, or any
// mounted filesystem (a FUSE mount of ext4kit later). Node has no xattr or fallocate calls;
// those (and utimes, for exact times) go to one long-lived python3 helper (Linux syscalls through its os module and ctypes).
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import * as fsp from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import type { Backend, BackendHandle, StatFsLike, StatLike, XattrFlags } from './backend.ts';

const HELPER = String.raw`
import sys, os, json, errno, ctypes, base64
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
def run(r):
    op, p = r['op'], r['path']
    if op == 'setxattr':
        os.setxattr(p, r['name'], base64.b64decode(r['value']), r['flags'], follow_symlinks=False); return None
    if op == 'getxattr':
        return base64.b64encode(os.getxattr(p, r['name'], follow_symlinks=False)).decode()
    if op == 'listxattr':
        return os.listxattr(p, follow_symlinks=False)
    if op == 'removexattr':
        os.removexattr(p, r['name'], follow_symlinks=False); return None
    if op == 'utimes':
        ns = r['sec'] * 1000000000
        os.utime(p, ns=(ns, ns)); return None
    if op == 'syncfs':
        fd = os.open(p, os.O_RDONLY)
        try:
            if libc.syncfs(fd) != 0:
                e = ctypes.get_errno(); raise OSError(e, os.strerror(e))
        finally: os.close(fd)
        return None
    if op == 'fallocate':
        fd = os.open(p, os.O_RDWR)
        try:
            if libc.fallocate(fd, r['mode'], r['offset'], r['len']) != 0:
                e = ctypes.get_errno(); raise OSError(e, os.strerror(e))
        finally: os.close(fd)
        return None
    raise ValueError(op)
for line in sys.stdin:
    r = json.loads(line)
    try: out = {'ok': True, 'value': run(r)}
    except OSError as e: out = {'ok': False, 'code': errno.errorcode.get(e.errno, 'EIO')}
    sys.stdout.write(json.dumps(out) + '\n'); sys.stdout.flush()
`;

export function havePython3(): boolean {
  return spawnSync('python3', ['-c', 'import ctypes, os; os.setxattr'], { stdio: 'ignore' }).status === 0;
}

class Helper {
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly waiting: Array<(line: string) => void> = [];
  private chain: Promise<unknown> = Promise.resolve();
  constructor() {
    this.proc = spawn('python3', ['-u', '-c', HELPER], { stdio: ['pipe', 'pipe', 'pipe'] });
    createInterface({ input: this.proc.stdout }).on('line', (l) => this.waiting.shift()?.(l));
    this.proc.stderr.on('data', (d: Buffer) => process.stderr.write(`[xattr helper] ${d.toString()}`));
    // A helper that dies fails the calls waiting on it instead of hanging them.
    this.proc.on('exit', (code) => { for (const w of this.waiting.splice(0)) w(JSON.stringify({ ok: false, code: `EHELPER${code ?? ''}` })); });
  }
  /** One request at a time, in order. */
  call(req: Record<string, unknown>): Promise<unknown> {
    const next = this.chain.then(() => new Promise<unknown>((resolve, reject) => {
      this.waiting.push((line) => {
        const r = JSON.parse(line) as { ok: boolean; value?: unknown; code?: string };
        if (r.ok) resolve(r.value ?? undefined);
        else reject(Object.assign(new Error(`${r.code}: ${String(req['op'])} ${String(req['path'])}`), { code: r.code }));
      });
      this.proc.stdin.write(JSON.stringify(req) + '\n');
    }));
    this.chain = next.catch(() => undefined);
    return next;
  }
  close(): void { this.proc.stdin.end(); }
}

const toStat = (s: BigIntStats): StatLike => ({
  mode: Number(s.mode), nlink: Number(s.nlink), uid: Number(s.uid), gid: Number(s.gid),
  size: Number(s.size), blocks: Number(s.blocks), mtimeNs: s.mtimeNs,
});

/** Paths of the sequence are absolute inside `root`; node:fs paths are root + path (a trailing '/' kept). */
export class NodeFsBackend implements Backend {
  private readonly helper = new Helper();
  constructor(readonly root: string, readonly name = 'kernel') {}
  private p(path: string): string { return this.root + (path.startsWith('/') ? path : '/' + path); }

  async writeFile(path: string, data: Uint8Array, flag: string, mode: number): Promise<void> { await fsp.writeFile(this.p(path), data, { flag, mode }); }
  async appendFile(path: string, data: Uint8Array): Promise<void> { await fsp.appendFile(this.p(path), data); }
  async readFile(path: string): Promise<Uint8Array> { return new Uint8Array(await fsp.readFile(this.p(path))); }
  async open(path: string, flags: string, mode: number): Promise<BackendHandle> {
    const fh = await fsp.open(this.p(path), flags, mode);
    return {
      write: async (data, position) => (await fh.write(data, 0, data.length, position)).bytesWritten,
      read: async (len, position) => {
        const buf = new Uint8Array(len);
        const { bytesRead } = await fh.read(buf, 0, len, position);
        return buf.subarray(0, bytesRead);
      },
      truncate: async (len) => { await fh.truncate(len); },
      stat: async () => toStat(await fh.stat({ bigint: true })),
      close: async () => { await fh.close(); },
    };
  }
  async truncate(path: string, len: number): Promise<void> { await fsp.truncate(this.p(path), len); }
  async fallocate(path: string, mode: number, offset: number, len: number): Promise<void> {
    await this.helper.call({ op: 'fallocate', path: this.p(path), mode, offset, len });
  }
  async mkdir(path: string, mode: number): Promise<void> { await fsp.mkdir(this.p(path), { mode }); }
  async rmdir(path: string): Promise<void> { await fsp.rmdir(this.p(path)); }
  async unlink(path: string): Promise<void> { await fsp.unlink(this.p(path)); }
  async rename(from: string, to: string): Promise<void> { await fsp.rename(this.p(from), this.p(to)); }
  async link(existing: string, path: string): Promise<void> { await fsp.link(this.p(existing), this.p(path)); }
  async symlink(target: string, path: string): Promise<void> { await fsp.symlink(target, this.p(path)); }
  async readlink(path: string): Promise<string> { return fsp.readlink(this.p(path)); }
  async chmod(path: string, mode: number): Promise<void> { await fsp.chmod(this.p(path), mode); }
  async chown(path: string, uid: number, gid: number): Promise<void> { await fsp.chown(this.p(path), uid, gid); }
  async lchown(path: string, uid: number, gid: number): Promise<void> { await fsp.lchown(this.p(path), uid, gid); }
  // Through the helper: Node turns seconds past 2^31 or before -2^31 into other times.
  async utimes(path: string, sec: number): Promise<void> { await this.helper.call({ op: 'utimes', path: this.p(path), sec }); }
  async setxattr(path: string, name: string, value: Uint8Array, flags: XattrFlags): Promise<void> {
    await this.helper.call({ op: 'setxattr', path: this.p(path), name, value: Buffer.from(value).toString('base64'), flags });
  }
  async getxattr(path: string, name: string): Promise<Uint8Array> {
    return new Uint8Array(Buffer.from(await this.helper.call({ op: 'getxattr', path: this.p(path), name }) as string, 'base64'));
  }
  async listxattr(path: string): Promise<string[]> { return await this.helper.call({ op: 'listxattr', path: this.p(path) }) as string[]; }
  async removexattr(path: string, name: string): Promise<void> { await this.helper.call({ op: 'removexattr', path: this.p(path), name }); }
  async readdir(path: string): Promise<string[]> { return fsp.readdir(this.p(path)); }
  async stat(path: string): Promise<StatLike> { return toStat(await fsp.stat(this.p(path), { bigint: true })); }
  async lstat(path: string): Promise<StatLike> { return toStat(await fsp.lstat(this.p(path), { bigint: true })); }
  async statfs(): Promise<StatFsLike> {
    const s = await fsp.statfs(this.root);
    return { bsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree };
  }
  /**
   * syncfs(2) on the mount: every delayed block allocated and written. Without it, stat can
   * catch the kernel mid-writeback, when st_blocks briefly counts one block short.
   */
  async sync(): Promise<void> { await this.helper.call({ op: 'syncfs', path: this.root }); }
  close(): void { this.helper.close(); }
}

