// Wrappers around the external oracles (e2fsprogs, the kernel through loop mounts).
// Everything returns structured results; nothing here prints.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, rmdirSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RunResult {
  /** Exit code; -1 when killed by a signal or the timeout. */
  exitCode: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface RunOptions {
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  input?: string | Buffer;
  cwd?: string;
  /** Stop collecting output beyond this many bytes per stream (the process keeps running). */
  maxBuffer?: number;
}

const DEFAULT_TIMEOUT_MS = 120_000;
const DEFAULT_MAX_BUFFER = 256 * 1024 * 1024;

/** Runs a program without a shell and never rejects because of its exit status. */
export function runTool(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const maxBuffer = opts.maxBuffer ?? DEFAULT_MAX_BUFFER;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: { ...process.env, LC_ALL: 'C', ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outLen = 0;
    let errLen = 0;
    let timedOut = false;
    child.stdout.on('data', (b: Buffer) => {
      if (outLen < maxBuffer) out.push(b);
      outLen += b.length;
    });
    child.stderr.on('data', (b: Buffer) => {
      if (errLen < maxBuffer) err.push(b);
      errLen += b.length;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        exitCode: code ?? -1,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        timedOut,
      });
    });
    child.stdin.on('error', () => {
      /* the tool may exit before reading its input */
    });
    child.stdin.end(opts.input ?? '');
  });
}

function describeFailure(cmd: string, args: readonly string[], r: RunResult): string {
  const how = r.timedOut ? 'timed out' : r.signal ? `killed by ${r.signal}` : `exit ${r.exitCode}`;
  return `${cmd} ${args.join(' ')}: ${how}\n${r.stderr.trim()}`;
}

const commandCache = new Map<string, boolean>();

/** Whether `name` is on PATH (or in the sbin directories, where Debian puts e2fsprogs). */
export function haveCommand(name: string): boolean {
  let ok = commandCache.get(name);
  if (ok === undefined) {
    ok = findCommand(name) !== undefined;
    commandCache.set(name, ok);
  }
  return ok;
}

