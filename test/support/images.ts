// Deterministic reference images built with mke2fs, per-run temporary files, and a comparison of
// two host directory trees (names as raw bytes, types, bytes, modes, times, links, xattrs).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { lstat, open, readdir, readlink, rm } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { haveCommand, runTool, toolPath } from './oracles.ts';

// ---- per-run temporary directory --------------------------------------------------------------

let runDir: string | undefined;
let counter = 0;

/** The per-process temporary directory (created on first use). */
export function tempRunDir(): string {
  runDir ??= mkdtempSync(join(tmpdir(), 'ext4kit-test-'));
  return runDir;
}

/** A fresh path in the per-run temporary directory (the file is not created). */
export function tmpImagePath(name = 'image'): string {
  return join(tempRunDir(), `${++counter}-${name.replace(/[^A-Za-z0-9._-]/g, '_')}.img`);
}

/** A fresh, empty directory in the per-run temporary directory. */
export function tmpDirPath(name = 'dir'): string {
  const p = join(tempRunDir(), `${++counter}-${name.replace(/[^A-Za-z0-9._-]/g, '_')}`);
  mkdirSync(p);
  return p;
}

function mountsUnder(dir: string): string[] {
  try {
    const prefix = dir.endsWith('/') ? dir : dir + '/';
    return readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[4] ?? '')
      .map((m) => m.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
      .filter((m) => m === dir || m.startsWith(prefix));
  } catch {
    return [];
  }
}

/** Removes the per-run temporary directory; refuses while anything is mounted inside it. */
export async function cleanupTemp(): Promise<void> {
  if (runDir === undefined) return;
  const mounted = mountsUnder(runDir);
  if (mounted.length > 0) throw new Error(`cleanupTemp: still mounted: ${mounted.join(', ')}`);
  await rm(runDir, { recursive: true, force: true });
  runDir = undefined;
}

process.on('exit', () => {
  if (runDir !== undefined && mountsUnder(runDir).length === 0) rmSync(runDir, { recursive: true, force: true });
});

// ---- images ------------------------------------------------------------------------------------

export interface MakeImageOptions {
  /** Populate from this host directory (`mke2fs -d`). mke2fs 1.47.0 keeps whole seconds of mtime,
   * copies atime/ctime from the host, leaves the root directory's own mode and times alone,
   * copies sparse files hole by hole, and refuses symlink targets of blockSize bytes or more. */
  dir?: string;
  blockSize: 1024 | 2048 | 4096;
  /** bigalloc cluster size in bytes (`-O bigalloc -C`). */
  clusterBytes?: number;
  sizeBytes: number;
  /** `-O` list relative to the type's defaults, e.g. '^metadata_csum' or 'quota,^has_journal'. */
  features?: string;
  type?: 'ext2' | 'ext3' | 'ext4';
  inodeSize?: number;
  /** Inode count (`-N`). */
  inodes?: number;
  /** Extended options (`-E`), merged with the fixed hash seed. */
  extended?: string[];
  uuid?: string;
  hashSeed?: string;
  /** E2FSPROGS_FAKE_TIME; default 1700000000. */
  fakeTime?: number;
  /** Output path; default `tmpImagePath()`. */
  out?: string;
  /** More mke2fs arguments, placed before the image path. An `-E x` here is merged too. */
  extra?: string[];
  /** Run `e2fsck -fyD` afterwards: mke2fs -d writes every directory linear; this turns large
   * ones into htrees (a 20000-entry directory becomes two-level with 1 KiB blocks). Note that
   * mke2fs -d itself is quadratic in directory size (about 40 s for 20000 entries). */
  indexDirs?: boolean;
  timeoutMs?: number;
}

export const DEFAULT_UUID = '4b1d0e5a-7c3f-4e2a-9d61-0123456789ab';
export const DEFAULT_HASH_SEED = '0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0';
export const DEFAULT_FAKE_TIME = 1_700_000_000;

// Debian bookworm's /etc/mke2fs.conf, pinned so that defaults do not move with the host.
const MKE2FS_CONF = `[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384

[fs_types]
	ext3 = {
		features = has_journal
	}
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
	small = {
		blocksize = 1024
		inode_ratio = 4096
	}
	floppy = {
		blocksize = 1024
		inode_ratio = 8192
	}
	big = {
		inode_ratio = 32768
	}
	huge = {
		inode_ratio = 65536
	}
	news = {
		inode_ratio = 4096
	}
	largefile = {
		inode_ratio = 1048576
		blocksize = -1
	}
	largefile4 = {
		inode_ratio = 4194304
		blocksize = -1
	}
	hurd = {
	     blocksize = 4096
	     inode_size = 128
	     warn_y2038_dates = 0
	}
`;

