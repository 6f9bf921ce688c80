// Writing directories: creating the first block, inserting / removing / replacing entries in
// linear blocks and hash-tree (dx) indexed directories, and converting a one-block linear
// directory into an htree (Documentation/filesystems/ext4/directory.rst).
import { assert, corrupt, Ext4Error, unsupported, type Ext4ErrorWhere } from '../errors/ext4-error.ts';
import {
  decodeDirBlock, decodeRecLen, direntRecLenFor, encodeDirBlock, findDirSlot, insertDirent, setDirBlockTail,
  DIR_TAIL_LEN, EXT4_NAME_LEN, FT_DIR, FT_DIR_CSUM, type DirEntry,
} from '../format/dirent.ts';
import {
  decodeDxNode, decodeDxRoot, dxNodeLimit, encodeDxNode, encodeDxRoot, newDxRoot, setDxTail,
  DX_HTREE_LEVEL_COMPAT, DX_HTREE_LEVEL_LARGEDIR, type DxEntry, type DxNode, type DxRoot,
} from '../format/htree.ts';
import { effectiveHashVersion, DX_HASH_TEA, DX_HASH_TEA_UNSIGNED } from '../format/dir-hash.ts';
import { dxLeafBlock, dxProbe, dxSearch, type HtreeWalker } from './htree-walk.ts';
import { findLive, findSlot, hashEntries as hashRecords, insertAt, itemAt, pack, removeAt, splitSorted } from './dirent-list.ts';
import { CASEFOLD_FL, ENCRYPT_FL, INDEX_FL, INLINE_DATA_FL } from '../format/inode.ts';
import { u16, u32 } from '../util/bytes.ts';
import { type MetaTxn } from '../journal/transaction.ts';

/** What directory writing needs: geometry, the directory's block map, a transaction, its flags. */
export interface DirWriteEnv {
  ino: number;
  blockSize: number;
  filetype: boolean;
  metadataCsum: boolean;
  inodeSeed: number | undefined;
  /** COMPAT_DIR_INDEX: the directory may be converted to / kept as an htree. */
  dirIndex: boolean;
  /** INCOMPAT_LARGEDIR: three index levels allowed (else two). */
  largeDir: boolean;
  hashSeed: readonly number[];
  sbFlags: number;
  /** s_def_hash_version, used when a directory is first indexed. */
  defHashVersion: number;
  txn: MetaTxn;
  /** Current size of the directory in blocks. */
  blockCount(): number;
  /** Physical block of a directory block; undefined for a hole (at once when it is known). */
  mapBlock(fileBlock: number): number | undefined | Promise<number | undefined>;
  /** Grows the directory by one block at its end; returns the physical block (contents unset). */
  appendBlock(): Promise<number>;
  getFlags(): number;
  setFlags(flags: number): void;
  /** Told of each change to the directory's entries once it is made (kept listings follow it). */
  changed?: (c: DirChange) => void;
}

/** A change to a directory's entries; 'unknown': an operation failed part way. */
export type DirChange =
  | { kind: 'add' | 'replace'; name: Uint8Array; ino: number; fileType: number }
  | { kind: 'remove'; name: Uint8Array }
  | { kind: 'parent'; ino: number }
  | { kind: 'unknown' };

/** Runs a change and tells env.changed what it did (or that it failed, leaving blocks unknown). */
async function tracked<T>(env: DirWriteEnv, run: () => Promise<T>, what: (r: T) => DirChange | undefined): Promise<T> {
  if (!env.changed) return run();
  let r: T;
  try {
    r = await run();
  } catch (e) {
    env.changed({ kind: 'unknown' });
    throw e;
  }
  const c = what(r);
  if (c) env.changed(c);
  return r;
}

// ---- shared helpers ---------------------------------------------------------------------------

interface Leaf {
  fileBlock: number;
  phys: number;
  entries: DirEntry[];
  /** The block carries a checksum tail (always with metadata_csum). */
  tail: boolean;
}

interface Frame {
  fileBlock: number;
  phys: number;
  root?: DxRoot;
  node?: DxNode;
  entries: DxEntry[];
  limit: number;
  /** Index of the entry followed at this level. */
  at: number;
}

