// Benchmark harness: times competitors (external commands) N times each, with a cold page cache
// (dropped before every run) and then a warm one (after one untimed warm-up run), takes the
// median wall time, the median same-round ratio to the baseline and the peak RSS of the child
// process tree, and prints one table per section (cold rows, then warm rows).
// Workloads (bench/workloads/*.ts) only describe what to build once and what to run; this file
// owns measuring, verifying and reporting.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir, totalmem, release } from 'node:os';
import { join } from 'node:path';

// ---- what workloads provide -------------------------------------------------------------------

export interface Command {
  cmd: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export interface Competitor {
  /** Label in the table, e.g. 'debugfs rdump'. */
  name: string;
  /** The row the ratios are relative to (one per section; ext4kit). */
  baseline?: boolean;
  /** Why this competitor cannot run here, or undefined when it can. */
  unavailable?: () => Promise<string | undefined>;
  /** Untimed, before every run: remove the previous output, unmount leftovers, ... */
  prepare?: () => Promise<void>;
  /** The timed step. */
  command: () => Command | Promise<Command>;
  /** Untimed, after a run: throws when the output is wrong (so that nothing can win by cheating). */
  verify?: (run: { mode: CacheMode; index: number }) => Promise<void>;
  /** Untimed, after the first run: extra columns for the table, e.g. { 'extents/file': '1.02' }. */
  metrics?: () => Promise<Record<string, string>>;
  /** Verify after every run (default) or only after the first one (for slow checks). */
  verifyEvery?: 'run' | 'first';
  /** Untimed, once after all runs. */
  cleanup?: () => Promise<void>;
  /** Start each run with empty page cache (default true; needs root). False: warm rows only. */
  coldCache?: boolean;
  /** Cache modes this competitor runs in (default: the section's). */
  modes?: CacheMode[];
  /** Per-run limit; default 10 minutes. */
  timeoutMs?: number;
  /** Printed under the table, e.g. how the command differs from the others. */
  note?: string;
  /** At most this many runs (for slow competitors), whatever BENCH_RUNS says. */
  maxRuns?: number;
}

export type CacheMode = 'cold' | 'warm';

export interface Section {
  title: string;
  /** Cache modes, in order (default cold, then warm). */
  cacheModes?: CacheMode[];
  competitors: Competitor[];
  /** Printed under the table. */
  notes?: string[];
  /** After all runs: target checks, one line each, starting with PASS or FAIL (printed under the table). */
  verdicts?: (result: SectionResult) => string[];
}

export interface Workload {
  /** Command-line name: `npm run bench -- ID`. */
  id: string;
  title: string;
  /** Part of `npm run bench` without arguments. */
  inDefaultSet: boolean;
  /** Builds the inputs (reusing the cache) and returns what to time. */
  sections(ctx: BenchContext): Promise<Section[]>;
}

export interface BenchContext {
  /** The repository root (where package.json is). */
  repoRoot: string;
  /** Inputs cache, kept between runs: $BENCH_CACHE or $TMPDIR/ext4kit-bench. */
  cacheDir: string;
  /** Scratch space for outputs, emptied by the workloads themselves. */
  scratchDir: string;
  runs: number;
  isRoot: boolean;
  log(msg: string): void;
}

// ---- measuring ----------------------------------------------------------------------------------

export interface RunMeasurement {
  wallMs: number;
  /** Peak resident set of the largest process in the child's tree, KiB; undefined if unknown. */
  peakRssKiB: number | undefined;
  /** CPU time (user + sys) of the child and the children it waited for, ms; undefined without GNU time. */
  cpuMs?: number | undefined;
}

export interface CompetitorResult {
  name: string;
  baseline: boolean;
  /** cold: page cache dropped before every run; warm: after an untimed warm-up run, nothing dropped. */
  mode: CacheMode;
  runs: RunMeasurement[];
  /** Median over rounds of this row's time / the baseline's time in the same round and mode. */
  medianRatio?: number;
  medianMs?: number;
  minMs?: number;
  maxMs?: number;
  peakRssKiB?: number;
  /** Median CPU time (user + sys) over the runs, ms: less distorted than wall time on a busy host. */
  medianCpuMs?: number;
  skipped?: string;
  failed?: string;
  note?: string;
  metrics?: Record<string, string>;
}

export interface SectionResult {
  workload: string;
  title: string;
  results: CompetitorResult[];
  notes: string[];
  verdicts?: string[];
}

const TIME_BIN = '/usr/bin/time';
let timeWorks: boolean | undefined;

/** Whether GNU time is there and understands `-f %M -o FILE`. */
export function haveGnuTime(): boolean {
  if (timeWorks === undefined) {
    // BENCH_NO_GNU_TIME=1 forces the /proc polling fallback (to test it).
    const r = existsSync(TIME_BIN) && !process.env.BENCH_NO_GNU_TIME ? spawnSync(TIME_BIN, ['-f', '%M', 'true'], { encoding: 'utf8' }) : undefined;
    timeWorks = r !== undefined && r.status === 0 && /^\d+\s*$/.test(r.stderr.trim().split('\n').pop() ?? '');
  }
  return timeWorks;
}

/** Descendants of `pid` (children lists of every thread, recursively). */
function descendants(pid: number): number[] {
  const out: number[] = [];
  const stack = [pid];
  while (stack.length) {
    const p = stack.pop()!;
    let tasks: string[] = [];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      continue;
    }
    for (const t of tasks) {
      try {
        for (const c of readFileSync(`/proc/${p}/task/${t}/children`, 'utf8').split(' ').filter(Boolean)) {
          out.push(Number(c));
          stack.push(Number(c));
        }
      } catch {
        /* exited */
      }
    }
  }
  return out;
}

