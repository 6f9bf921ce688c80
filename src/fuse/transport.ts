// The /dev/fuse connection: opens the device, mounts it with util-linux mount(8) (fd passed as
// the child's fd 3), and reads requests. Reads never use the libuv threadpool: a pending read
// there holds a pool thread, and a few of them starve the engine's own file I/O (a deadlock).
// Replies are one synchronous write(2) each.
//
// Who reads (one reader at a time, handed over through a shared word):
// - The main thread itself, blocking in read(2), whenever no request is in flight and the host
//   has nothing pending (`busy()`): a request that the engine answers without waiting for I/O
//   (most of them: image I/O is synchronous) then costs no thread hand-off at all. Each
//   iteration goes through one setImmediate turn, so timers and I/O callbacks still run.
// - The reader worker, as soon as a request has to wait (fsync, a lock) or the host is busy:
//   it blocks in read(2) and posts each request to the main thread, so requests are served
//   concurrently and race in the engine's locks. After each request it stops and the main
//   thread decides again.
// - While the main thread is blocked in read(2) and nothing arrives for IDLE_POKE_MS, the
//   worker asks it to let go: it writes a FUSE_NOTIFY_RETRIEVE of zero bytes of a regular file
//   the kernel holds (`pokeNode()`; the kernel refuses it for directories), to which the kernel
//   answers with a NOTIFY_REPLY request (dropped here) that ends the read. No system call on
//   the mountpoint is involved, so the poke never makes umount(8) see the mount busy. While no
//   such file is known the main thread does not read at all. Only if the kernel refuses the
//   retrieve (the inode was just evicted: its FORGET is then on its way and wakes the read
//   anyway), a statfs(2) of the mountpoint (from the threadpool) is sent as well. An idle mount
//   thus leaves the main thread's event loop free (signals, timers, the host's own work).
import { openSync, closeSync, readSync, writeSync, writevSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { resolve as resolvePath } from 'node:path';
import { MessageChannel, type MessagePort, Worker } from 'node:worker_threads';
import { OP, READ_BUFFER_BYTES } from './protocol.ts';
import { encodeNotifyRetrieve } from './header.ts';

/** Slots of the shared control words. */
const CTL = {
  /** 1: the worker may read (main is not reading and will not until the worker posted a request). */
  GRANT: 0,
  /** 1 while the main thread is inside read(2). */
  MAIN_READING: 1,
  /** Requests the main thread has read (the worker's idle detector). */
  MAIN_SEQ: 2,
  /** 1: the worker asked the main thread to stop reading (it was idle). */
  YIELD: 3,
  /** A regular file's node id the kernel holds (0: none known), for the idle poke. */
  POKE_NODE: 4,
} as const;

/**
 * Read loop run inside the worker (plain CommonJS, so it needs no TypeScript loader). Each
 * request is read into a full-size buffer from a small pool. A large WRITE travels to the main
 * thread in that very buffer ([buffer, length], transferred: no copy, no zero-filled
 * allocation per MiB), which comes back on the `back` port once the request is answered;
 * anything else is copied out into an exact-size buffer and the pool buffer is reused at once.
 * The loop blocks in read(2) (only while granted) or in Atomics.wait, so returned buffers are
 * taken synchronously before each read.
 */
const READER_SOURCE = `
const { workerData, parentPort, receiveMessageOnPort } = require('node:worker_threads');
const { readSync, writeSync, statfs } = require('node:fs');
const { fd, bufferBytes, back, lendFromBytes, poolMax, ctl, idlePokeMs, sticky, poke, mountpoint } = workerData;
const pokeView = new DataView(poke.buffer, poke.byteOffset, poke.byteLength);
const c = new Int32Array(ctl);
const GRANT = ${CTL.GRANT}, MAIN_READING = ${CTL.MAIN_READING}, MAIN_SEQ = ${CTL.MAIN_SEQ}, YIELD = ${CTL.YIELD}, POKE_NODE = ${CTL.POKE_NODE};
const spare = [];
for (;;) {
  while (Atomics.load(c, GRANT) === 0) {
    const seq = Atomics.load(c, MAIN_SEQ);
    if (Atomics.wait(c, GRANT, 0, idlePokeMs) !== 'timed-out') continue;
    if (Atomics.load(c, MAIN_READING) === 1 && Atomics.load(c, MAIN_SEQ) === seq && Atomics.load(c, YIELD) === 0) {
      // The main thread has waited in read(2) for a while: make the kernel queue a request
      // (a zero-byte retrieve of a regular file the kernel holds, see the file comment; failing
      // that, a statfs(2) of the mountpoint sent from the threadpool), then it lets go.
      Atomics.store(c, YIELD, 1);
      const node = Atomics.load(c, POKE_NODE) >>> 0;
      let sent = false;
      if (node !== 0) {
        pokeView.setBigUint64(24, BigInt(node), true);
        try { writeSync(fd, poke); sent = true; } catch {}
      }
      if (!sent) statfs(mountpoint, () => undefined);
    }
  }
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
  if (!sticky) Atomics.store(c, GRANT, 0);
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
/** Requests the main thread may read and answer synchronously in one event-loop turn (see decide). */
const SYNC_BATCH = 16;
/** How long the main thread may sit in read(2) with nothing arriving before it is woken. */
const IDLE_POKE_MS = 10;

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
  /**
   * Let the main thread read requests itself while it is idle (default; the environment
   * variable EXT4KIT_FUSE_WORKER_READS=1 turns it off: every request then comes from the worker).
   */
  mainThreadReads?: boolean;
}

export class FuseDevice {
  private worker: Worker | undefined;
  /** Where lent request buffers go back to the reader. */
  private back: MessagePort | undefined;
  private closed = false;
  private readonly ctl = new Int32Array(new SharedArrayBuffer(5 * 4));
  /** The main thread's read buffer: used only while no request is in flight, so never shared. */
  private mainBuf: Uint8Array | undefined;
  /** Requests handed to onRequest whose promise has not settled. */
  private inFlight = 0;
  private loopQueued = false;
  private onRequest: (req: Uint8Array) => Promise<unknown> | undefined = () => undefined;
  private onGone: (why: string) => void = () => undefined;
  private busy: () => boolean = () => false;
  private pokeNode: () => number = () => 0;
  private gone = false;
  /** Requests read by each side (diagnostics and tests). */
  readonly readsBy = { main: 0, worker: 0 };
  private constructor(readonly fd: number, readonly mountpoint: string, private readonly mainReads: boolean) {}

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
    return new FuseDevice(fd, resolvePath(mountpoint), opts.mainThreadReads ?? process.env.EXT4KIT_FUSE_WORKER_READS !== '1');
  }

  /**
   * Starts reading; `onGone` is called once when the kernel ends the connection (unmount).
   * `onRequest` returns a promise that settles once the request was answered and its bytes are
   * no longer used (the buffer may then be reused), or nothing if it is done with them.
   * `busy()` says the host has work of its own pending (the main thread must not block in
   * read(2) then); after it turns false, call `kick()`. `pokeNode()` names a regular file the
   * kernel holds a lookup of (0: none), see the file comment.
   */
  start(onRequest: (req: Uint8Array) => Promise<unknown> | undefined, onGone: (why: string) => void, busy?: () => boolean, pokeNode?: () => number): void {
    // A read before mount(2) attached the fd fails with EPERM: start only after mount succeeded.
    this.onRequest = onRequest;
    this.onGone = onGone;
    if (busy) this.busy = busy;
    if (pokeNode) this.pokeNode = pokeNode;
    const back = new MessageChannel();
    this.back = back.port1;
    const w = new Worker(READER_SOURCE, {
      eval: true,
      workerData: {
        fd: this.fd, bufferBytes: READ_BUFFER_BYTES, back: back.port2, lendFromBytes: LEND_FROM_BYTES, poolMax: POOL_MAX,
        ctl: this.ctl.buffer, idlePokeMs: IDLE_POKE_MS, sticky: !this.mainReads, poke: encodeNotifyRetrieve(0, 0), mountpoint: this.mountpoint,
      },
      transferList: [back.port2],
    });
    this.worker = w;
    w.on('message', (m: ArrayBuffer | [ArrayBuffer, number] | { gone: string }) => {
      if (m instanceof ArrayBuffer) {
        this.readsBy.worker++;
        this.take(new Uint8Array(m));
      } else if (Array.isArray(m)) {
        this.readsBy.worker++;
        const [buf, n] = m;
        const giveBack = () => { if (!this.closed) back.port1.postMessage(buf, [buf]); };
        const done = this.take(new Uint8Array(buf, 0, n));
        if (done) done.then(giveBack, giveBack);
        else giveBack();
      } else this.ended(m.gone);
      this.next();
    });
    w.on('error', (e) => this.ended(`reader failed: ${e.message}`));
    this.next();
  }

  /** The host's busy() turned false: the main thread may take over reading again. */
  kick(): void { this.next(); }

  private ended(why: string): void {
    if (this.gone) return;
    this.gone = true;
    this.onGone(why);
  }

  /** Hands one request to onRequest, counting it in flight until its promise settles. */
  private take(req: Uint8Array): Promise<unknown> | undefined {
    // The answer to the idle poke: nothing to do (it takes no reply).
    if (req.length >= 8 && req[4] === OP.NOTIFY_REPLY && req[5] === 0 && req[6] === 0 && req[7] === 0) return undefined;
    const p = this.onRequest(req);
    if (!p) return undefined;
    this.inFlight++;
    p.then(this.settled, this.settled);
    return p;
  }

  /** One request taken by take() was answered (one shared callback, no closure per request). */
  private readonly settled = (): void => {
    this.inFlight--;
    if (this.inFlight === 0) this.next();
  };

  private get workerGranted(): boolean { return Atomics.load(this.ctl, CTL.GRANT) === 1; }

  private grantWorker(): void {
    Atomics.store(this.ctl, CTL.GRANT, 1);
    Atomics.notify(this.ctl, CTL.GRANT);
  }

  /** Schedules the decision of who reads next, once the microtasks of what was just taken ran. */
  private next(): void {
    if (this.closed || this.gone || this.workerGranted || this.loopQueued) return;
    this.loopQueued = true;
    setImmediate(this.decide);
  }

  /**
   * Grants the worker the next read, or reads it on this thread (see the file comment). A
   * request answered synchronously (no promise: most SETATTR, GETATTR, GETXATTR, RELEASE) is
   * followed by the next read in the same turn, up to SYNC_BATCH of them: an event-loop turn
   * (and its epoll_wait) less per request, while timers and I/O callbacks still run between batches.
   */
  private readonly decide = (): void => {
    this.loopQueued = false;
    for (let i = 0; i < SYNC_BATCH; i++) if (!this.readOne()) return;
    this.next();
  };

  /** One turn of decide: true when a request was read and answered synchronously, so the main thread may read again. */
  private readOne(): boolean {
    if (this.closed || this.gone || this.workerGranted) return false;
    if (Atomics.load(this.ctl, CTL.YIELD) === 1) {
      Atomics.store(this.ctl, CTL.YIELD, 0);
      this.grantWorker();
      return false;
    }
    // Without a regular file to poke with, the main thread does not block (see the file comment).
    const pokeNode = this.mainReads ? this.pokeNode() : 0;
    if (pokeNode === 0 || this.inFlight > 0 || this.busy()) { this.grantWorker(); return false; }
    this.mainBuf ??= new Uint8Array(READ_BUFFER_BYTES);
    const buf = this.mainBuf;
    let n: number;
    Atomics.store(this.ctl, CTL.POKE_NODE, pokeNode | 0);
    Atomics.store(this.ctl, CTL.MAIN_READING, 1);
    try {
      n = readSync(this.fd, buf, 0, buf.length, null);
    } catch (e) {
      Atomics.store(this.ctl, CTL.MAIN_READING, 0);
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EINTR' || code === 'EAGAIN' || code === 'ENOENT') { this.next(); return false; }
      this.ended(String(code ?? (e as Error).message));
      return false;
    }
    Atomics.store(this.ctl, CTL.MAIN_READING, 0);
    Atomics.add(this.ctl, CTL.MAIN_SEQ, 1);
    this.readsBy.main++;
    // Large WRITEs are used in place (the buffer is read again only once nothing is in flight);
    // anything else is copied out, as handlers may keep pieces of small requests (names).
    const isWrite = buf[4] === 16 && buf[5] === 0 && buf[6] === 0 && buf[7] === 0;
    const pending = this.take(n >= LEND_FROM_BYTES && isWrite ? buf.subarray(0, n) : buf.slice(0, n));
    if (pending === undefined && this.inFlight === 0) return true;
    this.next();
    return false;
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
