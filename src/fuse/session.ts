// One FUSE connection's request loop: decodes each request, runs its handler concurrently with
// the others (handlers are async; the engine's locks order what must be ordered), and replies
// once. A failing request gets its errno; a corrupt structure is reported once on the log and
// turns the mount read-only (like ext4's errors=remount-ro) without ending the server.
import { decodeRequestHeader, encodeNotifyInvalAttr, encodeReply, encodeReplyHeader, replyInto, type RequestHeader } from './header.ts';
import { OP, OUT_HEADER_BYTES, opName, INIT, FATTR, FOPEN, FALLOC, FUSE_KERNEL_VERSION, FUSE_KERNEL_MINOR_VERSION, MAX_WRITE_BYTES, MAX_PAGES, RENAME_NOREPLACE, RENAME_EXCHANGE, WRITE_KILL_SUIDGID, ERRNO } from './protocol.ts';
import { decodeGetattrIn, decodeSetattrIn, encodeAttrOut, encodeEntryOut, entryOutInto, ENTRY_OUT_BYTES, type NodeAttr, type SetattrIn, type Validity } from './attr.ts';
import { decodeInitIn, encodeInitOut } from './init.ts';
import { encodeDirents, direntBytes, type DirentOut } from './dirent.ts';
import { decodeAccessIn, decodeCreateIn, decodeFallocateIn, decodeFh, decodeFsyncIn, decodeLseekIn, decodeOpenIn, decodeReadIn, decodeWriteIn, encodeLseekOut, encodeOpenOut, encodeWriteOut, OPEN_OUT_BYTES } from './io.ts';
import { decodeBatchForgetIn, decodeForgetIn, decodeLinkIn, decodeMkdirIn, decodeMknodIn, decodeName, decodeRenameIn, decodeSymlinkIn } from './names.ts';
import { decodeGetxattrIn, decodeSetxattrIn, encodeStatfsOut, encodeXattrSizeOut, xattrNameError } from './xattr.ts';
import { errnoOf, FuseErrno } from './errno.ts';
import type { Caller, FuseBackend, AttrChanges } from './backend.ts';
import { decodeUtf8, encodeUtf8 } from '../util/bytes.ts';
import { Writer } from './wire.ts';
import { callerInGroup, killedMode } from './killpriv.ts';

const ROOT_NODE = 1;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
/** Payloads from this size on are sent by reference (writev) rather than copied behind the header. */
const ZERO_COPY_REPLY_BYTES = 16 * 1024;

const textOf = (b: Uint8Array): string => decodeUtf8(b);

/** A reply payload: bytes, undefined for an empty reply, null when the handler already replied. */
type Reply = Uint8Array | undefined | null;

/** An xattr name as ext4 would take it, or the errno it would give. */
function xattrName(b: Uint8Array): string {
  const name = textOf(b);
  const bad = xattrNameError(name);
  if (bad) throw new FuseErrno(bad, `xattr name '${name}'`);
  return name;
}

/** Opcodes that change the filesystem: refused with EROFS once a corrupt structure was met. */
const MUTATING = new Set<number>([OP.SETATTR, OP.SYMLINK, OP.MKNOD, OP.MKDIR, OP.UNLINK, OP.RMDIR, OP.RENAME, OP.RENAME2,
  OP.LINK, OP.WRITE, OP.SETXATTR, OP.REMOVEXATTR, OP.CREATE, OP.FALLOCATE]);

export interface SessionOptions {
  /** Lines for the operator (stderr in the CLI). */
  log?: (line: string) => void;
  /** Attribute and entry cache lifetime given to the kernel. */
  cacheSeconds?: number;
  /**
   * `send` is done with the bytes when it returns (it writes them synchronously): small replies
   * are then built in one reused buffer instead of a new one per request.
   */
  sendConsumesBytes?: boolean;
}

/** Replies up to this size (header included) go through the reused buffer (sendConsumesBytes). */
const SCRATCH_REPLY_BYTES = 4096;

export interface SessionStats {
  requests: number; inFlight: number; maxInFlight: number; failed: number; mutations: number;
  /** Requests taken, by opcode name (what the kernel asked for: the first thing to look at when profiling). */
  byOpcode: Record<string, number>;
}

