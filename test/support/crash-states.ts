// Crash-state materialisation from a RecordingDevice log (journal.md §5.4, testing.md "Crash
// states"). A volatile-cache disk keeps every write before the last completed flush; of the
// writes after it, any subset may have reached the medium, each torn at 4 KiB.
//  - 'flush': the image right after flush k (everything before it);
//  - 'prefix': every write before a random point, in order (also what kill -9 of the writer leaves);
//  - 'torn': the durable image + a random subset of the 4 KiB pieces of the later writes.
import type { RecEvent, Expectation } from './recording-device.ts';
import { Prng } from './byte-model.ts';

export const TEAR_BYTES = 4096;

export interface CrashState {
  id: string;
  kind: 'flush' | 'prefix' | 'torn';
  /** Events before this index happened (writes possibly only in part, for 'torn'). */
  cut: number;
  image: Uint8Array;
}

export interface CrashStateOptions {
  seed: number;
  /** Windows (flush to flush) to sample at most; the last window is always included. */
  maxWindows: number;
  /** 'prefix' and 'torn' states per sampled window. */
  perWindow: number;
  /** Instead of sampling: the windows (by index, with their event ranges) to cut in. */
  pick?: (windows: ReadonlyArray<{ start: number; end: number }>) => Set<number>;
}

function applyWrite(img: Uint8Array, e: { offsetBytes: number; data: Uint8Array }): void {
  img.set(e.data, e.offsetBytes);
}

/** Yields crash states one at a time (each a fresh copy of the image). */
export function* crashStates(base: Uint8Array, events: readonly RecEvent[], opts: CrashStateOptions): Generator<CrashState> {
  const rng = new Prng(opts.seed);
  const flushAt: number[] = [];
  events.forEach((e, i) => { if (e.kind === 'flush') flushAt.push(i); });
  // Windows: [start, end) event ranges between flushes (the last runs to the end of the log).
  const windows: Array<{ start: number; end: number }> = [];
  let s = 0;
  for (const f of flushAt) { windows.push({ start: s, end: f }); s = f + 1; }
  windows.push({ start: s, end: events.length });
  const chosen = opts.pick?.(windows) ?? new Set<number>();
  const n = windows.length;
  if (opts.pick) { /* chosen by the caller */ } else if (n <= opts.maxWindows) for (let i = 0; i < n; i++) chosen.add(i);
  else {
    chosen.add(n - 1);
    for (let i = 0; i < opts.maxWindows - 1; i++) chosen.add(Math.floor((i * n) / (opts.maxWindows - 1)));
    while (chosen.size < opts.maxWindows) chosen.add(rng.int(0, n - 1));
  }
  const durable = base.slice();
  for (let w = 0; w < n; w++) {
    const { start, end } = windows[w]!;
    const writes: number[] = [];
    for (let i = start; i < end; i++) if (events[i]!.kind === 'write') writes.push(i);
    if (chosen.has(w) && writes.length > 0) {
      for (let k = 0; k < opts.perWindow; k++) {
        // A cut after a random write of the window: an in-order prefix, or a torn subset.
        const upto = rng.int(0, writes.length - 1);
        const cut = writes[upto]! + 1;
        const img = durable.slice();
        if (k % 2 === 0) {
          for (let j = 0; j <= upto; j++) applyWrite(img, events[writes[j]!] as { offsetBytes: number; data: Uint8Array });
          yield { id: `w${w}-prefix${upto}`, kind: 'prefix', cut, image: img };
        } else {
          const keep = rng.next();
          for (let j = 0; j <= upto; j++) {
            const e = events[writes[j]!] as { offsetBytes: number; data: Uint8Array };
            for (let off = 0; off < e.data.length; off += TEAR_BYTES) {
              if (rng.next() < keep) img.set(e.data.subarray(off, Math.min(e.data.length, off + TEAR_BYTES)), e.offsetBytes + off);
            }
          }
          yield { id: `w${w}-torn${upto}`, kind: 'torn', cut, image: img };
        }
      }
    }
    for (const i of writes) applyWrite(durable, events[i] as { offsetBytes: number; data: Uint8Array });
    if (w < n - 1 && chosen.has(w)) yield { id: `flush${w}`, kind: 'flush', cut: end + 1, image: durable.slice() };
  }
}

/** One path's requirement at a cut: the acknowledged state, or any state set since (alternatives). */
export interface Requirement { exp: Expectation; alts: Array<Uint8Array | null>; ackLabel: string; unknown: boolean }