function findCommand(name: string): string | undefined {
  const dirs = (process.env.PATH ?? '').split(':').filter(Boolean);
  for (const d of ['/usr/local/sbin', '/usr/sbin', '/sbin']) if (!dirs.includes(d)) dirs.push(d);
  for (const d of dirs) {
    const p = join(d, name);
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** Absolute path of a tool, looking in sbin directories that a non-root PATH may lack. */
export function toolPath(name: string): string {
  return findCommand(name) ?? name;
}

export function haveE2fsprogs(): boolean {
  return ['mke2fs', 'e2fsck', 'debugfs', 'dumpe2fs'].every(haveCommand);
}

/** `e2fsck -fn IMAGE`. Exit 0 = clean, 4 = errors left uncorrected, 8 = operational error. */
export async function e2fsck(image: string, opts: { timeoutMs?: number } = {}): Promise<{ exitCode: number; output: string }> {
  const r = await runTool(toolPath('e2fsck'), ['-fn', image], { timeoutMs: opts.timeoutMs });
  return { exitCode: r.exitCode, output: r.stdout + r.stderr };
}

export interface DebugfsOptions {
  /** Open read-write (`-w`). */
  write?: boolean;
  /** Catastrophic mode (`-c`): do not read the bitmaps, for damaged images. */
  catastrophic?: boolean;
  timeoutMs?: number;
}

/**
 * Runs debugfs requests and returns stdout and stderr. Several requests may be given separated by
 * newlines; they are then fed through `-f -`. debugfs reports most command errors on stderr with
 * exit status 0, so callers that care should look at `stderr`.
 */
export async function debugfsRaw(image: string, request: string, opts: DebugfsOptions = {}): Promise<RunResult> {
  const args: string[] = [];
  if (opts.write) args.push('-w');
  if (opts.catastrophic) args.push('-c');
  const multi = request.includes('\n');
  if (multi) args.push('-f', '-');
  else args.push('-R', request);
  args.push(image);
  const r = await runTool(toolPath('debugfs'), args, {
    timeoutMs: opts.timeoutMs,
    input: multi ? (request.endsWith('\n') ? request : request + '\n') : undefined,
  });
  if (r.exitCode !== 0 || r.timedOut) throw new Error(describeFailure('debugfs', args, r));
  return r;
}

/** debugfs stdout for `request` (see `debugfsRaw`). Throws when debugfs itself fails. */
export async function debugfs(image: string, request: string, opts: DebugfsOptions = {}): Promise<string> {
  return (await debugfsRaw(image, request, opts)).stdout;
}

/**
 * `dumpe2fs -h` as key → value ("Block count" → "16384"). Keys keep dumpe2fs's wording; journal
 * keys ("Journal features", ...) are included when present. Repeated keys keep the first value.
 */
export async function dumpe2fsHeader(image: string): Promise<Record<string, string>> {
  const r = await runTool(toolPath('dumpe2fs'), ['-h', image]);
  const out: Record<string, string> = {};
  for (const line of r.stdout.split('\n')) {
    const m = /^([A-Za-z][^:]*?):\s*(.*)$/.exec(line);
    if (!m) continue;
    const key = m[1]!.trim();
    if (!(key in out)) out[key] = m[2]!.trim();
  }
  if (Object.keys(out).length === 0) throw new Error(describeFailure('dumpe2fs', ['-h', image], r));
  return out;
}

/** `debugfs -R 'rdump / OUTDIR'`: the image's root directory contents land directly in outDir. */
export async function debugfsRdump(image: string, outDir: string, opts: { timeoutMs?: number } = {}): Promise<void> {
  await mkdir(outDir, { recursive: true });
  if (/[\s"]/.test(outDir)) throw new Error(`debugfsRdump: unsupported characters in ${outDir}`);
  const r = await debugfsRaw(image, `rdump / ${outDir}`, { timeoutMs: opts.timeoutMs ?? 600_000 });
  const errors = r.stderr
    .split('\n')
    .filter((l) => l.trim() !== '' && !/^debugfs \d/.test(l));
  if (errors.length > 0) throw new Error(`debugfs rdump of ${image}:\n${errors.join('\n')}`);
}

// ---- loop mounts ---------------------------------------------------------------------------

let loopSupport: Promise<{ ok: boolean; reason?: string }> | undefined;

/** Detects once per process whether loop mounts of ext4 images work here. */
export function loopMountSupport(): Promise<{ ok: boolean; reason?: string }> {
  loopSupport ??= detectLoopMount();
  return loopSupport;
}

async function detectLoopMount(): Promise<{ ok: boolean; reason?: string }> {
  if (process.platform !== 'linux') return { ok: false, reason: `platform is ${process.platform}` };
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return { ok: false, reason: 'not running as root' };
  for (const c of ['mount', 'umount', 'mke2fs']) {
    if (!haveCommand(c)) return { ok: false, reason: `${c} not installed` };
  }
  if (!existsSync('/dev/loop-control')) {
    const r = await runTool(toolPath('losetup'), ['-f'], { timeoutMs: 10_000 }).catch(() => undefined);
    if (r?.exitCode !== 0) return { ok: false, reason: 'no /dev/loop-control and losetup -f fails' };
  }
  const dir = await mkdtemp(join(tmpdir(), 'ext4kit-loopprobe-'));
  const image = join(dir, 'probe.img');
  try {
    await writeFile(image, '');
    const mk = await runTool(toolPath('mke2fs'), ['-q', '-F', '-t', 'ext4', '-b', '1024', image, '4M'], { timeoutMs: 30_000 });
    if (mk.exitCode !== 0) return { ok: false, reason: `mke2fs failed: ${mk.stderr.trim()}` };
    await withLoopMount(image, async () => undefined, { readOnly: true });
    return { ok: true };
  } catch (e) {
    return { ok: false, reason: `loop mount failed: ${(e as Error).message.trim()}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const liveMounts = new Set<string>();

export interface LoopMountOptions {
  readOnly?: boolean;
  /** Extra `-o` options, e.g. ['noload'] to skip journal replay on a read-only mount. */
  options?: string[];
  /** Filesystem type for `mount -t`; defaults to ext4 (which also mounts ext2/ext3 images). */
  type?: string;
}

/**
 * Mounts `image` with `mount -o loop` on a fresh temporary directory, runs `fn(mnt)`, and always
 * unmounts (which also detaches the loop device) and removes the directory.
 */
export async function withLoopMount<T>(image: string, fn: (mnt: string) => Promise<T>, opts: LoopMountOptions = {}): Promise<T> {
  const mnt = await mkdtemp(join(tmpdir(), 'ext4kit-mnt-'));
  const o = ['loop', opts.readOnly ? 'ro' : 'rw', ...(opts.options ?? [])].join(',');
  const args = ['-t', opts.type ?? 'ext4', '-o', o, image, mnt];
  let mounted = false;
  try {
    const r = await runTool(toolPath('mount'), args, { timeoutMs: 60_000 });
    if (r.exitCode !== 0) throw new Error(describeFailure('mount', args, r));
    mounted = true;
    liveMounts.add(mnt);
    return await fn(mnt);
  } finally {
    if (mounted) {
      await unmount(mnt);
      liveMounts.delete(mnt);
    }
    // Never recursive: if the unmount failed the directory still holds the mounted filesystem.
    await rmdir(mnt).catch(() => undefined);
  }
}

async function unmount(mnt: string): Promise<void> {
  let last: RunResult | undefined;
  for (let attempt = 0; attempt < 10; attempt++) {
    last = await runTool(toolPath('umount'), [mnt], { timeoutMs: 120_000 });
    if (last.exitCode === 0) return;
    if (!/busy/i.test(last.stderr)) break;
    await new Promise((r) => setTimeout(r, 100 * (attempt + 1)));
  }
  throw new Error(describeFailure('umount', [mnt], last!));
}

// A test that dies in the middle of `fn` still gets its mount taken down when the process exits.
process.on('exit', () => {
  for (const mnt of liveMounts) {
    const r = spawnSync(toolPath('umount'), ['-l', mnt], { stdio: 'ignore' });
    if (r.status === 0) {
      try {
        rmdirSync(mnt);
      } catch {
        /* best effort */
      }
    }
  }
});
