// Runs a crash-point workload end to end: mkfs in memory, record the workload, materialise crash
// states and recover each one three ways; returns the tally.
import { Ext4 } from '../../src/api/ext4.ts';
import { MemoryDevice } from '../../src/device/memory-device.ts';
import { RecordingDevice, type Expectation, type RecEvent } from './recording-device.ts';
import { candidatesAt, crashStates, requirementsAt } from './crash-states.ts';
import { CrashChecker, Tally } from './crash-check.ts';
import type { Workload } from './crash-workloads.ts';

export interface CrashRunOptions {
  seed: number;
  maxWindows: number;
  perWindow: number;
  /** Every how many states the kernel also recovers one (0: never). */
  kernelEvery: number;
  kernelMax: number;
  /** Wraps the recording device (tests inject faults here). */
  openHook?: (fs: Ext4) => void;
  /** Mount options of the recorded workload ('bypass': no log, the behaviour before journaled writes). */
  openOpts?: { journal?: 'bypass' };
  /** Device write latency in event-loop turns (0: writes complete in issue order). */
  latency?: number;
  /** Cut only in these windows (see CrashStateOptions.pick), given the recorded events. */
  pick?: (events: readonly RecEvent[], windows: ReadonlyArray<{ start: number; end: number }>) => Set<number>;
}

export interface CrashRunResult { tally: Tally; writes: number; flushes: number; acks: number }

export async function recordWorkload(w: Workload, seed: number, openHook?: (fs: Ext4) => void, latency = 0, openOpts: { journal?: 'bypass' } = {}): Promise<RecordingDevice> {
  const mem = new MemoryDevice(w.sizeBytes);
  await Ext4.mkfs(mem, { ...w.mkfs, sizeBytes: w.sizeBytes });
  const rec = new RecordingDevice(mem, latency, seed);
  const fs = await Ext4.open(rec, openOpts);
  openHook?.(fs);
  let final: Expectation[];
  try {
    final = await w.run(fs, rec, seed);
  } catch (e) {
    await fs.close().catch(() => undefined);
    throw e;
  }
  const since = rec.now;
  await fs.close();
  rec.ack(since, final, 'close');
  return rec;
}

export async function runCrashPoints(w: Workload, opts: CrashRunOptions): Promise<CrashRunResult> {
  const rec = await recordWorkload(w, opts.seed, opts.openHook, opts.latency ?? 0, opts.openOpts ?? {});
  const tally = new Tally();
  const checker = await CrashChecker.create();
  let kernelRuns = 0;
  try {
    const pick = opts.pick;
    const stateOpts = { seed: opts.seed, maxWindows: opts.maxWindows, perWindow: opts.perWindow, ...(pick ? { pick: (ws: ReadonlyArray<{ start: number; end: number }>) => pick(rec.events, ws) } : {}) };
    for (const st of crashStates(rec.base, rec.events, stateOpts)) {
      const req = { req: requirementsAt(rec.events, st.cut), cands: candidatesAt(rec.events, st.cut) };
      tally.states++;
      tally.add('e2fsprogs', st.id, await checker.e2fsprogs(st.image, req));
      tally.add('ext4kit', st.id, await checker.ext4kit(st.image, req));
      if (opts.kernelEvery > 0 && kernelRuns < opts.kernelMax && tally.states % opts.kernelEvery === 1) {
        kernelRuns++;
        tally.add('kernel', st.id, await checker.kernel(st.image, req));
      }
    }
  } finally {
    await checker.dispose();
  }
  return { tally, writes: rec.writes, flushes: rec.flushes, acks: rec.events.filter((e) => e.kind === 'ack').length };
}
