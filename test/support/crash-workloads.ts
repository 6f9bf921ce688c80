// Workloads for the crash-point harness. Each runs on a writable mount over a RecordingDevice
// and tells the recorder what it changes ("change") and what each returned fsync/sync/close
// acknowledged ("ack"); crash-states.ts decides what must survive a cut anywhere.
import { Ext4 } from '../../src/api/ext4.ts';
import type { Ext4WritableHandle } from '../../src/api/ext4.ts';
import type { MkfsOptions } from '../../src/mkfs/options.ts';
import type { RecordingDevice, Expectation } from './recording-device.ts';
import { FileModel, Prng, fillPattern, isErrno, jitter } from './byte-model.ts';

type Handle = Ext4WritableHandle;

export interface Workload {
  name: string;
  sizeBytes: number;
  mkfs: MkfsOptions;
  /** Runs the workload; returns what a clean close must leave. */
  run(fs: Ext4, rec: RecordingDevice, seed: number): Promise<Expectation[]>;
}

const exactAll = (m: Map<string, Uint8Array | null>): Expectation[] =>
  [...m].map(([path, value]) => ({ path, kind: 'exact' as const, value }));

async function syncAck(fs: Ext4, rec: RecordingDevice, model: Map<string, Uint8Array | null>, label: string): Promise<void> {
  const since = rec.now;
  const expects = exactAll(model);
  await fs.sync();
  rec.ack(since, expects, label);
}

/** Many small files in a few directories, sync() every few files (and non-durable bulk syncs in between). */
export const smallFiles = (blockSize: 1024 | 4096, files = 48): Workload => ({
  name: `small files with sync(), ${blockSize}-byte blocks`,
  sizeBytes: 16 << 20,
  mkfs: { blockSize, timeSec: 1_700_000_000 },
  async run(fs, rec, seed) {
    const rng = new Prng(seed);
    const model = new Map<string, Uint8Array | null>();
    for (let d = 0; d < 3; d++) await fs.mkdir(`/d${d}`);
    for (let i = 0; i < files; i++) {
      const path = `/d${i % 3}/f${i}`;
      const data = fillPattern(rng.int(1, 3 * blockSize + 100), seed + i);
      rec.change(path, 'set', data);
      await fs.writeFile(path, data);
      model.set(path, data);
      if (i % 6 === 5) await syncAck(fs, rec, model, `sync after f${i}`);
      // Bulk syncs as put -r makes them: their commit proceeds in the background, unacknowledged.
      else if (i % 2 === 1) await fs.sync({ durable: false });
    }
    return exactAll(model);
  },
});

/** Atomic replace (write tmp, fsync, rename over), unlinks, and unlinks of open files (orphans). */
export const renames = (blockSize: 1024 | 4096, rounds = 24): Workload => ({
  name: `renames over existing files and unlinks of open files, ${blockSize}-byte blocks`,
  sizeBytes: 16 << 20,
  mkfs: { blockSize, timeSec: 1_700_000_000 },
  async run(fs, rec, seed) {
    const rng = new Prng(seed);
    const model = new Map<string, Uint8Array | null>();
    await fs.mkdir('/t');
    for (let i = 0; i < 8; i++) {
      const data = fillPattern(rng.int(100, 2 * blockSize), seed * 31 + i);
      rec.change(`/t/a${i}`, 'set', data);
      await fs.writeFile(`/t/a${i}`, data);
      model.set(`/t/a${i}`, data);
    }
    await syncAck(fs, rec, model, 'initial sync');
    const open: Array<{ fh: Handle; path: string }> = [];
    for (let r = 0; r < rounds; r++) {
      const op = rng.int(0, 3);
      const target = `/t/a${rng.int(0, 7)}`;
      if (op <= 1) {
        const data = fillPattern(rng.int(1, 3 * blockSize), seed * 77 + r);
        const tmp = `/t/tmp${r}`;
        rec.change(tmp, 'set', data);
        const fh = await fs.open(tmp, 'w+') as Handle;
        await fh.write(data, 0, data.length, 0);
        const since = rec.now;
        await fh.sync();
        model.set(tmp, data);
        rec.ack(since, [{ path: tmp, kind: 'exact', value: data }], `fsync ${tmp}`);
        await fh.close();
        rec.change(target, 'set', data);
        rec.change(tmp, 'set', null);
        await fs.rename(tmp, target);
        model.set(target, data);
        model.set(tmp, null);
      } else if (op === 2) {
        if (model.get(target)) {
          rec.change(target, 'set', null);
          await fs.unlink(target);
          model.set(target, null);
        }
      } else {
        const path = `/t/open${r}`;
        const data = fillPattern(rng.int(1, 4 * blockSize), seed * 13 + r);
        rec.change(path, 'set', data);
        const fh = await fs.open(path, 'w+') as Handle;
        await fh.write(data, 0, data.length, 0);
        const since = rec.now;
        await fh.sync();
        model.set(path, data);
        rec.ack(since, [{ path, kind: 'exact', value: data }], `fsync ${path}`);
        rec.change(path, 'set', null);
        await fs.unlink(path);
        model.set(path, null);
        await fh.write(data, 0, data.length, data.length); // the orphan grows
        open.push({ fh, path });
      }
      if (r % 4 === 3) await syncAck(fs, rec, model, `sync round ${r}`);
      if (open.length > 2) await open.shift()!.fh.close();
    }
    for (const o of open) await o.fh.close();
    return exactAll(model);
  },
});

