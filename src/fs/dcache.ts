// The name cache (dentry cache): directory inode → name bytes → inode, for every mount.
// A directory listed in full is `complete`, so its misses are answered too.
import { nameKey } from './names.ts';

/**
 * Entries kept before the cache starts over (a bound on memory, not a tuning knob): about 70
 * bytes each, so at most ~18 MiB of a FUSE server's 256 MiB.
 */
const MAX_ENTRIES = 1 << 18;

export class NameCache {
  private readonly dirs = new Map<number, { names: Map<string, number>; complete: boolean }>();
  private entries = 0;

  /** The cached inode of `name` in `dirIno`: a number, null for a known miss, undefined if unknown. */
  get(dirIno: number, name: Uint8Array): number | null | undefined {
    const d = this.dirs.get(dirIno);
    if (!d) return undefined;
    const hit = d.names.get(nameKey(name));
    if (hit !== undefined) return hit;
    return d.complete ? null : undefined;
  }

  /** Records an entry; `onlyIfCached` skips directories the cache holds nothing of. */
  put(dirIno: number, name: Uint8Array, ino: number, opts: { onlyIfCached?: boolean } = {}): void {
    let d = this.dirs.get(dirIno);
    if (!d) {
      if (opts.onlyIfCached) return;
      if (this.entries > MAX_ENTRIES) this.clear();
      d = { names: new Map(), complete: false };
      this.dirs.set(dirIno, d);
    }
    const k = nameKey(name);
    if (!d.names.has(k)) this.entries++;
    d.names.set(k, ino);
  }

  /** A directory's full listing (a new directory's is just '.' and '..'). */
  putComplete(dirIno: number, entries: Iterable<{ name: Uint8Array; ino: number }>): void {
    this.forgetDir(dirIno);
    if (this.entries > MAX_ENTRIES) this.clear();
    const names = new Map<string, number>();
    for (const e of entries) names.set(nameKey(e.name), e.ino);
    this.dirs.set(dirIno, { names, complete: true });
    this.entries += names.size;
  }

  delete(dirIno: number, name: Uint8Array): void {
    if (this.dirs.get(dirIno)?.names.delete(nameKey(name))) this.entries--;
  }

  /** The directory is gone (or changed behind the cache's back). */
  forgetDir(dirIno: number): void {
    const d = this.dirs.get(dirIno);
    if (!d) return;
    this.entries -= d.names.size;
    this.dirs.delete(dirIno);
  }

  clear(): void { this.dirs.clear(); this.entries = 0; }
}
