// Schedule exploration on the REAL filesystem (delalloc-bigalloc.md §2.1, §5): concurrent
// single-block writes into shared bigalloc clusters (ratio 4 and 16), writeback passes, fsync,
// truncate, punch, zero-range and fallocate on one file, interleaved by a deterministic
// scheduler (test/support/scheduled-device.ts) that completes device I/O and admits lock
// requests one step at a time. fast-check generates the scheduler's choices (and shrinks a
// failing schedule to a short one). For every schedule, after all tasks finish:
// fs.checkInvariants() passes, the file reads back as the model predicts (content operations
// are applied to the model in the order they held i_rwsem, which serializes them), close()
// succeeds, a fresh read-only mount reads the same bytes, and `e2fsck -fn` exits 0 (run on
// every 10th schedule, on the first failing one and on the printed counterexample).
//
// A failure prints the shrunk interleaving: the granted steps ("#n TASK: label") with the lock
// grants/releases between them. Replay one with
//   SCHED_REPLAY='{"R":4,"scenario":"race","variant":"real","choices":[…]}' node --import tsx --test test/schedule-explorer.test.ts
// Knobs: SCHED_RUNS (schedules per configuration), SCHED_SEED, SCHED_SHRINK_MS, SCHED_DEBUG.
//
// To show that the explorer can fail, two test-only variants of reserveDelayed (installed via
// mapBlocksTestHooks in src/mapping/map-blocks.ts) make the 2011 mistake: they decide "this
// cluster is already reserved" from state the data lock does not protect —
//   * 'broken: BH_Delay flags': page-cache delayed flags, which writeback clears only when the
//     data write completes, after it dropped i_data_sem (window 1 of §2.1);
//   * 'broken: stale es snapshot': an es-tree answer taken before waiting for i_data_sem and
//     not re-checked under it (window 2; the 0ea6560abb3b pattern).
// The explorer must find and print a schedule where they lose a reservation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ext4, MemoryDevice } from '../src/node.ts';
import type { Ext4WritableHandle } from '../src/api/ext4.ts';
import type { Filesystem, OpenInode } from '../src/fs/filesystem.ts';
import { lookupRange, mapBlocksTestHooks } from '../src/mapping/map-blocks.ts';
import type { FileBlock } from '../src/util/brand.ts';
import { e2fsck, haveE2fsprogs } from './support/oracles.ts';
import { Scheduler, ScheduledDevice, choiceChooser, instrumentLock } from './support/scheduled-device.ts';

const BS = 1024;
const IMAGE_BYTES = Number(process.env.SCHED_IMAGE_MB ?? 4) << 20;
const RUNS = Number(process.env.SCHED_RUNS ?? 300);
const SEED = Number(process.env.SCHED_SEED ?? 20110909);
/** Time spent shrinking a failing schedule before printing the smallest found so far. */
const SHRINK_MS = Number(process.env.SCHED_SHRINK_MS ?? 8000);
const HAVE_FSCK = haveE2fsprogs();
const tmp = mkdtempSync(join(tmpdir(), 'ext4kit-sched-'));

// ---- operations, scenarios, model ----------------------------------------------------------

type Op =
  | { kind: 'write'; block: number }
  | { kind: 'truncate'; size: number }
  | { kind: 'punch'; off: number; len: number }
  | { kind: 'zero'; off: number; len: number; keep: boolean }
  | { kind: 'falloc'; off: number; len: number; keep: boolean }
  | { kind: 'writeback' }
  | { kind: 'fsync' };

const changesContent = (op: Op) => op.kind !== 'writeback' && op.kind !== 'fsync';

interface Scenario { readonly name: string; readonly tasks: ReadonlyArray<readonly [string, readonly Op[]]> }

/** Blocks written before the explored phase (and synced): cluster 1 and cluster 3 are allocated. */
const setupBlocks = (R: number) => [R + 1, 3 * R + 1];
const setupSize = (R: number) => 4 * R * BS;