function vmHwmKiB(pid: number): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

export class CommandFailed extends Error {}

/**
 * Runs one command and measures its wall time (from spawn to exit, in this process) and peak RSS:
 * GNU time's %M when available (ru_maxrss, which covers descendants the child waited for), else
 * the largest VmHWM seen while polling /proc for the child and its descendants every 10 ms.
 */
export async function measure(c: Command, timeoutMs = 600_000, rssFile?: string): Promise<RunMeasurement> {
  const useTime = rssFile !== undefined && haveGnuTime();
  const [cmd, args] = useTime ? [TIME_BIN, ['-f', '%M %U %S', '-o', rssFile, '--', c.cmd, ...c.args]] : [c.cmd, c.args];
  if (useTime) await rm(rssFile, { force: true });
  const stderr: Buffer[] = [];
  let stderrLen = 0;
  let polledKiB = 0;
  const start = process.hrtime.bigint();
  const child = spawn(cmd, args, { cwd: c.cwd, env: { ...process.env, ...c.env }, stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr.on('data', (b: Buffer) => {
    if (stderrLen < 64 * 1024) stderr.push(b);
    stderrLen += b.length;
  });
  const sample = () => {
    if (child.pid === undefined) return;
    for (const p of [child.pid, ...descendants(child.pid)]) polledKiB = Math.max(polledKiB, vmHwmKiB(p));
  };
  // Processes that end within the first interval may be missed: their RSS then shows as '?'.
  if (!useTime) setImmediate(sample);
  const poll = useTime ? undefined : setInterval(sample, 10);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    if (child.pid !== undefined) for (const p of [...descendants(child.pid), child.pid]) try { process.kill(p, 'SIGKILL'); } catch { /* gone */ }
  }, timeoutMs);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve([code, signal]));
  }).finally(() => {
    clearTimeout(timer);
    if (poll) clearInterval(poll);
  });
  const wallMs = Number(process.hrtime.bigint() - start) / 1e6;
  if (code !== 0 || timedOut) {
    const how = timedOut ? `timed out after ${timeoutMs / 1000} s` : signal ? `killed by ${signal}` : `exit ${code}`;
    const err = Buffer.concat(stderr).toString('utf8').split('\n').map((l) => l.trimEnd()).filter((l) => l.trim() !== '' && !/^Command exited with non-zero status/.test(l));
    // The first line naming an error says more than the tail of a stack trace.
    const first = err.find((l) => /^\s*[A-Za-z]*Error\b.*:/.test(l)) ?? err.find((l) => /(\berror:|\bE[A-Z]{3,}:)/i.test(l)) ?? err[err.length - 1];
    const detail = [`command: ${[c.cmd, ...c.args].join(' ')}`, ...err.slice(0, 6)];
    throw new CommandFailed(`${how}${first ? `: ${first.trim()}` : ''}\n  ${detail.join('\n  ')}`);
  }
  let peakRssKiB: number | undefined = polledKiB || undefined;
  let cpuMs: number | undefined;
  if (useTime) {
    const text = await readFile(rssFile, 'utf8').catch(() => '');
    const [kib, user, sys] = (text.trim().split('\n').pop() ?? '').split(' ').map(Number);
    peakRssKiB = kib !== undefined && Number.isFinite(kib) && kib > 0 ? kib : undefined;
    if (user !== undefined && sys !== undefined && Number.isFinite(user) && Number.isFinite(sys)) cpuMs = (user + sys) * 1000;
  }
  return { wallMs, peakRssKiB, cpuMs };
}

