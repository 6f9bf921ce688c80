// A set of half-open integer ranges [start, end), kept sorted and merged. mkfs uses it to
// track used blocks before bitmaps exist.

export class RangeSet {
  /** Flattened [start0, end0, start1, end1, ...], sorted, non-overlapping, non-adjacent. */
  private r: number[] = [];

  get ranges(): ReadonlyArray<readonly [number, number]> {
    const out: Array<[number, number]> = [];
    for (let i = 0; i < this.r.length; i += 2) out.push([this.r[i]!, this.r[i + 1]!]);
    return out;
  }

  /** Index (in pairs) of the first range whose end is > x. */
  private firstEndingAfter(x: number): number {
    let lo = 0, hi = this.r.length / 2;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.r[mid * 2 + 1]! > x) hi = mid; else lo = mid + 1;
    }
    return lo;
  }

  add(start: number, end: number): void {
    if (end <= start) return;
    const i = this.firstEndingAfter(start - 1); // ranges ending >= start merge (adjacent too)
    let s = start, e = end, j = i;
    while (j < this.r.length / 2 && this.r[j * 2]! <= end) {
      s = Math.min(s, this.r[j * 2]!);
      e = Math.max(e, this.r[j * 2 + 1]!);
      j++;
    }
    this.r.splice(i * 2, (j - i) * 2, s, e);
  }

  has(x: number): boolean {
    const i = this.firstEndingAfter(x);
    return i < this.r.length / 2 && this.r[i * 2]! <= x;
  }

  /** Total length of the parts of [start, end) that are in the set. */
  countIn(start: number, end: number): number {
    let n = 0;
    for (let i = this.firstEndingAfter(start); i < this.r.length / 2 && this.r[i * 2]! < end; i++) {
      n += Math.min(end, this.r[i * 2 + 1]!) - Math.max(start, this.r[i * 2]!);
    }
    return n;
  }

  /** Ranges intersecting [start, end), clipped to it. */
  *within(start: number, end: number): Generator<[number, number]> {
    for (let i = this.firstEndingAfter(start); i < this.r.length / 2 && this.r[i * 2]! < end; i++) {
      yield [Math.max(start, this.r[i * 2]!), Math.min(end, this.r[i * 2 + 1]!)];
    }
  }

  /**
   * First position p >= from, aligned to `align`, with [p, p+len) free and p+len <= limit;
   * undefined when there is none.
   */
  findFree(from: number, len: number, limit: number, align = 1): number | undefined {
    let p = Math.ceil(from / align) * align;
    for (let i = this.firstEndingAfter(p); ; i++) {
      const nextStart = i < this.r.length / 2 ? this.r[i * 2]! : Infinity;
      if (p + len <= Math.min(nextStart, limit)) return p;
      if (nextStart >= limit) return undefined;
      p = Math.ceil(this.r[i * 2 + 1]! / align) * align;
    }
  }

  /** The free gap starting at `p` (p must be free): its end, capped at `limit`. */
  freeUntil(p: number, limit: number): number {
    const i = this.firstEndingAfter(p);
    return Math.min(limit, i < this.r.length / 2 ? this.r[i * 2]! : Infinity);
  }
}
