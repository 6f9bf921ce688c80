// Read-side file block mapping: walks an inode's extent tree or legacy block map (ifork.rst)
// to list or look up file-block → fs-block ranges. Never writes; every on-disk pointer is checked.
import { corrupt, assert, type Ext4ErrorWhere } from '../errors/ext4-error.ts';
import { u32 } from '../util/bytes.ts';
import { fileBlock, fsBlock, type FileBlock, type FsBlock, type InodeNo } from '../util/brand.ts';
import { EXT_MAX_LOGICAL_END, type ExtentNode } from '../format/extent.ts';
import { childRange, lastAtOrBelow, readChildNode, readRootNode, type ExtentNodeSource } from './extent-node.ts';
import {
  EXTENTS_FL, INLINE_DATA_FL, S_IFMT, S_IFREG, S_IFDIR, S_IFLNK, isFastSymlink, type Inode,
} from '../format/inode.ts';

export interface MapContext {
  blockSize: number;
  /** Total blocks in the filesystem (s_blocks_count); every pointer must be below it. */
  blocksCount: number;
  readBlock(block: FsBlock): Promise<Uint8Array>;
  ino: InodeNo;
  /** The inode's checksum seed, set when metadata_csum is on: extent blocks are verified. */
  inodeSeed?: number | undefined;
  /** For the fast-symlink rule (an xattr block is charged as one cluster). Defaults to blockSize. */
  clusterSize?: number | undefined;
  /** The ea_inode feature, which changes the fast-symlink rule. */
  eaInodeFeature?: boolean | undefined;
}

export interface Mapping {
  fileBlock: FileBlock;
  fsBlock: FsBlock;
  countBlocks: number;
  /** An unwritten (preallocated) extent: reads as zeros. */
  unwritten: boolean;
}

/** Block map slots in i_block: 12 direct, then single, double and triple indirect. */
const NDIR_BLOCKS = 12;
const IND_BLOCK = 12;
const DIND_BLOCK = 13;
const TIND_BLOCK = 14;

/**
 * Whether i_block holds a block map or extent root at all. Inline data, fast symlinks and
 * device/fifo/socket inodes keep other things there and map no blocks.
 */
function hasMappedBlocks(inode: Inode, ctx: MapContext): boolean {
  if (inode.flags & INLINE_DATA_FL) return false;
  const type = inode.mode & S_IFMT;
  if (type === S_IFLNK) {
    return !isFastSymlink(inode, { clusterSize: ctx.clusterSize ?? ctx.blockSize, eaInodeFeature: ctx.eaInodeFeature ?? false });
  }
  // Regular files, directories, and mode-0 inodes (the journal and other system inodes are regular).
  return type === S_IFREG || type === S_IFDIR || type === 0;
}

function checkContext(ctx: MapContext): void {
  const bs = ctx.blockSize;
  assert(Number.isInteger(bs) && bs >= 1024 && (bs & (bs - 1)) === 0, `block size ${bs}`);
  assert(Number.isSafeInteger(ctx.blocksCount) && ctx.blocksCount > 0, 'blocks count');
}

/** Every mapped range of the file, in logical order. Extents come one per mapping; block-map runs are merged. */
/**
 * The filesystem block holding file block `fileBlock`, found in `maps` (sorted by fileBlock, not
 * overlapping); undefined in a hole or an unwritten extent.
 */
export function physicalBlockIn(maps: readonly Mapping[], fileBlock: number): number | undefined {
  let lo = 0, hi = maps.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const m = maps[mid]!;
    if (fileBlock < m.fileBlock) hi = mid - 1;
    else if (fileBlock >= m.fileBlock + m.countBlocks) lo = mid + 1;
    else return m.unwritten ? undefined : m.fsBlock + (fileBlock - m.fileBlock);
  }
  return undefined;
}

export async function* iterateMappings(inode: Inode, ctx: MapContext): AsyncGenerator<Mapping> {
  checkContext(ctx);
  if (!hasMappedBlocks(inode, ctx)) return;
  if (inode.flags & EXTENTS_FL) yield* iterateExtentTree(inode, ctx);
  else yield* iterateBlockMap(inode, ctx);
}

