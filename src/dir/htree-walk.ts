// One htree (hashed directory index) walk, shared by directory reading (dir-read.ts) and writing
// (dir-write.ts): hash the name with the root's algorithm, descend to the leaf whose range holds
// the hash, and follow a run of colliding hashes into the next leaves (directory.rst, "Hash Tree
// Directories"). How blocks are read and decoded is the caller's: read-only mounts read the
// device, writers read through their transaction.
import { corrupt, type Ext4ErrorWhere } from '../errors/ext4-error.ts';
import { dxFindEntry, type DxEntry, type DxRoot } from '../format/htree.ts';
import { dirHash, effectiveHashVersion } from '../format/dir-hash.ts';

/** One level of the path: the entries of a root or interior node and the one followed. */
export interface DxFrame {
  entries: DxEntry[];
  /** Index of the entry followed at this level. */
  at: number;
}

/** How the walk reads index blocks; the frames may carry more (block numbers, decoded nodes). */
export interface HtreeWalker<F extends DxFrame> {
  /** Block 0, decoded as a dx root. `where` names it for hash errors. */
  readRoot(): Promise<{ frame: F; root: DxRoot; where: Ext4ErrorWhere }>;
  /** An interior index block, by its directory block number. */
  readNode(fileBlock: number): Promise<F>;
  hashSeed: readonly number[];
  /** Superblock flags: decide the signed or unsigned hash flavour. */
  sbFlags: number;
  /** Names the directory in a collision-loop error. */
  where: Ext4ErrorWhere;
}

export interface DxProbe<F extends DxFrame> {
  /** Root first, then one frame per interior level; the last frame's `at` entry names the leaf. */
  frames: F[];
  hash: number;
  /** The effective hash version (the root's, with the superblock's unsigned flavour). */
  version: number;
  root: DxRoot;
}

function entryAt(f: DxFrame, i: number): DxEntry {
  const e = f.entries[i];
  if (e === undefined) throw new RangeError(`htree frame entry ${i} of ${f.entries.length}`);
  return e;
}

/** The directory block of the leaf the path currently points to. */
export function dxLeafBlock(frames: readonly DxFrame[]): number {
  const last = frames[frames.length - 1];
  if (last === undefined) throw new RangeError('empty htree path');
  return entryAt(last, last.at).block;
}

/** Root-to-leaf path for `name`: at each level the last entry whose hash is <= the name's. */
export async function dxProbe<F extends DxFrame>(w: HtreeWalker<F>, name: Uint8Array): Promise<DxProbe<F>> {
  const { frame: rootFrame, root, where } = await w.readRoot();
  const version = effectiveHashVersion(root.hashVersion, w.sbFlags);
  const { hash } = dirHash(name, version, w.hashSeed, where);
  const frames: F[] = [rootFrame];
  let f = rootFrame;
  // decodeDxRoot bounds indirectLevels (2, or 3 with large_dir), so the descent is short.
  for (let level = 0; ; level++) {
    f.at = dxFindEntry(f.entries, hash);
    if (level === root.indirectLevels) break;
    f = await w.readNode(entryAt(f, f.at).block);
    frames.push(f);
  }
  return { frames, hash, version, root };
}

/**
 * Moves the path to the next leaf when that leaf continues a run of `hash` (its index entry is
 * the same hash with the collision bit set). Returns false at the end of the run.
 */
export async function dxNextInRun<F extends DxFrame>(w: HtreeWalker<F>, frames: F[], hash: number): Promise<boolean> {
  let lvl = frames.length - 1;
  for (; lvl >= 0; lvl--) {
    const f = frames[lvl];
    if (f !== undefined && f.at + 1 < f.entries.length) break;
  }
  const turn = frames[lvl];
  if (turn === undefined) return false;
  const next = entryAt(turn, turn.at + 1);
  if ((next.hash & 1) === 0 || ((next.hash & ~1) >>> 0) !== hash) return false;
  turn.at++;
  for (let l = lvl + 1; l < frames.length; l++) {
    const up = frames[l - 1];
    if (up === undefined) throw new RangeError(`htree path level ${l - 1}`);
    frames[l] = await w.readNode(entryAt(up, up.at).block);
  }
  return true;
}

/**
 * Looks `name` up: `inLeaf` searches one leaf block (by directory block number) and returns
 * what it found or undefined, and the walk moves on through the collision run. At most
 * `maxLeaves` leaves are searched before the run is declared a loop (EUCLEAN).
 */
export async function dxSearch<F extends DxFrame, R>(
  w: HtreeWalker<F>, name: Uint8Array, maxLeaves: number, inLeaf: (leafBlock: number) => Promise<R | undefined>,
): Promise<R | undefined> {
  const { frames, hash } = await dxProbe(w, name);
  for (let hops = 0; hops < maxLeaves; hops++) {
    const found = await inLeaf(dxLeafBlock(frames));
    if (found !== undefined) return found;
    if (!(await dxNextInRun(w, frames, hash))) return undefined;
  }
  throw corrupt('htree-loop', 'htree collision chain does not end', w.where);
}