function scenarios(R: number): Scenario[] {
  return [
    {
      // dd writing single blocks into cluster 0 while writeback and fsync run (the 2011 reproducer).
      name: 'race',
      tasks: [
        ['U0', [{ kind: 'write', block: 0 }, { kind: 'write', block: 2 }]],
        ['U1', [{ kind: 'write', block: 1 }]],
        ['U2', [{ kind: 'write', block: R - 1 }]],
        ['U3', [{ kind: 'write', block: R + 2 }]], // cluster 1 is allocated: pending, no reservation
        ['WB', [{ kind: 'writeback' }, { kind: 'writeback' }, { kind: 'writeback' }]],
        ['FS', [{ kind: 'fsync' }, { kind: 'fsync' }]],
      ],
    },
    {
      name: 'truncate+punch+fallocate',
      tasks: [
        ['U0', [{ kind: 'write', block: 1 }]],
        ['U1', [{ kind: 'write', block: 2 * R + 1 }]],
        ['U2', [{ kind: 'write', block: 3 * R + 2 }]],
        ['U3', [{ kind: 'write', block: R + 3 }]],
        ['TR', [{ kind: 'truncate', size: 3 * R * BS + 100 }]],
        ['PH', [{ kind: 'punch', off: (R - 1) * BS, len: 3 * BS }]],
        ['FA', [{ kind: 'falloc', off: 2 * R * BS, len: 2 * BS, keep: false }]],
        ['WB', [{ kind: 'writeback' }, { kind: 'writeback' }]],
        ['FS', [{ kind: 'fsync' }]],
      ],
    },
    {
      name: 'fallocate+zero-range',
      tasks: [
        ['U0', [{ kind: 'write', block: 0 }]],
        ['U1', [{ kind: 'write', block: 2 }]],
        ['FA', [{ kind: 'falloc', off: BS, len: 2 * BS, keep: true }]],
        ['ZR', [{ kind: 'zero', off: R * BS + 512, len: BS, keep: true }]],
        ['U2', [{ kind: 'write', block: R + 3 }]],
        ['WB', [{ kind: 'writeback' }, { kind: 'writeback' }]],
        ['FS', [{ kind: 'fsync' }]],
      ],
    },
  ];
}

/** One block of recognizable data: 0xF5, the file block number (LE16), then a pattern. */
function blockData(b: number): Uint8Array {
  const d = new Uint8Array(BS);
  for (let i = 0; i < BS; i++) d[i] = (b * 31 + i * 7 + 1) & 0xff;
  d[0] = 0xf5; d[1] = b & 0xff; d[2] = b >> 8;
  return d;
}

function resize(d: Uint8Array, n: number): Uint8Array {
  const out = new Uint8Array(n);
  out.set(d.subarray(0, Math.min(n, d.length)));
  return out;
}

function applyModel(d: Uint8Array, op: Op): Uint8Array {
  switch (op.kind) {
    case 'write': {
      const out = d.length < (op.block + 1) * BS ? resize(d, (op.block + 1) * BS) : d;
      out.set(blockData(op.block), op.block * BS);
      return out;
    }
    case 'truncate': return resize(d, op.size);
    case 'punch': d.fill(0, op.off, Math.min(op.off + op.len, d.length)); return d;
    case 'zero': {
      const out = op.keep ? d : resize(d, Math.max(d.length, op.off + op.len));
      out.fill(0, op.off, Math.min(op.off + op.len, out.length));
      return out;
    }
    case 'falloc': return op.keep ? d : resize(d, Math.max(d.length, op.off + op.len));
    default: return d;
  }
}

function initialContent(R: number): Uint8Array {
  let d: Uint8Array = new Uint8Array(setupSize(R));
  for (const b of setupBlocks(R)) d = applyModel(d, { kind: 'write', block: b });
  return d;
}

function describeOp(op: Op): string {
  switch (op.kind) {
    case 'write': return `write block ${op.block}`;
    case 'truncate': return `truncate to ${op.size}`;
    case 'punch': return `punch [${op.off}, +${op.len})`;
    case 'zero': return `zero-range [${op.off}, +${op.len})${op.keep ? ' keep-size' : ''}`;
    case 'falloc': return `fallocate [${op.off}, +${op.len})${op.keep ? ' keep-size' : ''}`;
    default: return op.kind;
  }
}

// ---- the image -----------------------------------------------------------------------------

