// A bounded, error-recording walk of a whole ext4kit filesystem through the public read API, for
// the corpus and fuzz tests. Rule under test: only Ext4Error escapes any call.
//
// Policy: every API call is one "step". An Ext4Error from a step is recorded and the walk carries
// on with the next sibling (a failed readdir skips that directory, a failed lstat skips that
// entry's other steps); any other thrown value is recorded as `foreign` (a failure) with its stack.
// Directory cycles are detected by inode number; the walk stops once `maxEntries` entries were
// seen, reads at most `maxFileBytes` of each file and `maxTotalBytes` in all.
import { Ext4Error } from '../../src/errors/ext4-error.ts';
import type { Ext4 } from '../../src/api/ext4.ts';

export interface WalkLimits {
  /** Directory entries visited before the walk stops (default 200 000). */
  maxEntries: number;
  /** Bytes read from one regular file through createReadStream (default 64 MiB). */
  maxFileBytes: number;
  /** Bytes read from all files together (default 512 MiB); later files get only lstat. */
  maxTotalBytes: number;
  /** Mappings iterated per file (default 100 000). */
  maxMappings: number;
}

export const DEFAULT_LIMITS: WalkLimits = {
  maxEntries: 200_000,
  maxFileBytes: 64 * 1024 * 1024,
  maxTotalBytes: 512 * 1024 * 1024,
  maxMappings: 100_000,
};

export interface WalkIssue {
  step: string;
  path: string;
  /** Ext4Error code, or the constructor name of a foreign value. */
  code: string;
  detail?: string;
  message: string;
  stack?: string;
}

export interface WalkReport {
  entries: number;
  dirs: number;
  files: number;
  symlinks: number;
  xattrs: number;
  bytesRead: number;
  /** Directories reached a second time (by inode): not descended into again. */
  cycles: number;
  /** Why the walk stopped early, if it did. */
  truncated?: string;
  /** Ext4Errors recorded (allowed on corrupt images). */
  errors: WalkIssue[];
  /** Anything else that was thrown: always a failure. */
  foreign: WalkIssue[];
}

export function describeThrown(step: string, path: string, e: unknown): { issue: WalkIssue; ext4: boolean } {
  if (e instanceof Ext4Error) {
    return { ext4: true, issue: { step, path, code: e.code, ...(e.detail !== undefined ? { detail: e.detail } : {}), message: e.message } };
  }
  const err = e instanceof Error ? e : undefined;
  return {
    ext4: false,
    issue: {
      step, path,
      code: err ? err.constructor?.name ?? 'Error' : typeof e,
      message: err ? err.message : String(e),
      ...(err?.stack !== undefined ? { stack: err.stack } : {}),
    },
  };
}

const MAX_RECORDED = 200;

/** Walks `fs` from the root; `progress` is told where the walk is (for hang reports). */
export async function walkFilesystem(fs: Ext4, limits: Partial<WalkLimits> = {}, progress?: (where: string) => void): Promise<WalkReport> {
  const lim = { ...DEFAULT_LIMITS, ...limits };
  const rep: WalkReport = { entries: 0, dirs: 0, files: 0, symlinks: 0, xattrs: 0, bytesRead: 0, cycles: 0, errors: [], foreign: [] };
  const record = (step: string, path: string, e: unknown): void => {
    const { issue, ext4 } = describeThrown(step, path, e);
    const list = ext4 ? rep.errors : rep.foreign;
    if (list.length < MAX_RECORDED) list.push(issue);
  };
  // Runs one API call; undefined when it threw (and the throw was recorded).
  const step = async <T>(name: string, path: string, fn: () => Promise<T> | T): Promise<{ ok: true; value: T } | { ok: false }> => {
    try {
      return { ok: true, value: await fn() };
    } catch (e) {
      record(name, path, e);
      return { ok: false };
    }
  };

  await step('info', '/', () => fs.info());
  await step('statfs', '/', () => fs.statfs());
  const root = await step('lstat', '/', () => fs.lstat('/'));
  await xattrs('/');
  const visited = new Set<number>();
  const queue: string[] = ['/'];
  if (root.ok) visited.add(root.value.ino);

  async function xattrs(path: string): Promise<void> {
    const names = await step('listxattr', path, () => fs.listxattr(path));
    if (!names.ok) return;
    for (const n of names.value) {
      rep.xattrs++;
      await step('getxattr', path, () => fs.getxattr(path, n));
    }
  }

  async function readData(path: string, size: number): Promise<void> {
    const budget = Math.min(lim.maxFileBytes, lim.maxTotalBytes - rep.bytesRead);
    if (budget <= 0 || size <= 0) return;
    progress?.(`read ${path}`);
    await step('read', path, async () => {
      const reader = fs.createReadStream(path, { end: budget - 1 }).getReader();
      let got = 0;
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          got += value.byteLength;
          if (got > budget) throw new Error(`createReadStream returned ${got} bytes, past end=${budget - 1}`);
        }
      } finally {
        rep.bytesRead += got;
        reader.releaseLock();
      }
      if (got !== Math.min(size, budget)) throw new Error(`createReadStream returned ${got} bytes for a file of ${size} (limit ${budget})`);
    });
    await step('mappings', path, async () => {
      let n = 0;
      for await (const _m of fs.mappings(path)) if (++n >= lim.maxMappings) break;
    });
  }

  while (queue.length > 0) {
    const dir = queue.shift()!;
    progress?.(`readdir ${dir}`);
    const list = await step('readdir', dir, () => fs.readdir(dir, { withFileTypes: true }));
    if (!list.ok) continue;
    rep.dirs++;
    for (const d of list.value) {
      if (rep.entries >= lim.maxEntries) {
        rep.truncated = `entry bound ${lim.maxEntries} reached`;
        return rep;
      }
      rep.entries++;
      const path = dir === '/' ? `/${d.name}` : `${dir}/${d.name}`;
      const st = await step('lstat', path, () => fs.lstat(path));
      if (!st.ok) continue;
      await xattrs(path);
      const s = st.value;
      if (s.isDirectory()) {
        if (visited.has(s.ino)) rep.cycles++;
        else {
          visited.add(s.ino);
          queue.push(path);
        }
      } else if (s.isSymbolicLink()) {
        rep.symlinks++;
        await step('readlink', path, () => fs.readlink(path));
      } else if (s.isFile()) {
        rep.files++;
        await readData(path, s.size);
      }
    }
  }
  return rep;
}