const isDot = (n: Uint8Array): boolean => n.length === 1 && n[0] === 0x2e;
const isDotDot = (n: Uint8Array): boolean => n.length === 2 && n[0] === 0x2e && n[1] === 0x2e;

function seedOf(env: DirWriteEnv): number | undefined {
  if (!env.metadataCsum) return undefined;
  assert(env.inodeSeed !== undefined, 'metadata_csum directory without an inode checksum seed');
  return env.inodeSeed;
}

const whereOf = (env: DirWriteEnv, block?: number): Ext4ErrorWhere =>
  block === undefined ? { inode: env.ino } : { inode: env.ino, block };

/** Bytes available to records in a fresh leaf block. */
const leafEnd = (env: DirWriteEnv): number => env.blockSize - (env.metadataCsum ? DIR_TAIL_LEN : 0);

function checkName(name: Uint8Array): void {
  if (name.length < 1 || name.length > EXT4_NAME_LEN) assert(false, `directory entry name of ${name.length} bytes`);
  assert(!name.includes(0) && !name.includes(0x2f), 'directory entry name contains NUL or /');
}

function refuseDots(name: Uint8Array): void {
  if (isDot(name) || isDotDot(name)) {
    throw new Ext4Error('EINVAL', "'.' and '..' cannot be changed through directory entry operations", { detail: 'dir-dot-entry' });
  }
}

/** The physical block of directory block `fileBlock` (at once when the env knows it); EUCLEAN for a hole. */
function physOf(env: DirWriteEnv, fileBlock: number): number | Promise<number> {
  const p = env.mapBlock(fileBlock);
  return p instanceof Promise ? p.then((v) => notHole(env, fileBlock, v)) : notHole(env, fileBlock, p);
}

function notHole(env: DirWriteEnv, fileBlock: number, p: number | undefined): number {
  if (p === undefined) throw corrupt('dir-hole', `directory block ${fileBlock} is a hole`, whereOf(env));
  return p;
}

async function appendDirBlock(env: DirWriteEnv): Promise<{ fileBlock: number; phys: number }> {
  const fileBlock = env.blockCount();
  const phys = await env.appendBlock();
  assert(env.blockCount() === fileBlock + 1, 'appendBlock did not grow the directory by one block');
  return { fileBlock, phys };
}

async function readLeaf(env: DirWriteEnv, fileBlock: number): Promise<Leaf> {
  const phys = await physOf(env, fileBlock);
  const seed = seedOf(env);
  // A block changed in this transaction has its checksum finalized at commit: verify only
  // what came from disk.
  const verify = seed !== undefined && !env.txn.isDirty(phys);
  const d = decodeDirBlock(await env.txn.read(phys), {
    blockSize: env.blockSize, filetype: env.filetype, metadataCsum: env.metadataCsum,
    ...(verify ? { csumInodeSeed: seed } : {}), where: whereOf(env, phys),
  });
  return { fileBlock, phys, entries: d.entries, tail: d.hasTail };
}

function encodeLeaf(env: DirWriteEnv, leaf: Leaf, buf: Uint8Array): void {
  const seed = seedOf(env);
  encodeDirBlock(leaf.entries, buf, {
    blockSize: env.blockSize, filetype: env.filetype, metadataCsum: leaf.tail,
    ...(seed !== undefined ? { csumInodeSeed: seed } : {}),
  });
}

async function writeLeaf(env: DirWriteEnv, leaf: Leaf): Promise<void> {
  const seed = seedOf(env);
  const buf = await env.txn.getWrite(leaf.phys);
  encodeDirBlock(leaf.entries, buf, { blockSize: env.blockSize, filetype: env.filetype, metadataCsum: leaf.tail });
  if (leaf.tail && seed !== undefined) {
    const bs = env.blockSize;
    env.txn.onCommit(leaf.phys, (bytes) => setDirBlockTail(bytes, seed, bs));
  }
}

/**
 * Adds `entry` straight into the bytes of leaf `fileBlock` when this transaction already changed
 * that block (so it was validated when first read, and its checksum is set at commit): the same
 * first-fit choice as findSlot/insertAt, without decoding and re-encoding the whole block, which
 * made every insertion cost O(entries in the block). False when the block is clean or full.
 */