/** Empties the page cache (dirty pages are written first) so that every run starts cold. */
export function dropCaches(): boolean {
  spawnSync('sync');
  try {
    return spawnSync('sh', ['-c', 'echo 3 > /proc/sys/vm/drop_caches'], { stdio: 'ignore' }).status === 0;
  } catch {
    return false;
  }
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * Runs every competitor of a section `ctx.runs` times per cache mode, round-robin so that drift
 * hits all alike; results are cold rows first, then warm rows.
 */
export async function runSection(ctx: BenchContext, workload: string, section: Section): Promise<SectionResult> {
  const results: CompetitorResult[] = [];
  const rssFile = join(ctx.scratchDir, 'rss.txt');
  for (const mode of section.cacheModes ?? (['cold', 'warm'] as CacheMode[])) {
    const live: Array<{ c: Competitor; r: CompetitorResult }> = [];
    for (const c of section.competitors) {
      const modes = c.modes ?? (c.coldCache === false ? ['warm'] : undefined);
      if (modes && !modes.includes(mode)) continue;
      const r: CompetitorResult = { name: c.name, baseline: c.baseline ?? false, mode, runs: [], note: mode === 'cold' || !results.some((x) => x.name === c.name) ? c.note : undefined };
      results.push(r);
      const why = c.unavailable ? await c.unavailable() : undefined;
      if (why) {
        r.skipped = why;
        ctx.log(`  ${c.name} [${mode}]: skipped (${why})`);
      } else live.push({ c, r });
    }
    if (mode === 'warm') {
      // One untimed run of each, so that inputs, tools and the CLI bundle are in the page cache.
      for (const { c, r } of live) {
        try {
          if (c.prepare) await c.prepare();
          await measure(await c.command(), c.timeoutMs);
        } catch (e) {
          r.failed = `warm-up: ${(e as Error).message}`;
          ctx.log(`  ${c.name} [warm]: FAILED: ${r.failed}`);
        }
      }
    }
    for (let i = 0; i < ctx.runs; i++) {
      for (const { c, r } of live) {
        if (r.failed || i >= (c.maxRuns ?? Infinity)) continue;
        try {
          if (c.prepare) await c.prepare();
          if (mode === 'cold') dropCaches();
          const m = await measure(await c.command(), c.timeoutMs, rssFile);
          r.runs.push(m);
          ctx.log(`  ${c.name} [${mode}]: run ${i + 1}/${Math.min(ctx.runs, c.maxRuns ?? Infinity)}: ${formatMs(m.wallMs)}${m.peakRssKiB ? `, ${formatKiB(m.peakRssKiB)}` : ''}${m.cpuMs !== undefined ? `, CPU ${formatMs(m.cpuMs)}` : ''}`);
          if (c.verify && (i === 0 || (c.verifyEvery ?? 'run') === 'run')) await c.verify({ mode, index: i });
          if (c.metrics && i === 0 && !r.metrics) r.metrics = await c.metrics();
        } catch (e) {
          r.failed = (e as Error).message;
          ctx.log(`  ${c.name} [${mode}]: FAILED: ${r.failed}`);
        }
      }
    }
    for (const { c, r } of live) {
      if (c.cleanup) await c.cleanup().catch((e: Error) => ctx.log(`  ${c.name}: cleanup failed: ${e.message}`));
      if (r.runs.length && !r.failed) {
        const ms = r.runs.map((m) => m.wallMs);
        r.medianMs = median(ms);
        r.minMs = Math.min(...ms);
        r.maxMs = Math.max(...ms);
        const rss = r.runs.map((m) => m.peakRssKiB ?? 0);
        r.peakRssKiB = Math.max(...rss) || undefined;
        const cpu = r.runs.map((m) => m.cpuMs).filter((x): x is number => x !== undefined);
        if (cpu.length === r.runs.length) r.medianCpuMs = median(cpu);
      }
    }
    const base = live.find((x) => x.r.baseline)?.r;
    for (const { r } of live) {
      if (!base || r.failed || base.failed) continue;
      const ratios = r.runs.map((m, i) => (base.runs[i] ? m.wallMs / base.runs[i]!.wallMs : NaN)).filter((x) => Number.isFinite(x));
      if (ratios.length) r.medianRatio = median(ratios);
    }
  }
  const result: SectionResult = { workload, title: section.title, results, notes: section.notes ?? [] };
  if (section.verdicts) result.verdicts = section.verdicts(result);
  return result;
}

/** The row named `prefix…` in cache mode `mode` (default: the first, i.e. cold when present). */
export function rowOf(s: SectionResult, prefix: string, mode?: CacheMode): CompetitorResult | undefined {
  return s.results.find((r) => r.name.startsWith(prefix) && (mode === undefined || r.mode === mode));
}

/** The baseline row in `mode`. */
export function baselineOf(s: SectionResult, mode?: CacheMode): CompetitorResult | undefined {
  return s.results.find((r) => r.baseline && (mode === undefined || r.mode === mode));
}

/** time(row) / time(reference) for the same round, median over rounds (undefined without both). */
export function sameRoundRatio(row: CompetitorResult | undefined, ref: CompetitorResult | undefined): number | undefined {
  if (!row || !ref || row.failed || ref.failed || row.skipped || ref.skipped) return undefined;
  const ratios = row.runs.map((m, i) => (ref.runs[i] ? m.wallMs / ref.runs[i]!.wallMs : NaN)).filter((x) => Number.isFinite(x));
  return ratios.length ? median(ratios) : undefined;
}

// ---- reporting ----------------------------------------------------------------------------------

export function formatMs(ms: number): string {
  return ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`;
}

export function formatKiB(kib: number): string {
  return kib >= 1024 * 1024 ? `${(kib / 1024 / 1024).toFixed(2)} GiB` : `${(kib / 1024).toFixed(0)} MiB`;
}

/** A plain-text table of one section, with each row's time as a multiple of the baseline's. */
export function formatSection(s: SectionResult, runs: number): string {
  const base = s.results.find((r) => r.baseline);
  const baseName = base ? base.name.split(' ')[0] : undefined;
  const extra = [...new Set(s.results.flatMap((r) => Object.keys(r.metrics ?? {})))];
  // Rows with fewer runs (Competitor.maxRuns) say so in their median cell.
  const rows: string[][] = [['tool', 'cache', `median of ${runs}`, 'min', 'max', 'CPU (user+sys)', 'peak RSS', ...extra, 'relative time (median of same-round ratios)']];
  const blanks = extra.map(() => '');
  for (const r of s.results) {
    if (r.skipped) {
      rows.push([r.name, r.mode, 'skipped', '', '', '', '', ...blanks, r.skipped]);
      continue;
    }
    if (r.failed || r.medianMs === undefined) {
      rows.push([r.name, r.mode, 'FAILED', '', '', '', '', ...blanks, (r.failed ?? 'no runs').split('\n')[0]!.slice(0, 100)]);
      continue;
    }
    let rel = '';
    if (r.baseline) rel = 'baseline';
    else if (r.medianRatio !== undefined) rel = `${r.medianRatio.toFixed(2)}× ${baseName}'s time`;
    const m = extra.map((k) => r.metrics?.[k] ?? '');
    const few = r.runs.length < runs ? ` (${r.runs.length} run${r.runs.length === 1 ? '' : 's'})` : '';
    const cpu = r.medianCpuMs !== undefined ? formatMs(r.medianCpuMs) : '?';
    rows.push([r.name, r.mode, `${formatMs(r.medianMs)}${few}`, formatMs(r.minMs!), formatMs(r.maxMs!), cpu, r.peakRssKiB ? formatKiB(r.peakRssKiB) : '?', ...m, rel]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  const line = (row: string[]) => row.map((cell, i) => (i <= 1 || i === row.length - 1 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ').trimEnd();
  const out = [`## ${s.title}`, line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  ')];
  for (const row of rows.slice(1)) out.push(line(row));
  const notes = [...s.results.filter((r) => r.note).map((r) => `${r.name}: ${r.note}`), ...s.notes];
  for (const n of notes) out.push(`  * ${n}`);
  for (const r of s.results.filter((x) => x.failed)) out.push(`  ! ${r.name} failed: ${r.failed}`);
  for (const v of s.verdicts ?? []) out.push(`  ${v}`);
  return out.join('\n');
}

// ---- machine facts ------------------------------------------------------------------------------

function firstLine(cmd: string, args: string[]): string | undefined {
  try {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    const text = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
    return r.error ? undefined : text.split('\n')[0];
  } catch {
    return undefined;
  }
}

export function machineFacts(ctx: BenchContext): string[] {
  const cpu = cpus();
  const mke2fs = firstLine('mke2fs', ['-V']);
  const canDrop = ctx.isRoot && existsSync('/proc/sys/vm/drop_caches');
  return [
    `nproc: ${firstLine('nproc', []) ?? cpu.length} (${cpu[0]?.model ?? 'unknown CPU'})`,
    `memory: ${(totalmem() / 1024 ** 3).toFixed(1)} GiB; kernel: ${release()}`,
    `node: ${process.version}; e2fsprogs: ${mke2fs ?? 'not found'}`,
    `runs per competitor: ${ctx.runs} (BENCH_RUNS), median reported; peak RSS: ${haveGnuTime() ? '/usr/bin/time -f %M' : 'polling /proc/PID/status VmHWM'}`,
    `cache: cold rows: ${canDrop ? 'sync + echo 3 > /proc/sys/vm/drop_caches before every run of every tool' : 'NOT dropped (not root): "cold" runs after the first are warm'}; warm rows: after one untimed warm-up run of each tool, nothing dropped`,
    `inputs cached in ${ctx.cacheDir}`,
    loadLine(),
  ];
}

/** The 1-minute load average, with a warning when other work competes for the CPUs. */
export function loadLine(): string {
  const load = loadavg()[0]!;
  const n = cpus().length;
  return `load average (1 min): ${load.toFixed(2)} on ${n} CPUs${load > n / 2 ? ' — WARNING: other processes are busy, timings are noisy' : ''}`;
}

// ---- helpers for workloads ----------------------------------------------------------------------

/** A cached input: `build(dir)` runs only when `dir/.done` with the same `key` is missing. */
export async function cached(ctx: BenchContext, name: string, key: string, build: (dir: string) => Promise<void>): Promise<string> {
  const dir = join(ctx.cacheDir, name);
  const marker = join(dir, '.done');
  if (existsSync(marker) && (await readFile(marker, 'utf8')) === key) return dir;
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  ctx.log(`building ${name} (cached in ${dir})...`);
  const t = Date.now();
  await build(dir);
  await writeFile(marker, key);
  ctx.log(`built ${name} in ${formatMs(Date.now() - t)}`);
  return dir;
}

export function defaultCacheDir(): string {
  return process.env.BENCH_CACHE ?? join(tmpdir(), 'ext4kit-bench');
}

/** How to run the ext4kit CLI, or why it cannot be used yet (the command named must exist). */
export function ext4kitCli(repoRoot: string, command: string): { cmd: string; args: string[] } | { missing: string } {
  const bin = join(repoRoot, 'bin', 'ext4kit.js');
  if (!existsSync(bin)) return { missing: 'bin/ext4kit.js does not exist yet' };
  if (!existsSync(join(repoRoot, 'src', 'cli', `${command}.ts`))) return { missing: `src/cli/${command}.ts does not exist yet` };
  const r = spawnSync(process.execPath, [bin, command, '--help'], { encoding: 'utf8', cwd: repoRoot, timeout: 60_000 });
  const text = `${r.stdout}${r.stderr}`;
  if (/unknown command|not a command/i.test(text)) return { missing: `the CLI does not know '${command}' yet` };
  return { cmd: process.execPath, args: [bin, command] };
}
