// Adapters that hand lower layers (mapping/, dir/) the small contexts they need for one
// in-memory inode: its extent tree, its file map (delayed allocation), its directory blocks.
import { COMPAT, INCOMPAT } from '../format/features.ts';
import { inodeNo, fileBlock, fsBlock } from '../util/brand.ts';
import type { MetaTxn } from '../journal/transaction.ts';
import { logicalCluster } from '../mapping/extent-status.ts';
import { extentLookup, extentInsert, logicalClusterMapped, type ExtentTreeEnv } from '../mapping/extent-tree.ts';
import type { FileMap } from '../mapping/map-blocks.ts';
import type { DirWriteEnv } from '../dir/dir-write.ts';
import type { DirSource } from '../dir/dir-read.ts';
import type { OpenInode } from './inode-cache.ts';
import { allocMetaCluster, chargeClusters, defaultGoal, freeMetaCluster, type BallocCtx } from './balloc.ts';
import { dirSource } from './dir-source.ts';
import { applyDirChange } from './readdir.ts';

export function inodeSeed(ctx: Pick<BallocCtx, 'vol'>, oi: OpenInode): number | undefined {
  if (oi.seedFor !== oi.inode.generation) { oi.seed = ctx.vol.inodeSeed(oi.ino, oi.inode); oi.seedFor = oi.inode.generation; }
  return oi.seed;
}

export function treeEnv(ctx: BallocCtx, txn: MetaTxn, oi: OpenInode): ExtentTreeEnv {
  const { geo } = ctx.vol;
  const R = geo.clusterRatio;
  return {
    txn, blockSize: geo.blockSize, clusterRatio: R, ino: oi.ino, inodeSeed: inodeSeed(ctx, oi),
    blocksCount: geo.blocksCount, root: oi.inode.iBlock,
    allocNodeBlock: (goal) => allocMetaCluster(ctx, txn, oi, goal || oi.goal, true),
    freeNodeBlock: (b) => freeMetaCluster(ctx, txn, oi, b),
    freeDataClusters: async (cluster, count) => {
      for (let i = 0; i < count; i++) for (let k = 0; k < R; k++) txn.forget((cluster + i) * R + k);
      await ctx.allocLock.withLock(() => ctx.clusters.free(txn, cluster, count));
    },
  };
}

/**
 * One FileMap per in-memory inode and filesystem, made at first use: a write asks for it several
 * times (reservation, writeback, conversion), each time a dozen closures before.
 */
const fileMaps = new WeakMap<OpenInode, { ctx: BallocCtx; map: FileMap }>();

export function fileMap(ctx: BallocCtx, oi: OpenInode): FileMap {
  const known = fileMaps.get(oi);
  if (known?.ctx === ctx && known.map.state === oi.state) return known.map;
  const map = makeFileMap(ctx, oi);
  fileMaps.set(oi, { ctx, map });
  return map;
}

function makeFileMap(ctx: BallocCtx, oi: OpenInode): FileMap {
  const { clusters, allocLock, vol } = ctx;
  const lockedAlloc: FileMap['alloc'] = {
    allocRun: (txn, goal, want, min, opts) => allocLock.withLock(() => clusters.allocRun(txn, goal, want, min, opts)),
    allocStream: (txn, owner, goal, want, opts) => allocLock.withLock(() => clusters.allocStream(txn, owner, goal, want, opts)),
    releaseWindow: (owner) => clusters.releaseWindow(owner),
  };
  return {
    // The owner is read at each use: chown changes it while the map lives on.
    ino: inodeNo(oi.ino), get uid() { return oi.inode.uid; }, get gid() { return oi.inode.gid; },
    clusterRatio: vol.geo.clusterRatio, blockSize: vol.geo.blockSize,
    state: oi.state, space: ctx.space, alloc: lockedAlloc,
    treeEnv: (txn) => treeEnv(ctx, txn, oi),
    goal: () => oi.goal || defaultGoal(vol, oi.ino),
    hasOwnGoal: () => oi.goal !== 0,
    setGoal: (b) => { oi.goal = b; },
    streaming: () => oi.refs > 0,
    chargeClusters: (n) => chargeClusters(vol, oi, n),
  };
}

/**
 * Maps file block `b` of a metadata-holding inode (directory, quota file, slow symlink) to a
 * new block: under bigalloc the block's logical cluster may already be mapped (the block is
 * then implied), else a cluster is allocated; then the extent is inserted. Returns the block.
 */
export async function mapNewMetaBlock(ctx: BallocCtx, txn: MetaTxn, oi: OpenInode, b: number, opts: { mustSucceed?: boolean; charge?: boolean } = {}): Promise<number> {
  const R = ctx.vol.geo.clusterRatio;
  const env = treeEnv(ctx, txn, oi);
  const implied = R > 1 ? await logicalClusterMapped(env, logicalCluster(Math.floor(b / R))) : undefined;
  const physical = implied ? implied.physicalCluster * R + (b % R)
    : (await allocMetaCluster(ctx, txn, oi, oi.goal || defaultGoal(ctx.vol, oi.ino), opts.mustSucceed ?? false, { charge: opts.charge ?? true })) + (b % R);
  await extentInsert(env, { fileBlock: fileBlock(b), fsBlock: fsBlock(physical), countBlocks: 1, unwritten: false });
  return physical;
}

/** What dir/ needs to change one directory inside a handle. */
export function dirEnv(ctx: BallocCtx, txn: MetaTxn, oi: OpenInode): DirWriteEnv {
  const { vol } = ctx;
  const bs = vol.geo.blockSize;
  return {
    ino: oi.ino, blockSize: bs, filetype: vol.filetype, metadataCsum: vol.geo.metadataCsum,
    inodeSeed: inodeSeed(ctx, oi), dirIndex: (vol.sb.featureCompat & COMPAT.dir_index) !== 0,
    largeDir: vol.has('incompat', INCOMPAT.large_dir), hashSeed: vol.sb.hashSeed, sbFlags: vol.sb.flags,
    defHashVersion: vol.sb.defHashVersion, txn,
    blockCount: () => Math.ceil(oi.inode.sizeBytes / bs),
    mapBlock: async (fileBlockNo) => {
      const e = await extentLookup(treeEnv(ctx, txn, oi), fileBlock(fileBlockNo));
      return e && !e.unwritten ? e.fsBlock + (fileBlockNo - e.fileBlock) : undefined;
    },
    appendBlock: async () => {
      const physical = await mapNewMetaBlock(ctx, txn, oi, Math.ceil(oi.inode.sizeBytes / bs));
      oi.goal = physical + 1;
      oi.inode.sizeBytes += bs;
      return physical;
    },
    getFlags: () => oi.inode.flags,
    setFlags: (f) => { oi.inode.flags = f; },
    changed: (c) => { if (oi.listing && !applyDirChange(oi.listing, c)) oi.listing = undefined; },
  };
}

/** Directory reading for an in-memory inode: uncommitted blocks are not checksum-verified. */
export function dirSourceOf(ctx: Pick<BallocCtx, 'vol'> & { readonly journal: { isDirty(b: number): boolean } }, oi: OpenInode): DirSource {
  return dirSource(ctx.vol, oi.ino, oi.inode, { isDirty: (b) => ctx.journal.isDirty(b) });
}