async function insertInPlace(env: DirWriteEnv, fileBlock: number, entry: DirEntry): Promise<boolean> {
  const phys = await physOf(env, fileBlock);
  if (!env.txn.isDirty(phys)) return false;
  const bs = env.blockSize;
  const bytes = await env.txn.read(phys);
  const t = bs - DIR_TAIL_LEN;
  const tail = env.metadataCsum && bytes[t + 4] === DIR_TAIL_LEN && bytes[t + 5] === 0 && bytes[t + 6] === 0 &&
    bytes[t + 7] === FT_DIR_CSUM && u32(bytes, t) === 0;
  const slot = findDirSlot(bytes, entry.nameLen, tail ? t : bs, bs);
  if (slot < 0) return false;
  const buf = await env.txn.getWrite(phys);
  insertDirent(buf, slot, entry.inode, entry.name, entry.fileType, { blockSize: bs, filetype: env.filetype });
  const seed = seedOf(env);
  if (tail && seed !== undefined) env.txn.onCommit(phys, (b) => setDirBlockTail(b, seed, bs));
  return true;
}

function writeNewLeaf(env: DirWriteEnv, leaf: Leaf): void {
  encodeLeaf(env, leaf, env.txn.getNew(leaf.phys));
}

function newEntry(env: DirWriteEnv, name: Uint8Array, ino: number, fileType: number, recLen: number): DirEntry {
  return { inode: ino, recLen, nameLen: name.length, fileType: env.filetype ? fileType & 0xff : 0, name: name.slice(), offset: 0 };
}

// ---- mode selection ---------------------------------------------------------------------------

type DirMode = 'linear' | 'indexed';

/** Linear or indexed, refusing the kinds of directory whose names this module cannot hash. */
function modeOf(env: DirWriteEnv): DirMode {
  const flags = env.getFlags();
  if (flags & INLINE_DATA_FL) throw unsupported('dir-inline-write', 'writing inline-data directories is not supported', whereOf(env));
  if (flags & ENCRYPT_FL) throw unsupported('dir-encrypted-write', 'writing encrypted directories is not supported', whereOf(env));
  if ((flags & INDEX_FL) && env.dirIndex) {
    if (flags & CASEFOLD_FL) throw unsupported('dir-casefold-htree', 'writing casefolded htree directories is not supported', whereOf(env));
    return 'indexed';
  }
  return 'linear';
}

/** The dx_root stores the algorithm (0..2); the unsigned flavour comes from the superblock. */
function storedHashVersion(v: number): number {
  return v > DX_HASH_TEA && v <= DX_HASH_TEA_UNSIGNED ? v - 3 : v;
}

// ---- htree walk -------------------------------------------------------------------------------

interface Tree {
  version: number;
  maxLevels: number;
}

function dxOpts(env: DirWriteEnv, phys: number) {
  const seed = env.txn.isDirty(phys) ? undefined : seedOf(env);
  return {
    blockSize: env.blockSize, filetype: env.filetype, metadataCsum: env.metadataCsum, largeDir: env.largeDir,
    dirBlocks: env.blockCount(), where: whereOf(env, phys),
    ...(seed !== undefined ? { csumInodeSeed: seed } : {}),
  };
}

function dxEncodeOpts(env: DirWriteEnv) {
  const seed = seedOf(env);
  return {
    blockSize: env.blockSize, filetype: env.filetype, metadataCsum: env.metadataCsum,
    ...(seed !== undefined ? { csumInodeSeed: seed } : {}),
  };
}

async function readRootFrame(env: DirWriteEnv): Promise<Frame> {
  const phys = await physOf(env, 0);
  const root = decodeDxRoot(await env.txn.read(phys), dxOpts(env, phys));
  return { fileBlock: 0, phys, root, entries: root.entries, limit: root.limit, at: 0 };
}

async function readNodeFrame(env: DirWriteEnv, fileBlock: number): Promise<Frame> {
  const phys = await physOf(env, fileBlock);
  const node = decodeDxNode(await env.txn.read(phys), dxOpts(env, phys));
  return { fileBlock, phys, node, entries: node.entries, limit: node.limit, at: 0 };
}

