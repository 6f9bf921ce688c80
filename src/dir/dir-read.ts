// Reading directories: listing (linear blocks, htree-indexed blocks, inline data) and name
// lookup (htree index walk when the directory has one, linear scan otherwise).
import { corrupt, type Ext4ErrorWhere } from '../errors/ext4-error.ts';
import { decodeDirBlock, decodeInlineDir, type DirEntry } from '../format/dirent.ts';
import { decodeDxRoot, decodeDxNode } from '../format/htree.ts';
import { dxSearch, type DxFrame, type HtreeWalker } from './htree-walk.ts';
import { CASEFOLD_FL, ENCRYPT_FL, INDEX_FL, INLINE_DATA_FL, type Inode } from '../format/inode.ts';
import { physicalBlockIn, type Mapping } from '../mapping/read-map.ts';

/** What directory reading needs from the mounted filesystem. */
export interface DirSource {
  ino: number;
  inode: Inode;
  blockSize: number;
  filetype: boolean;
  metadataCsum: boolean;
  inodesCount: number;
  inodeSeed: number | undefined;
  dirIndex: boolean;
  largeDir: boolean;
  hashSeed: readonly number[];
  sbFlags: number;
  /** The directory's block mappings in logical order. */
  mappings(): Promise<readonly Mapping[]>;
  readBlock(fsBlock: number): Promise<Uint8Array>;
  /** The system.data xattr value of an inline directory. */
  inlineData(): Promise<Uint8Array | undefined>;
  /** Blocks changed but not committed (checksums finalized at commit): not verified. */
  isDirty?(fsBlock: number): boolean;
  /** Leaf blocks whose checksum was already verified (read-only mounts: blocks never change). */
  verified?: Set<number>;
}

export interface RawDirEntry {
  ino: number;
  name: Uint8Array;
  fileType: number;
}

const MAX_DIR_BLOCKS = 1 << 26;
/** Leaves a lookup follows through one hash-collision run before calling it a loop. */
const MAX_COLLISION_LEAVES = 1 << 16;

/** Is this block an htree interior node (a fake empty dirent covering the whole block)? */
function isDxNodeBlock(block: Uint8Array, blockSize: number): boolean {
  const inode = block[0]! | (block[1]! << 8) | (block[2]! << 16) | (block[3]! << 24);
  const recLen = block[4]! | (block[5]! << 8);
  return inode === 0 && (recLen === blockSize || (blockSize === 65536 && (recLen === 0 || recLen === 65535)));
}

function decodeLeaf(src: DirSource, block: Uint8Array, where: Ext4ErrorWhere): DirEntry[] {
  const b = where.block;
  const verify = src.inodeSeed !== undefined && !(b !== undefined && (src.isDirty?.(b) || src.verified?.has(b)));
  const entries = decodeDirBlock(block, {
    blockSize: src.blockSize, filetype: src.filetype, metadataCsum: src.metadataCsum,
    ...(verify ? { csumInodeSeed: src.inodeSeed } : {}),
    inodesCount: src.inodesCount, where,
  }).entries;
  if (verify && b !== undefined && src.verified) {
    if (src.verified.size > 1 << 20) src.verified.clear();
    src.verified.add(b);
  }
  return entries;
}

