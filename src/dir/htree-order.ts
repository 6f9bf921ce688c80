// An htree directory's leaves in index (hash) order, starting at the leaf whose range holds a
// given hash: what a listing resumed from a hash cookie reads, so that one page costs the
// leaves it spans, not the whole directory. Leaf i holds the hashes from its index entry's
// hash up to the next leaf's (equal when the next entry has the collision bit: the run goes on).
import { corrupt, type Ext4ErrorWhere } from '../errors/ext4-error.ts';
import { decodeDirBlock } from '../format/dirent.ts';
import { decodeDxNode, decodeDxRoot, dxFindEntry, type DxEntry, type DxRoot } from '../format/htree.ts';
import { dirHash, effectiveHashVersion } from '../format/dir-hash.ts';
import { CASEFOLD_FL, ENCRYPT_FL, INDEX_FL, INLINE_DATA_FL } from '../format/inode.ts';
import { physicalBlockIn, type Mapping } from '../mapping/read-map.ts';
import type { DirSource, RawDirEntry } from './dir-read.ts';

/** Past every 32-bit hash: the end of the index. */
export const HASH_END = 2 ** 32;

export interface HashedEntry extends RawDirEntry {
  /** Major hash (low bit clear) and minor hash, with the directory's algorithm. */
  hash: number;
  minorHash: number;
}

export interface HashedLeaf {
  entries: HashedEntry[];
  /** Every entry whose hash is below this has now been yielded (HASH_END after the last leaf). */
  seenBelow: number;
}

/** Does the directory keep its names in hash order (an htree ext4kit can walk by raw-name hash)? */
export function isHashOrdered(src: DirSource): boolean {
  return (src.inode.flags & INDEX_FL) !== 0 && src.dirIndex && !(src.inode.flags & (INLINE_DATA_FL | CASEFOLD_FL | ENCRYPT_FL));
}

interface Frame { entries: DxEntry[]; at: number }

/** Reads directory blocks by logical number through the mappings (holes are corrupt). */
function blockReader(src: DirSource, maps: readonly Mapping[]) {
  const physical = (fileBlock: number): number | undefined => physicalBlockIn(maps, fileBlock);
  return async (fileBlock: number): Promise<{ block: Uint8Array; where: Ext4ErrorWhere; verify: boolean }> => {
    const p = physical(fileBlock);
    if (p === undefined) throw corrupt('htree-hole', `htree points to hole at directory block ${fileBlock}`, { inode: src.ino });
    const verify = src.inodeSeed !== undefined && !src.isDirty?.(p);
    return { block: await src.readBlock(p), where: { inode: src.ino, block: p }, verify };
  };
}

/** The dx root of an indexed directory and its hash algorithm. */
export async function readHtreeRoot(src: DirSource): Promise<{ root: DxRoot; version: number }> {
  const maps = await src.mappings();
  const dirBlocks = dirBlockCount(maps);
  const { block, where, verify } = await blockReader(src, maps)(0);
  const root = decodeDxRoot(block, dxOpts(src, where, verify, dirBlocks));
  return { root, version: effectiveHashVersion(root.hashVersion, src.sbFlags) };
}

function dirBlockCount(maps: readonly Mapping[]): number {
  const last = maps[maps.length - 1];
  return last ? last.fileBlock + last.countBlocks : 0;
}

function dxOpts(src: DirSource, where: Ext4ErrorWhere, verify: boolean, dirBlocks: number) {
  return {
    blockSize: src.blockSize, filetype: src.filetype, metadataCsum: src.metadataCsum, largeDir: src.largeDir, where, dirBlocks,
    ...(verify ? { csumInodeSeed: src.inodeSeed } : {}),
  };
}

/**
 * The leaves from the one holding `fromHash` to the end, each with its live entries hashed.
 * The caller stops iterating once it has what it needs. At most one pass over the directory's
 * blocks: an index that leads further is corrupt (EUCLEAN).
 */
export async function* htreeLeavesFrom(src: DirSource, fromHash: number): AsyncGenerator<HashedLeaf> {
  const maps = await src.mappings();
  const dirBlocks = dirBlockCount(maps);
  const read = blockReader(src, maps);
  const top = await read(0);
  const root = decodeDxRoot(top.block, dxOpts(src, top.where, top.verify, dirBlocks));
  const version = effectiveHashVersion(root.hashVersion, src.sbFlags);
  const readNode = async (fileBlock: number): Promise<Frame> => {
    const { block, where, verify } = await read(fileBlock);
    return { entries: decodeDxNode(block, dxOpts(src, where, verify, dirBlocks)).entries, at: 0 };
  };
  const frames: Frame[] = [{ entries: root.entries, at: 0 }];
  for (let level = 0; ; level++) {
    const f = frames[level]!;
    f.at = dxFindEntry(f.entries, fromHash);
    if (level === root.indirectLevels) break;
    frames.push(await readNode(f.entries[f.at]!.block));
  }
  for (let leaves = 0; ; leaves++) {
    if (leaves > dirBlocks) throw corrupt('htree-loop', 'htree index visits more leaves than the directory has blocks', { inode: src.ino });
    const last = frames[frames.length - 1]!;
    const { block, where, verify } = await read(last.entries[last.at]!.block);
    const decoded = decodeDirBlock(block, {
      blockSize: src.blockSize, filetype: src.filetype, metadataCsum: src.metadataCsum, inodesCount: src.inodesCount, where,
      ...(verify ? { csumInodeSeed: src.inodeSeed } : {}),
    }).entries;
    const entries: HashedEntry[] = [];
    for (const e of decoded) {
      if (!e.inode) continue;
      const h = dirHash(e.name, version, src.hashSeed, where);
      entries.push({ ino: e.inode, name: e.name, fileType: e.fileType, hash: h.hash, minorHash: h.minorHash });
    }
    // The next leaf in index order: up to the deepest level with an entry to the right.
    let lvl = frames.length - 1;
    while (lvl >= 0 && frames[lvl]!.at + 1 >= frames[lvl]!.entries.length) lvl--;
    if (lvl < 0) { yield { entries, seenBelow: HASH_END }; return; }
    const turn = frames[lvl]!;
    yield { entries, seenBelow: (turn.entries[turn.at + 1]!.hash & ~1) >>> 0 };
    turn.at++;
    for (let l = lvl + 1; l < frames.length; l++) {
      const up = frames[l - 1]!;
      frames[l] = await readNode(up.entries[up.at]!.block);
    }
  }
}