const baseImages = new Map<number, Uint8Array>();

async function baseImage(R: number): Promise<Uint8Array> {
  let img = baseImages.get(R);
  if (!img) {
    const dev = new MemoryDevice(IMAGE_BYTES);
    await Ext4.mkfs(dev, { blockSize: BS, clusterBytes: BS * R, features: 'bigalloc', timeSec: 1_700_000_000, deviceZeroed: true });
    const fs = await Ext4.open(dev);
    const fh = await fs.open('/f', 'w+', 0o644) as Ext4WritableHandle;
    for (const b of setupBlocks(R)) await fh.write(blockData(b), 0, BS, b * BS);
    await fh.truncate(setupSize(R));
    await fh.close();
    await fs.close();
    img = dev.bytes.slice();
    baseImages.set(R, img);
  }
  return img;
}

function describeIo(off: number, len: number, data?: Uint8Array): string {
  const first = off / BS;
  const n = len / BS;
  if (off === 1024 && len === 1024) return 'superblock';
  const where = n === 1 ? `blk ${first}` : `blks ${first}..${first + n - 1}`;
  if (!data) return where;
  const fileBlocks: string[] = [];
  for (let k = 0; k < n; k++) {
    const d = data.subarray(k * BS, (k + 1) * BS);
    if (d[0] === 0xf5 && d[3] === ((((d[1]! | (d[2]! << 8)) * 31 + 3 * 7 + 1) & 0xff))) fileBlocks.push(String(d[1]! | (d[2]! << 8)));
    else if (d.every((x) => x === 0)) fileBlocks.push('zeros');
    else fileBlocks.push('meta');
  }
  return fileBlocks.every((x) => x === 'meta') ? `${where} (metadata)` : `${where} (file data: ${fileBlocks.join(',')})`;
}

// ---- the broken variants (test-only, via mapBlocksTestHooks) -------------------------------

type Variant = 'real' | 'broken: BH_Delay flags' | 'broken: stale es snapshot';

/**
 * Installs a reserveDelayed that treats cluster c as "already reserved" when `paid(c)` says so:
 * it marks the hole delayed in the es tree without reserving and without a pending record.
 * Clusters it does not consider paid go through the real implementation.
 */
function installBrokenReserve(sched: Scheduler, oi: OpenInode, why: string, paid: (c: number) => boolean, afterInsert: (first: number, count: number) => void): void {
  mapBlocksTestHooks.reserveDelayed = async (real, f, txn, first, count, opts) => {
    if (f.state !== oi.state) return real(f, txn, first, count, opts);
    const R = f.clusterRatio;
    const holes = (await lookupRange(f, txn, first, count)).filter((s) => s.state === 'hole');
    let reserved = 0;
    for (const h of holes) {
      for (let b = h.first; b < h.first + h.count;) {
        const c = Math.floor(b / R);
        const end = Math.min(h.first + h.count, (c + 1) * R);
        if (paid(c)) {
          const first = (c * R) as FileBlock;
          if (!f.state.es.hasDelayedIn(first, (first + R - 1) as FileBlock)) {
            // The real code would reserve (or record pending) here: the stale answer is wrong.
            sched.note(`BROKEN reserveDelayed: cluster ${c} "already reserved" (${why}) but no block of it is delayed any more: blocks ${b}..${end - 1} delayed without reservation or pending record`);
          }
          f.state.es.insert(b as FileBlock, end - b, 'delayed');
        } else {
          reserved += await real(f, txn, b, end - b, opts);
        }
        b = end;
      }
      afterInsert(h.first, h.count);
    }
    return reserved;
  };
}