/** All live entries, '.' and '..' included, in on-disk order. */
export async function* listDirectory(src: DirSource): AsyncGenerator<RawDirEntry> {
  const { inode, ino } = src;
  if (inode.flags & INLINE_DATA_FL) {
    const xattrValue = await src.inlineData();
    const d = decodeInlineDir(inode.iBlock, {
      filetype: src.filetype, inodesCount: src.inodesCount, where: { inode: ino },
      ...(xattrValue ? { xattrValue } : {}),
    });
    yield { ino, name: new Uint8Array([0x2e]), fileType: 2 };
    yield { ino: d.parent, name: new Uint8Array([0x2e, 0x2e]), fileType: 2 };
    for (const e of [...d.entries, ...d.xattrEntries]) if (e.inode) yield { ino: e.inode, name: e.name, fileType: e.fileType };
    return;
  }
  const indexed = (inode.flags & INDEX_FL) !== 0 && src.dirIndex;
  let seen = 0;
  for (const m of await src.mappings()) {
    for (let k = 0; k < m.countBlocks; k++) {
      if (++seen > MAX_DIR_BLOCKS) throw corrupt('dir-too-large', 'directory has too many blocks', { inode: ino });
      if (m.unwritten) continue;
      const fileBlock = m.fileBlock + k;
      const where = { inode: ino, block: m.fsBlock + k };
      const block = await src.readBlock(m.fsBlock + k);
      if (indexed && fileBlock === 0) {
        const root = decodeDxRoot(block, dxOpts(src, where));
        yield { ino: root.dotInode, name: new Uint8Array([0x2e]), fileType: root.dotFileType };
        yield { ino: root.dotdotInode, name: new Uint8Array([0x2e, 0x2e]), fileType: root.dotdotFileType };
        continue;
      }
      if (indexed && isDxNodeBlock(block, src.blockSize)) continue;
      for (const e of decodeLeaf(src, block, where)) if (e.inode) yield { ino: e.inode, name: e.name, fileType: e.fileType };
    }
  }
}

function dxOpts(src: DirSource, where: Ext4ErrorWhere) {
  const verify = src.inodeSeed !== undefined && !(where.block !== undefined && src.isDirty?.(where.block));
  return {
    blockSize: src.blockSize, filetype: src.filetype, metadataCsum: src.metadataCsum, largeDir: src.largeDir, where,
    ...(verify ? { csumInodeSeed: src.inodeSeed } : {}),
  };
}

const sameBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

/** Finds `name` in the directory; undefined when absent. */
export async function lookupName(src: DirSource, name: Uint8Array): Promise<RawDirEntry | undefined> {
  const { inode } = src;
  const canIndex = (inode.flags & INDEX_FL) !== 0 && src.dirIndex && !(inode.flags & (INLINE_DATA_FL | CASEFOLD_FL | ENCRYPT_FL));
  if (canIndex) return htreeLookup(src, name);
  for await (const e of listDirectory(src)) if (sameBytes(e.name, name)) return e;
  return undefined;
}

async function htreeLookup(src: DirSource, name: Uint8Array): Promise<RawDirEntry | undefined> {
  const maps = await src.mappings();
  const dirBlocks = maps.length ? maps[maps.length - 1]!.fileBlock + maps[maps.length - 1]!.countBlocks : 0;
  const physical = (fileBlock: number): number | undefined => physicalBlockIn(maps, fileBlock);
  const readDirBlock = async (fileBlock: number): Promise<{ block: Uint8Array; where: Ext4ErrorWhere }> => {
    const p = physical(fileBlock);
    if (p === undefined) throw corrupt('htree-hole', `htree points to hole at directory block ${fileBlock}`, { inode: src.ino });
    return { block: await src.readBlock(p), where: { inode: src.ino, block: p } };
  };
  if (name.length === 1 && name[0] === 0x2e || name.length === 2 && name[0] === 0x2e && name[1] === 0x2e) {
    const { block, where } = await readDirBlock(0);
    const root = decodeDxRoot(block, { ...dxOpts(src, where), dirBlocks });
    return name.length === 1 ? { ino: root.dotInode, name, fileType: root.dotFileType } : { ino: root.dotdotInode, name, fileType: root.dotdotFileType };
  }
  const walker: HtreeWalker<DxFrame> = {
    readRoot: async () => {
      const { block, where } = await readDirBlock(0);
      const root = decodeDxRoot(block, { ...dxOpts(src, where), dirBlocks });
      return { frame: { entries: root.entries, at: 0 }, root, where };
    },
    readNode: async (fileBlock) => {
      const { block, where } = await readDirBlock(fileBlock);
      return { entries: decodeDxNode(block, { ...dxOpts(src, where), dirBlocks }).entries, at: 0 };
    },
    hashSeed: src.hashSeed, sbFlags: src.sbFlags, where: { inode: src.ino },
  };
  return dxSearch(walker, name, MAX_COLLISION_LEAVES, async (leafBlock) => {
    const { block, where } = await readDirBlock(leafBlock);
    for (const e of decodeLeaf(src, block, where)) if (e.inode && sameBytes(e.name, name)) return { ino: e.inode, name: e.name, fileType: e.fileType };
    return undefined;
  });
}