export class FuseSession {
  readonly stats: SessionStats = { requests: 0, inFlight: 0, maxInFlight: 0, failed: 0, mutations: 0, byOpcode: {} };
  /** Requests taken and not answered yet, and who waits for that count to reach 0 (drain). */
  private pendingCount = 0;
  private drained: Array<() => void> = [];
  private readonly settle = (): void => {
    if (--this.pendingCount > 0 || this.drained.length === 0) return;
    const waiting = this.drained;
    this.drained = [];
    for (const resolve of waiting) resolve();
  };
  private readonly reported = new Set<string>();
  private degraded = false;
  private readonly valid: Validity;
  private readonly log: (line: string) => void;
  private destroyed = false;
  private lastFileNode = 0;
  /** The reused reply buffer (only with sendConsumesBytes). */
  private readonly scratch: DataView | undefined;
  private initDone!: () => void;
  /** Resolves once INIT has been answered (the mount is usable from then on). */
  readonly initialized = new Promise<void>((resolve) => { this.initDone = resolve; });

  /** `send(reply)`, or `send(header, payload)`: one reply, written with one write(2)/writev(2). */
  constructor(private readonly backend: FuseBackend, private readonly send: (reply: Uint8Array, payload?: Uint8Array) => void, opts: SessionOptions = {}) {
    this.log = opts.log ?? (() => undefined);
    this.valid = { seconds: opts.cacheSeconds ?? 1, nanoseconds: 0 };
    if (opts.sendConsumesBytes) this.scratch = new DataView(new ArrayBuffer(SCRATCH_REPLY_BYTES));
  }

  private ino(nodeId: number): number { return nodeId === ROOT_NODE ? this.backend.rootIno : nodeId; }
  private node(ino: number): number { return ino === this.backend.rootIno ? ROOT_NODE : ino; }

  /**
   * Takes one raw request; its reply is sent when its handler finishes. The returned promise
   * settles then (never rejects): `raw` is not used after that.
   */
  handle(raw: Uint8Array): Promise<void> | undefined {
    let h: RequestHeader;
    try {
      h = decodeRequestHeader(raw);
    } catch (e) {
      this.reportOnce('header', `malformed request ignored: ${(e as Error).message}`);
      return undefined;
    }
    this.stats.requests++;
    const name = opName(h.opcode);
    this.stats.byOpcode[name] = (this.stats.byOpcode[name] ?? 0) + 1;
    const body = raw.subarray(40, h.lenBytes);
    const p = this.run(h, body);
    // Answered already (the handler needed no await): nothing to track, `raw` is free.
    if (p === undefined) return undefined;
    // One counter and a shared callback: no Set entry or closure per request (settled either way).
    this.pendingCount++;
    void p.then(this.settle, this.settle);
    return p;
  }

  /** Resolves when every request taken so far has been answered. */
  async drain(): Promise<void> {
    while (this.pendingCount > 0) await new Promise<void>((resolve) => { this.drained.push(resolve); });
  }

  get isDestroyed(): boolean { return this.destroyed; }

  /** A corrupt structure was met: no more changes are accepted. */
  get isDegraded(): boolean { return this.degraded; }

  private ok(h: RequestHeader, payload?: Uint8Array): void {
    // Large payloads (READ data) go out behind their header in one writev instead of being copied.
    if (payload && payload.length >= ZERO_COPY_REPLY_BYTES) this.send(encodeReplyHeader(h.unique, payload.length), payload);
    else if (this.scratch && (payload?.length ?? 0) <= SCRATCH_REPLY_BYTES - OUT_HEADER_BYTES) this.send(replyInto(this.scratch, h.unique, 0, payload));
    else this.send(encodeReply(h.unique, 0, payload));
  }
  private fail(h: RequestHeader, errno: number): void {
    this.send(this.scratch ? replyInto(this.scratch, h.unique, errno) : encodeReply(h.unique, errno));
  }

  private reportOnce(key: string, line: string): void {
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.log(line);
  }