function mke2fsConfig(): string {
  const p = join(tempRunDir(), 'mke2fs.conf');
  if (!existsSync(p)) writeFileSync(p, MKE2FS_CONF);
  return p;
}

/** The mke2fs arguments `makeImage` would use for `opts` and `out` (for logs and reproduction). */
export function mke2fsArgs(opts: MakeImageOptions, out: string): string[] {
  const { blockSize, sizeBytes } = opts;
  if (sizeBytes <= 0 || sizeBytes % blockSize !== 0) throw new Error(`makeImage: sizeBytes ${sizeBytes} is not a positive multiple of ${blockSize}`);
  const extra = [...(opts.extra ?? [])];
  const extended = [`hash_seed=${opts.hashSeed ?? DEFAULT_HASH_SEED}`, ...(opts.extended ?? [])];
  for (let i = extra.indexOf('-E'); i >= 0; i = extra.indexOf('-E')) {
    // mke2fs keeps only the last -E: fold them all into one.
    extended.push(...(extra[i + 1] ?? '').split(',').filter(Boolean));
    extra.splice(i, 2);
  }
  const features: string[] = [];
  if (opts.clusterBytes !== undefined) features.push('bigalloc');
  if (opts.features) features.push(...opts.features.split(',').filter(Boolean));
  const args = ['-q', '-F', '-t', opts.type ?? 'ext4', '-b', String(blockSize)];
  if (features.length) args.push('-O', features.join(','));
  if (opts.clusterBytes !== undefined) args.push('-C', String(opts.clusterBytes));
  if (opts.inodeSize !== undefined) args.push('-I', String(opts.inodeSize));
  if (opts.inodes !== undefined) args.push('-N', String(opts.inodes));
  args.push('-U', opts.uuid ?? DEFAULT_UUID, '-E', extended.join(','));
  if (opts.dir !== undefined) args.push('-d', opts.dir);
  args.push(...extra, out, `${sizeBytes / 1024}k`);
  return args;
}

/** Builds an image with mke2fs (deterministic UUID, hash seed, time and config); returns its path. */
export async function makeImage(opts: MakeImageOptions): Promise<string> {
  const out = opts.out ?? tmpImagePath(opts.type ?? 'ext4');
  const args = mke2fsArgs(opts, out);
  const fh = await open(out, 'w');
  try {
    await fh.truncate(opts.sizeBytes);
  } finally {
    await fh.close();
  }
  const r = await runTool(toolPath('mke2fs'), args, {
    timeoutMs: opts.timeoutMs ?? 300_000,
    env: {
      E2FSPROGS_FAKE_TIME: String(opts.fakeTime ?? DEFAULT_FAKE_TIME),
      MKE2FS_CONFIG: mke2fsConfig(),
      E2FSPROGS_LIBMAGIC_SUPPRESS: '1',
    },
  });
  if (r.exitCode !== 0) {
    await rm(out, { force: true });
    throw new Error(`mke2fs ${args.join(' ')} failed (exit ${r.exitCode}):\n${(r.stderr + r.stdout).trim()}`);
  }
  if (opts.indexDirs) {
    // Exit 1 = "errors corrected", which is what rebuilding directories reports.
    const f = await runTool(toolPath('e2fsck'), ['-fyD', out], {
      timeoutMs: opts.timeoutMs ?? 300_000,
      env: { E2FSPROGS_FAKE_TIME: String(opts.fakeTime ?? DEFAULT_FAKE_TIME) },
    });
    if (f.exitCode !== 0 && f.exitCode !== 1) throw new Error(`e2fsck -fyD ${out} failed (exit ${f.exitCode}):\n${(f.stdout + f.stderr).trim()}`);
  }
  return out;
}

// ---- tree comparison ---------------------------------------------------------------------------