async function writeFrame(env: DirWriteEnv, f: Frame): Promise<void> {
  const buf = await env.txn.getWrite(f.phys);
  if (f.root) {
    f.root.entries = f.entries;
    encodeDxRoot(f.root, buf, dxEncodeOpts(env));
    stampDxAtCommit(env, f.phys, 'root');
  } else {
    f.node!.entries = f.entries;
    encodeDxNode(f.node!, buf, dxEncodeOpts(env));
    stampDxAtCommit(env, f.phys, 'node');
  }
}

/**
 * A block that becomes (or stays) an index block gets its dx tail at commit, replacing any
 * leaf-tail finalizer it carried while it was a linear block.
 */
function stampDxAtCommit(env: DirWriteEnv, phys: number, kind: 'root' | 'node'): void {
  const seed = seedOf(env);
  if (seed !== undefined) env.txn.onCommit(phys, (b) => setDxTail(b, kind, seed));
}

function writeNewNode(env: DirWriteEnv, phys: number, entries: DxEntry[]): void {
  const node: DxNode = { limit: dxNodeLimit(env.blockSize, env.metadataCsum), entries };
  encodeDxNode(node, env.txn.getNew(phys), dxEncodeOpts(env));
  stampDxAtCommit(env, phys, 'node');
}

function walkerOf(env: DirWriteEnv): HtreeWalker<Frame> {
  return {
    readRoot: async () => {
      const frame = await readRootFrame(env);
      return { frame, root: rootOf(frame), where: whereOf(env, frame.phys) };
    },
    readNode: (fileBlock) => readNodeFrame(env, fileBlock),
    hashSeed: env.hashSeed, sbFlags: env.sbFlags, where: whereOf(env),
  };
}

function rootOf(f: Frame): DxRoot {
  assert(f.root !== undefined, 'htree path does not start at the root');
  return f.root;
}

/** Root-to-leaf path for `hash`: at each level the last entry whose hash is <= it. */
async function probe(env: DirWriteEnv, name: Uint8Array): Promise<{ frames: Frame[]; hash: number; tree: Tree }> {
  const { frames, hash, version } = await dxProbe(walkerOf(env), name);
  return {
    frames, hash,
    tree: { version, maxLevels: env.largeDir ? DX_HTREE_LEVEL_LARGEDIR : DX_HTREE_LEVEL_COMPAT },
  };
}

/** The leaf holding `name` and its index there, following collision runs across leaves. */
function dxFind(env: DirWriteEnv, name: Uint8Array): Promise<{ leaf: Leaf; i: number } | undefined> {
  return dxSearch(walkerOf(env), name, env.blockCount() + 1, async (leafBlock) => {
    const leaf = await readLeaf(env, leafBlock);
    const i = findLive(leaf.entries, name);
    return i >= 0 ? { leaf, i } : undefined;
  });
}

async function linearFind(env: DirWriteEnv, name: Uint8Array): Promise<{ leaf: Leaf; i: number } | undefined> {
  const n = env.blockCount();
  for (let fb = 0; fb < n; fb++) {
    const leaf = await readLeaf(env, fb);
    // '.' and '..' open block 0 and are never matched here.
    const i = findLive(leaf.entries, name, fb === 0 ? 2 : 0);
    if (i >= 0) return { leaf, i };
  }
  return undefined;
}

async function findEntry(env: DirWriteEnv, name: Uint8Array): Promise<{ leaf: Leaf; i: number } | undefined> {
  return modeOf(env) === 'indexed' ? dxFind(env, name) : linearFind(env, name);
}

// ---- htree insert -----------------------------------------------------------------------------