function setupVariant(variant: Variant, sched: Scheduler, oi: OpenInode, R: number): { beforeDataLock?: (task: string | undefined, mode: 'read' | 'write') => void } {
  if (variant === 'broken: BH_Delay flags') {
    // BH_Delay emulation: set on the blocks a write made delayed, cleared when writeback's data
    // write completes (pages.cleaned) or the page is dropped — i.e. lazily, outside i_data_sem.
    const bhDelay = new Set<number>();
    const pages = oi.pages as unknown as { cleaned(b: number, v: number): void; drop(f: number, t?: number): void };
    const cleaned = pages.cleaned.bind(pages);
    const drop = pages.drop.bind(pages);
    pages.cleaned = (b, v) => { bhDelay.delete(b); cleaned(b, v); };
    pages.drop = (from, to = Infinity) => { for (const b of [...bhDelay]) if (b >= from && b <= to) bhDelay.delete(b); drop(from, to); };
    installBrokenReserve(sched, oi, 'a block of it carries BH_Delay',
      (c) => [...bhDelay].some((b) => Math.floor(b / R) === c),
      (first, count) => { for (let b = first; b < first + count; b++) bhDelay.add(b); });
    return {};
  }
  if (variant === 'broken: stale es snapshot') {
    // "Is cluster c delayed?" answered from the es tree when the writer ASKED for i_data_sem,
    // used after it got it, without looking again.
    const snapshots = new Map<string, Set<number>>();
    installBrokenReserve(sched, oi, 'es snapshot taken before waiting for i_data_sem',
      (c) => snapshots.get(sched.currentTask() ?? '')?.has(c) ?? false, () => {});
    return {
      beforeDataLock: (task, mode) => {
        if (task && mode === 'write') snapshots.set(task, new Set<number>(oi.state.es.delayedClusters(R)));
      },
    };
  }
  return {};
}

// ---- one schedule ----------------------------------------------------------------------------

interface ScheduleResult { failure?: string; trace: string[]; steps: number; fsckRan: boolean }

function firstDifference(got: Uint8Array, want: Uint8Array): string {
  if (got.length !== want.length) return `size ${got.length}, model ${want.length}`;
  for (let i = 0; i < got.length; i++) {
    if (got[i] !== want[i]) return `byte ${i} (file block ${Math.floor(i / BS)}) is ${got[i]}, model ${want[i]}`;
  }
  return '';
}

/** e2fsck policy for one schedule: always, never, or only when another check already failed. */
type Fsck = 'always' | 'never' | 'if-failed';

