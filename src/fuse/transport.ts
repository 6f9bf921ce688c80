// The /dev/fuse connection: opens the device, mounts it with util-linux mount(8) (fd passed as
// the child's fd 3), and reads requests in a worker thread that blocks in read(2). Reads never
// use the libuv threadpool: a pending read there holds a pool thread, and a few of them starve
// the engine's own file I/O (a deadlock). Replies are one synchronous write(2) each.
import { openSync, closeSync, writeSync, writevSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { READ_BUFFER_BYTES } from './protocol.ts';

/** Read loop run inside the worker (plain CommonJS, so it needs no TypeScript loader). */
const READER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads');
const { readSync } = require('node:fs');
const { fd, bufferBytes } = workerData;
const buf = Buffer.allocUnsafeSlow(bufferBytes);
for (;;) {
  let n;
  try {
    n = readSync(fd, buf, 0, bufferBytes, null);
  } catch (e) {
    if (e.code === 'EINTR' || e.code === 'EAGAIN' || e.code === 'ENOENT') continue;
    parentPort.postMessage({ gone: String(e.code || e.message) });
    break;
  }
  const ab = new ArrayBuffer(n);
  new Uint8Array(ab).set(buf.subarray(0, n));
  parentPort.postMessage(ab, [ab]);
}
`;

export class MountError extends Error {
  override readonly name = 'MountError';
  constructor(readonly code: string, message: string) { super(message); }
}

export interface DeviceMountOptions {
  /** Shown as the mount source (the image path). */
  source: string;
  readOnly: boolean;
  allowOther: boolean;
  /** Owner of the mount (user_id/group_id). */
  uid: number;
  gid: number;
}

export class FuseDevice {
  private worker: Worker | undefined;
  private closed = false;
  private constructor(readonly fd: number, readonly mountpoint: string) {}

  /** Opens /dev/fuse and mounts it on `mountpoint`. */
  static async mount(mountpoint: string, opts: DeviceMountOptions): Promise<FuseDevice> {
    let fd: number;
    try {
      fd = openSync('/dev/fuse', 'r+');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
      if (code === 'ENOENT' || code === 'ENODEV' || code === 'ENXIO') throw new MountError(code, '/dev/fuse is missing: load the fuse module (modprobe fuse) or give the container /dev/fuse');
      if (code === 'EACCES' || code === 'EPERM') throw new MountError(code, '/dev/fuse is not accessible: mounting needs root (or CAP_SYS_ADMIN and access to /dev/fuse)');
      throw new MountError(code, `cannot open /dev/fuse: ${(e as Error).message}`);
    }
    const o = [`fd=3`, `rootmode=40000`, `user_id=${opts.uid}`, `group_id=${opts.gid}`, 'default_permissions'];
    if (opts.allowOther) o.push('allow_other');
    if (opts.readOnly) o.push('ro');
    // -i: do not run the mount.fuse3 helper (it would treat the source as a program).
    const args = ['-i', '-t', 'fuse.ext4kit', '-o', o.join(','), opts.source.replace(/[,\s]/g, '_'), mountpoint];
    let stderr = '';
    const code = await new Promise<number>((resolve) => {
      const child = spawn('mount', args, { stdio: ['ignore', 'ignore', 'pipe', fd] });
      child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
      child.on('error', (e) => { stderr += e.message; resolve(127); });
      child.on('exit', (c) => resolve(c ?? 1));
    });
    if (code !== 0) {
      closeSync(fd);
      throw new MountError('EMOUNT', `mount of ${mountpoint} failed (${code}): ${stderr.trim()}`);
    }
    return new FuseDevice(fd, mountpoint);
  }

  /** Starts reading; `onGone` is called once when the kernel ends the connection (unmount). */
  start(onRequest: (req: Uint8Array) => void, onGone: (why: string) => void): void {
    // A read before mount(2) attached the fd fails with EPERM: start only after mount succeeded.
    const w = new Worker(READER_SOURCE, { eval: true, workerData: { fd: this.fd, bufferBytes: READ_BUFFER_BYTES } });
    this.worker = w;
    w.on('message', (m: ArrayBuffer | { gone: string }) => {
      if (m instanceof ArrayBuffer) onRequest(new Uint8Array(m));
      else onGone(m.gone);
    });
    w.on('error', (e) => onGone(`reader failed: ${e.message}`));
  }

  /**
   * Sends one reply (with `payload`: `bytes` is its header, both go out in one writev, which
   * /dev/fuse takes whole or not at all). ENOENT means the request was interrupted: nothing to do.
   */
  reply(bytes: Uint8Array, payload?: Uint8Array): void {
    if (this.closed) return;
    try {
      if (payload) writevSync(this.fd, [bytes, payload]);
      else writeSync(this.fd, bytes);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENODEV') throw e;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    void this.worker?.terminate();
    try { closeSync(this.fd); } catch { /* already gone */ }
  }
}

/** Asks the kernel to detach the mount (lazily: open files keep it until closed). */
export async function unmountPath(mountpoint: string, lazy = true): Promise<{ ok: boolean; stderr: string }> {
  return new Promise((resolve) => {
    let stderr = '';
    const child = spawn('umount', lazy ? ['-l', mountpoint] : [mountpoint], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('error', (e) => resolve({ ok: false, stderr: e.message }));
    child.on('exit', (c) => resolve({ ok: c === 0, stderr }));
  });
}