async function dxAdd(env: DirWriteEnv, entry: DirEntry): Promise<void> {
  const need = direntRecLenFor(entry.nameLen);
  // Each pass either inserts or splits one index level; a tree has at most three levels.
  for (let pass = 0; pass < 8; pass++) {
    const { frames, hash, tree } = await probe(env, entry.name);
    const parent = itemAt(frames, frames.length - 1);
    const leafBlock = dxLeafBlock(frames);
    if (await insertInPlace(env, leafBlock, entry)) return;
    const leaf = await readLeaf(env, leafBlock);
    const slot = findSlot(leaf.entries, need);
    if (slot >= 0) {
      insertAt(leaf.entries, slot, entry);
      await writeLeaf(env, leaf);
      return;
    }
    const end = env.blockSize - (leaf.tail ? DIR_TAIL_LEN : 0);
    const live = leaf.entries.filter((e) => e.inode !== 0);
    if (live.length < 2) {
      // Full only through scattered unused records (not something the kernel leaves): repack.
      const packed = pack(live, end);
      const at = findSlot(packed, need);
      assert(at >= 0, 'no room in a repacked leaf');
      insertAt(packed, at, entry);
      await writeLeaf(env, { ...leaf, entries: packed });
      return;
    }
    if (parent.entries.length < parent.limit) {
      await splitLeafAndInsert(env, parent, leaf, entry, hash, tree.version);
      return;
    }
    // The leaf's index block is full: split the lowest full level whose parent has room, or
    // grow the tree by one level when every level up to the root is full.
    let k = frames.length - 1;
    while (k > 0 && itemAt(frames, k - 1).entries.length >= itemAt(frames, k - 1).limit) k--;
    if (k === 0) {
      const rootFrame = itemAt(frames, 0);
      const root = rootOf(rootFrame);
      if (root.indirectLevels + 1 >= tree.maxLevels) {
        throw new Ext4Error('ENOSPC', `directory index is full (${root.indirectLevels + 1} levels)`, {
          detail: 'dir-full', where: whereOf(env),
        });
      }
      const { fileBlock, phys } = await appendDirBlock(env);
      writeNewNode(env, phys, rootFrame.entries.map((e) => ({ ...e })));
      rootFrame.entries = [{ hash: 0, block: fileBlock }];
      root.indirectLevels++;
      await writeFrame(env, rootFrame);
    } else {
      const f = itemAt(frames, k);
      const up = itemAt(frames, k - 1);
      const { fileBlock, phys } = await appendDirBlock(env);
      const moved = f.entries.splice(f.entries.length >> 1);
      const hash2 = itemAt(moved, 0).hash;
      writeNewNode(env, phys, moved);
      await writeFrame(env, f);
      up.entries.splice(up.at + 1, 0, { hash: hash2, block: fileBlock });
      await writeFrame(env, up);
    }
  }
  assert(false, 'htree insert did not converge');
}

async function splitLeafAndInsert(env: DirWriteEnv, parent: Frame, leaf: Leaf, entry: DirEntry,
  hash: number, version: number): Promise<void> {
  const end = env.blockSize - (leaf.tail ? DIR_TAIL_LEN : 0);
  const sorted = hashRecords(leaf.entries, version, env.hashSeed, whereOf(env));
  const { fileBlock, phys } = await appendDirBlock(env);
  const s = splitSorted(sorted, end);
  const lower: Leaf = { ...leaf, entries: s.lower };
  const upper: Leaf = { fileBlock, phys, entries: s.upper, tail: leaf.tail };
  const target = hash >= s.hash2 ? upper : lower;
  const slot = findSlot(target.entries, direntRecLenFor(entry.nameLen));
  assert(slot >= 0, 'no room in a leaf just split');
  insertAt(target.entries, slot, entry);
  writeNewLeaf(env, upper);
  await writeLeaf(env, lower);
  parent.entries.splice(parent.at + 1, 0, { hash: s.indexHash, block: fileBlock });
  await writeFrame(env, parent);
}

/**
 * Turns a full one-block linear directory into an htree: block 0 becomes the dx_root (keeping
 * '.' and '..'), its entries move, sorted by hash, into one or two new leaves.
 */