/**
 * Files growing by buffered appends, each fsync covering one file only: the other files' sizes
 * in memory run ahead of their data on disk, and a commit must not write those sizes (i_disksize).
 */
export const growingFiles = (blockSize: 1024 | 4096, rounds = 12): Workload => ({
  name: `growing files, fsync of one at a time, ${blockSize}-byte blocks`,
  sizeBytes: 16 << 20,
  mkfs: { blockSize, timeSec: 1_700_000_000 },
  async run(fs, rec, seed) {
    const rng = new Prng(seed);
    const files = [0, 1, 2, 3].map((k) => ({ path: `/g${k}`, m: new FileModel(), fh: undefined as Handle | undefined }));
    for (const f of files) {
      rec.change(f.path, 'append');
      f.fh = await fs.open(f.path, 'w+') as Handle;
    }
    for (let r = 0; r < rounds; r++) {
      for (const [k, f] of files.entries()) {
        const data = fillPattern(rng.int(1, 2 * blockSize + 300), seed * 7 + r * 4 + k);
        rec.change(f.path, 'append', data);
        await f.fh!.write(data, 0, data.length, f.m.size);
        f.m.write(f.m.size, data);
      }
      const f = files[r % files.length]!;
      const since = rec.now;
      const value = f.m.bytes().slice();
      if (r % 2) await f.fh!.sync(); else await f.fh!.datasync();
      rec.ack(since, [{ path: f.path, kind: 'prefix', value }], `fsync ${f.path} at ${value.length}`);
    }
    for (const f of files) await f.fh!.close();
    return files.map((f) => ({ path: f.path, kind: 'exact' as const, value: f.m.bytes().slice() }));
  },
});

/**
 * Concurrent fsyncs (they share commits: group commit) and in-place overwrites of one block at a
 * time. Each round also overwrites X and Y, fsyncs Y (its commit carries X's new times too), then
 * X: X's fsync then has no metadata left to commit and must still make X's data durable.
 */
export const sharedFsyncs = (blockSize: 1024 | 4096, rounds = 10): Workload => ({
  name: `concurrent fsyncs sharing commits, overwrites in place, ${blockSize}-byte blocks`,
  sizeBytes: 16 << 20,
  mkfs: { blockSize, timeSec: 1_700_000_000 },
  async run(fs, rec, seed) {
    const rng = new Prng(seed);
    const BLOCKS = 8;
    const files = [0, 1, 2, 3].map((k) => ({ path: `/s${k}`, value: fillPattern(BLOCKS * blockSize, seed + k), fh: undefined as Handle | undefined }));
    for (const f of files) {
      rec.change(f.path, 'set', f.value);
      f.fh = await fs.open(f.path, 'w+') as Handle;
      await f.fh.write(f.value, 0, f.value.length, 0);
    }
    const fsyncAll = (list: typeof files, label: string) => Promise.all(list.map(async (f) => {
      const since = rec.now;
      const value = f.value.slice();
      await f.fh!.sync();
      rec.ack(since, [{ path: f.path, kind: 'exact', value }], `${label} ${f.path}`);
    }));
    const overwrite = async (f: (typeof files)[number], salt: number) => {
      const b = rng.int(0, BLOCKS - 1);
      const data = fillPattern(blockSize, salt);
      const next = f.value.slice();
      next.set(data, b * blockSize);
      rec.change(f.path, 'set', next);
      await f.fh!.write(data, 0, blockSize, b * blockSize);
      f.value = next;
    };
    await fsyncAll(files, 'initial fsync');
    for (let r = 0; r < rounds; r++) {
      const movers = files.filter(() => rng.next() < 0.75);
      for (const [k, f] of movers.entries()) await overwrite(f, seed * 13 + r * 8 + k);
      await fsyncAll(files, `round ${r} concurrent fsync`);
      const x = files[r % files.length]!;
      const y = files[(r + 1) % files.length]!;
      await overwrite(x, seed * 17 + r * 2);
      await overwrite(y, seed * 17 + r * 2 + 1);
      await fsyncAll([y], `round ${r} fsync`);
      await fsyncAll([x], `round ${r} fsync after another's commit`);
    }
    for (const f of files) await f.fh!.close();
    return files.map((f) => ({ path: f.path, kind: 'exact' as const, value: f.value.slice() }));
  },
});

