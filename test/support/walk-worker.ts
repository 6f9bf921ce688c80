// Worker-thread side of walk-pool.ts: opens an image (a path, or bytes on a MemoryDevice), walks it
// with fs-walk.ts and reports. Runs in a worker so that a synchronous or microtask-only infinite
// loop in ext4kit can be stopped from outside (the worker is terminated).
import { parentPort } from 'node:worker_threads';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Ext4 } from '../../src/node.ts';
import { MemoryDevice } from '../../src/device/memory-device.ts';
import type { BlockDevice } from '../../src/device/block-device.ts';
import { describeThrown, walkFilesystem, type WalkIssue, type WalkLimits, type WalkReport } from './fs-walk.ts';

export interface WalkJob {
  id: number;
  /** An image file (opened with `Ext4.open(path, { readOnly: true })`) or image bytes. */
  path?: string;
  bytes?: Uint8Array;
  limits?: Partial<WalkLimits>;
}

export interface WalkJobResult {
  id: number;
  hashBefore: string;
  hashAfter: string;
  /** Device write() / flush() calls (bytes jobs only). */
  writes: number;
  opened: boolean;
  /** Why open failed (an Ext4Error's code, or a foreign throw in `foreign`). */
  openError?: WalkIssue;
  forcedReadOnly?: string;
  /** From info(), when the image opened. */
  info?: { blockSize: number; clusterSize: number; features: string[]; blocksCount: number; inodesCount: number; journalApplied?: string };
  walk?: WalkReport;
  /** Foreign throws outside the walk (open, close). */
  foreign: WalkIssue[];
  /** Ext4Errors outside the walk (close). */
  errors: WalkIssue[];
  ms: number;
}

class CountingDevice implements BlockDevice {
  writes = 0;
  constructor(private readonly inner: MemoryDevice) {}
  get sizeBytes(): number { return this.inner.sizeBytes; }
  get readOnly(): boolean { return this.inner.readOnly; }
  read(offsetBytes: number, lenBytes: number): Promise<Uint8Array> { return this.inner.read(offsetBytes, lenBytes); }
  write(offsetBytes: number, data: Uint8Array): Promise<void> { this.writes++; return this.inner.write(offsetBytes, data); }
  flush(): Promise<void> { this.writes++; return this.inner.flush(); }
  close(): Promise<void> { return this.inner.close(); }
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

async function run(job: WalkJob): Promise<WalkJobResult> {
  const t0 = performance.now();
  const port = parentPort!;
  const res: WalkJobResult = { id: job.id, hashBefore: '', hashAfter: '', writes: 0, opened: false, foreign: [], errors: [], ms: 0 };
  // A writable MemoryDevice: a write would show up both in `writes` and in the hash.
  const device = job.bytes ? new CountingDevice(new MemoryDevice(job.bytes)) : undefined;
  const hash = async () => (job.bytes ? sha(job.bytes) : sha(await readFile(job.path!)));
  res.hashBefore = await hash();
  let fs: Awaited<ReturnType<typeof Ext4.open>> | undefined;
  try {
    fs = await Ext4.open(device ?? job.path!, { readOnly: true });
  } catch (e) {
    const d = describeThrown('open', job.path ?? '<bytes>', e);
    res.openError = d.issue;
    if (!d.ext4) res.foreign.push(d.issue);
  }
  if (fs) {
    res.opened = true;
    try {
      const i = fs.info();
      res.forcedReadOnly = i.forcedReadOnly;
      res.info = { blockSize: i.blockSize, clusterSize: i.clusterSize, features: i.features, blocksCount: i.blocksCount, inodesCount: i.inodesCount, journalApplied: i.journal?.applied };
    } catch { /* the walk records it */ }
    res.walk = await walkFilesystem(fs, job.limits, (where) => port.postMessage({ type: 'progress', id: job.id, where }));
    try {
      await fs.close();
    } catch (e) {
      const d = describeThrown('close', '/', e);
      (d.ext4 ? res.errors : res.foreign).push(d.issue);
    }
  }
  res.writes = device?.writes ?? 0;
  res.hashAfter = await hash();
  res.ms = performance.now() - t0;
  return res;
}

parentPort!.on('message', (job: WalkJob) => {
  parentPort!.postMessage({ type: 'start', id: job.id });
  run(job).then(
    (result) => parentPort!.postMessage({ type: 'result', id: job.id, result }),
    (e) => parentPort!.postMessage({ type: 'crash', id: job.id, issue: describeThrown('worker', '', e).issue }),
  );
});
parentPort!.postMessage({ type: 'ready' });