async function runSchedule(R: number, sc: Scenario, variant: Variant, choices: readonly number[], fsck: Fsck): Promise<ScheduleResult> {
  const mem = new MemoryDevice((await baseImage(R)).slice());
  const sched = new Scheduler();
  const ext4 = await Ext4.open(new ScheduledDevice(mem, sched, describeIo));
  const fs = (ext4 as unknown as { fs: Filesystem }).fs;
  const handles = new Map<string, Ext4WritableHandle>();
  for (const [name] of sc.tasks) handles.set(name, await ext4.open('/f', 'r+') as Ext4WritableHandle);
  const oi = await fs.getInode((await ext4.stat('/f')).ino);

  // The order in which content operations held i_rwsem is their serialization order.
  const ioOrder: string[] = [];
  const hooks = setupVariant(variant, sched, oi, R);
  instrumentLock(sched, oi.io, 'i_rwsem', { granted: (task) => { if (task) ioOrder.push(task); } });
  instrumentLock(sched, oi.data, 'i_data_sem', { ...(hooks.beforeDataLock ? { beforeRequest: hooks.beforeDataLock } : {}) });
  instrumentLock(sched, oi.writeback, 'writeback lock');

  const tasks = sc.tasks.map(([name, ops]) => [name, async () => {
    const fh = handles.get(name)!;
    for (const op of ops) {
      await sched.step(`starts ${describeOp(op)}`);
      switch (op.kind) {
        case 'write': await fh.write(blockData(op.block), 0, BS, op.block * BS); break;
        case 'truncate': await fh.truncate(op.size); break;
        case 'punch': await fh.fallocate(0x3, op.off, op.len); break;
        case 'zero': await fh.fallocate(0x10 | (op.keep ? 0x1 : 0), op.off, op.len); break;
        case 'falloc': await fh.fallocate(op.keep ? 0x1 : 0, op.off, op.len); break;
        case 'writeback': await ext4.writebackPass(); break;
        case 'fsync': await fh.sync(); break;
      }
    }
  }] as const);

  let failure: string | undefined;
  let fsckRan = false;
  try {
    const outcomes = await sched.run(tasks, choiceChooser(choices));
    const failed = outcomes.filter((o) => !o.ok).sort((a, b) => a.settledAs - b.settledAs)[0];
    if (failed) throw new Error(`task ${failed.task} failed: ${(failed.error as Error)?.message ?? failed.error}`);

    // The model: initial content, then each task's content operations in i_rwsem order.
    let model = initialContent(R);
    const queues = new Map(sc.tasks.map(([n, ops]) => [n, ops.filter(changesContent)]));
    for (const t of ioOrder) {
      const op = queues.get(t)?.shift();
      if (!op) throw new Error(`task ${t} took i_rwsem more often than it has content operations`);
      model = applyModel(model, op);
    }
    for (const [t, q] of queues) if (q.length) throw new Error(`task ${t} did not take i_rwsem for ${q.map(describeOp).join(', ')}`);

    await ext4.checkInvariants().catch((e: Error) => { throw new Error(`checkInvariants: ${e.message}`); });
    const live = await handles.values().next().value!.readFile();
    const d1 = firstDifference(live, model);
    if (d1) throw new Error(`read back before close: ${d1} (i_rwsem order ${ioOrder.join(' → ')})`);
    for (const fh of handles.values()) await fh.close();
    await ext4.close().catch((e: Error) => { throw new Error(`close: ${e.message}`); });
    const again = await Ext4.open(new MemoryDevice(mem.bytes.slice()), { readOnly: true });
    const d2 = firstDifference(await again.readFile('/f'), model);
    await again.close();
    if (d2) throw new Error(`read back after close and remount: ${d2} (i_rwsem order ${ioOrder.join(' → ')})`);
  } catch (e) {
    failure = (e as Error).message;
  } finally {
    delete mapBlocksTestHooks.reserveDelayed;
  }
  if (HAVE_FSCK && (fsck === 'always' || (fsck === 'if-failed' && failure !== undefined))) {
    fsckRan = true;
    const img = join(tmp, `sched-${process.pid}-${Math.random().toString(36).slice(2)}.img`);
    writeFileSync(img, mem.bytes);
    const r = await e2fsck(img);
    rmSync(img, { force: true });
    if (r.exitCode !== 0) {
      const out = r.output.split('\n').filter((l) => l.trim()).slice(0, 25).join('\n    ');
      failure = `${failure ? failure + '\n  and ' : ''}e2fsck -fn exit ${r.exitCode}:\n    ${out}`;
    }
  }
  return { ...(failure !== undefined ? { failure } : {}), trace: sched.trace, steps: sched.steps, fsckRan };
}

// ---- exploration -----------------------------------------------------------------------------

/** Scheduler choices: one number per step (taken modulo the pending steps); past the end, the oldest step. */
const choicesArb = fc.array(fc.nat({ max: 0xffff }), { maxLength: 120, size: 'max' });

interface Exploration {
  failed: boolean;
  runs: number;
  /** Schedules run until the first failing one (the rest were shrinking). */
  toFirstFailure?: number;
  distinct: number;
  fsckRuns: number;
  maxSteps: number;
  counterexample?: { choices: number[]; result: ScheduleResult };
}

