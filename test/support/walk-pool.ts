// Main-thread side of walk-worker.ts: runs walk jobs one at a time in a worker thread, each under a
// wall-clock bound. A job past its bound is a hang: the worker is terminated (which stops even a
// synchronous infinite loop) and a fresh one takes the next job. Worker crashes (out of memory,
// uncaught errors) are reported the same way.
import { Worker } from 'node:worker_threads';
import type { WalkIssue } from './fs-walk.ts';
import type { WalkJob, WalkJobResult } from './walk-worker.ts';

export type WalkOutcome =
  | { kind: 'done'; result: WalkJobResult }
  | { kind: 'hang'; ms: number; lastProgress: string }
  | { kind: 'crash'; issue: WalkIssue; lastProgress: string };

type Msg =
  | { type: 'ready' }
  | { type: 'start'; id: number }
  | { type: 'progress'; id: number; where: string }
  | { type: 'result'; id: number; result: WalkJobResult }
  | { type: 'crash'; id: number; issue: WalkIssue };

const WORKER_URL = new URL('./walk-worker.ts', import.meta.url).href;
// Node 20 does not pass --import hooks on to workers reliably: register tsx inside the worker.
const TSX_API = import.meta.resolve('tsx/esm/api');
const BOOT = `import(${JSON.stringify(TSX_API)}).then(({ register }) => { register(); return import(${JSON.stringify(WORKER_URL)}); })`;

const START_TIMEOUT_MS = 60_000;

export class WalkPool {
  private worker: Worker | undefined;
  private ready: Promise<void> | undefined;
  private nextId = 1;
  private handler: ((m: Msg) => void) | undefined;
  private failure: ((e: Error) => void) | undefined;
  /** Workers started so far (one more after every hang or crash). */
  spawned = 0;

  constructor(private readonly opts: { maxHeapMb?: number } = {}) {}

  private start(): Promise<void> {
    const w = new Worker(BOOT, {
      eval: true,
      resourceLimits: { maxOldGenerationSizeMb: this.opts.maxHeapMb ?? 1536 },
      stdout: false,
      stderr: false,
    });
    this.spawned++;
    this.worker = w;
    // Events of a worker that was already replaced are ignored.
    w.on('message', (m: Msg) => { if (this.worker === w) this.handler?.(m); });
    w.on('error', (e) => { if (this.worker === w) this.failure?.(e); });
    w.on('exit', (code) => { if (this.worker === w) this.failure?.(new Error(`walk worker exited with code ${code}`)); });
    w.unref();
    this.ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`walk worker did not start within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      this.handler = (m) => { if (m.type === 'ready') { clearTimeout(timer); resolve(); } };
      this.failure = (e) => { clearTimeout(timer); reject(e); };
    });
    return this.ready;
  }

  private async kill(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    this.ready = undefined;
    this.handler = undefined;
    this.failure = undefined;
    if (w) await w.terminate();
  }

  /** Runs one job within `timeoutMs` (the worker's start-up is not counted). */
  async run(job: Omit<WalkJob, 'id'>, timeoutMs: number): Promise<WalkOutcome> {
    if (!this.worker) void this.start().catch(() => undefined);
    // Referenced while a job runs; unreferenced between jobs so a forgotten pool cannot keep the process alive.
    this.worker!.ref();
    try {
      await this.ready;
    } catch (e) {
      await this.kill();
      throw e;
    }
    const id = this.nextId++;
    let lastProgress = 'open';
    const t0 = performance.now();
    const outcome = await new Promise<WalkOutcome>((resolve) => {
      const timer = setTimeout(() => resolve({ kind: 'hang', ms: performance.now() - t0, lastProgress }), timeoutMs);
      const finish = (o: WalkOutcome) => { clearTimeout(timer); resolve(o); };
      this.handler = (m) => {
        if (!('id' in m) || m.id !== id) return;
        if (m.type === 'progress') lastProgress = m.where;
        else if (m.type === 'result') finish({ kind: 'done', result: m.result });
        else if (m.type === 'crash') finish({ kind: 'crash', issue: m.issue, lastProgress });
      };
      this.failure = (e) => finish({
        kind: 'crash', lastProgress,
        issue: { step: 'worker', path: '', code: (e as NodeJS.ErrnoException).code ?? e.constructor.name, message: e.message, ...(e.stack ? { stack: e.stack } : {}) },
      });
      this.worker!.postMessage({ ...job, id });
    });
    if (outcome.kind !== 'done') await this.kill();
    else this.worker?.unref();
    return outcome;
  }

  async close(): Promise<void> {
    await this.kill();
  }
}