export interface CompareOptions {
  /** mtime comparison: true = to the nanosecond (default), 'seconds' = whole seconds, false = skip. */
  times?: boolean | 'seconds';
  /** user.* xattrs via getfattr (skipped when getfattr is missing); default true. */
  xattrs?: boolean;
  /** uid and gid; default true. */
  owners?: boolean;
  /** Hard-link groups; default true (debugfs rdump, for one, does not keep them). */
  hardLinks?: boolean;
  /** Compare set-id and sticky bits too (not just rwx); default true. */
  specialBits?: boolean;
  /** Compare the owner and mtime of symlinks; default true. */
  symlinkMeta?: boolean;
  /** Also compare the two roots' own mode, owner, mtime and xattrs; default false. */
  root?: boolean;
  /** Relative paths skipped on both sides, with everything below them; default ['lost+found']. */
  ignore?: string[];
  /** Stop listing after this many differences (a final line gives the count); default 500. */
  maxDiffs?: number;
}

/** For a tree put into an image with `mke2fs -d` (1.47.0 keeps whole seconds only). */
export const MKE2FS_D_COMPARE: CompareOptions = { times: 'seconds' };

/** For `debugfs rdump` output: whole seconds, no hard links, no xattrs, no set-id or sticky bits
 * (it chowns after chmod), no symlink owners or times. */
export const RDUMP_COMPARE: CompareOptions = { times: 'seconds', hardLinks: false, xattrs: false, specialBits: false, symlinkMeta: false };

type Kind = 'file' | 'dir' | 'symlink' | 'other';

interface Node {
  rel: Buffer;
  kind: Kind;
  st: BigIntStats;
}

const SLASH = Buffer.from('/');

function kindOf(st: BigIntStats): Kind {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  return 'other';
}

function show(rel: Buffer): string {
  return rel.length === 0 ? '/' : JSON.stringify(rel.toString('utf8')).slice(1, -1);
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Every entry below root (root itself under the empty key), keyed by the latin1 view of its bytes. */
async function walk(root: Buffer, ignore: Set<string>, errors: string[], side: string): Promise<Map<string, Node>> {
  const nodes = new Map<string, Node>();
  const visit = async (rel: Buffer): Promise<void> => {
    const abs = rel.length ? Buffer.concat([root, SLASH, rel]) : root;
    let st: BigIntStats;
    try {
      st = await lstat(abs, { bigint: true });
    } catch (e) {
      errors.push(`${side}: cannot lstat ${show(rel)}: ${(e as Error).message}`);
      return;
    }
    const node: Node = { rel, kind: kindOf(st), st };
    nodes.set(rel.toString('latin1'), node);
    if (node.kind !== 'dir') return;
    let names: Buffer[];
    try {
      names = await readdir(abs, { encoding: 'buffer' });
    } catch (e) {
      errors.push(`${side}: cannot read directory ${show(rel)}: ${(e as Error).message}`);
      return;
    }
    const children = names
      .map((n) => (rel.length ? Buffer.concat([rel, SLASH, n]) : n))
      .filter((c) => !ignore.has(c.toString('latin1')));
    await mapLimit(children, 32, visit);
  };
  await visit(Buffer.alloc(0));
  return nodes;
}

const CHUNK = 4 * 1024 * 1024;

type Range = [start: number, end: number];

/** Files at least this large and mostly holes are compared only where either side maps data. */
const SPARSE_MIN_BYTES = 64n * 1024n * 1024n;

/**
 * Byte ranges holding data (or unwritten or delayed extents) according to FIEMAP, via
 * `filefrag -s -v`; undefined when that is unavailable (tmpfs, FUSE, no e2fsprogs). Reading the
 * holes of a multi-GiB sparse file would fill the page cache with gigabytes of zero pages.
 */
async function mappedRanges(path: Buffer): Promise<Range[] | undefined> {
  const name = path.toString('utf8');
  if (!haveCommand('filefrag') || !Buffer.from(name).equals(path)) return undefined;
  const r = await runTool(toolPath('filefrag'), ['-s', '-v', name], { timeoutMs: 60_000 }).catch(() => undefined);
  if (r?.exitCode !== 0) return undefined;
  const lines = r.stdout.split('\n');
  const header = lines.find((l) => l.startsWith('File size of '));
  const bs = header && /\((\d+) blocks? of (\d+) bytes\)\s*$/.exec(header);
  if (!bs) return undefined;
  const blockBytes = Number(bs[2]);
  const ranges: Range[] = [];
  for (const l of lines) {
    const m = /^\s*\d+:\s+(\d+)\.\.\s*(\d+):/.exec(l);
    if (m) ranges.push([Number(m[1]) * blockBytes, (Number(m[2]) + 1) * blockBytes]);
  }
  return ranges;
}

/** Sorted, merged union of ranges, clipped to [0, size). */
function unionRanges(a: Range[], b: Range[], size: number): Range[] {
  const all = [...a, ...b].map(([s, e]): Range => [Math.max(0, s), Math.min(size, e)]).filter(([s, e]) => s < e);
  all.sort((x, y) => x[0] - y[0]);
  const out: Range[] = [];
  for (const r of all) {
    const last = out[out.length - 1];
    if (last && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]);
    else out.push([r[0], r[1]]);
  }
  return out;
}

