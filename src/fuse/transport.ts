// The /dev/fuse connection: opens the device, mounts it with util-linux mount(8) (fd passed as
// the child's fd 3), and reads requests in a worker thread that blocks in read(2). Reads never
// use the libuv threadpool: a pending read there holds a pool thread, and a few of them starve
// the engine's own file I/O (a deadlock). Replies are one synchronous write(2) each.
import { openSync, closeSync, writeSync, writevSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { MessageChannel, type MessagePort, Worker } from 'node:worker_threads';
import { READ_BUFFER_BYTES } from './protocol.ts';

/**
 * Read loop run inside the worker (plain CommonJS, so it needs no TypeScript loader). Each
 * request is read into a full-size buffer from a small pool. A large WRITE travels to the main
 * thread in that very buffer ([buffer, length], transferred: no copy, no zero-filled
 * allocation per MiB), which comes back on the `back` port once the request is answered;
 * anything else is copied out into an exact-size buffer and the pool buffer is reused at once.
 * The loop blocks in read(2), so returned buffers are taken synchronously before each read.
 */
const READER_SOURCE = `
const { workerData, parentPort, receiveMessageOnPort } = require('node:worker_threads');
const { readSync } = require('node:fs');
const { fd, bufferBytes, back, lendFromBytes, poolMax } = workerData;
const spare = [];
for (;;) {
  for (let m; (m = receiveMessageOnPort(back)) !== undefined;) if (spare.length < poolMax) spare.push(m.message);
  const buf = spare.pop() ?? new ArrayBuffer(bufferBytes);
  const view = new Uint8Array(buf);
  let n;
  try {
    n = readSync(fd, view, 0, bufferBytes, null);
  } catch (e) {
    spare.push(buf);
    if (e.code === 'EINTR' || e.code === 'EAGAIN' || e.code === 'ENOENT') continue;
    parentPort.postMessage({ gone: String(e.code || e.message) });
    break;
  }
  // fuse_in_header.opcode 16 is WRITE.
  if (n >= lendFromBytes && view[4] === 16 && view[5] === 0 && view[6] === 0 && view[7] === 0) {
    parentPort.postMessage([buf, n], [buf]);
  } else {
    const ab = buf.slice(0, n);
    spare.push(buf);
    parentPort.postMessage(ab, [ab]);
  }
}
`;

/** WRITE requests from this size on are handed over in the reader's own buffer (see READER_SOURCE). */
const LEND_FROM_BYTES = 64 * 1024;
/** Pool buffers the reader keeps (each READ_BUFFER_BYTES). */
const POOL_MAX = 8;

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
  /** Where lent request buffers go back to the reader. */
  private back: MessagePort | undefined;
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

  /**
   * Starts reading; `onGone` is called once when the kernel ends the connection (unmount).
   * `onRequest` returns a promise that settles once the request was answered and its bytes are
   * no longer used (the buffer may then go back to the reader), or nothing if it is done with them.
   */
  start(onRequest: (req: Uint8Array) => Promise<unknown> | undefined, onGone: (why: string) => void): void {
    // A read before mount(2) attached the fd fails with EPERM: start only after mount succeeded.
    const back = new MessageChannel();
    this.back = back.port1;
    const w = new Worker(READER_SOURCE, {
      eval: true,
      workerData: { fd: this.fd, bufferBytes: READ_BUFFER_BYTES, back: back.port2, lendFromBytes: LEND_FROM_BYTES, poolMax: POOL_MAX },
      transferList: [back.port2],
    });
    this.worker = w;
    w.on('message', (m: ArrayBuffer | [ArrayBuffer, number] | { gone: string }) => {
      if (m instanceof ArrayBuffer) void onRequest(new Uint8Array(m));
      else if (Array.isArray(m)) {
        const [buf, n] = m;
        const giveBack = () => { if (!this.closed) back.port1.postMessage(buf, [buf]); };
        const done = onRequest(new Uint8Array(buf, 0, n));
        if (done) done.then(giveBack, giveBack);
        else giveBack();
      } else onGone(m.gone);
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
    this.back?.close();
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
