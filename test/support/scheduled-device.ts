// A deterministic scheduler for exploring interleavings of concurrent filesystem operations.
//
// Every place where a task could lose the CPU to another task in a real kernel becomes a *step*
// the scheduler must grant before the task continues:
//   * block-device I/O: ScheduledDevice's read/write/flush promises complete only when the
//     scheduler picks them (the bytes move at completion; a write's data is copied at issue);
//   * lock requests: instrumentLock() makes a task stop before it queues on one of the
//     filesystem's async locks (i_rwsem, i_data_sem, the writeback mutex), so the scheduler
//     decides who queues first.
// Between steps the code runs exactly as in production: the scheduler only waits for the event
// loop to go idle (every task blocked on a step, a lock or finished) and then completes ONE
// pending step, chosen by a `Chooser`. Same chooser answers → same interleaving, step for step,
// so a failing schedule can be replayed and shrunk (the chooser is driven by a list of numbers).
//
// Tasks are identified with AsyncLocalStorage, so every step and every lock grant is attributed
// to the task that caused it; the trace is the printed interleaving.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { BlockDevice } from '../../src/device/block-device.ts';
import type { Mutex, Release, RwLock } from '../../src/util/rw-lock.ts';

export interface PendingStep {
  readonly id: number;
  readonly task: string;
  readonly label: string;
}

/** Picks the index (into `pending`, oldest first) of the step to complete next. */
export type Chooser = (pending: readonly PendingStep[], stepNo: number) => number;

/** Chooser from a list of numbers: step n takes choices[n] mod |pending|; past the list, the oldest. */
export function choiceChooser(choices: readonly number[]): Chooser {
  return (pending, n) => (choices[n] ?? 0) % pending.length;
}

export interface TaskOutcome {
  readonly task: string;
  readonly ok: boolean;
  readonly error?: unknown;
  /** 0 for the first task to finish, 1 for the next, … */
  readonly settledAs: number;
}

export class ScheduleError extends Error {}

/**
 * The running task, per async context. One instance for all schedulers: every live
 * AsyncLocalStorage adds a cost to each promise created, so one per schedule would add up.
 */
const taskContext = new AsyncLocalStorage<{ readonly sched: Scheduler; readonly task: string }>();

export class Scheduler {
  /** The interleaving: granted steps ("#n task: label") and notes, in the order they happened. */
  readonly trace: string[] = [];
  /** Number of steps granted in the last run. */
  steps = 0;
  #active = false;
  #nextId = 0;
  readonly #pending: Array<PendingStep & { resolve: () => void }> = [];

