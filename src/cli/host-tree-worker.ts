// The host side of copy-in, on its own thread: walks a host directory tree in exactly the order
// copy-in creates entries (a directory's listing, then lstat of each child, then each
// subdirectory in turn), reads small regular files whole, and posts the results in batches.
// Host I/O (which waits on the disk when the tree is not cached) thus overlaps with building the
// image on the main thread. At most MAX_BATCHES_AHEAD unconsumed batches exist: the main thread
// counts them down in a shared counter, and the walker sleeps on it (Atomics.wait) when ahead,
// until only RESUME_AHEAD are left.
import { closeSync, lstatSync, openSync, read, readdirSync, readSync, type BigIntStats } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { hostStatOf, isUtf8Name, joinHost, MAX_BATCHES_AHEAD, RESUME_AHEAD, S_IFDIR, S_IFMT, type HostError, type HostRecord, type HostTreeWorkerData, type HostBatch } from './host-tree.ts';

const BATCH_RECORDS = 512;
const BATCH_DATA_BYTES = 2 << 20;
/** Files read at once, and how many entries (or bytes of contents) are read as one group. */
const PARALLEL_READS = 16;
const GROUP_ENTRIES = 64;
const GROUP_BYTES = 1 << 20;
/** A read on this thread slower than this waited on the disk: the group's other files are read concurrently. */
const SLOW_READ_MS = 0.5;
/** The last group's reads waited on the disk. */
let diskBound = false;

const { root, smallFileBytes, counter } = workerData as HostTreeWorkerData;
const ahead = new Int32Array(counter);
const seenLinks = new Set<string>();

let records: HostRecord[] = [];
const data = new Uint8Array(BATCH_DATA_BYTES);
let dataLen = 0;

function post(done: boolean): void {
  const buffer = data.buffer.slice(0, dataLen);
  const batch: HostBatch = { records, data: buffer, done };
  parentPort!.postMessage(batch, [buffer]);
  records = [];
  dataLen = 0;
  if (Atomics.add(ahead, 0, 1) + 1 < MAX_BATCHES_AHEAD) return;
  // Far enough ahead: sleep until the main thread is down to RESUME_AHEAD batches (it wakes us
  // then; a wait on a value already changed returns at once; the timeout is a safety net).
  for (let n = Atomics.load(ahead, 0); n > RESUME_AHEAD; n = Atomics.load(ahead, 0)) Atomics.wait(ahead, 0, n, 1000);
}

function push(r: HostRecord): void {
  records.push(r);
  if (records.length >= BATCH_RECORDS || dataLen >= BATCH_DATA_BYTES - smallFileBytes) post(false);
}

function errorOf(e: unknown): { code?: string; message: string } {
  const err = e as NodeJS.ErrnoException;
  return { code: err.code, message: err.message ?? String(e) };
}

/** A record, and for a small regular file read whole, how many bytes to read. */
interface Pending { r: HostRecord; readBytes: number }

/** lstat; decides whether the contents are to be read (small regular files, first name of a hard link). */
function statEntry(host: Buffer): Pending {
  let st: BigIntStats;
  try {
    st = lstatSync(host, { bigint: true });
  } catch (e) {
    return { r: { kind: 'entry', host, error: errorOf(e) }, readBytes: 0 };
  }
  const r: HostRecord = { kind: 'entry', host, st: hostStatOf(st) };
  if (!st.isFile()) return { r, readBytes: 0 };
  const key = `${st.dev}:${st.ino}`;
  const repeat = st.nlink > 1n && seenLinks.has(key);
  if (st.nlink > 1n) seenLinks.add(key);
  const small = st.size > 0n && st.size <= BigInt(smallFileBytes);
  return { r, readBytes: small && !repeat ? Number(st.size) : 0 };
}

/**
 * Reads a whole small file into `into`; resolves with the bytes read (a short read keeps what
 * was there). Only the reads go to libuv's thread pool: open and close find the inode cached by
 * lstat and cost microseconds, while a FileHandle round trip per call costs far more CPU.
 */
