// Builds a legacy (ext2/ext3) block map for a file whose blocks are known up front (mkfs):
// 12 direct pointers, then single, double and triple indirect blocks.
import { Ext4Error } from '../errors/ext4-error.ts';
import { setU32 } from '../util/bytes.ts';
import type { Run } from './extent-build.ts';

export interface BuiltBlockMap {
  iBlock: Uint8Array;
  /** Indirect blocks to write. */
  indirectBlocks: Array<{ block: number; bytes: Uint8Array }>;
}

/** Indirect blocks needed to map `countBlocks` blocks starting at logical block 0. */
export function blockMapOverhead(countBlocks: number, blockSize: number): number {
  const apb = blockSize / 4;
  let n = 0;
  let left = countBlocks - 12;
  if (left > 0) { n += 1; left -= apb; }
  if (left > 0) { const ind = Math.min(Math.ceil(left / apb), apb); n += 1 + ind; left -= apb * apb; }
  if (left > 0) { const ind = Math.ceil(left / apb); n += 1 + Math.ceil(ind / apb) + ind; }
  return n;
}

/** Maps logical blocks 0..n-1 (the concatenation of `runs`) through `allocBlock` for indirect blocks. */
export function buildBlockMap(runs: readonly Run[], opts: { blockSize: number; allocBlock: () => number }): BuiltBlockMap {
  const apb = opts.blockSize / 4;
  const blocks: number[] = [];
  for (const r of runs) for (let k = 0; k < r.countBlocks; k++) blocks.push(r.fsBlock + k);
  if (blocks.length > 12 + apb + apb * apb + apb * apb * apb) throw new Ext4Error('EFBIG', 'file too large for a block map');
  const iBlock = new Uint8Array(60);
  const indirectBlocks: BuiltBlockMap['indirectBlocks'] = [];
  const newIndirect = () => {
    const block = opts.allocBlock();
    const bytes = new Uint8Array(opts.blockSize);
    indirectBlocks.push({ block, bytes });
    return { block, bytes };
  };
  /** Fills an indirect tree of `depth` levels from blocks[at..] and returns its block and how many it mapped. */
  const fill = (depth: number, at: number): { block: number; used: number } => {
    const node = newIndirect();
    let used = 0;
    for (let i = 0; i < apb && at + used < blocks.length; i++) {
      if (depth === 1) { setU32(node.bytes, 4 * i, blocks[at + used]!); used++; }
      else { const child = fill(depth - 1, at + used); setU32(node.bytes, 4 * i, child.block); used += child.used; }
    }
    return { block: node.block, used };
  };
  let at = 0;
  for (; at < Math.min(12, blocks.length); at++) setU32(iBlock, 4 * at, blocks[at]!);
  for (let depth = 1; depth <= 3 && at < blocks.length; depth++) {
    const r = fill(depth, at);
    setU32(iBlock, 4 * (11 + depth), r.block);
    at += r.used;
  }
  return { iBlock, indirectBlocks };
}