  // run and dispatch are split into small functions on purpose: an async function's suspended
  // state holds all of its registers, so one big async switch allocated ~800 bytes per request.
  private run(h: RequestHeader, body: Uint8Array): Promise<void> | undefined {
    // FORGET and INTERRUPT get no reply.
    if (h.opcode === OP.FORGET || h.opcode === OP.BATCH_FORGET || h.opcode === OP.INTERRUPT) return this.forget(h, body);
    return this.serve(h, body);
  }

  private async forget(h: RequestHeader, body: Uint8Array): Promise<void> {
    try {
      if (h.opcode === OP.FORGET) {
        if (h.nodeId === this.lastFileNode) this.lastFileNode = 0;
        await this.backend.forget(this.ino(h.nodeId), decodeForgetIn(body));
      }
      if (h.opcode === OP.BATCH_FORGET) {
        for (const f of decodeBatchForgetIn(body)) {
          if (f.nodeId === this.lastFileNode) this.lastFileNode = 0;
          await this.backend.forget(this.ino(f.nodeId), f.nlookup);
        }
      }
    } catch (e) {
      this.reportOnce(`forget:${String(e)}`, `ext4kit mount: FORGET failed: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /**
   * Runs one request. A handler that needed no await (most SETATTR, GETATTR, GETXATTR and
   * RELEASE requests: the inode is in memory and a journal handle was free) has replied when
   * this returns undefined, without any promise; otherwise the promise settles once it replied.
   */
  private serve(h: RequestHeader, body: Uint8Array): Promise<void> | undefined {
    this.stats.inFlight++;
    if (this.stats.inFlight > this.stats.maxInFlight) this.stats.maxInFlight = this.stats.inFlight;
    try {
      if (MUTATING.has(h.opcode)) {
        if (this.degraded) throw new FuseErrno('EROFS', 'remounted read-only after a corrupt structure');
        this.stats.mutations++;
      }
      const r = this.dispatch(h, body);
      if (r instanceof Promise) return this.finish(h, r);
      this.replied(h, r);
    } catch (e) {
      this.failed(h, e);
    }
    this.stats.inFlight--;
    return undefined;
  }

  private async finish(h: RequestHeader, p: Promise<Reply>): Promise<void> {
    try {
      this.replied(h, await p);
    } catch (e) {
      this.failed(h, e);
    } finally {
      this.stats.inFlight--;
    }
  }

  private replied(h: RequestHeader, payload: Reply): void {
    if (payload !== null) this.ok(h, payload);
    if (h.opcode === OP.INIT) this.initDone();
  }

  private failed(h: RequestHeader, e: unknown): void {
    const { errno, report } = errnoOf(e);
    this.stats.failed++;
    if (report === 'corrupt') {
      this.degraded = true;
      this.reportOnce(`c:${(e as Error).message}`, `ext4kit mount: ${opName(h.opcode)} on inode ${this.ino(h.nodeId)} failed: ${(e as Error).message}; the mount is read-only from now on (run e2fsck)`);
    } else if (report === 'bug') {
      this.reportOnce(`b:${opName(h.opcode)}:${(e as Error)?.message}`, `ext4kit mount: internal error in ${opName(h.opcode)} (a bug; please report it): ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    }
    this.fail(h, errno);
  }

  private entry(e: { attr: NodeAttr; generation: number }): Uint8Array {
    const node = this.node(e.attr.ino);
    if ((e.attr.mode & S_IFMT) === S_IFREG) this.lastFileNode = node;
    return encodeEntryOut(node, e.generation, e.attr, this.valid, this.valid);
  }

  /**
   * A regular file whose entry the kernel was given and has not forgotten since (0: none):
   * the transport's idle poke retrieves zero bytes of it (see transport.ts).
   */
  get pokeNodeId(): number { return this.lastFileNode; }

  private caller(h: RequestHeader): Caller { return { uid: h.uid, gid: h.gid, pid: h.pid }; }

  /**
   * Runs one request; returns the reply payload (undefined: empty reply; null: already replied),
   * or a promise of it. Not async itself: each case that waits is a small async method.
   */
  private dispatch(h: RequestHeader, body: Uint8Array): Reply | Promise<Reply> {
    const b = this.backend;
    const ino = this.ino(h.nodeId);
    switch (h.opcode) {
      case OP.INIT: return this.init(body);
      case OP.DESTROY: this.destroyed = true; return undefined;
      case OP.LOOKUP: return this.lookup(ino, decodeName(body));
      case OP.GETATTR: decodeGetattrIn(body); return this.getattr(ino);
      case OP.SETATTR: return this.setattr(h, ino, body);
      case OP.READLINK: return b.readlink(ino);
      case OP.SYMLINK: {
        const s = decodeSymlinkIn(body);
        return this.entryOf(b.symlink(ino, s.nameBytes, s.target, this.caller(h)));
      }
      case OP.MKNOD: {
        const m = decodeMknodIn(body);
        return this.entryOf(b.mknod(ino, m.nameBytes, m.mode, m.rdev, this.caller(h)));
      }
      case OP.MKDIR: {
        const m = decodeMkdirIn(body);
        return this.entryOf(b.mkdir(ino, m.nameBytes, m.mode, this.caller(h)));
      }
      case OP.UNLINK: return this.empty(b.unlink(ino, decodeName(body)));
      case OP.RMDIR: return this.empty(b.rmdir(ino, decodeName(body)));
      case OP.RENAME: case OP.RENAME2: {
        const r = decodeRenameIn(body, h.opcode === OP.RENAME2);
        if (r.flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) throw new FuseErrno('EINVAL', 'RENAME_WHITEOUT is not supported');
        if (r.flags & RENAME_NOREPLACE && r.flags & RENAME_EXCHANGE) throw new FuseErrno('EINVAL', 'RENAME_NOREPLACE with RENAME_EXCHANGE');
        return this.empty(b.rename(ino, r.oldName, this.ino(r.newDirNodeId), r.newName, r.flags));
      }
      case OP.LINK: {
        const l = decodeLinkIn(body);
        return this.entryOf(b.link(this.ino(l.oldNodeId), ino, l.nameBytes));
      }
      case OP.OPEN: return this.open(h, ino, body);
      case OP.CREATE: return this.create(h, ino, body);
      case OP.READ: {
        const r = decodeReadIn(body);
        return b.read(r.fh, r.offset, r.sizeBytes);
      }
      case OP.WRITE: return this.write(h, ino, body);
      case OP.STATFS: return this.statfs();
      case OP.RELEASE: {
        const r = b.release(decodeFh(body));
        return r ? this.empty(r) : undefined;
      }
      case OP.FLUSH:
        // close() has nothing to do here (data reaches the image at fsync, commit and unmount;
        // no POSIX locks are held): ENOSYS makes the kernel stop sending FLUSH for this
        // connection (it then treats close as successful), one round trip less per close().
        decodeFh(body);
        this.fail(h, ERRNO.ENOSYS);
        return null;
      case OP.FSYNC: return this.empty(b.fsync(ino, decodeFsyncIn(body).fh));
      case OP.FSYNCDIR: return this.empty(b.fsync(ino, undefined));
      case OP.SETXATTR: {
        const s = decodeSetxattrIn(body);
        return this.empty(b.setxattr(ino, xattrName(s.nameBytes), s.value, s.flags));
      }
      case OP.GETXATTR: return this.getxattr(h, ino, body);
      case OP.LISTXATTR: return this.listxattr(ino, body);
      case OP.REMOVEXATTR: return this.empty(b.removexattr(ino, xattrName(decodeName(body))));
      case OP.OPENDIR: return this.opendir(ino);
      case OP.READDIR: case OP.READDIRPLUS: return this.readdir(ino, body, h.opcode === OP.READDIRPLUS);
      case OP.RELEASEDIR: return this.empty(b.releasedir(decodeFh(body)));
      case OP.ACCESS: {
        decodeAccessIn(body);
        const a = b.getattr(ino);
        return a instanceof Promise ? this.empty(a) : undefined;
      }
      case OP.FALLOCATE: {
        const f = decodeFallocateIn(body);
        if (f.mode & ~(FALLOC.KEEP_SIZE | FALLOC.PUNCH_HOLE | FALLOC.ZERO_RANGE)) throw new FuseErrno('EOPNOTSUPP', 'fallocate mode');
        if (f.mode & FALLOC.PUNCH_HOLE && !(f.mode & FALLOC.KEEP_SIZE)) throw new FuseErrno('EOPNOTSUPP', 'punch-hole needs keep-size');
        return this.empty(b.fallocate(f.fh, f.offset, f.lenBytes, {
          keepSize: (f.mode & FALLOC.KEEP_SIZE) !== 0, punchHole: (f.mode & FALLOC.PUNCH_HOLE) !== 0, zeroRange: (f.mode & FALLOC.ZERO_RANGE) !== 0,
        }, this.caller(h)));
      }
      case OP.LSEEK: {
        const l = decodeLseekIn(body);
        return this.lseek(l.fh, l.offset, l.whence);
      }
      default: throw new FuseErrno('ENOSYS', `${opName(h.opcode)} is not implemented`);
    }
  }

  // ---- the waiting cases of dispatch, one small async method each ---------------------------

  private async empty(p: Promise<unknown>): Promise<undefined> { await p; return undefined; }

  private async entryOf(p: Promise<{ attr: NodeAttr; generation: number }>): Promise<Uint8Array> { return this.entry(await p); }

  private async lookup(ino: number, name: Uint8Array): Promise<Uint8Array> {
    const e = await this.backend.lookup(ino, name);
    // A negative entry (node 0) lets the kernel cache the miss: every change comes through it.
    return e ? this.entry(e) : encodeEntryOut(0, 0, undefined, this.valid, this.valid);
  }

  private getattr(ino: number): Uint8Array | Promise<Uint8Array> { return this.attrReply(this.backend.getattr(ino)); }

  private attrReply(a: NodeAttr | Promise<NodeAttr>): Uint8Array | Promise<Uint8Array> {
    return a instanceof Promise ? this.attrReplyLater(a) : encodeAttrOut(a, this.valid);
  }

  private async attrReplyLater(a: Promise<NodeAttr>): Promise<Uint8Array> { return encodeAttrOut(await a, this.valid); }

  private setattr(h: RequestHeader, ino: number, body: Uint8Array): Uint8Array | Promise<Uint8Array> {
    const s = decodeSetattrIn(body);
    const ch = attrChanges(s);
    if (s.valid & FATTR.KILL_SUIDGID && ch.mode === undefined) return this.setattrKilling(h, ino, ch);
    return this.attrReply(this.backend.setattr(ino, ch, this.caller(h)));
  }

  /** SETATTR with FATTR_KILL_SUIDGID and no mode of its own (chown): the set-id bits the change drops are found first. */
  private setattrKilling(h: RequestHeader, ino: number, ch: AttrChanges): Uint8Array | Promise<Uint8Array> {
    const a = this.backend.getattr(ino);
    if (a instanceof Promise) return this.setattrKillingLater(h, ino, ch, a);
    this.killInto(h, a, ch);
    return this.attrReply(this.backend.setattr(ino, ch, this.caller(h)));
  }

  private async setattrKillingLater(h: RequestHeader, ino: number, ch: AttrChanges, a: Promise<NodeAttr>): Promise<Uint8Array> {
    this.killInto(h, await a, ch);
    return encodeAttrOut(await this.backend.setattr(ino, ch, this.caller(h)), this.valid);
  }

  private killInto(h: RequestHeader, a: NodeAttr, ch: AttrChanges): void {
    const mode = killedMode(a.mode, a.gid, (gid) => callerInGroup(h, gid));
    if (mode !== undefined) ch.mode = mode;
  }

  private async open(h: RequestHeader, ino: number, body: Uint8Array): Promise<Uint8Array> {
    return encodeOpenOut(await this.backend.open(ino, decodeOpenIn(body).flags, this.caller(h)), FOPEN.KEEP_CACHE);
  }

  private async create(h: RequestHeader, ino: number, body: Uint8Array): Promise<Uint8Array> {
    const c = decodeCreateIn(body);
    const r = await this.backend.create(ino, c.nameBytes, c.mode, c.flags, this.caller(h));
    // fuse_entry_out then fuse_open_out, built in one buffer.
    const node = this.node(r.attr.ino);
    if ((r.attr.mode & S_IFMT) === S_IFREG) this.lastFileNode = node;
    const w = new Writer(ENTRY_OUT_BYTES + OPEN_OUT_BYTES);
    entryOutInto(w, node, r.generation, r.attr, this.valid, this.valid);
    w.u64(r.fh).u32(FOPEN.KEEP_CACHE).u32(0);
    return w.bytes;
  }

  private async write(h: RequestHeader, ino: number, body: Uint8Array): Promise<Uint8Array> {
    const w = decodeWriteIn(body);
    const n = await this.backend.write(w.fh, w.offset, w.data, this.caller(h));
    if (w.writeFlags & WRITE_KILL_SUIDGID) await this.killSuidgid(ino, h);
    return encodeWriteOut(n);
  }

  private async statfs(): Promise<Uint8Array> { return encodeStatfsOut(await this.backend.statfs()); }

  private getxattr(h: RequestHeader, ino: number, body: Uint8Array): Reply | Promise<Reply> {
    const g = decodeGetxattrIn(body, true);
    const name = xattrName(g.nameBytes);
    const names = this.backend.listxattr(ino);
    if (names instanceof Promise) return this.getxattrListed(h, ino, name, g.sizeBytes, names);
    return this.getxattrOf(h, ino, name, g.sizeBytes, names);
  }

  private async getxattrListed(h: RequestHeader, ino: number, name: string, sizeBytes: number, names: Promise<readonly string[]>): Promise<Reply> {
    return this.getxattrOf(h, ino, name, sizeBytes, await names);
  }

  private getxattrOf(h: RequestHeader, ino: number, name: string, sizeBytes: number, names: readonly string[]): null | Promise<Uint8Array> {
    // The kernel asks for security.capability on the first write to each file and on every
    // chown: answer a missing name without building an exception (a stack trace each), and
    // without an await when the inode is in memory.
    if (!names.includes(name)) {
      this.stats.failed++;
      this.fail(h, ERRNO.ENODATA);
      return null;
    }
    return this.xattrValue(ino, name, sizeBytes);
  }

  private async xattrValue(ino: number, name: string, sizeBytes: number): Promise<Uint8Array> {
    return this.sized(await this.backend.getxattr(ino, name), sizeBytes);
  }

  private async listxattr(ino: number, body: Uint8Array): Promise<Uint8Array> {
    const g = decodeGetxattrIn(body, false);
    return this.sized(encodeUtf8((await this.backend.listxattr(ino)).map((n) => n + '\0').join('')), g.sizeBytes);
  }

  private async opendir(ino: number): Promise<Uint8Array> { return encodeOpenOut(await this.backend.opendir(ino), 0); }

  private async lseek(fh: number, offset: number, whence: number): Promise<Uint8Array> {
    return encodeLseekOut(await this.backend.lseek(fh, offset, whence));
  }

  /**
   * HANDLE_KILLPRIV_V2: a write by a caller without CAP_FSETID drops the set-id bits here (see
   * killedMode); the kernel then no longer sends a SETATTR for it, nor a GETXATTR of
   * security.capability before every WRITE.
   */
  private async killSuidgid(ino: number, h: RequestHeader): Promise<void> {
    const a = await this.backend.getattr(ino);
    const mode = killedMode(a.mode, a.gid, (gid) => callerInGroup(h, gid));
    if (mode === undefined) return;
    await this.backend.setattr(ino, { mode }, this.caller(h));
    // The WRITE reply carries no attributes, and the kernel keeps a cached mode: drop it.
    this.send(encodeNotifyInvalAttr(this.node(ino)));
  }

  private init(body: Uint8Array): Uint8Array {
    const k = decodeInitIn(body);
    if (k.major !== FUSE_KERNEL_VERSION) throw new FuseErrno('EPROTO', `kernel speaks FUSE ${k.major}.${k.minor}`);
    const want = INIT.ASYNC_READ | INIT.BIG_WRITES | INIT.MAX_PAGES | INIT.PARALLEL_DIROPS | INIT.DO_READDIRPLUS | INIT.READDIRPLUS_AUTO | INIT.ASYNC_DIO
      | INIT.HANDLE_KILLPRIV_V2;
    this.log(`ext4kit mount: kernel FUSE ${k.major}.${k.minor}, flags 0x${k.flags.toString(16)}`);
    return encodeInitOut({
      major: FUSE_KERNEL_VERSION, minor: Math.min(k.minor, FUSE_KERNEL_MINOR_VERSION),
      // The kernel keeps the smaller of this and its own readahead; mount() may raise it after INIT.
      maxReadaheadBytes: Math.max(k.maxReadaheadBytes, MAX_WRITE_BYTES), flags: want & k.flags, maxBackground: 64, congestionThreshold: 48,
      maxWriteBytes: MAX_WRITE_BYTES, timeGranNs: 1, maxPages: MAX_PAGES,
    });
  }

  private sized(value: Uint8Array, sizeBytes: number): Uint8Array {
    if (sizeBytes === 0) return encodeXattrSizeOut(value.length);
    if (value.length > sizeBytes) throw new FuseErrno('ERANGE', 'xattr buffer too small');
    return value;
  }

  private async readdir(ino: number, body: Uint8Array, plus: boolean): Promise<Uint8Array> {
    const r = decodeReadIn(body);
    // Smallest records: 32 bytes (a name of up to 8 bytes), 160 with READDIRPLUS's entry_out.
    const listing = await this.backend.readdir(r.fh, r.offset, Math.max(1, Math.floor(r.sizeBytes / (plus ? 160 : 32))));
    const fits: DirentOut[] = [];
    let used = 0;
    for (const e of listing) {
      const d: DirentOut = { ino: e.ino, nextCookie: e.cookie, nameBytes: e.nameBytes, type: e.type };
      const n = direntBytes(d, plus);
      if (used + n > r.sizeBytes) break;
      used += n;
      fits.push(d);
    }
    // Entries sharing a cookie go in one reply: resuming from that cookie would skip the rest.
    if (fits.length < listing.length && fits.length > 0) {
      const cut = listing[fits.length]!.cookie;
      let n = fits.length;
      while (n > 0 && fits[n - 1]!.nextCookie === cut) n--;
      if (n > 0) fits.length = n;
    }
    const out: Array<DirentOut & { entry?: { nodeId: number; generation: number; attr: NodeAttr } }> = [];
    for (let i = 0; i < fits.length; i++) {
      const d = fits[i]!;
      const e = listing[i]!;
      const dot = (e.nameBytes.length === 1 && e.nameBytes[0] === 0x2e) || (e.nameBytes.length === 2 && e.nameBytes[0] === 0x2e && e.nameBytes[1] === 0x2e);
      if (plus && !dot) {
        try {
          const l = await this.backend.lookupListed(ino, e);
          out.push({ ...d, entry: { nodeId: this.node(l.attr.ino), generation: l.generation, attr: l.attr } });
          continue;
        } catch (err) {
          const { report } = errnoOf(err);
          if (report) this.reportOnce(`rdp:${(err as Error).message}`, `ext4kit mount: entry of directory inode ${ino} unreadable: ${(err as Error).message}`);
        }
      }
      out.push(d);
    }
    return encodeDirents(out, plus, this.valid);
  }
}

/** The changes a SETATTR asks for (FATTR_KILL_SUIDGID is read from `s.valid` by the caller). */
function attrChanges(s: SetattrIn): AttrChanges {
  const c: AttrChanges = {};
  if (s.valid & FATTR.MODE) c.mode = s.mode;
  if (s.valid & FATTR.UID) c.uid = s.uid;
  if (s.valid & FATTR.GID) c.gid = s.gid;
  if (s.valid & FATTR.SIZE) c.sizeBytes = s.sizeBytes;
  if (s.valid & FATTR.ATIME_NOW) c.atime = 'now';
  else if (s.valid & FATTR.ATIME) c.atime = { sec: s.atimeSec, nsec: s.atimeNsec };
  if (s.valid & FATTR.MTIME_NOW) c.mtime = 'now';
  else if (s.valid & FATTR.MTIME) c.mtime = { sec: s.mtimeSec, nsec: s.mtimeNsec };
  if (s.valid & FATTR.CTIME) c.ctime = { sec: s.ctimeSec, nsec: s.ctimeNsec };
  if (s.valid & FATTR.FH) c.fh = s.fh;
  return c;
}