/** Compares two regular files of equal size; returns a difference or undefined. */
async function compareContent(a: Buffer, b: Buffer, size: bigint, sparse: boolean): Promise<string | undefined> {
  let ranges: Range[] = [[0, Number(size)]];
  if (sparse && size >= SPARSE_MIN_BYTES) {
    const [ma, mb] = await Promise.all([mappedRanges(a), mappedRanges(b)]);
    // Where neither side maps anything both read as zeros.
    if (ma && mb) ranges = unionRanges(ma, mb, Number(size));
  }
  const fa = await open(a, 'r');
  try {
    const fb = await open(b, 'r');
    try {
      const ba = Buffer.allocUnsafe(CHUNK);
      const bb = Buffer.allocUnsafe(CHUNK);
      for (const [start, end] of ranges) {
        for (let pos = start; pos < end; ) {
          const want = Math.min(CHUNK, end - pos);
          const [ra, rb] = await Promise.all([readFull(fa, ba, want, pos), readFull(fb, bb, want, pos)]);
          if (ra !== want || rb !== want) return `short read at byte ${pos} (expected ${want}, got ${ra} and ${rb})`;
          const va = ba.subarray(0, want);
          const vb = bb.subarray(0, want);
          if (!va.equals(vb)) {
            let i = 0;
            while (va[i] === vb[i]) i++;
            return `content differs from byte ${pos + i}`;
          }
          pos += want;
        }
      }
      // Nothing must follow the expected size on the actual side.
      const extra = await fb.read(bb, 0, 1, Number(size));
      if (extra.bytesRead !== 0) return `actual has data beyond ${size} bytes`;
      return undefined;
    } finally {
      await fb.close();
    }
  } finally {
    await fa.close();
  }
}

