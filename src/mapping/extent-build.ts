// Builds a complete extent tree for a file whose mapping is known up front (mkfs, bulk
// copies): leaves packed full, index levels added until the top fits in the inode's root.
import { type FsBlock, type FileBlock, fileBlock as toFileBlock, fsBlock as toFsBlock } from '../util/brand.ts';
import {
  encodeExtentNode, extentNodeCapacity, EXTENT_ROOT_SIZE, EXT_INIT_MAX_LEN, EXT_UNWRITTEN_MAX_LEN,
  type Extent, type ExtentIndex,
} from '../format/extent.ts';
import { assert } from '../errors/ext4-error.ts';

export interface Run {
  fileBlock: number;
  fsBlock: number;
  countBlocks: number;
  unwritten?: boolean;
}

export interface BuiltExtentTree {
  /** The 60 bytes to place in i_block. */
  iBlock: Uint8Array;
  /** Index and leaf blocks to write. */
  nodeBlocks: Array<{ block: FsBlock; bytes: Uint8Array }>;
}

/** Splits runs into extents no longer than the on-disk maximum. */
export function runsToExtents(runs: readonly Run[]): Extent[] {
  const out: Extent[] = [];
  for (const r of runs) {
    const max = r.unwritten ? EXT_UNWRITTEN_MAX_LEN : EXT_INIT_MAX_LEN;
    for (let done = 0; done < r.countBlocks; done += max) {
      out.push({
        fileBlock: toFileBlock(r.fileBlock + done), fsBlock: toFsBlock(r.fsBlock + done),
        countBlocks: Math.min(max, r.countBlocks - done), unwritten: r.unwritten ?? false,
      });
    }
  }
  return out;
}

/** Number of tree blocks (not counting the root) `extentCount` extents need. */
export function extentTreeBlocksNeeded(extentCount: number, blockSize: number): number {
  const cap = extentNodeCapacity(false, blockSize);
  let n = 0;
  let level = extentCount;
  while (level > 4) {
    level = Math.ceil(level / cap);
    n += level;
  }
  return n;
}

/**
 * `allocBlock` is called once per tree block needed. Runs must be sorted by fileBlock and
 * must not overlap.
 */
export function buildExtentTree(runs: readonly Run[], opts: {
  blockSize: number; inodeSeed?: number | undefined; allocBlock: () => FsBlock;
}): BuiltExtentTree {
  const extents = runsToExtents(runs);
  const cap = extentNodeCapacity(false, opts.blockSize);
  const nodeBlocks: BuiltExtentTree['nodeBlocks'] = [];
  const iBlock = new Uint8Array(EXTENT_ROOT_SIZE);
  if (extents.length <= 4) {
    encodeExtentNode({ kind: 'leaf', depth: 0, max: 4, generation: 0, extents }, iBlock, { isRoot: true, blockSize: opts.blockSize });
    return { iBlock, nodeBlocks };
  }
  // Bottom level: leaves.
  let level: ExtentIndex[] = [];
  for (let i = 0; i < extents.length; i += cap) {
    const chunk = extents.slice(i, i + cap);
    const block = opts.allocBlock();
    const bytes = new Uint8Array(opts.blockSize);
    encodeExtentNode({ kind: 'leaf', depth: 0, max: cap, generation: 0, extents: chunk }, bytes,
      { isRoot: false, blockSize: opts.blockSize, inodeSeed: opts.inodeSeed });
    nodeBlocks.push({ block, bytes });
    level.push({ fileBlock: chunk[0]!.fileBlock as FileBlock, child: block });
  }
  let depth = 1;
  while (level.length > 4) {
    const next: ExtentIndex[] = [];
    for (let i = 0; i < level.length; i += cap) {
      const chunk = level.slice(i, i + cap);
      const block = opts.allocBlock();
      const bytes = new Uint8Array(opts.blockSize);
      encodeExtentNode({ kind: 'index', depth, max: cap, generation: 0, indexes: chunk }, bytes,
        { isRoot: false, blockSize: opts.blockSize, inodeSeed: opts.inodeSeed });
      nodeBlocks.push({ block, bytes });
      next.push({ fileBlock: chunk[0]!.fileBlock, child: block });
    }
    level = next;
    depth++;
  }
  assert(depth <= 5, 'extent tree too deep');
  encodeExtentNode({ kind: 'index', depth, max: 4, generation: 0, indexes: level }, iBlock, { isRoot: true, blockSize: opts.blockSize });
  return { iBlock, nodeBlocks };
}