async function makeIndexed(env: DirWriteEnv, block0: Leaf, entry: DirEntry): Promise<void> {
  const [dot, dotdot] = block0.entries;
  if (!dot || !dotdot || dot.inode === 0 || !isDot(dot.name) || !isDotDot(dotdot.name)) {
    throw corrupt('dir-dots', "directory block 0 does not start with '.' and '..'", whereOf(env, block0.phys));
  }
  const stored = storedHashVersion(env.defHashVersion);
  const version = effectiveHashVersion(stored, env.sbFlags);
  const sorted = hashRecords(block0.entries.slice(2), version, env.hashSeed, whereOf(env));
  const end = leafEnd(env);
  const rootEntries: DxEntry[] = [];
  if (sorted.length >= 2) {
    const s = splitSorted(sorted, end);
    const a = await appendDirBlock(env);
    writeNewLeaf(env, { ...a, entries: s.lower, tail: env.metadataCsum });
    const b = await appendDirBlock(env);
    writeNewLeaf(env, { ...b, entries: s.upper, tail: env.metadataCsum });
    rootEntries.push({ hash: 0, block: a.fileBlock }, { hash: s.indexHash, block: b.fileBlock });
  } else {
    const a = await appendDirBlock(env);
    writeNewLeaf(env, { ...a, entries: pack(sorted.map((h) => h.e), end), tail: env.metadataCsum });
    rootEntries.push({ hash: 0, block: a.fileBlock });
  }
  const root = newDxRoot(dot.inode, dotdot.inode, stored, itemAt(rootEntries, 0).block, env.blockSize, env.metadataCsum);
  if (env.filetype) {
    root.dotFileType = dot.fileType;
    root.dotdotFileType = dotdot.fileType;
  }
  root.entries = rootEntries;
  encodeDxRoot(root, await env.txn.getWrite(block0.phys), dxEncodeOpts(env));
  stampDxAtCommit(env, block0.phys, 'root');
  env.setFlags(env.getFlags() | INDEX_FL);
  await dxAdd(env, entry);
}

// ---- public operations ------------------------------------------------------------------------

/** Writes the first block of a new directory: '.' and '..' (and the checksum tail). */
export function dirInit(env: DirWriteEnv, selfIno: number, parentIno: number): Promise<void> {
  return tracked(env, () => initDir(env, selfIno, parentIno), () => ({ kind: 'unknown' }));
}

async function initDir(env: DirWriteEnv, selfIno: number, parentIno: number): Promise<void> {
  const phys = env.blockCount() === 0 ? (await appendDirBlock(env)).phys : await physOf(env, 0);
  const end = leafEnd(env);
  const dot = newEntry(env, new Uint8Array([0x2e]), selfIno, FT_DIR, 12);
  const dotdot = newEntry(env, new Uint8Array([0x2e, 0x2e]), parentIno, FT_DIR, end - 12);
  writeNewLeaf(env, { fileBlock: 0, phys, entries: [dot, dotdot], tail: env.metadataCsum });
  if (env.getFlags() & INDEX_FL) env.setFlags(env.getFlags() & ~INDEX_FL);
}

/** Adds `name` → `ino`. The caller guarantees the name is valid and not present. */
export function dirAddEntry(env: DirWriteEnv, name: Uint8Array, ino: number, fileType: number): Promise<void> {
  return tracked(env, () => addEntry(env, name, ino, fileType), () => ({ kind: 'add', name, ino, fileType: env.filetype ? fileType & 0xff : 0 }));
}

async function addEntry(env: DirWriteEnv, name: Uint8Array, ino: number, fileType: number): Promise<void> {
  checkName(name);
  refuseDots(name);
  if (!(Number.isInteger(ino) && ino > 0)) assert(false, `bad inode number ${ino}`);
  const mode = modeOf(env);
  const entry = newEntry(env, name, ino, fileType, 0);
  if (mode === 'indexed') return dxAdd(env, entry);

  await linearAdd(env, entry);
  // An index the filesystem cannot use (dir_index off) went stale with this linear insert.
  const flags = env.getFlags();
  if ((flags & INDEX_FL) && !env.dirIndex) env.setFlags(flags & ~INDEX_FL);
}

async function linearAdd(env: DirWriteEnv, entry: DirEntry): Promise<void> {
  const flags = env.getFlags();
  const need = direntRecLenFor(entry.nameLen);
  const n = env.blockCount();
  if (n === 0) throw corrupt('dir-empty', 'directory has no blocks', whereOf(env));
  let block0: Leaf | undefined;
  for (let fb = 0; fb < n; fb++) {
    if (await insertInPlace(env, fb, entry)) return;
    const leaf = await readLeaf(env, fb);
    if (fb === 0) block0 = leaf;
    const slot = findSlot(leaf.entries, need);
    if (slot >= 0) {
      insertAt(leaf.entries, slot, entry);
      await writeLeaf(env, leaf);
      return;
    }
  }
  if (n === 1 && env.dirIndex && !(flags & CASEFOLD_FL)) return makeIndexed(env, block0!, entry);
  const { fileBlock, phys } = await appendDirBlock(env);
  writeNewLeaf(env, { fileBlock, phys, entries: [{ ...entry, recLen: leafEnd(env) }], tail: env.metadataCsum });
}