  get active(): boolean { return this.#active; }

  /** Name of the task running now, if inside run(). */
  currentTask(): string | undefined {
    const t = taskContext.getStore();
    return t?.sched === this ? t.task : undefined;
  }

  /**
   * A point where the current task hands control to the scheduler. Resolves at once outside
   * run() (setup and verification run unscheduled).
   */
  step(label: string): Promise<void> {
    if (!this.#active) return Promise.resolve();
    return new Promise((resolve) => {
      this.#pending.push({ id: this.#nextId++, task: this.currentTask() ?? '(untracked)', label, resolve });
    });
  }

  /** Adds an informational line to the trace (only while running). */
  note(text: string): void {
    if (this.#active) this.trace.push(`      ${this.currentTask() ?? '(untracked)'}: ${text}`);
  }

  /**
   * Starts every task, then repeatedly waits until nothing can run and completes one pending
   * step chosen by `choose`, until all tasks have settled. Throws ScheduleError on deadlock
   * (tasks left but no step pending) or when `maxSteps` is exceeded.
   */
  async run(tasks: ReadonlyArray<readonly [string, () => Promise<unknown>]>, choose: Chooser,
    opts: { maxSteps?: number } = {}): Promise<TaskOutcome[]> {
    if (this.#active) throw new Error('scheduler already running');
    const maxSteps = opts.maxSteps ?? 10_000;
    this.#active = true;
    this.steps = 0;
    const outcomes: Array<TaskOutcome | undefined> = tasks.map(() => undefined);
    let settled = 0;
    try {
      tasks.forEach(([name, fn], i) => {
        taskContext.run({ sched: this, task: name }, () => {
          let p: Promise<unknown>;
          try { p = fn(); } catch (e) { p = Promise.reject(e); }
          p.then(
            () => { outcomes[i] = { task: name, ok: true, settledAs: settled++ }; this.trace.push(`      ${name}: done`); },
            (error: unknown) => {
              outcomes[i] = { task: name, ok: false, error, settledAs: settled++ };
              this.trace.push(`      ${name}: FAILED: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`);
            },
          );
        });
      });
      for (;;) {
        await idle();
        if (settled === tasks.length && this.#pending.length === 0) break;
        if (this.#pending.length === 0) {
          const stuck = tasks.filter((_, i) => !outcomes[i]).map(([n]) => n);
          throw new ScheduleError(`deadlock: ${stuck.join(', ')} blocked with no step pending`);
        }
        if (this.steps >= maxSteps) throw new ScheduleError(`more than ${maxSteps} steps`);
        const idx = choose(this.#pending, this.steps);
        if (!Number.isInteger(idx) || idx < 0 || idx >= this.#pending.length) throw new Error(`chooser returned ${idx}`);
        const [s] = this.#pending.splice(idx, 1);
        this.trace.push(`#${String(this.steps).padStart(3)} ${s!.task}: ${s!.label}`);
        this.steps++;
        s!.resolve();
      }
      return outcomes as TaskOutcome[];
    } finally {
      this.#active = false;
      // After a deadlock or the step limit, steps still pending are never granted: their tasks
      // stay blocked (and are garbage-collected) instead of running on unscheduled.
      this.#pending.splice(0);
    }
  }
}

/** Lets every queued microtask (and the promise chains they start) run to completion. */
function idle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * A BlockDevice whose read/write/flush complete only when the scheduler grants them (and at
 * once when the scheduler is not running). Reads see the bytes at completion time; writes copy
 * their data at issue and apply it at completion.
 */
export class ScheduledDevice implements BlockDevice {
  constructor(
    readonly inner: BlockDevice,
    readonly sched: Scheduler,
    /** Names a byte range for the trace (e.g. "bitmap", "data of file block 3"); gets a write's data. */
    readonly describe: (offsetBytes: number, lenBytes: number, data?: Uint8Array) => string = (o, n) => `@${o}+${n}`,
  ) {}

  get sizeBytes(): number { return this.inner.sizeBytes; }
  get readOnly(): boolean { return this.inner.readOnly; }

  async read(offsetBytes: number, lenBytes: number): Promise<Uint8Array> {
    await this.sched.step(`read completes: ${this.describe(offsetBytes, lenBytes)}`);
    return this.inner.read(offsetBytes, lenBytes);
  }

  async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    const copy = data.slice();
    await this.sched.step(`write completes: ${this.describe(offsetBytes, data.length, copy)}`);
    return this.inner.write(offsetBytes, copy);
  }

  async flush(): Promise<void> {
    await this.sched.step('flush completes');
    return this.inner.flush();
  }

  close(): Promise<void> { return this.inner.close(); }
}

export interface LockHooks {
  /** Called (synchronously) when a task asks for the lock, before it yields to the scheduler. */
  beforeRequest?: (task: string | undefined, mode: 'read' | 'write') => void;
  /** Called when the lock is granted to a task. */
  granted?: (task: string | undefined, mode: 'read' | 'write') => void;
}

/**
 * Makes one lock instance a scheduling point: a task asking for it stops until the scheduler
 * picks "wants <name>", then queues on the lock as usual (FIFO); grants and releases are noted
 * in the trace. Patches the instance only (own properties shadow the prototype methods).
 */
export function instrumentLock(sched: Scheduler, lock: RwLock | Mutex, name: string, hooks: LockHooks = {}): void {
  const wrap = (mode: 'read' | 'write', acquire: () => Promise<Release>) => async (): Promise<Release> => {
    const task = sched.currentTask();
    hooks.beforeRequest?.(task, mode);
    await sched.step(`wants ${name}${mode === 'read' ? ' (shared)' : ''}`);
    const release = await acquire();
    sched.note(`holds ${name}${mode === 'read' ? ' (shared)' : ''}`);
    hooks.granted?.(task, mode);
    return () => { sched.note(`releases ${name}`); release(); };
  };
  const l = lock as unknown as Record<string, unknown>;
  if ('acquireWrite' in lock) {
    const rw = lock as RwLock;
    const origW = rw.acquireWrite.bind(rw);
    const origR = rw.acquireRead.bind(rw);
    l.acquireWrite = wrap('write', origW);
    l.acquireRead = wrap('read', origR);
    // withRead/withWrite (prototype) call this.acquireRead/acquireWrite: already covered.
  } else {
    const m = lock as Mutex;
    const acquire = wrap('write', m.acquire.bind(m));
    l.acquire = acquire;
    l.withLock = async <T>(fn: () => T | Promise<T>): Promise<T> => {
      const release = await acquire();
      try { return await fn(); } finally { release(); }
    };
  }
}