async function explore(R: number, sc: Scenario, variant: Variant, numRuns: number): Promise<Exploration> {
  const seen = new Set<string>();
  let runs = 0;
  let fsckRuns = 0;
  let maxSteps = 0;
  let firstFailure: number | undefined;
  let toFirstFailure: number | undefined;
  let fsckOnlyFailure = false;
  const details = await fc.check(fc.asyncProperty(choicesArb, async (choices) => {
    // Shrinking budget: past it, candidates pass untried, so the shrinker stops with the best so far.
    if (firstFailure !== undefined && Date.now() - firstFailure > SHRINK_MS) return;
    const n = runs++;
    const t0 = performance.now();
    // e2fsck on every 10th schedule and on the first failing one; while shrinking, only when
    // the failure is one that only e2fsck sees.
    const fsck: Fsck = firstFailure === undefined ? (n % 10 === 0 ? 'always' : 'if-failed') : fsckOnlyFailure ? 'always' : 'never';
    const r = await runSchedule(R, sc, variant, choices, fsck);
    if (firstFailure === undefined && r.failure !== undefined) {
      toFirstFailure = n + 1;
      fsckOnlyFailure = r.failure.startsWith('e2fsck');
    }
    seen.add(r.trace.filter((l) => l.startsWith('#')).join('\n'));
    if (r.fsckRan) fsckRuns++;
    maxSteps = Math.max(maxSteps, r.steps);
    if (process.env.SCHED_DEBUG) console.log(`run ${n}: ${r.steps} steps, ${(performance.now() - t0).toFixed(1)} ms${r.failure ? `: FAIL ${JSON.stringify(choices)} ${r.failure}` : ''}`);
    if (r.failure !== undefined) {
      firstFailure ??= Date.now();
      throw new Error(r.failure);
    }
  }), { numRuns, seed: SEED + R, endOnFailure: false });
  const out: Exploration = { failed: details.failed, runs, distinct: seen.size, fsckRuns, maxSteps, ...(toFirstFailure ? { toFirstFailure } : {}) };
  if (details.failed && details.counterexample) {
    const [choices] = details.counterexample;
    // Replay the shrunk schedule (deterministic) to print its interleaving, with e2fsck.
    out.counterexample = { choices, result: await runSchedule(R, sc, variant, choices, 'always') };
  }
  return out;
}

function report(title: string, ex: Exploration): string {
  const found = ex.toFirstFailure ? `, first failure at schedule ${ex.toFirstFailure}` : '';
  const head = `${title}: ${ex.runs} schedules run (${ex.distinct} distinct interleavings, up to ${ex.maxSteps} steps, e2fsck on ${ex.fsckRuns}${found})`;
  if (!ex.counterexample) return head;
  const { choices, result } = ex.counterexample;
  return `${head}\nCOUNTEREXAMPLE (choices ${JSON.stringify(choices)}):\n  ${result.failure ?? '(replay passed?!)'}\ninterleaving:\n${result.trace.join('\n')}`;
}

const replay = process.env.SCHED_REPLAY;
if (replay) {
  // SCHED_REPLAY='{"R":16,"scenario":"race","variant":"real","choices":[...]}' replays one schedule and prints it.
  const { R, scenario, variant, choices } = JSON.parse(replay) as { R: number; scenario: string; variant: Variant; choices: number[] };
  test(`replay ${replay}`, async () => {
    const r = await runSchedule(R, scenarios(R).find((s) => s.name === scenario)!, variant, choices, 'always');
    console.log(`${r.failure ?? 'passed'}\ninterleaving:\n${r.trace.join('\n')}`);
  });
}

for (const R of replay ? [] : [4, 16]) {
  for (const sc of scenarios(R)) {
    test(`real code passes every explored schedule: ratio ${R}, ${sc.name}`, { timeout: 120_000 }, async () => {
      const ex = await explore(R, sc, 'real', RUNS);
      console.log(report(`real, ratio ${R}, ${sc.name}`, ex));
      assert.equal(ex.failed, false, report(`real, ratio ${R}, ${sc.name}`, ex));
      assert.ok(ex.distinct > RUNS / 4, `only ${ex.distinct} distinct interleavings in ${RUNS} schedules`);
    });
  }
}

for (const R of replay ? [] : [4, 16]) {
  for (const variant of ['broken: BH_Delay flags', 'broken: stale es snapshot'] as const) {
    test(`explorer finds the 2011 race in the ${variant} variant: ratio ${R}`, { timeout: 120_000 }, async () => {
      const sc = scenarios(R)[0]!;
      const ex = await explore(R, sc, variant, RUNS);
      const text = report(`${variant}, ratio ${R}, ${sc.name}`, ex);
      console.log(text);
      assert.equal(ex.failed, true, `the broken variant survived every schedule\n${text}`);
      const msg = ex.counterexample?.result.failure ?? '';
      assert.match(msg, /used \d+ with only \d+ reserved clusters|is allocated and has delayed blocks but is not pending|reserved \d+ clusters, but \d+ delayed clusters are unallocated/);
      const trace = ex.counterexample!.result.trace.join('\n');
      assert.match(trace, /BROKEN reserveDelayed: cluster 0 "already reserved"/);
    });
  }
}

test('cleanup', () => { rmSync(tmp, { recursive: true, force: true }); });