/**
 * Writes into fallocated (unwritten) ranges whose blocks held another file's data: a deleted
 * file leaves patterned blocks behind, two files are fallocated over the freed space, then
 * single blocks are written into both and fsynced, F first: F's commit carries G's new times
 * while G's block is unwritten and not converted. After a crash every fsynced block is there
 * and an unsynced one reads as zeros or its new data, never the old file's bytes (the
 * conversion to written must come after the data, in a later commit).
 */
export const unwrittenWrites = (blockSize: 1024 | 4096, rounds = 10): Workload => ({
  name: `writes into fallocated ranges over freed blocks, ${blockSize}-byte blocks`,
  sizeBytes: 16 << 20,
  mkfs: { blockSize, timeSec: 1_700_000_000 },
  async run(fs, rec, seed) {
    const rng = new Prng(seed);
    const BLOCKS = 48;
    const len = BLOCKS * blockSize;
    const model = new Map<string, Uint8Array | null>();
    // Stale data: a file written, made durable, deleted, and the delete made durable.
    const junk = fillPattern(2 * len, seed ^ 0x5a5a);
    rec.change('/junk', 'set', junk);
    await fs.writeFile('/junk', junk);
    model.set('/junk', junk);
    await syncAck(fs, rec, model, 'junk written');
    rec.change('/junk', 'set', null);
    await fs.unlink('/junk');
    model.set('/junk', null);
    await syncAck(fs, rec, model, 'junk deleted');
    const files = ['/F', '/G'].map((path) => ({ path, value: new Uint8Array(len), fh: undefined as Handle | undefined }));
    for (const f of files) {
      rec.change(f.path, 'set', f.value);
      f.fh = await fs.open(f.path, 'w+') as Handle;
      await f.fh.fallocate(0, 0, len);
      model.set(f.path, f.value);
    }
    await syncAck(fs, rec, model, 'fallocated');
    const [F, G] = files as [typeof files[0], typeof files[0]];
    const written = new Set<number>();
    for (let r = 0; r < rounds; r++) {
      for (const f of [F, G]) {
        // Each block at most once: any subset of the unsynced writes is then some earlier 'set' value's block set.
        let b = rng.int(0, BLOCKS - 1);
        while (written.has((f === F ? 0 : BLOCKS) + b)) b = (b + 1) % BLOCKS;
        written.add((f === F ? 0 : BLOCKS) + b);
        const data = fillPattern(blockSize, seed * 31 + r * 2 + (f === F ? 0 : 1));
        const next = f.value.slice();
        next.set(data, b * blockSize);
        rec.change(f.path, 'set', next);
        await f.fh!.write(data, 0, blockSize, b * blockSize);
        f.value = next;
      }
      // Odd rounds: F first, its commit carries G's new times while G's block is still
      // unwritten and unconverted. Even rounds: both at once, one's commit may come while the
      // other's data is being written.
      const fsyncOne = async (f: typeof F) => {
        const since = rec.now;
        const value = f.value.slice();
        await f.fh!.sync();
        rec.ack(since, [{ path: f.path, kind: 'exact', value }], `fsync ${f.path} round ${r}`);
      };
      if (r % 2) { await fsyncOne(F); await fsyncOne(G); } else await Promise.all([fsyncOne(G), fsyncOne(F)]);
      if (r % 3 === 2) await fs.sync({ durable: false });
    }
    for (const f of files) await f.fh!.close();
    return [{ path: F.path, kind: 'exact' as const, value: F.value.slice() }, { path: G.path, kind: 'exact' as const, value: G.value.slice() }];
  },
});

/**
 * The founding scenario, small: dd-style appenders on shared bigalloc clusters, each with its
 * own fsync loop, background writeback passes, and truncate/punch/zero-range/fallocate on
 * another file. fsync acknowledges the prefix the appender had written when fsync started.
 */
