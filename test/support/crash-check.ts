// Recovers one crash state three ways and checks it (journal.md §5.4):
//  - ext4kit: writable open (replays the log when it can), close, then e2fsck -fn and a read back;
//  - e2fsprogs: e2fsck -E journal_only -y, then e2fsck -fn, then debugfs dumps;
//  - the kernel (a sample): loop mount, umount, e2fsck -fn, debugfs dumps.
// After e2fsck or kernel replay only the superblock's free block/inode totals may be stale
// (Linux does not journal them), so e2fsck -fn complaining about those alone is accepted.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ext4 } from '../../src/api/ext4.ts';
import { Ext4Error } from '../../src/errors/ext4-error.ts';
import { MemoryDevice } from '../../src/device/memory-device.ts';
import { runTool, toolPath, withLoopMount } from './oracles.ts';
import { checkCandidates, checkRequirement, type Candidates, type Requirement } from './crash-states.ts';

export type Verdict = 'ok' | 'fsck' | 'lost' | 'error' | 'no-replay';

export interface Outcome { verdict: Verdict; detail: string }

/**
 * e2fsck -fn accepts the image: exit 0, or exit 4 where every unfixed problem is the
 * superblock's own free blocks/inodes total.
 */
export function fsckAccepts(exitCode: number, output: string): boolean {
  if (exitCode === 0) return true;
  if (exitCode !== 4) return false;
  const lines = output.split('\n');
  let problems = 0;
  for (let i = 0; i < lines.length; i++) {
    if (!/\? no\s*$/.test(lines[i]!)) continue;
    problems++;
    const text = lines[i]!.includes('count wrong') ? lines[i]! : lines[i - 1] ?? '';
    if (!/^Free (blocks|inodes) count wrong \(/.test(text.trim())) return false;
  }
  return problems > 0;
}

async function fsckFn(file: string): Promise<{ ok: boolean; out: string }> {
  const r = await runTool(toolPath('e2fsck'), ['-fn', file], { timeoutMs: 120_000 });
  const out = r.stdout + r.stderr;
  return { ok: fsckAccepts(r.exitCode, out), out };
}

function firstProblems(out: string): string {
  return out.split('\n').filter((l) => /\? no|wrong|invalid|corrupt|bad|Unattached|not|deleted/i.test(l)).slice(0, 4).join(' | ');
}

/** Reads `paths` out of an image with debugfs (null: not found). */
export async function debugfsDump(file: string, paths: readonly string[], scratch: string): Promise<Map<string, Uint8Array | null>> {
  const out = new Map<string, Uint8Array | null>();
  if (paths.length === 0) return out;
  const cmds = paths.map((p, i) => `dump ${p} ${join(scratch, `d${i}`)}`).join('\n') + '\n';
  await Promise.all(paths.map((_, i) => rm(join(scratch, `d${i}`), { force: true })));
  await runTool(toolPath('debugfs'), ['-c', '-f', '-', file], { input: cmds, timeoutMs: 120_000 });
  for (const [i, p] of paths.entries()) {
    try { out.set(p, new Uint8Array(await readFile(join(scratch, `d${i}`)))); } catch { out.set(p, null); }
  }
  return out;
}

/** What a crash state must hold: acknowledged bytes and names, and no file with bytes nobody wrote. */
export interface CrashReq { req: Map<string, Requirement>; cands: Candidates }

function pathsOf(r: CrashReq): string[] { return [...new Set([...r.req.keys(), ...r.cands.keys()])]; }

function checkAll(r: CrashReq, got: Map<string, Uint8Array | null>): string[] {
  const bad: string[] = [];
  for (const [p, q] of r.req) {
    const m = checkRequirement(p, q, got.get(p) ?? null);
    if (m) bad.push(m);
  }
  for (const [p, c] of r.cands) {
    const m = checkCandidates(p, c, got.get(p) ?? null);
    if (m) bad.push(m);
  }
  return bad;
}

async function readWithExt4kit(image: Uint8Array, paths: readonly string[]): Promise<Map<string, Uint8Array | null>> {
  const out = new Map<string, Uint8Array | null>();
  const fs = await Ext4.open(new MemoryDevice(image, { readOnly: true }), { readOnly: true });
  try {
    for (const p of paths) {
      try { out.set(p, await fs.readFile(p)); } catch (e) {
        if (e instanceof Ext4Error && (e.code === 'ENOENT' || e.code === 'ENOTDIR')) out.set(p, null); else throw e;
      }
    }
  } finally { await fs.close(); }
  return out;
}

export class CrashChecker {
  private constructor(readonly dir: string) {}
  static async create(): Promise<CrashChecker> { return new CrashChecker(await mkdtemp(join(tmpdir(), 'ext4kit-crash-'))); }
  async dispose(): Promise<void> { await rm(this.dir, { recursive: true, force: true }); }

  /** ext4kit: writable open (replay), close; the result must pass e2fsck -fn and hold the acknowledged data. */
  async ext4kit(image: Uint8Array, req: CrashReq): Promise<Outcome> {
    const copy = image.slice();
    try {
      const fs = await Ext4.open(new MemoryDevice(copy));
      if (fs.readOnly) {
        await fs.close();
        return { verdict: 'no-replay', detail: 'opened read-only (no replay)' };
      }
      await fs.close();
    } catch (e) {
      return { verdict: 'error', detail: `open/close: ${(e as Error).message}` };
    }
    const file = join(this.dir, 'k.img');
    await writeFile(file, copy);
    const ck = await fsckFn(file);
    if (!ck.ok) return { verdict: 'fsck', detail: firstProblems(ck.out) };
    let got: Map<string, Uint8Array | null>;
    try { got = await readWithExt4kit(copy, pathsOf(req)); } catch (e) { return { verdict: 'error', detail: `read back: ${(e as Error).message}` }; }
    // debugfs too: an oracle we did not write.
    const dgot = await debugfsDump(file, pathsOf(req), this.dir);
    const bad = [...checkAll(req, got), ...checkAll(req, dgot).map((m) => `debugfs: ${m}`)];
    return bad.length ? { verdict: 'lost', detail: bad.slice(0, 3).join('; ') } : { verdict: 'ok', detail: '' };
  }

  /** e2fsprogs: e2fsck -E journal_only -y, then e2fsck -fn, then debugfs dumps. */
  async e2fsprogs(image: Uint8Array, req: CrashReq): Promise<Outcome> {
    const file = join(this.dir, 'e.img');
    await writeFile(file, image);
    const j = await runTool(toolPath('e2fsck'), ['-E', 'journal_only', '-y', file], { timeoutMs: 120_000 });
    if (j.exitCode >= 8) return { verdict: 'error', detail: `e2fsck -E journal_only: exit ${j.exitCode} ${(j.stdout + j.stderr).trim().slice(0, 200)}` };
    const ck = await fsckFn(file);
    if (!ck.ok) return { verdict: 'fsck', detail: firstProblems(ck.out) };
    const bad = checkAll(req, await debugfsDump(file, pathsOf(req), this.dir));
    return bad.length ? { verdict: 'lost', detail: bad.slice(0, 3).join('; ') } : { verdict: 'ok', detail: '' };
  }

  /** The kernel: loop mount (replays), umount, e2fsck -fn, debugfs dumps. */
  async kernel(image: Uint8Array, req: CrashReq): Promise<Outcome> {
    const file = join(this.dir, 'm.img');
    await writeFile(file, image);
    try {
      await withLoopMount(file, async () => undefined);
    } catch (e) {
      return { verdict: 'error', detail: `mount: ${(e as Error).message.split('\n').slice(0, 2).join(' ')}` };
    }
    const ck = await fsckFn(file);
    if (!ck.ok) return { verdict: 'fsck', detail: firstProblems(ck.out) };
    const bad = checkAll(req, await debugfsDump(file, pathsOf(req), this.dir));
    return bad.length ? { verdict: 'lost', detail: bad.slice(0, 3).join('; ') } : { verdict: 'ok', detail: '' };
  }
}

/** Counts per recoverer and verdict, printable. */
export class Tally {
  readonly counts = new Map<string, Map<Verdict, number>>();
  readonly examples: string[] = [];
  states = 0;
  private lostExamples = 0;
  add(who: string, stateId: string, o: Outcome): void {
    const m = this.counts.get(who) ?? new Map<Verdict, number>();
    m.set(o.verdict, (m.get(o.verdict) ?? 0) + 1);
    this.counts.set(who, m);
    // Lost acknowledged data is the worst outcome: its examples go first.
    const line = `${who} ${stateId}: ${o.verdict}: ${o.detail}`;
    if (o.verdict === 'lost' && this.lostExamples < 12) { this.examples.splice(this.lostExamples++, 0, line); this.examples.length = Math.min(this.examples.length, 24); }
    else if (o.verdict !== 'ok' && o.verdict !== 'no-replay' && this.examples.length < 12) this.examples.push(line);
  }
  ok(who: string): number { return this.counts.get(who)?.get('ok') ?? 0; }
  total(who: string): number { let n = 0; for (const v of this.counts.get(who)?.values() ?? []) n += v; return n; }
  failures(who: string): number {
    let n = 0;
    for (const [v, c] of this.counts.get(who) ?? []) if (v !== 'ok' && v !== 'no-replay') n += c;
    return n;
  }
  summary(): string {
    const parts: string[] = [];
    for (const [who, m] of this.counts) parts.push(`${who}: ${[...m].map(([v, c]) => `${c} ${v}`).join(', ')} of ${this.total(who)}`);
    return parts.join('; ');
  }
}