/** Removes `name`; returns what it pointed to, or undefined when absent. */
export function dirRemoveEntry(env: DirWriteEnv, name: Uint8Array): Promise<{ ino: number; fileType: number } | undefined> {
  return tracked(env, () => removeEntry(env, name), (r) => (r ? { kind: 'remove', name } : undefined));
}

async function removeEntry(env: DirWriteEnv, name: Uint8Array): Promise<{ ino: number; fileType: number } | undefined> {
  refuseDots(name);
  const found = await findEntry(env, name);
  if (!found) return undefined;
  const { leaf, i } = found;
  const e = itemAt(leaf.entries, i);
  removeAt(leaf.entries, i);
  await writeLeaf(env, leaf);
  return { ino: e.inode, fileType: e.fileType };
}

/** Points the existing `name` at `ino`; returns the inode it pointed to. ENOENT when absent. */
export function dirReplaceEntry(env: DirWriteEnv, name: Uint8Array, ino: number, fileType: number): Promise<number> {
  return tracked(env, () => replaceEntry(env, name, ino, fileType), () => ({ kind: 'replace', name, ino, fileType: env.filetype ? fileType & 0xff : 0 }));
}

async function replaceEntry(env: DirWriteEnv, name: Uint8Array, ino: number, fileType: number): Promise<number> {
  refuseDots(name);
  assert(Number.isInteger(ino) && ino > 0, `bad inode number ${ino}`);
  const found = await findEntry(env, name);
  if (!found) throw new Ext4Error('ENOENT', 'directory entry not found', { detail: 'dir-entry-missing', where: whereOf(env) });
  const { leaf, i } = found;
  const old = itemAt(leaf.entries, i);
  leaf.entries[i] = { ...old, inode: ino, fileType: env.filetype ? fileType & 0xff : 0 };
  await writeLeaf(env, leaf);
  return old.inode;
}

/** Rewrites '..' (in the dx_root of an indexed directory, else in block 0). */
export function dirSetParent(env: DirWriteEnv, parentIno: number): Promise<void> {
  return tracked(env, () => setParent(env, parentIno), () => ({ kind: 'parent', ino: parentIno }));
}

async function setParent(env: DirWriteEnv, parentIno: number): Promise<void> {
  assert(Number.isInteger(parentIno) && parentIno > 0, `bad inode number ${parentIno}`);
  if (modeOf(env) === 'indexed') {
    const f = await readRootFrame(env);
    f.root!.dotdotInode = parentIno;
    const buf = await env.txn.getWrite(f.phys);
    encodeDxRoot(f.root!, buf, { ...dxEncodeOpts(env), keepSlack: true });
    stampDxAtCommit(env, f.phys, 'root');
    return;
  }
  const leaf = await readLeaf(env, 0);
  const dd = leaf.entries[1];
  if (!dd || !isDotDot(dd.name) || !leaf.entries[0] || !isDot(leaf.entries[0].name)) {
    throw corrupt('dir-dots', "directory block 0 does not start with '.' and '..'", whereOf(env, leaf.phys));
  }
  leaf.entries[1] = { ...dd, inode: parentIno };
  await writeLeaf(env, leaf);
}

/** Whether the directory holds nothing but '.' and '..'. */
export async function dirIsEmpty(env: DirWriteEnv): Promise<boolean> {
  const indexed = modeOf(env) === 'indexed';
  const n = env.blockCount();
  for (let fb = 0; fb < n; fb++) {
    const phys = await env.mapBlock(fb);
    if (phys === undefined) continue;
    if (indexed) {
      if (fb === 0) continue;
      const block = await env.txn.read(phys);
      // An interior node hides behind one unused record spanning the whole block.
      if (u32(block, 0) === 0 && decodeRecLen(u16(block, 4), env.blockSize) === env.blockSize) continue;
    }
    const leaf = await readLeaf(env, fb);
    const from = !indexed && fb === 0 ? 2 : 0;
    for (let i = from; i < leaf.entries.length; i++) if (itemAt(leaf.entries, i).inode !== 0) return false;
  }
  return true;
}
