// Seeded, deterministic host directory tree for read-fidelity tests, and the manifest of what it
// holds. The same seed and options give the same names, bytes, modes, owners, xattrs and times.
import { spawn } from 'node:child_process';
import { chmod, lchown, link, lutimes, mkdir, open, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { haveCommand } from './oracles.ts';

export type EntryKind = 'file' | 'dir' | 'symlink';

export interface DataRange {
  offset: number;
  length: number;
}

export interface ManifestEntry {
  /** Relative to the tree root, '/'-separated; the root itself is not listed. */
  path: string;
  kind: EntryKind;
  /** Permission and special bits (`& 0o7777`); symlinks are always 0o777. */
  mode: number;
  /** File size in bytes; for a symlink the target length in bytes; 0 for directories. */
  size: number;
  /** Symlink target. */
  target?: string;
  /** Where a regular file holds data (everything else reads as zeros). Absent for empty files. */
  dataRanges?: DataRange[];
  /** Hard link: the first name of the group. Shares inode, mode, owner and times with it. */
  linkTo?: string;
  /** Owner, when the generator changed it (only as root). */
  uid?: number;
  gid?: number;
  /** user.* extended attributes (only when `TreeManifest.xattrs.applied`). */
  xattrs?: Record<string, Uint8Array>;
  mtimeNs: bigint;
  atimeNs: bigint;
  /** What the entry exercises: 'empty', 'tiny', 'random', 'zeros', 'sparse-start', 'sparse-middle',
   * 'sparse-end', 'sparse-fragmented', 'huge-sparse', 'fast-symlink', 'slow-symlink', 'dangling',
   * 'absolute', 'hardlink', 'odd-name', 'long-name', 'deep', 'bigdir', 'mode', 'owner', 'xattr',
   * 'wide-time'. */
  tags: string[];
}

export interface TreeManifest {
  root: string;
  seed: number;
  /** Every entry except the root, in creation order (parents before children). */
  entries: ManifestEntry[];
  rootTimes: { mtimeNs: bigint; atimeNs: bigint };
  xattrs: { applied: boolean; reason?: string };
  /** True when every time was set to the nanosecond (GNU touch); else microsecond precision. */
  nanosecondTimes: boolean;
  /** True when owners other than the caller's were set (requires root). */
  owners: boolean;
  bigDir?: { path: string; entries: number };
  hugeSparse?: { path: string; size: number; dataRanges: DataRange[] };
  deepest: { path: string; depth: number };
  /** Names of each hard-link group, first name first. */
  hardLinkGroups: string[][];
  maxSymlinkTarget: number;
  /** Inodes the tree needs (entries minus extra hard-link names, plus the root). */
  inodeCount: number;
  /** Bytes of data actually written (not counting holes). */
  dataBytes: number;
}

export interface GenerateTreeOptions {
  seed: number;
  /** Entries in the big directory; default 20000 (a two-level htree with 1 KiB blocks); 0 = none. */
  bigDirEntries?: number;
  /** Apparent size of the huge sparse file; default 3 GiB; 0 = none. */
  sparseHugeBytes?: number;
  /** Tiny (1–60 byte) files; default 48. */
  smallFiles?: number;
  /** Longest symlink target to make; default 4000. An image with block size B holds at most B-1. */
  maxSymlinkTarget?: number;
  /** Set user.* xattrs when setfattr works here; default true. */
  xattrs?: boolean;
  /** Give some entries non-root owners when running as root; default true. */
  owners?: boolean;
  /** Include times before 1970 and after 2038 (extra epoch bits); default false. */
  wideTimes?: boolean;
}

/** mulberry32: small, fast, good enough for test data. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

class Rng {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed ^ 0x9e3779b9);
  }
  u32(): number {
    return this.next();
  }
  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor((this.next() / 0x1_0000_0000) * (hi - lo + 1));
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) b.writeUInt32LE(this.next(), i);
    if (i < n) {
      const last = this.next();
      for (let k = 0; i < n; i++, k++) b[i] = (last >>> (8 * k)) & 0xff;
    }
    return b;
  }
  text(n: number, alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789_-.'): string {
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet[this.int(0, alphabet.length - 1)];
    return s;
  }
}

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const KiB = 1024;
const NS = 1_000_000_000n;

interface Plan extends ManifestEntry {
  content?: 'random' | 'zeros' | 'text';
}

/** Builds the tree under `root` (created if missing; should be empty) and returns its manifest. */
export async function generateTree(root: string, opts: GenerateTreeOptions): Promise<TreeManifest> {
  const rng = new Rng(opts.seed);
  const bigDirEntries = opts.bigDirEntries ?? 20000;
  const sparseHugeBytes = opts.sparseHugeBytes ?? 3 * GiB;
  const smallFiles = opts.smallFiles ?? 48;
  const maxSymlinkTarget = opts.maxSymlinkTarget ?? 4000;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const owners = (opts.owners ?? true) && isRoot;

  await mkdir(root, { recursive: true });
  // GNU touch sets nanoseconds; without it only multiples of 1/8 s are set exactly (lutimes goes
  // through a double and microseconds). The same random draws are made either way.
  const useTouch = haveCommand('touch') && (await touchWorks(root));

  const plans: Plan[] = [];
  const byPath = new Map<string, Plan>();
  let clock = 1_600_000_000n * NS;
  const nextTime = (): bigint => {
    const sec = rng.int(1, 86_400);
    const frac = rng.int(0, 999_999_999);
    clock = (clock / NS + BigInt(sec)) * NS + BigInt(useTouch ? frac : (frac % 8) * 125_000_000);
    return clock;
  };
  const atimeFor = (m: bigint): bigint => {
    const sec = m / NS + 1000n;
    return (sec > 1000n ? sec : 1000n) * NS + BigInt(rng.int(0, 7)) * 125_000_000n;
  };
  const add = (p: Omit<Plan, 'mtimeNs' | 'atimeNs'> & { mtimeNs?: bigint; atimeNs?: bigint }): Plan => {
    if (byPath.has(p.path)) throw new Error(`fixture-tree: duplicate path ${p.path}`);
    const mtimeNs = p.mtimeNs ?? nextTime();
    const full: Plan = { ...p, mtimeNs, atimeNs: p.atimeNs ?? atimeFor(mtimeNs) };
    plans.push(full);
    byPath.set(full.path, full);
    return full;
  };
  const dir = (path: string, mode = 0o755, tags: string[] = []): Plan => add({ path, kind: 'dir', mode, size: 0, tags });
  const file = (path: string, size: number, tags: string[], content: Plan['content'] = 'random', mode = 0o644): Plan =>
    add({ path, kind: 'file', mode, size, tags, content, dataRanges: size > 0 ? [{ offset: 0, length: size }] : undefined });
  const sparse = (path: string, size: number, ranges: DataRange[], tags: string[]): Plan =>
    add({ path, kind: 'file', mode: 0o644, size, tags, content: 'random', dataRanges: ranges });
  const sym = (path: string, target: string, tags: string[] = []): Plan => {
    const len = Buffer.byteLength(target);
    return add({ path, kind: 'symlink', mode: 0o777, size: len, target, tags: [len < 60 ? 'fast-symlink' : 'slow-symlink', ...tags] });
  };
  const hardlink = (path: string, to: string): Plan => {
    const t = byPath.get(to)!;
    if (!t.tags.includes('hardlink')) t.tags.push('hardlink');
    return add({ path, kind: 'file', mode: t.mode, size: t.size, linkTo: to, tags: ['hardlink'], mtimeNs: t.mtimeNs, atimeNs: t.atimeNs });
  };

  // Regular files with random content, around block and power-of-two boundaries.
  dir('files');
  file('files/empty', 0, ['empty']);
  for (const size of [1023, 1024, 1025, 2048, 4095, 4096, 4097, 12 * KiB + 5, 65537, MiB - 1, 3 * MiB + 123]) {
    file(`files/random-${size}`, size, ['random']);
  }
  file('files/zeros-written-64k', 64 * KiB, ['zeros'], 'zeros');
  file('files/text.txt', 5000, ['random'], 'text');

  // Sparse files: holes at the start, in the middle, at the end, and very many extents.
  dir('sparse');
  sparse('sparse/hole-start', MiB + 3 + 10 * KiB, [{ offset: MiB + 3, length: 10 * KiB }], ['sparse-start']);
  sparse('sparse/hole-middle', 64 * KiB + 2 * MiB + 64 * KiB, [
    { offset: 0, length: 64 * KiB },
    { offset: 64 * KiB + 2 * MiB, length: 64 * KiB },
  ], ['sparse-middle']);
  sparse('sparse/hole-end', 5 * MiB, [{ offset: 0, length: 20 * KiB + 7 }], ['sparse-end']);
  sparse('sparse/only-hole', 3 * MiB, [], ['sparse-start', 'sparse-end']);
  const frag: DataRange[] = [];
  for (let i = 0; i < 600; i++) frag.push({ offset: i * 8 * KiB, length: 1 + (i % 7) * 100 });
  sparse('sparse/fragmented', 600 * 8 * KiB, frag, ['sparse-fragmented']);

  let hugeSparse: TreeManifest['hugeSparse'];
  if (sparseHugeBytes > 0) {
    const size = sparseHugeBytes;
    const candidates: DataRange[] = [
      { offset: 0, length: 4096 },
      { offset: MiB + 17, length: 100 },
      { offset: 2 ** 31 - 1000, length: 2000 },
      { offset: 2 ** 32 - 1000, length: 2000 },
      { offset: size - 777, length: 777 },
    ];
    const ranges: DataRange[] = [];
    for (const r of candidates) {
      if (r.offset < 0 || r.offset + r.length > size) continue;
      const prev = ranges[ranges.length - 1];
      if (prev && r.offset < prev.offset + prev.length) continue;
      ranges.push(r);
    }
    dir('huge');
    sparse('huge/sparse-big', size, ranges, ['huge-sparse']);
    hugeSparse = { path: 'huge/sparse-big', size, dataRanges: ranges };
  }

  // Tiny files, spread over a few directories.
  dir('small');
  for (let d = 0; d < 4; d++) dir(`small/s${d}`);
  for (let i = 0; i < smallFiles; i++) {
    const size = rng.int(1, 60);
    file(`small/s${i % 4}/tiny-${i}`, size, ['tiny'], i % 2 === 0 ? 'text' : 'random');
  }
  file('small/empty-a', 0, ['empty']);
  file('small/s0/empty-b', 0, ['empty']);

  // Deep nesting.
  const depth = 16;
  let deepPath = 'deep';
  dir(deepPath, 0o755, ['deep']);
  for (let i = 1; i <= depth; i++) {
    deepPath += `/l${String(i).padStart(2, '0')}`;
    dir(deepPath, 0o755, ['deep']);
  }
  file(`${deepPath}/bottom.bin`, 3000, ['deep', 'random']);
  sym(`${deepPath}/up`, '../../../../..', ['deep']);

  // Symlinks: fast (< 60 bytes), slow (>= 60), dangling, absolute, to dirs, UTF-8.
  dir('links');
  sym('links/short', 'x');
  sym('links/to-file', '../files/random-4096');
  sym('links/to-dir', '../deep/l01/l02');
  sym('links/dangling', 'does/not/exist', ['dangling']);
  sym('links/absolute', '/etc/hostname', ['absolute']);
  sym('links/absolute-dangling', '/nonexistent/ext4kit/abs', ['absolute', 'dangling']);
  sym('links/utf8-target', 'café/日本語/🦀');
  for (const len of [59, 60, 61, 100, 500, 1000, 1023, 2047, 4000]) {
    if (len > maxSymlinkTarget) continue;
    let t = '';
    while (Buffer.byteLength(t) < len) t += `${rng.text(rng.int(1, 40))}/`;
    t = t.slice(0, len);
    if (t.endsWith('/')) t = t.slice(0, -1) + 'z';
    sym(`links/len-${len}`, t);
  }

  // Hard links: several names, across directories.
  const hardLinkGroups: string[][] = [];
  dir('hardlinks');
  dir('hardlinks/sub');
  file('hardlinks/a', 9000, ['random']);
  hardlink('hardlinks/b', 'hardlinks/a');
  hardlink('hardlinks/sub/c', 'hardlinks/a');
  hardlink('files/link-to-a', 'hardlinks/a');
  hardLinkGroups.push(['hardlinks/a', 'hardlinks/b', 'hardlinks/sub/c', 'files/link-to-a']);
  file('hardlinks/x', 17, ['tiny'], 'text');
  hardlink('hardlinks/y', 'hardlinks/x');
  hardLinkGroups.push(['hardlinks/x', 'hardlinks/y']);
  file('hardlinks/empty-1', 0, ['empty']);
  hardlink('hardlinks/sub/empty-2', 'hardlinks/empty-1');
  hardlink('small/empty-3', 'hardlinks/empty-1');
  hardLinkGroups.push(['hardlinks/empty-1', 'hardlinks/sub/empty-2', 'small/empty-3']);

  // Odd names: spaces, UTF-8 in both normal forms, emoji, leading dash, 255-byte names.
  dir('names');
  const oddNames = [
    'with space',
    ' leading space',
    'trailing space ',
    'café',
    'cafe\u0301',
    '日本語',
    '🦀🚀 emoji',
    '-leading-dash',
    '--',
    '.hidden',
    '..dots..',
    "a=b;c&d'e",
    'x'.repeat(255),
    '日'.repeat(85),
    'é'.repeat(127) + 'e',
  ];
  for (const [i, n] of oddNames.entries()) {
    const tags = Buffer.byteLength(n) === 255 ? ['odd-name', 'long-name'] : ['odd-name'];
    file(`names/${n}`, i % 3 === 0 ? 0 : rng.int(1, 300), tags, 'text');
  }
  dir('names/dir café 日本', 0o755, ['odd-name']);
  file('names/dir café 日本/inside', 10, ['tiny'], 'text');
  sym('names/🔗 link', 'café', ['odd-name']);

  // Modes, including set-id and sticky bits.
  dir('modes');
  // Mode 0000 only as root: the comparison must still be able to read it.
  for (const m of [0o600, 0o755, 0o4755, 0o2755, 0o6755, 0o400, ...(isRoot ? [0o000] : []), 0o777]) {
    file(`modes/file-${m.toString(8).padStart(4, '0')}`, 11, ['mode'], 'text', m);
  }
  dir('modes/sticky', 0o1777, ['mode']);
  file('modes/sticky/inside', 5, ['tiny'], 'text');
  dir('modes/private', 0o700, ['mode']);
  dir('modes/setgid-dir', 0o2775, ['mode']);

  if (owners) {
    dir('owners');
    const own: Array<[string, number, number]> = [
      ['owners/uid1000', 1000, 1000],
      ['owners/nobody', 65534, 65534],
      ['owners/uid-high', 100_000, 200_000],
    ];
    for (const [p, uid, gid] of own) {
      const e = file(p, 7, ['owner'], 'text');
      e.uid = uid;
      e.gid = gid;
    }
    const d = dir('owners/dir', 0o755, ['owner']);
    d.uid = 1234;
    d.gid = 5678;
    const l = sym('owners/link', 'uid1000', ['owner']);
    l.uid = 4321;
    l.gid = 8765;
  }

  if (opts.wideTimes) {
    dir('times');
    const wide: Array<[string, bigint]> = [
      ['times/pre-1970', -315_619_200n * NS + 500_000_000n],
      ['times/y2038-after', 2_147_483_648n * NS + 1n],
      ['times/y2106', 4_294_967_296n * NS + 999_999_999n],
      ['times/y2400', 13_569_465_600n * NS + 250_000_000n],
    ];
    for (const [p, t] of wide) {
      if (t < 0n && !useTouch) continue;
      add({ path: p, kind: 'file', mode: 0o644, size: 3, content: 'text', dataRanges: [{ offset: 0, length: 3 }], tags: ['wide-time'], mtimeNs: t });
    }
  }

  // xattrs on files and directories; values fit in one 1 KiB xattr block.
  const wantXattrs = opts.xattrs ?? true;
  const xattrPlans: Array<[string, Record<string, Uint8Array>]> = [];
  if (wantXattrs) {
    dir('xattrs');
    const one = file('xattrs/one', 20, ['xattr'], 'text');
    const many = file('xattrs/many', 100, ['xattr'], 'random');
    const d = dir('xattrs/dir', 0o755, ['xattr']);
    const big = file('xattrs/big-value', 1, ['xattr'], 'text');
    xattrPlans.push([one.path, { 'user.comment': Buffer.from('hello xattr') }]);
    xattrPlans.push([many.path, {
      'user.a': Buffer.from('1'),
      'user.b': Buffer.from('two'),
      'user.binary': rng.bytes(32),
      ['user.long-name-' + 'n'.repeat(40)]: Buffer.from(rng.text(120)),
      'user.utf8': Buffer.from('café 日本語'),
    }]);
    xattrPlans.push([d.path, { 'user.dir': Buffer.from('on a directory') }]);
    xattrPlans.push([big.path, { 'user.big': rng.bytes(700) }]);
    xattrPlans.push(['files/random-4096', { 'user.origin': Buffer.from('fixture') }]);
    xattrPlans.push(['deep', { 'user.level': Buffer.from('0') }]);
  }

  // The big directory: long enough for a two-level htree with 1 KiB blocks. Names of varied length.
  let bigDir: TreeManifest['bigDir'];
  if (bigDirEntries > 0) {
    dir('bigdir');
    for (let i = 0; i < bigDirEntries; i++) {
      const name = `e${i.toString(36)}-${rng.text(rng.int(0, 40))}`;
      const mtimeNs = 1_650_000_000n * NS + BigInt(i) * NS + BigInt(i % 8) * 125_000_000n;
      const p = `bigdir/${name}`;
      if (i % 1000 === 7) add({ path: p, kind: 'dir', mode: 0o755, size: 0, tags: ['bigdir'], mtimeNs });
      else if (i % 1000 === 13) add({ path: p, kind: 'symlink', mode: 0o777, size: 4, target: 'none', tags: ['bigdir', 'fast-symlink', 'dangling'], mtimeNs });
      else if (i % 500 === 3) add({ path: p, kind: 'file', mode: 0o644, size: 8, content: 'text', dataRanges: [{ offset: 0, length: 8 }], tags: ['bigdir', 'tiny'], mtimeNs });
      else add({ path: p, kind: 'file', mode: 0o644, size: 0, tags: ['bigdir', 'empty'], mtimeNs });
    }
    bigDir = { path: 'bigdir', entries: bigDirEntries };
  }

  const rootMtime = nextTime();
  const rootTimes = { mtimeNs: rootMtime, atimeNs: atimeFor(rootMtime) };

  // ---- materialize ----
  let dataBytes = 0;
  const dataRng = new Rng(opts.seed + 1);

  const createOne = async (e: Plan): Promise<void> => {
    const abs = join(root, e.path);
    if (e.kind === 'dir') {
      await mkdir(abs);
    } else if (e.kind === 'symlink') {
      await symlink(e.target!, abs);
    } else if (e.linkTo !== undefined) {
      await link(join(root, e.linkTo), abs);
    } else if (!e.dataRanges || e.dataRanges.length === 0) {
      const fh = await open(abs, 'wx');
      try {
        if (e.size > 0) await fh.truncate(e.size);
      } finally {
        await fh.close();
      }
    } else if (e.dataRanges.length === 1 && e.dataRanges[0]!.offset === 0 && e.dataRanges[0]!.length === e.size) {
      const buf = contentBytes(e.content ?? 'random', e.size, dataRng);
      dataBytes += buf.length;
      await writeFile(abs, buf, { flag: 'wx' });
    } else {
      const fh = await open(abs, 'wx');
      try {
        for (const r of e.dataRanges) {
          const buf = contentBytes(e.content ?? 'random', r.length, dataRng);
          dataBytes += buf.length;
          await fh.write(buf, 0, buf.length, r.offset);
        }
        await fh.truncate(e.size);
      } finally {
        await fh.close();
      }
    }
  };

  // Parents come before children in `plans`; the big directory's children are created in parallel,
  // everything else in order (content comes from one sequential stream).
  const big = plans.filter((p) => p.tags.includes('bigdir'));
  const rest = plans.filter((p) => !p.tags.includes('bigdir'));
  for (const e of rest) await createOne(e);
  // Text content of bigdir files is drawn up front so the result does not depend on scheduling.
  const bigContent = new Map<string, Buffer>();
  for (const e of big) if (e.dataRanges) bigContent.set(e.path, contentBytes('text', e.size, dataRng));
  await mapLimit(big, 32, async (e) => {
    const abs = join(root, e.path);
    const c = bigContent.get(e.path);
    if (e.kind === 'file') {
      await writeFile(abs, c ?? Buffer.alloc(0), { flag: 'wx' });
      if (c) dataBytes += c.length;
    } else await createOne(e);
  });

  // Owners before modes: chown clears set-id bits.
  for (const e of plans) {
    if (e.uid !== undefined) await lchown(join(root, e.path), e.uid, e.gid ?? e.uid);
  }
  for (const e of plans) {
    if (e.kind !== 'symlink' && e.linkTo === undefined) await chmod(join(root, e.path), e.mode);
  }
  await chmod(root, 0o755);

  let xattrState: TreeManifest['xattrs'] = { applied: false, reason: 'not requested' };
  if (wantXattrs) {
    xattrState = await applyXattrs(root, xattrPlans);
    if (xattrState.applied) {
      for (const [p, attrs] of xattrPlans) {
        const e = byPath.get(p)!;
        e.xattrs = attrs;
        if (!e.tags.includes('xattr')) e.tags.push('xattr');
      }
    }
  }

  // Times last, children before parents (creating entries changes a directory's mtime).
  const timed = plans.filter((e) => e.linkTo === undefined);
  const setTimes = async (rel: string, mtimeNs: bigint, atimeNs: bigint): Promise<void> => {
    const abs = rel === '' ? root : join(root, rel);
    const exact = mtimeNs >= 0n && mtimeNs % 125_000_000n === 0n;
    await lutimes(abs, eighthsToSeconds(atimeNs), eighthsToSeconds(exact ? mtimeNs : atimeNs));
    if (!exact) await touchMtime(abs, mtimeNs);
  };
  const files = timed.filter((e) => e.kind !== 'dir');
  await mapLimit(files, 8, (e) => setTimes(e.path, e.mtimeNs, e.atimeNs));
  const dirs = timed.filter((e) => e.kind === 'dir').sort((a, b) => depthOf(b.path) - depthOf(a.path));
  for (const e of dirs) await setTimes(e.path, e.mtimeNs, e.atimeNs);
  await setTimes('', rootTimes.mtimeNs, rootTimes.atimeNs);

  let deepest = { path: '', depth: 0 };
  for (const e of plans) {
    const d = depthOf(e.path);
    if (d > deepest.depth) deepest = { path: e.path, depth: d };
  }
  const entries: ManifestEntry[] = plans.map(({ content: _content, ...rest }) => rest);
  return {
    root,
    seed: opts.seed,
    entries,
    rootTimes,
    xattrs: xattrState,
    nanosecondTimes: useTouch,
    owners,
    bigDir,
    hugeSparse,
    deepest,
    hardLinkGroups,
    maxSymlinkTarget,
    inodeCount: 1 + plans.filter((e) => e.linkTo === undefined).length,
    dataBytes,
  };
}

function depthOf(p: string): number {
  return p === '' ? 0 : p.split('/').length;
}

function contentBytes(kind: 'random' | 'zeros' | 'text', n: number, rng: Rng): Buffer {
  if (kind === 'zeros') return Buffer.alloc(n);
  if (kind === 'text') {
    const line = 'The quick brown fox jumps over the lazy dog. ';
    const start = rng.int(0, line.length - 1);
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = line.charCodeAt((start + i) % line.length);
    return b;
  }
  return rng.bytes(n);
}

/** Seconds as a number for lutimes: exact for non-negative multiples of 1/8 s. */
function eighthsToSeconds(ns: bigint): number {
  return Number(ns / 125_000_000n) / 8;
}

function formatNs(ns: bigint): string {
  const neg = ns < 0n;
  const abs = neg ? -ns : ns;
  // `touch -d @-1.5` means -1 s - 0.5 s: sign applies to the whole value.
  return `${neg ? '-' : ''}${abs / NS}.${String(abs % NS).padStart(9, '0')}`;
}

async function touchMtime(abs: string, mtimeNs: bigint): Promise<void> {
  await runQuiet('touch', ['-h', '-m', '-d', `@${formatNs(mtimeNs)}`, '--', abs]);
}

/** Sets the mtime of `path` (not following symlinks) to the nanosecond with GNU touch. */
export async function setMtimeNs(path: string, mtimeNs: bigint): Promise<void> {
  await touchMtime(path, mtimeNs);
}

let touchProbe: Promise<boolean> | undefined;
async function touchWorks(root: string): Promise<boolean> {
  touchProbe ??= (async () => {
    const probe = join(root, '.touch-probe');
    try {
      await writeFile(probe, '');
      await runQuiet('touch', ['-h', '-m', '-d', '@1600000000.123456789', '--', probe]);
      const st = await stat(probe, { bigint: true });
      return st.mtimeNs === 1_600_000_000_123_456_789n;
    } catch {
      return false;
    } finally {
      await rm(probe, { force: true });
    }
  })();
  return touchProbe;
}

async function applyXattrs(root: string, plans: Array<[string, Record<string, Uint8Array>]>): Promise<TreeManifest['xattrs']> {
  if (!haveCommand('setfattr')) return { applied: false, reason: 'setfattr not installed (Debian package attr)' };
  let dump = '';
  for (const [p, attrs] of plans) {
    dump += `# file: ${quoteAttrPath(Buffer.from(p))}\n`;
    for (const [k, v] of Object.entries(attrs)) dump += `${k}=0x${Buffer.from(v).toString('hex')}\n`;
    dump += '\n';
  }
  try {
    await runQuiet('setfattr', ['-h', '--restore=-'], { cwd: root, input: dump });
    return { applied: true };
  } catch (e) {
    return { applied: false, reason: `setfattr failed (no user xattr support here?): ${(e as Error).message}` };
  }
}

/** getfattr/setfattr path quoting: whitespace, '=', '\\' and non-printable bytes as \ooo. */
export function quoteAttrPath(p: Buffer): string {
  let s = '';
  for (const b of p) {
    if (b <= 0x20 || b >= 0x7f || b === 0x3d || b === 0x5c) s += '\\' + b.toString(8).padStart(3, '0');
    else s += String.fromCharCode(b);
  }
  return s;
}

function runQuiet(cmd: string, args: string[], opts: { cwd?: string; input?: string } = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, stdio: ['pipe', 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let err = '';
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exit ${code}: ${err.trim()}`))));
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

async function mapLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