/** The mapping that contains `fileBlock`, trimmed to start there; undefined for a hole. */
export async function mapFileBlock(inode: Inode, ctx: MapContext, block: FileBlock): Promise<Mapping | undefined> {
  checkContext(ctx);
  assert(Number.isSafeInteger(block) && block >= 0, `file block ${block}`);
  if (block >= EXT_MAX_LOGICAL_END || !hasMappedBlocks(inode, ctx)) return undefined;
  return inode.flags & EXTENTS_FL ? lookupExtent(inode, ctx, block) : lookupBlockMap(inode, ctx, block);
}

// ---- extent trees -------------------------------------------------------------------------

function nodeSource(ctx: MapContext): ExtentNodeSource {
  return { blockSize: ctx.blockSize, blocksCount: ctx.blocksCount, ino: ctx.ino, inodeSeed: ctx.inodeSeed, readBlock: (b) => ctx.readBlock(fsBlock(b)) };
}

async function* iterateExtentTree(inode: Inode, ctx: MapContext): AsyncGenerator<Mapping> {
  const src = nodeSource(ctx);
  // Every node is a distinct block inside the filesystem, so `seen` also bounds the walk.
  yield* walkNode(src, readRootNode(src, inode.iBlock), EXT_MAX_LOGICAL_END, new Set<number>());
}

async function* walkNode(src: ExtentNodeSource, node: ExtentNode, hi: number, seen: Set<number>): AsyncGenerator<Mapping> {
  if (node.kind === 'leaf') {
    for (const e of node.extents) {
      yield { fileBlock: e.fileBlock, fsBlock: e.fsBlock, countBlocks: e.countBlocks, unwritten: e.unwritten };
    }
    return;
  }
  for (const [i, x] of node.indexes.entries()) {
    const range = childRange(node, i, hi);
    const child = await readChildNode(src, x.child, node.depth, range.lo, range.hi, seen, true);
    yield* walkNode(src, child, range.hi, seen);
  }
}

async function lookupExtent(inode: Inode, ctx: MapContext, target: number): Promise<Mapping | undefined> {
  const src = nodeSource(ctx);
  const seen = new Set<number>();
  let node = readRootNode(src, inode.iBlock);
  let hi = EXT_MAX_LOGICAL_END;
  // Depth strictly decreases (checked in readChildNode), so this runs at most 6 times.
  for (;;) {
    if (node.kind === 'leaf') {
      const e = node.extents[lastAtOrBelow(node.extents, target)];
      if (e === undefined || target >= e.fileBlock + e.countBlocks) return undefined;
      const skip = target - e.fileBlock;
      return { fileBlock: fileBlock(target), fsBlock: fsBlock(e.fsBlock + skip), countBlocks: e.countBlocks - skip, unwritten: e.unwritten };
    }
    const i = lastAtOrBelow(node.indexes, target);
    const x = node.indexes[i];
    if (x === undefined) return undefined;
    const range = childRange(node, i, hi);
    node = await readChildNode(src, x.child, node.depth, range.lo, range.hi, seen, true);
    hi = range.hi;
  }
}

// ---- legacy block maps --------------------------------------------------------------------

function checkPointer(p: number, ctx: MapContext, where: Ext4ErrorWhere): void {
  if (p >= ctx.blocksCount) throw corrupt('blockmap-out-of-range', `block map points to block ${p} outside the filesystem`, where);
}

async function readIndirect(p: number, ctx: MapContext, where: Ext4ErrorWhere): Promise<Uint8Array> {
  checkPointer(p, ctx, where);
  const data = await ctx.readBlock(fsBlock(p));
  assert(data.length >= ctx.blockSize, 'readBlock returned a short block');
  return data;
}

/** Merges consecutive blocks into runs; completed runs collect in `out`. */
class RunBuilder {
  private run: Mapping | undefined;
  readonly out: Mapping[] = [];
  add(fb: number, pb: number): void {
    const r = this.run;
    if (r && r.fileBlock + r.countBlocks === fb && r.fsBlock + r.countBlocks === pb) { r.countBlocks++; return; }
    if (r) this.out.push(r);
    this.run = { fileBlock: fileBlock(fb), fsBlock: fsBlock(pb), countBlocks: 1, unwritten: false };
  }
  finish(): void {
    if (this.run) this.out.push(this.run);
    this.run = undefined;
  }
  drain(): Mapping[] {
    return this.out.splice(0, this.out.length);
  }
}

