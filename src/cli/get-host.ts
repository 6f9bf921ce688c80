// Host-side helpers of `ext4kit get`: times as libuv and touch(1) take them, setfattr's path
// quoting, paths as command arguments, and running those tools.
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import type { Timestamp } from '../format/inode.ts';

const NS = 1_000_000_000n;

/** Seconds as a double that libuv turns into exactly the intended microsecond. */
export function timeArg(ns: bigint): number {
  let sec = ns / NS;
  let frac = ns % NS;
  if (frac < 0n) {
    frac += NS;
    sec -= 1n;
  }
  const usec = frac / 1000n;
  return Number(sec) + (Number(usec) * 1000 + 500) / 1e9;
}

/** A time of the image (0 ≤ nsec < 10^9) as nanoseconds. */
export const tsNs = (t: Timestamp): bigint => BigInt(t.sec) * NS + BigInt(t.nsec);

/** timeArg() of a time of the image, without going through BigInt. */
export const tsArg = (t: Timestamp): number => t.sec + (Math.floor(t.nsec / 1000) * 1000 + 500) / 1e9;

/** Within 0 ≤ t < 2^31 s the double tsArg() passes is exact to the microsecond (no stat to check). */
export const tsSafe = (t: Timestamp): boolean => t.sec >= 0 && t.sec < 2 ** 31;

export function touchTime(ns: bigint): string {
  const neg = ns < 0n;
  const abs = neg ? -ns : ns;
  return `@${neg ? '-' : ''}${abs / NS}.${String(abs % NS).padStart(9, '0')}`;
}

/** setfattr's path quoting: whitespace, '=', '\\' and non-printable bytes as \ooo. */
export function quoteAttrPath(p: Buffer): string {
  let s = '';
  for (const b of p) s += b <= 0x20 || b >= 0x7f || b === 0x3d || b === 0x5c ? '\\' + b.toString(8).padStart(3, '0') : String.fromCharCode(b);
  return s;
}

export function asArg(p: Buffer): string | undefined {
  const s = p.toString('utf8');
  return Buffer.from(s, 'utf8').equals(p) ? s : undefined;
}

export function runTool(cmd: string, args: string[], input?: string): Promise<{ ok: boolean; missing: boolean; stderr: string }> {
  return new Promise((resolvePromise) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => {
      if (stderr.length < 4096) stderr += b.toString();
    });
    child.on('error', (e: NodeJS.ErrnoException) => resolvePromise({ ok: false, missing: e.code === 'ENOENT', stderr: e.message }));
    child.on('close', (code) => resolvePromise({ ok: code === 0, missing: false, stderr: stderr.trim() }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
  });
}

/** What a new file in the copy gets without being told; `umask` 0o777 when that is unknown. */
export interface NewFileDefaults { umask: number; uid: number; gid: number }

/**
 * The mode bits, owner and group a file created under directory `landing` (and under the
 * directories the copy makes there, mode 0700 until the end) gets: the umask unless a default
 * ACL decides instead (then unknown: every file gets its chmod), our uid, and our gid unless the
 * directory passes on its own (set-gid, or a grpid mount: then unknown unless they are equal).
 */
export async function newFileDefaults(landing: string): Promise<NewFileDefaults> {
  const umask = process.umask(0o022);
  process.umask(umask);
  const uid = process.geteuid?.() ?? -1;
  const egid = process.getegid?.() ?? -1;
  let st: { mode: number; gid: number } | undefined;
  try {
    st = statSync(landing);
  } catch {
    return { umask: 0o777, uid, gid: -1 };
  }
  const gid = st.gid === egid ? egid : st.mode & 0o2000 ? st.gid : -1;
  const acl = await runTool('getfattr', ['-n', 'system.posix_acl_default', '--absolute-names', '--', landing]);
  const noDefaultAcl = !acl.ok && !acl.missing && /No such attribute|not supported/i.test(acl.stderr);
  return { umask: noDefaultAcl ? umask : 0o777, uid, gid };
}

/** Distinct times set with touch(1) at most, unless asked for exact times. */
const MAX_TOUCH_RUNS = 1000;

/** Sets nanosecond times with GNU touch, one run per distinct (kind, time): `fixes` maps '[am] @time' to paths. */
export async function fixTimes(fixes: Map<string, Buffer[]>, exactTimes: boolean, warn: (msg: string) => void): Promise<void> {
  if (fixes.size > MAX_TOUCH_RUNS && !exactTimes) {
    warn(`${fixes.size} distinct sub-microsecond times: kept to the microsecond (use --exact-times for nanoseconds)`);
  } else if (fixes.size > 0) {
    for (const [key, paths] of fixes) {
      const [which, time] = key.split(' ') as [string, string];
      for (let i = 0; i < paths.length; i += 500) {
        const batch = paths.slice(i, i + 500).map((p) => asArg(p)!);
        const r = await runTool('touch', ['-h', `-${which}`, '-d', time, '--', ...batch]);
        if (r.missing) {
          warn('touch not found: times kept to the microsecond');
          return;
        }
        if (!r.ok) {
          warn(`touch failed, times kept to the microsecond: ${r.stderr.split('\n')[0]}`);
          return;
        }
      }
    }
  }
}
