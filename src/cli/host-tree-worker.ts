// The host side of copy-in, on its own thread: walks a host directory tree in exactly the order
// copy-in creates entries (a directory's listing, then lstat of each child, then each
// subdirectory in turn), reads small regular files whole, and posts the results in batches.
// Host I/O (which waits on the disk when the tree is not cached) thus overlaps with building the
// image on the main thread. At most MAX_BATCHES_AHEAD unconsumed batches exist: the main thread
// counts them down in a shared counter, and the walker sleeps on it (Atomics.wait) when ahead.
import { closeSync, lstatSync, openSync, readdirSync, readSync, type BigIntStats } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { hostStatOf, isUtf8Name, joinHost, S_IFDIR, S_IFMT, type HostRecord, type HostTreeWorkerData, type HostBatch } from './host-tree.ts';

const MAX_BATCHES_AHEAD = 4;
const BATCH_RECORDS = 512;
const BATCH_DATA_BYTES = 2 << 20;

const { root, smallFileBytes, counter } = workerData as HostTreeWorkerData;
const ahead = new Int32Array(counter);
const seenLinks = new Set<string>();

let records: HostRecord[] = [];
let data = new Uint8Array(BATCH_DATA_BYTES);
let dataLen = 0;

function post(done: boolean): void {
  const buffer = data.buffer.slice(0, dataLen);
  const batch: HostBatch = { records, data: buffer, done };
  parentPort!.postMessage(batch, [buffer]);
  records = [];
  dataLen = 0;
  Atomics.add(ahead, 0, 1);
  for (let n = Atomics.load(ahead, 0); n >= MAX_BATCHES_AHEAD; n = Atomics.load(ahead, 0)) Atomics.wait(ahead, 0, n, 1000);
}

function push(r: HostRecord): void {
  records.push(r);
  if (records.length >= BATCH_RECORDS || dataLen >= BATCH_DATA_BYTES - smallFileBytes) post(false);
}

function errorOf(e: unknown): { code?: string; message: string } {
  const err = e as NodeJS.ErrnoException;
  return { code: err.code, message: err.message ?? String(e) };
}

/** lstat, and the contents of a small regular file (not a further name of a hard link). */
function entry(host: Buffer): HostRecord {
  let st: BigIntStats;
  try {
    st = lstatSync(host, { bigint: true });
  } catch (e) {
    const failed: HostRecord = { kind: 'entry', host, error: errorOf(e) };
    push(failed);
    return failed;
  }
  const r: HostRecord = { kind: 'entry', host, st: hostStatOf(st) };
  if (st.isFile() && st.size > 0n && st.size <= BigInt(smallFileBytes)) {
    const key = `${st.dev}:${st.ino}`;
    const repeat = st.nlink > 1n && seenLinks.has(key);
    if (st.nlink > 1n) seenLinks.add(key);
    if (!repeat) {
      const size = Number(st.size);
      if (dataLen + size > data.length) post(false);
      try {
        const fd = openSync(host, 'r');
        try {
          let got = 0;
          while (got < size) {
            const n = readSync(fd, data, dataLen + got, size - got, got);
            if (n === 0) break;
            got += n;
          }
          r.dataOffset = dataLen;
          r.dataLen = got;
          dataLen += got;
        } finally {
          closeSync(fd);
        }
      } catch (e) {
        r.error = errorOf(e);
      }
    }
  } else if (st.isFile() && st.nlink > 1n) {
    seenLinks.add(`${st.dev}:${st.ino}`);
  }
  push(r);
  return r;
}

function walk(dir: Buffer): void {
  let names: Buffer[];
  try {
    names = readdirSync(dir, { encoding: 'buffer' });
  } catch (e) {
    push({ kind: 'listing', host: dir, names: [], error: errorOf(e) });
    return;
  }
  push({ kind: 'listing', host: dir, names });
  const subdirs: Buffer[] = [];
  for (const name of names) {
    if (!isUtf8Name(name)) continue; // copy-in skips it (with a warning)
    const host = joinHost(dir, name);
    const r = entry(host);
    if (r.st && (r.st.mode & S_IFMT) === S_IFDIR) subdirs.push(host);
  }
  for (const d of subdirs) walk(d);
}

walk(Buffer.from(root));
post(true);