async function* iterateBlockMap(inode: Inode, ctx: MapContext): AsyncGenerator<Mapping> {
  const per = ctx.blockSize / 4;
  const where: Ext4ErrorWhere = { inode: ctx.ino };
  const runs = new RunBuilder();
  // Indirect blocks are never shared in a sound map; refusing repeats bounds the walk by the fs size.
  const seen = new Set<number>();
  for (let i = 0; i < NDIR_BLOCKS; i++) {
    const p = u32(inode.iBlock, i * 4);
    if (p === 0) continue;
    checkPointer(p, ctx, where);
    runs.add(i, p);
  }
  yield* runs.drain();
  let base = NDIR_BLOCKS;
  for (const [slot, level] of [[IND_BLOCK, 1], [DIND_BLOCK, 2], [TIND_BLOCK, 3]] as const) {
    const p = u32(inode.iBlock, slot * 4);
    if (p !== 0) {
      if (base >= EXT_MAX_LOGICAL_END) throw corrupt('blockmap-range', `indirect slot ${slot} maps past logical block 2^32`, where);
      yield* walkIndirect(p, level, base, ctx, runs, seen, where);
    }
    base += per ** level;
  }
  runs.finish();
  yield* runs.drain();
}

async function* walkIndirect(
  p: number, level: number, base: number, ctx: MapContext, runs: RunBuilder, seen: Set<number>, where: Ext4ErrorWhere,
): AsyncGenerator<Mapping> {
  if (seen.has(p)) throw corrupt('blockmap-loop', `indirect block ${p} is referenced twice`, { ...where, block: p });
  seen.add(p);
  const data = await readIndirect(p, ctx, where);
  const here: Ext4ErrorWhere = { inode: ctx.ino, block: p };
  const per = ctx.blockSize / 4;
  const span = per ** (level - 1);
  for (let i = 0; i < per; i++) {
    const q = u32(data, i * 4);
    if (q === 0) continue;
    const fb = base + i * span;
    if (fb >= EXT_MAX_LOGICAL_END) throw corrupt('blockmap-range', `block map entry maps past logical block 2^32`, here);
    if (level === 1) {
      checkPointer(q, ctx, here);
      runs.add(fb, q);
    } else {
      yield* walkIndirect(q, level - 1, fb, ctx, runs, seen, here);
    }
  }
  yield* runs.drain();
}

async function lookupBlockMap(inode: Inode, ctx: MapContext, target: number): Promise<Mapping | undefined> {
  const per = ctx.blockSize / 4;
  const where: Ext4ErrorWhere = { inode: ctx.ino };
  if (target < NDIR_BLOCKS) return runAt(inode.iBlock, target, NDIR_BLOCKS, target, ctx, where);
  let rel = target - NDIR_BLOCKS;
  let level = 1;
  let span = per;
  while (rel >= span) {
    rel -= span;
    level++;
    if (level > 3) return undefined;
    span *= per;
  }
  let p = u32(inode.iBlock, (IND_BLOCK + level - 1) * 4);
  let here = where;
  for (let l = level; l >= 1; l--) {
    if (p === 0) return undefined;
    const data = await readIndirect(p, ctx, here);
    here = { inode: ctx.ino, block: p };
    const sub = per ** (l - 1);
    const idx = Math.floor(rel / sub);
    rel -= idx * sub;
    if (l === 1) return runAt(data, idx, per, target, ctx, here);
    p = u32(data, idx * 4);
  }
  return undefined;
}

/** The run of consecutive pointers starting at slot `idx` of a pointer array of `n` slots. */
function runAt(ptrs: Uint8Array, idx: number, n: number, target: number, ctx: MapContext, where: Ext4ErrorWhere): Mapping | undefined {
  const p = u32(ptrs, idx * 4);
  if (p === 0) return undefined;
  checkPointer(p, ctx, where);
  let count = 1;
  while (idx + count < n && u32(ptrs, (idx + count) * 4) === p + count && target + count < EXT_MAX_LOGICAL_END) count++;
  checkPointer(p + count - 1, ctx, where);
  return { fileBlock: fileBlock(target), fsBlock: fsBlock(p), countBlocks: count, unwritten: false };
}
