// Async locks for a single-threaded engine: a FIFO-fair reader/writer lock (i_data_sem,
// invalidate_lock) and a mutex (i_rwsem, page locks). Delalloc-bigalloc spec §5.
//
// Fairness: requests are granted strictly in arrival order, except that a run of readers at the
// head of the queue is granted together. A reader arriving while a writer waits queues behind
// that writer, so a stream of readers cannot starve writers (nor the reverse).
// Ownership passes at release time: when `release()` returns, the next holders already own the
// lock, so no third party can slip in before their continuation runs.

/** Gives the lock back. Calling it a second time is a bug and throws. */
export type Release = () => void;

interface Waiter {
  readonly exclusive: boolean;
  readonly grant: (release: Release) => void;
}

export class RwLock {
  #readers = 0;
  #writer = false;
  readonly #queue: Waiter[] = [];

  /** Number of readers holding the lock now. */
  get readers(): number { return this.#readers; }
  /** True while a writer holds the lock. */
  get writing(): boolean { return this.#writer; }
  /** Number of requests waiting. */
  get waiting(): number { return this.#queue.length; }

  acquireRead(): Promise<Release> {
    if (!this.#writer && this.#queue.length === 0) {
      this.#readers++;
      return Promise.resolve(this.#makeRelease(false));
    }
    return new Promise((resolve) => this.#queue.push({ exclusive: false, grant: resolve }));
  }

  acquireWrite(): Promise<Release> {
    if (!this.#writer && this.#readers === 0 && this.#queue.length === 0) {
      this.#writer = true;
      return Promise.resolve(this.#makeRelease(true));
    }
    return new Promise((resolve) => this.#queue.push({ exclusive: true, grant: resolve }));
  }

  /**
   * Holds the lock shared for the duration of `fn` (also when it throws). When the lock is free
   * (the common case) it is taken at once and `fn` starts synchronously: no grant promise, no
   * release closure and no microtask turn before `fn`, which matters on hot paths that take
   * several locks per operation (a file import takes about seven).
   */
  withRead<T>(fn: () => T | Promise<T>): Promise<T> {
    if (this.#writer || this.#queue.length !== 0) return this.#slowly(this.acquireRead(), fn);
    this.#readers++;
    return this.#run(fn, this.#releaseRead);
  }

  /** Holds the lock exclusively for the duration of `fn` (also when it throws); fast path as withRead. */
  withWrite<T>(fn: () => T | Promise<T>): Promise<T> {
    if (this.#writer || this.#readers !== 0 || this.#queue.length !== 0) return this.#slowly(this.acquireWrite(), fn);
    this.#writer = true;
    return this.#run(fn, this.#releaseWrite);
  }

  /** Runs `fn` under a hold taken on the fast path, then gives it back with `release`. */
  #run<T>(fn: () => T | Promise<T>, release: () => void): Promise<T> {
    let r: T | Promise<T>;
    try {
      r = fn();
    } catch (e) {
      release();
      return Promise.reject(e);
    }
    if (!isThenable(r)) {
      release();
      return Promise.resolve(r);
    }
    return Promise.resolve(r).then((v) => {
      release();
      return v;
    }, (e: unknown) => {
      release();
      throw e;
    });
  }

  async #slowly<T>(granted: Promise<Release>, fn: () => T | Promise<T>): Promise<T> {
    const release = await granted;
    try {
      return await fn();
    } finally {
      release();
    }
  }

  // Fast-path holds are given back by the lock itself (exactly once, by #run): no per-hold closure.
  readonly #releaseRead = (): void => {
    this.#readers--;
    this.#dispatch();
  };

  readonly #releaseWrite = (): void => {
    this.#writer = false;
    this.#dispatch();
  };

  #makeRelease(exclusive: boolean): Release {
    let released = false;
    return () => {
      if (released) throw new Error(`rw-lock: ${exclusive ? 'write' : 'read'} lock released twice`);
      released = true;
      if (exclusive) this.#writer = false;
      else this.#readers--;
      this.#dispatch();
    };
  }

  #dispatch(): void {
    if (this.#writer) return;
    const head = this.#queue[0];
    if (head === undefined) return;
    if (head.exclusive) {
      if (this.#readers !== 0) return;
      this.#queue.shift();
      this.#writer = true;
      head.grant(this.#makeRelease(true));
      return;
    }
    while (this.#queue.length > 0 && !this.#queue[0]!.exclusive) {
      const reader = this.#queue.shift()!;
      this.#readers++;
      reader.grant(this.#makeRelease(false));
    }
  }
}

function isThenable<T>(v: T | Promise<T>): v is Promise<T> {
  return v instanceof Promise || (typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function');
}

/** A FIFO async mutex. */
export class Mutex {
  readonly #lock = new RwLock();

  get locked(): boolean { return this.#lock.writing; }
  get waiting(): number { return this.#lock.waiting; }

  acquire(): Promise<Release> { return this.#lock.acquireWrite(); }

  withLock<T>(fn: () => T | Promise<T>): Promise<T> { return this.#lock.withWrite(fn); }
}
