// ext4kit's API as a differential backend. `broken` switches on deliberately wrong variants,
// used only to show that the runner catches them (test/differential.test.ts).
import type { Ext4 } from '../../../src/node.ts';
import type { Ext4Stats } from '../../../src/api/types.ts';
import type { Backend, BackendHandle, StatFsLike, StatLike, XattrFlags } from './backend.ts';

export interface BrokenVariants {
  /** appendFile picks the offset before the write is awaited (the bug of issue 12): parallel appends overwrite each other. */
  appendOffsetEarly?: boolean;
  /** setxattr silently accepts an empty name after the prefix (`user.`), as before issue 12. */
  acceptEmptyXattrName?: boolean;
}

const toStat = (s: Ext4Stats): StatLike => ({ mode: s.mode, nlink: s.nlink, uid: s.uid, gid: s.gid, size: s.size, blocks: s.blocks, mtimeNs: s.mtimeNs });

export class Ext4kitBackend implements Backend {
  readonly name = 'ext4kit';
  constructor(readonly fs: Ext4, private readonly broken: BrokenVariants = {}) {}

  async writeFile(path: string, data: Uint8Array, flag: string, mode: number): Promise<void> { await this.fs.writeFile(path, data, { flag, mode }); }
  async appendFile(path: string, data: Uint8Array): Promise<void> {
    if (!this.broken.appendOffsetEarly) { await this.fs.appendFile(path, data); return; }
    const fh = await this.fs.open(path, 'a');
    try {
      const at = (await fh.stat()).size;
      await new Promise((r) => setTimeout(r, 1));
      const w = await this.fs.open(path, 'r+');
      try { await w.write(data, 0, data.length, at); } finally { await w.close(); }
    } finally { await fh.close(); }
  }
  async readFile(path: string): Promise<Uint8Array> { return await this.fs.readFile(path) as Uint8Array; }
  async open(path: string, flags: string, mode: number): Promise<BackendHandle> {
    const fh = await this.fs.open(path, flags, mode);
    return {
      write: async (data, position) => (await fh.write(data, 0, data.length, position)).bytesWritten,
      read: async (len, position) => {
        const buf = new Uint8Array(len);
        const { bytesRead } = await fh.read(buf, 0, len, position);
        return buf.subarray(0, bytesRead);
      },
      truncate: async (len) => { await fh.truncate(len); },
      stat: async () => toStat(await fh.stat()),
      close: async () => { await fh.close(); },
    };
  }
  async truncate(path: string, len: number): Promise<void> { await this.fs.truncate(path, len); }
  async fallocate(path: string, mode: number, offset: number, len: number): Promise<void> {
    const fh = await this.fs.open(path, 'r+');
    try { await this.fs.fallocate(fh, mode, offset, len); } finally { await fh.close(); }
  }
  async mkdir(path: string, mode: number): Promise<void> { await this.fs.mkdir(path, { mode }); }
  async rmdir(path: string): Promise<void> { await this.fs.rmdir(path); }
  async unlink(path: string): Promise<void> { await this.fs.unlink(path); }
  async rename(from: string, to: string): Promise<void> { await this.fs.rename(from, to); }
  async link(existing: string, path: string): Promise<void> { await this.fs.link(existing, path); }
  async symlink(target: string, path: string): Promise<void> { await this.fs.symlink(target, path); }
  async readlink(path: string): Promise<string> { return this.fs.readlink(path); }
  async chmod(path: string, mode: number): Promise<void> { await this.fs.chmod(path, mode); }
  async chown(path: string, uid: number, gid: number): Promise<void> { await this.fs.chown(path, uid, gid); }
  async lchown(path: string, uid: number, gid: number): Promise<void> { await this.fs.lchown(path, uid, gid); }
  async utimes(path: string, sec: number): Promise<void> { await this.fs.utimes(path, sec, sec); }
  async setxattr(path: string, name: string, value: Uint8Array, flags: XattrFlags): Promise<void> {
    if (this.broken.acceptEmptyXattrName && /^[a-z]+\.$/.test(name)) { await this.fs.lstat(path); return; }
    await this.fs.setxattr(path, name, value, { create: flags === 1, replace: flags === 2 });
  }
  async getxattr(path: string, name: string): Promise<Uint8Array> { return this.fs.getxattr(path, name); }
  async listxattr(path: string): Promise<string[]> { return this.fs.listxattr(path); }
  async removexattr(path: string, name: string): Promise<void> { await this.fs.removexattr(path, name); }
  async readdir(path: string): Promise<string[]> { return this.fs.readdir(path); }
  async stat(path: string): Promise<StatLike> { return toStat(await this.fs.stat(path)); }
  async lstat(path: string): Promise<StatLike> { return toStat(await this.fs.lstat(path)); }
  async statfs(): Promise<StatFsLike> {
    const s = await this.fs.statfs();
    return { bsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree };
  }
  async sync(): Promise<void> { await this.fs.sync(); }
}