async function readFull(fh: FileHandle, buf: Buffer, want: number, pos: number): Promise<number> {
  let got = 0;
  while (got < want) {
    const { bytesRead } = await fh.read(buf, got, want - got, pos + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

function octal(mode: bigint): string {
  return '0' + (mode & 0o7777n).toString(8).padStart(4, '0');
}

function formatNs(ns: bigint): string {
  const neg = ns < 0n;
  const a = neg ? -ns : ns;
  return `${neg ? '-' : ''}${a / 1_000_000_000n}.${String(a % 1_000_000_000n).padStart(9, '0')}`;
}

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && a < 0n !== b < 0n ? q - 1n : q;
}

/** user.* xattrs of every entry under root via `getfattr -R`: latin1 rel path → name → hex value. */
async function readXattrs(root: Buffer): Promise<Map<string, Map<string, string>>> {
  const rootStr = root.toString('utf8');
  const r = await new Promise<{ code: number; out: Buffer; err: string }>((resolve, reject) => {
    const child = spawn('getfattr', ['-R', '-P', '-h', '-d', '-m', '^user\\.', '-e', 'hex', '--absolute-names', '--', rootStr], {
      env: { ...process.env, LC_ALL: 'C' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, out: Buffer.concat(out), err }));
  });
  // getfattr exits 1 when some file had no xattr support; the output is still complete.
  if (r.code !== 0 && r.out.length === 0 && r.err.trim() !== '') throw new Error(`getfattr: ${r.err.trim()}`);
  const result = new Map<string, Map<string, string>>();
  const rootKey = root.toString('latin1');
  let current: Map<string, string> | undefined;
  for (const line of r.out.toString('latin1').split('\n')) {
    if (line.startsWith('# file: ')) {
      const p = line.slice(8).replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
      const rel = p === rootKey ? '' : p.startsWith(rootKey + '/') ? p.slice(rootKey.length + 1) : undefined;
      current = undefined;
      if (rel !== undefined) {
        current = new Map();
        result.set(rel, current);
      }
    } else if (current && line.includes('=')) {
      const eq = line.indexOf('=');
      current.set(line.slice(0, eq), line.slice(eq + 1));
    } else if (current && line.trim() !== '') {
      current.set(line.trim(), '');
    }
  }
  return result;
}

/**
 * Lists differences between two host trees (empty when identical): names as raw bytes, file types,
 * file bytes, permission and set-id/sticky bits, mtimes, symlink targets, hard-link groups, owners
 * and user.* xattrs. atime and ctime are never compared. Directory sizes and link counts are not
 * compared (they depend on the filesystem).
 */
export async function compareTrees(expectedRoot: string, actualRoot: string, opts: CompareOptions = {}): Promise<string[]> {
  const times = opts.times ?? true;
  const owners = opts.owners ?? true;
  const hardLinks = opts.hardLinks ?? true;
  const maxDiffs = opts.maxDiffs ?? 500;
  const modeMask = (opts.specialBits ?? true) ? 0o7777n : 0o777n;
  const symlinkMeta = opts.symlinkMeta ?? true;
  const ignore = new Set((opts.ignore ?? ['lost+found']).map((p) => Buffer.from(p.replace(/^\/+|\/+$/g, '')).toString('latin1')));
  const diffs: string[] = [];
  let dropped = 0;
  const diff = (s: string): void => {
    if (diffs.length < maxDiffs) diffs.push(s);
    else dropped++;
  };

  const ea = Buffer.from(expectedRoot.replace(/\/+$/, '') || '/');
  const aa = Buffer.from(actualRoot.replace(/\/+$/, '') || '/');
  const errors: string[] = [];
  const [exp, act] = await Promise.all([walk(ea, ignore, errors, 'expected'), walk(aa, ignore, errors, 'actual')]);
  errors.forEach(diff);

  const keys = [...new Set([...exp.keys(), ...act.keys()])].sort();
  const missingDirs: string[] = [];
  const underMissing = (k: string): boolean => missingDirs.some((d) => k.startsWith(d + '/'));
  const contentJobs: Array<{ node: Node; actual: Node }> = [];

  for (const k of keys) {
    const e = exp.get(k);
    const a = act.get(k);
    if (!e || !a) {
      if (underMissing(k)) continue;
      const n = (e ?? a)!;
      diff(`${e ? 'missing in actual' : 'unexpected in actual'}: ${show(n.rel)} (${n.kind})`);
      if (n.kind === 'dir') missingDirs.push(k);
      continue;
    }
    const name = show(e.rel);
    if (e.kind !== a.kind) {
      diff(`type differs: ${name}: expected ${e.kind}, actual ${a.kind}`);
      if (e.kind === 'dir') missingDirs.push(k);
      continue;
    }
    const isRoot = k === '';
    if (isRoot && !opts.root) continue;
    const meta = e.kind !== 'symlink' || symlinkMeta;
    if (e.kind !== 'symlink' && (e.st.mode & modeMask) !== (a.st.mode & modeMask)) {
      diff(`mode differs: ${name}: expected ${octal(e.st.mode)}, actual ${octal(a.st.mode)}`);
    }
    if (meta && owners && (e.st.uid !== a.st.uid || e.st.gid !== a.st.gid)) {
      diff(`owner differs: ${name}: expected ${e.st.uid}:${e.st.gid}, actual ${a.st.uid}:${a.st.gid}`);
    }
    if (meta && times === true && e.st.mtimeNs !== a.st.mtimeNs) {
      diff(`mtime differs: ${name}: expected ${formatNs(e.st.mtimeNs)}, actual ${formatNs(a.st.mtimeNs)}`);
    } else if (meta && times === 'seconds' && floorDiv(e.st.mtimeNs, 1_000_000_000n) !== floorDiv(a.st.mtimeNs, 1_000_000_000n)) {
      diff(`mtime differs: ${name}: expected ${formatNs(e.st.mtimeNs)}, actual ${formatNs(a.st.mtimeNs)} (seconds)`);
    }
    if (e.kind === 'symlink') {
      try {
        const [te, ta] = await Promise.all([
          readlink(Buffer.concat([ea, SLASH, e.rel]), { encoding: 'buffer' }),
          readlink(Buffer.concat([aa, SLASH, a.rel]), { encoding: 'buffer' }),
        ]);
        if (!te.equals(ta)) {
          diff(`symlink target differs: ${name}: expected ${JSON.stringify(te.toString('utf8'))}, actual ${JSON.stringify(ta.toString('utf8'))}`);
        }
      } catch (err) {
        diff(`cannot read symlink ${name}: ${(err as Error).message}`);
      }
    } else if (e.kind === 'file') {
      if (e.st.size !== a.st.size) diff(`size differs: ${name}: expected ${e.st.size}, actual ${a.st.size}`);
      else if (e.st.size > 0n) contentJobs.push({ node: e, actual: a });
    }
  }

  const results = await mapLimit(contentJobs, 2, async ({ node, actual }) => {
    try {
      const sparse = node.st.blocks * 512n < node.st.size / 2n || actual.st.blocks * 512n < actual.st.size / 2n;
      return await compareContent(Buffer.concat([ea, SLASH, node.rel]), Buffer.concat([aa, SLASH, actual.rel]), node.st.size, sparse);
    } catch (err) {
      return `cannot compare: ${(err as Error).message}`;
    }
  });
  results.forEach((r, i) => {
    if (r) diff(`${r}: ${show(contentJobs[i]!.node.rel)}`);
  });

  if (hardLinks) {
    // Same inode in expected ⇔ same inode in actual, among names present on both sides.
    // Iterate in sorted key order: the walks insert concurrently, so map order is not stable.
    const groups = (m: Map<string, Node>): Map<string, string> => {
      const byIno = new Map<string, string>();
      for (const k of keys) {
        const n = m.get(k);
        if (n && n.kind !== 'dir' && exp.has(k) && act.has(k)) byIno.set(k, `${n.st.dev}:${n.st.ino}`);
      }
      return byIno;
    };
    const ge = groups(exp);
    const ga = groups(act);
    const members = (g: Map<string, string>): Map<string, string[]> => {
      const out = new Map<string, string[]>();
      for (const [k, id] of g) {
        const l = out.get(id);
        if (l) l.push(k);
        else out.set(id, [k]);
      }
      return out;
    };
    const me = members(ge);
    const ma = members(ga);
    const fmt = (l: string[]): string => `{${l.map((k) => show(Buffer.from(k, 'latin1'))).join(', ')}}`;
    const reported = new Set<string>();
    for (const [k, idE] of ge) {
      const idA = ga.get(k);
      if (idA === undefined || reported.has(k)) continue;
      const le = me.get(idE)!;
      const la = ma.get(idA)!;
      const same = le.length === la.length && le.every((x) => ga.get(x) === idA);
      if (!same) {
        diff(`hard links differ: ${show(Buffer.from(k, 'latin1'))}: expected linked names ${fmt(le)}, actual ${fmt(la)}`);
        for (const x of le) reported.add(x);
        for (const x of la) reported.add(x);
      }
    }
  }

  if ((opts.xattrs ?? true) && haveCommand('getfattr')) {
    const [xe, xa] = await Promise.all([readXattrs(ea), readXattrs(aa)]);
    const skip = (k: string): boolean => (k === '' && !opts.root) || [...ignore].some((i) => k === i || k.startsWith(i + '/'));
    const xkeys = [...new Set([...xe.keys(), ...xa.keys()])].sort();
    for (const k of xkeys) {
      if (skip(k) || !exp.has(k) || !act.has(k)) continue;
      const me = xe.get(k) ?? new Map<string, string>();
      const ma = xa.get(k) ?? new Map<string, string>();
      for (const n of [...new Set([...me.keys(), ...ma.keys()])].sort()) {
        const ve = me.get(n);
        const va = ma.get(n);
        if (ve === va) continue;
        const name = show(Buffer.from(k, 'latin1'));
        if (ve === undefined) diff(`xattr unexpected in actual: ${name}: ${n}`);
        else if (va === undefined) diff(`xattr missing in actual: ${name}: ${n}`);
        else diff(`xattr differs: ${name}: ${n}: expected ${ve.slice(0, 66)}, actual ${va.slice(0, 66)}`);
      }
    }
  }

  if (dropped > 0) diffs.push(`... and ${dropped} more differences`);
  return diffs;
}
