// A one-line progress bar on stderr, drawn only when stderr is a terminal and at most ~10 times a
// second, so that piped or logged runs stay clean.

export class Progress {
  private readonly enabled: boolean;
  private lastDraw = 0;
  private drawn = false;
  private done = 0;
  private items = 0;

  constructor(
    private readonly label: string,
    private readonly totalBytes: number,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {
    this.enabled = stream.isTTY === true && totalBytes > 0;
  }

  /** Records `bytes` more copied and one more item when `item` is set. */
  tick(bytes: number, item = false): void {
    this.done += bytes;
    if (item) this.items++;
    if (!this.enabled) return;
    const now = Date.now();
    if (now - this.lastDraw < 100) return;
    this.lastDraw = now;
    this.draw();
  }

  private draw(): void {
    const width = Math.max(10, Math.min(40, (this.stream.columns ?? 80) - 50));
    const frac = Math.min(1, this.done / this.totalBytes);
    const full = Math.round(frac * width);
    const bar = '#'.repeat(full) + '.'.repeat(width - full);
    const line = `${this.label} [${bar}] ${(frac * 100).toFixed(0).padStart(3)}% ${formatBytes(this.done)} ${this.items} entries`;
    this.stream.write(`\r${line}\x1b[K`);
    this.drawn = true;
  }

  /** Clears the bar line. */
  finish(): void {
    if (this.enabled && this.drawn) this.stream.write('\r\x1b[K');
    this.drawn = false;
  }
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}