export const founding = (blockSize: 1024 | 4096, chunks = 14): Workload => ({
  name: `founding scenario, bigalloc ${blockSize}-byte blocks, 64 KiB clusters`,
  sizeBytes: 48 << 20,
  mkfs: { blockSize, clusterBytes: 65536, features: 'bigalloc', timeSec: 1_700_000_000 },
  async run(fs, rec, seed) {
    const DD = ['/dd0', '/dd1'];
    const models = new Map<string, FileModel>(DD.map((p) => [p, new FileModel()]));
    const created = new Map<string, Promise<void>>();
    const createdResolve = new Map<string, () => void>();
    for (const p of DD) created.set(p, new Promise<void>((r) => createdResolve.set(p, r)));
    let writersLeft = DD.length;
    const failures: unknown[] = [];
    const task = (fn: () => Promise<void>) => fn().catch((e) => { failures.push(e); writersLeft = 0; });
    const dd = (path: string, k: number) => async () => {
      const r = new Prng(seed * 7 + k);
      const m = models.get(path)!;
      rec.change(path, 'append');
      const fh = await fs.open(path, 'w+') as Handle;
      createdResolve.get(path)!();
      try {
        for (let i = 0; i < chunks; i++) {
          const len = r.int(1000, 40000);
          const data = fillPattern(len, seed ^ (k << 20) ^ i);
          rec.change(path, 'append', data);
          await fh.write(data, 0, len, m.size);
          m.write(m.size, data);
          // Let fsync loops and writeback (slowed by device latency) keep up.
          for (let n = r.int(0, 8); n > 0; n--) await new Promise<void>((res) => setImmediate(res));
        }
      } finally { await fh.close(); writersLeft--; }
    };
    const fsyncLoop = (path: string, k: number) => async () => {
      const r = new Prng(seed * 11 + k);
      await created.get(path);
      const fh = await fs.open(path, 'r+') as Handle;
      const m = models.get(path)!;
      try {
        while (writersLeft > 0) {
          const since = rec.now;
          const value = m.bytes().slice();
          if (r.chance(0.5)) await fh.sync(); else await fh.datasync();
          rec.ack(since, [{ path, kind: 'prefix', value }], `fsync ${path} at ${value.length}`);
          await jitter(r);
        }
      } finally { await fh.close(); }
    };
    const flusher = async () => {
      const r = new Prng(seed * 13);
      while (writersLeft > 0) { await fs.writebackPass(); await jitter(r); }
    };
    const mangler = async () => {
      const r = new Prng(seed * 17);
      const path = '/tp';
      rec.change(path, 'other');
      const fh = await fs.open(path, 'w+') as Handle;
      const bs = blockSize;
      try {
        while (writersLeft > 0) {
          const off = r.pick([r.int(0, 400_000), r.int(0, 300) * bs, r.int(0, 6) * 65536 + r.int(-3, 3) * bs]);
          const o = Math.max(0, off);
          const op = r.int(0, 5);
          if (op <= 1) { const d = fillPattern(r.int(1, 60_000), seed + o); await fh.write(d, 0, d.length, o); }
          else if (op === 2) await fh.truncate(o);
          else if (op === 3) await fh.fallocate(3, o, r.int(1, 150_000));
          else if (op === 4) await fh.fallocate(r.chance(0.5) ? 0x11 : 0x10, o, r.int(1, 100_000));
          else await fh.fallocate(r.chance(0.5) ? 1 : 0, o, r.int(1, 100_000));
          await jitter(r);
        }
      } finally { await fh.close(); }
    };
    await Promise.all([
      ...DD.map((p, i) => task(dd(p, i))),
      ...DD.map((p, i) => task(fsyncLoop(p, 20 + i))),
      task(flusher), task(mangler),
    ]);
    if (failures.length) throw failures[0];
    return DD.map((p) => ({ path: p, kind: 'exact' as const, value: models.get(p)!.bytes().slice() }));
  },
});

/** Fills a small filesystem to ENOSPC with sync() every few files, then frees some and writes again. */
export const fillDisk = (blockSize: 1024 | 4096): Workload => ({
  name: `fill the disk to ENOSPC, ${blockSize}-byte blocks`,
  sizeBytes: 16 << 20,
  mkfs: { blockSize, timeSec: 1_700_000_000 },
  async run(fs, rec, seed) {
    const rng = new Prng(seed);
    const model = new Map<string, Uint8Array | null>();
    let full = 0;
    for (let i = 0; full < 2 && i < 200; i++) {
      const path = `/f${i}`;
      const data = fillPattern(rng.int(20_000, 300_000), seed + i);
      rec.change(path, 'set', data);
      try {
        await fs.writeFile(path, data);
        model.set(path, data);
      } catch (e) {
        if (!isErrno(e, 'ENOSPC')) throw e;
        full++;
        // Whatever a failed write left is not acknowledged; remove it.
        try { await fs.unlink(path); } catch (e2) { if (!isErrno(e2, 'ENOENT')) throw e2; }
        rec.change(path, 'set', null);
        model.set(path, null);
        for (const [p, v] of [...model].slice(0, 3)) if (v) { rec.change(p, 'set', null); await fs.unlink(p); model.set(p, null); }
      }
      if (i % 3 === 2) await syncAck(fs, rec, model, `sync after f${i}`);
    }
    return exactAll(model);
  },
});