/** What must hold in a crash state cut at event index `cut`. */
export function requirementsAt(events: readonly RecEvent[], cut: number): Map<string, Requirement> {
  const req = new Map<string, Requirement>();
  const changes = new Map<string, Array<{ at: number; how: string; value?: Uint8Array | null }>>();
  const onChange = (r: Requirement, c: { how: string; value?: Uint8Array | null }): void => {
    if (c.how === 'append' && r.exp.kind === 'prefix') return;
    if (c.how === 'set' && r.exp.kind === 'exact') { r.alts.push(c.value ?? null); return; }
    r.unknown = true;
  };
  for (let i = 0; i < cut; i++) {
    const e = events[i]!;
    if (e.kind === 'change') {
      const list = changes.get(e.path) ?? [];
      list.push({ at: i, how: e.how, ...(e.how === 'set' ? { value: e.value ?? null } : {}) });
      changes.set(e.path, list);
      const r = req.get(e.path);
      if (r) onChange(r, e);
    } else if (e.kind === 'ack') {
      for (const exp of e.expects) {
        const r: Requirement = { exp, alts: [], ackLabel: e.label, unknown: false };
        for (const c of changes.get(exp.path) ?? []) if (c.at > e.since) onChange(r, c);
        req.set(exp.path, r);
      }
    }
  }
  return req;
}

/** Checks one path's bytes (null: absent) against its requirement; a message on failure. */
export function checkRequirement(path: string, r: Requirement, actual: Uint8Array | null): string | undefined {
  if (r.unknown) return undefined;
  const eq = (a: Uint8Array | null, b: Uint8Array | null): boolean => {
    if (a === null || b === null) return a === b;
    return a.length === b.length && Buffer.compare(a, b) === 0;
  };
  if (r.exp.kind === 'exact') {
    if (eq(actual, r.exp.value) || r.alts.some((v) => eq(actual, v))) return undefined;
    return `${path}: ${actual === null ? 'missing' : `${actual.length} bytes`}, acknowledged ${r.exp.value === null ? 'absent' : `${r.exp.value.length} bytes`} (${r.ackLabel})`;
  }
  const want = r.exp.value!;
  if (actual !== null && actual.length >= want.length && Buffer.compare(actual.subarray(0, want.length), want) === 0) return undefined;
  if (actual === null) return `${path}: missing, ${want.length} bytes fsynced (${r.ackLabel})`;
  let d = 0;
  while (d < Math.min(actual.length, want.length) && actual[d] === want[d]) d++;
  return `${path}: ${actual.length} bytes, the first ${want.length} were fsynced (${r.ackLabel}); first difference at ${d}`;
}

/**
 * What a file may hold at a cut whatever was acknowledged (the ordered-mode promise): its
 * contents are a prefix of some value it was given ('set'), or of everything appended to it, so
 * a crash may leave it shorter but never with zeros or another file's old bytes where data was
 * written. Paths changed in other ways ('other', or appends of unknown bytes) are not checked.
 */
export type Candidates = Map<string, Array<Uint8Array | null> | undefined>;

export function candidatesAt(events: readonly RecEvent[], cut: number): Candidates {
  const sets = new Map<string, Array<Uint8Array | null>>();
  const appends = new Map<string, Uint8Array[]>();
  const unknown = new Set<string>();
  for (let i = 0; i < cut; i++) {
    const e = events[i]!;
    if (e.kind !== 'change' || unknown.has(e.path)) continue;
    if (e.how === 'set' && !appends.has(e.path)) {
      const list = sets.get(e.path) ?? [];
      list.push(e.value ?? null);
      sets.set(e.path, list);
    } else if (e.how === 'append' && !sets.has(e.path)) {
      const list = appends.get(e.path) ?? [];
      if (e.value) list.push(e.value);
      appends.set(e.path, list);
    } else unknown.add(e.path);
  }
  const out: Candidates = new Map(sets);
  for (const [p, chunks] of appends) out.set(p, [Buffer.concat(chunks)]);
  for (const p of unknown) out.set(p, undefined);
  return out;
}

/** Checks a file's bytes (null: absent) against its candidates; a message when it holds bytes no write put there. */
export function checkCandidates(path: string, cands: Array<Uint8Array | null> | undefined, actual: Uint8Array | null): string | undefined {
  if (cands === undefined || actual === null) return undefined;
  let best = -1;
  for (const c of cands) {
    if (c === null) continue;
    if (actual.length <= c.length && Buffer.compare(actual, c.subarray(0, actual.length)) === 0) return undefined;
    let d = 0;
    while (d < Math.min(actual.length, c.length) && actual[d] === c[d]) d++;
    best = Math.max(best, d);
  }
  return `${path}: ${actual.length} bytes that are no prefix of what was written to it (first difference at ${best})`;
}
