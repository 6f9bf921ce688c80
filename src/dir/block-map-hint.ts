// Where a directory's blocks are, remembered between inserts: every new entry (a bulk import
// makes one per file) maps the block it goes into, and the extent lookup (a tree walk behind
// several async layers) cost more than the insert itself. A remembered mapping is used only
// while the directory's extent root is byte-for-byte what it was when the mapping was looked
// up, and only for a root of depth 0 (every extent in the inode itself): then the root alone
// determines the mapping, so a hit returns what a lookup would.
import type { DirWriteEnv } from './dir-write.ts';

const ROOT_BYTES = 60;
const EXTENT_MAGIC = 0xf30a;
/** Blocks remembered per directory (inserts scan from block 0; later blocks are looked up). */
const MAX_BLOCKS = 64;

/** True when `root` is an extent header of depth 0 (leaf extents in the root itself). */
function isDepthZeroRoot(root: Uint8Array): boolean {
  return root.length === ROOT_BYTES && (root[0]! | (root[1]! << 8)) === EXTENT_MAGIC && root[6] === 0 && root[7] === 0;
}

export class DirBlockMapHint {
  readonly #root = new Uint8Array(ROOT_BYTES);
  /** Physical block per file block, looked up with #root (0: not remembered). */
  readonly #phys: number[] = [];
  /** Lookups answered from memory (for tests). */
  hits = 0;

  #sameRoot(root: Uint8Array): boolean {
    const mine = this.#root;
    for (let i = 0; i < ROOT_BYTES; i++) if (mine[i] !== root[i]) return false;
    return true;
  }

  /** The remembered block, when `root` is still the one it was looked up with. */
  get(root: Uint8Array, fileBlock: number): number | undefined {
    const p = this.#phys[fileBlock];
    if (p === undefined || p === 0 || !this.#sameRoot(root)) return undefined;
    this.hits++;
    return p;
  }

  /** Remembers what a lookup with `root` found (a hole or a deep tree is not remembered). */
  set(root: Uint8Array, fileBlock: number, phys: number | undefined): void {
    if (phys === undefined || phys <= 0 || fileBlock >= MAX_BLOCKS || !isDepthZeroRoot(root)) return;
    if (!this.#sameRoot(root)) {
      this.#root.set(root);
      this.#phys.length = 0;
    }
    this.#phys[fileBlock] = phys;
  }
}

/**
 * For an extent-mapped directory whose lock the caller holds for as long as `env` is used:
 * `env` with its mapBlock answered from `hint` when the directory's extent root (`root()`, read
 * at each call: the root changes in place) is unchanged; misses go to the env's own lookup.
 */
export function withMapHint(env: DirWriteEnv, hint: DirBlockMapHint, root: () => Uint8Array): DirWriteEnv {
  const lookup = env.mapBlock;
  env.mapBlock = (fileBlock) => {
    const r = root();
    const p = hint.get(r, fileBlock);
    if (p !== undefined) return p;
    // The caller holds the directory's lock: the root does not change while the lookup runs.
    return Promise.resolve(lookup(fileBlock)).then((phys) => {
      hint.set(r, fileBlock, phys);
      return phys;
    });
  };
  return env;
}
