// One FileHandle for every mount, like node:fs's: its open flags decide what it may do (EBADF
// otherwise); reads go through the mount's one read path, writes through fs/file.
import { posixError } from '../errors/ext4-error.ts';
import { isDirMode } from '../format/inode.ts';
import { encodeUtf8 } from '../util/bytes.ts';
import type { Mount, Node } from '../fs/mount.ts';
import type { OpenInode } from '../fs/inode-cache.ts';
import type { Credentials } from '../fs/ialloc.ts';
import { fallocate, truncate, write } from '../fs/file.ts';
import { fsync } from '../fs/fsync.ts';
import type { ParsedFlags } from './open-flags.ts';
import { fallocateMode, asyncDispose } from './args.ts';
import type { Ext4FileHandle, Ext4Stats, FallocateMode, ReadResult, WriteResult } from './types.ts';

/** Largest file readFile returns (a Uint8Array's limit in practice). */
export const READ_FILE_LIMIT = 0x7fffffff;

export class FileHandle implements Ext4FileHandle {
  private position: number;
  private open = true;
  constructor(
    private readonly mount: Mount,
    private readonly node: Node,
    private readonly flags: ParsedFlags,
    readonly fd: number,
    private readonly path: string,
    private readonly cred: Credentials,
    private readonly statOf: (node: Node) => Ext4Stats,
  ) {
    // O_APPEND starts at 0 like any open: only writes go to the end ('a+' reads from the start).
    this.position = 0;
    mount.fs?.icache.hold(node as OpenInode);
  }

  private check(syscall: string, need?: 'read' | 'write'): void {
    if (!this.open) throw posixError('EBADF', syscall, this.path);
    this.mount.checkOpen();
    if (need && !this.flags[need]) throw posixError('EBADF', syscall, this.path);
    if (need === 'read' && isDirMode(this.node.inode.mode)) throw posixError('EISDIR', syscall, this.path);
  }

  private get oi(): OpenInode { return this.node as OpenInode; }

  async read(buffer: Uint8Array, offset = 0, length = buffer.length - offset, position: number | null = null): Promise<ReadResult> {
    this.check('read', 'read');
    if (offset < 0 || length < 0 || offset + length > buffer.length) throw posixError('EINVAL', 'read', this.path);
    const at = position ?? this.position;
    const bytes = await this.mount.read(this.node, at, length);
    buffer.set(bytes, offset);
    if (position === null || position === undefined) this.position += bytes.length;
    return { bytesRead: bytes.length, buffer };
  }

  async readFile(): Promise<Uint8Array> {
    this.check('read', 'read');
    if (this.node.inode.sizeBytes > READ_FILE_LIMIT) throw posixError('EFBIG', 'read', this.path);
    return this.mount.read(this.node, 0, this.node.inode.sizeBytes);
  }

  async write(data: Uint8Array | string, offset?: number, length?: number, position: number | null = null): Promise<WriteResult> {
    this.check('write', 'write');
    const fs = this.mount.writable('write', this.path);
    const bytes = typeof data === 'string' ? encodeUtf8(data) : data.subarray(offset ?? 0, (offset ?? 0) + (length ?? data.length - (offset ?? 0)));
    // pwrite never moves the position, even with O_APPEND (it then writes at the end).
    const moves = position === null || position === undefined;
    // With O_APPEND every write goes to the end, chosen under the inode lock; otherwise the
    // cursor advances before the write is awaited, so concurrent writes do not overlap.
    const pos = this.flags.append ? 'append' : moves ? this.position : position;
    const before = this.position;
    if (!this.flags.append && moves) this.position += bytes.length;
    let at: number;
    try {
      at = await write(fs, this.oi, pos, bytes, this.cred);
    } catch (e) {
      // A failed write (ENOSPC, EFBIG) does not move the position.
      if (!this.flags.append && moves && this.position === before + bytes.length) this.position = before;
      throw e;
    }
    if (this.flags.append && moves) this.position = at + bytes.length;
    return { bytesWritten: bytes.length, buffer: bytes };
  }

  async truncate(len = 0): Promise<void> {
    this.check('ftruncate');
    if (!this.flags.write) throw posixError(this.mount.readOnly ? 'EBADF' : 'EINVAL', 'ftruncate', this.path);
    await truncate(this.mount.writable('ftruncate', this.path), this.oi, len);
  }

  async sync(): Promise<void> {
    this.check('fsync');
    if (this.mount.fs) await fsync(this.mount.fs, this.oi);
  }

  async datasync(): Promise<void> {
    this.check('fdatasync');
    if (this.mount.fs) await fsync(this.mount.fs, this.oi);
  }

  async stat(): Promise<Ext4Stats> {
    this.check('fstat');
    return this.statOf(this.node);
  }

  async fallocate(mode: FallocateMode | number, offset: number, length: number): Promise<void> {
    this.check('fallocate', 'write');
    await fallocate(this.mount.writable('fallocate', this.path), this.oi, fallocateMode(mode), offset, length, this.cred);
  }

  async close(): Promise<void> {
    if (!this.open) return;
    this.open = false;
    if (this.mount.fs) await this.mount.fs.release(this.oi);
  }

  async [asyncDispose](): Promise<void> { await this.close(); }
}