function readWhole(host: Buffer, into: Uint8Array): Promise<number> {
  return new Promise((resolve, reject) => {
    let fd: number;
    try {
      fd = openSync(host, 'r');
    } catch (e) {
      reject(e);
      return;
    }
    let got = 0;
    const finish = (err: unknown) => {
      try { closeSync(fd); } catch { /* nothing was written */ }
      if (err) reject(err); else resolve(got);
    };
    const step = () => read(fd, into, got, into.length - got, got, (err, n) => {
      if (err) return finish(err);
      got += n;
      if (n === 0 || got >= into.length) finish(undefined); else step();
    });
    step();
  });
}

/** A whole small file read on this thread; `slow` when it took long (the disk, not the page cache). */
function readWholeSync(host: Buffer, into: Uint8Array): { got: number; slow: boolean } {
  const started = performance.now();
  const fd = openSync(host, 'r');
  let got = 0;
  try {
    for (let n = -1; n !== 0 && got < into.length; got += n) n = readSync(fd, into, got, into.length - got, got);
  } finally {
    closeSync(fd);
  }
  return { got, slow: performance.now() - started > SLOW_READ_MS };
}

/**
 * Emits a group of entries in order, their contents read first. Files come from the page cache
 * most of the time: then a plain read on this thread costs a third of the CPU of a read handed to
 * libuv's pool. Once a read waits on the disk, the rest of the group is read concurrently (a
 * cold disk serves several requests at once much faster than one after another).
 */
async function emit(group: Pending[]): Promise<void> {
  const contents = new Map<Pending, Uint8Array | HostError>();
  let next = 0;
  // After a group that waited on the disk, the next one starts with concurrent reads (no serial
  // disk wait per group); it goes back to plain reads once a group's reads came fast.
  for (; next < group.length && !diskBound; next++) {
    const p = group[next]!;
    if (!p.readBytes) continue;
    const buf = new Uint8Array(p.readBytes);
    let slow = false;
    try {
      const r = readWholeSync(p.r.host as Buffer, buf);
      contents.set(p, buf.subarray(0, r.got));
      slow = r.slow;
    } catch (e) {
      contents.set(p, errorOf(e));
    }
    if (slow) {
      next++;
      diskBound = true;
      break;
    }
  }
  const concurrentFrom = next;
  const started = performance.now();
  let reads = 0;
  const reader = async (): Promise<void> => {
    while (next < group.length) {
      const p = group[next++]!;
      if (!p.readBytes) continue;
      const buf = new Uint8Array(p.readBytes);
      reads++;
      try {
        const got = await readWhole(p.r.host as Buffer, buf);
        contents.set(p, buf.subarray(0, got));
      } catch (e) {
        contents.set(p, errorOf(e));
      }
    }
  };
  await Promise.all(Array.from({ length: PARALLEL_READS }, reader));
  if (concurrentFrom < group.length && reads > 0 && (performance.now() - started) / reads < SLOW_READ_MS / 4) diskBound = false;
  for (const p of group) {
    const c = contents.get(p);
    if (c instanceof Uint8Array) {
      if (dataLen + c.length > data.length) post(false);
      data.set(c, dataLen);
      p.r.dataOffset = dataLen;
      p.r.dataLen = c.length;
      dataLen += c.length;
    } else if (c) {
      p.r.error = c;
    }
    push(p.r);
  }
}

async function walk(dir: Buffer): Promise<void> {
  let names: Buffer[];
  try {
    names = readdirSync(dir, { encoding: 'buffer' });
  } catch (e) {
    push({ kind: 'listing', host: dir, names: [], error: errorOf(e) });
    return;
  }
  push({ kind: 'listing', host: dir, names });
  const subdirs: Buffer[] = [];
  let group: Pending[] = [];
  let groupBytes = 0;
  for (const name of names) {
    if (!isUtf8Name(name)) continue; // copy-in skips it (with a warning)
    const host = joinHost(dir, name);
    const p = statEntry(host);
    if (p.r.st && (p.r.st.mode & S_IFMT) === S_IFDIR) subdirs.push(host);
    group.push(p);
    groupBytes += p.readBytes;
    if (group.length >= GROUP_ENTRIES || groupBytes >= GROUP_BYTES) {
      await emit(group);
      group = [];
      groupBytes = 0;
    }
  }
  await emit(group);
  for (const d of subdirs) await walk(d);
}

await walk(Buffer.from(root));
post(true);
