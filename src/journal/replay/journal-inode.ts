// Locates an internal journal: reads the journal inode (s_journal_inum) straight from the inode
// table and maps every logical block of it to a filesystem block, through an extent tree or a
// legacy block map. Knows only on-disk formats (the journal layer sits below mapping/ and fs/);
// every pointer, count and depth is bounded, and a hole or a block outside the filesystem is
// EUCLEAN 'jbd2-inode'.
import { type BlockDevice } from '../../device/block-device.ts';
import { corrupt, unsupported } from '../../errors/ext4-error.ts';
import { type Superblock } from '../../format/superblock.ts';
import { INCOMPAT, RO_COMPAT } from '../../format/features.ts';
import { decodeGroupDesc, verifyGroupDesc } from '../../format/group-desc.ts';
import { decodeInode, EXTENTS_FL, ENCRYPT_FL, INLINE_DATA_FL, S_IFMT, S_IFREG, type Inode } from '../../format/inode.ts';
import { inodeCsumSeed } from '../../format/checksum.ts';
import { decodeExtentNode, EXT4_MAX_EXTENT_DEPTH } from '../../format/extent.ts';
import { u32 } from '../../util/bytes.ts';
import { descriptorBlock, type Geometry } from '../../layout/geometry.ts';
import { JBD2_MIN_JOURNAL_BLOCKS } from '../../format/jbd2/superblock.ts';

/** Longest journal accepted (2^24 blocks: 16 GiB with 1 KiB blocks); mke2fs stops at 2^20 blocks. */
const MAX_JOURNAL_BLOCKS = 1 << 24;

export interface JournalMap {
  ino: number;
  /** Length of the journal file in blocks. */
  countBlocks: number;
  /** fsBlockOf[j] = filesystem block of journal block j. */
  fsBlockOf: Float64Array;
  /** Filesystem blocks holding the journal (data and mapping blocks), for the replay range check. */
  owned: Set<number>;
}

const bad = (msg: string, ino: number) => corrupt('jbd2-inode', `journal inode ${ino}: ${msg}`, { inode: ino });

async function readBlock(device: BlockDevice, geo: Geometry, b: number): Promise<Uint8Array> {
  return device.read(b * geo.blockSize, geo.blockSize);
}

async function readJournalInode(device: BlockDevice, sb: Superblock, geo: Geometry, ino: number): Promise<Inode> {
  if (ino < 1 || ino > geo.inodesCount) throw bad(`number out of range 1..${geo.inodesCount}`, ino);
  const g = Math.floor((ino - 1) / geo.inodesPerGroup);
  const idx = (ino - 1) % geo.inodesPerGroup;
  const gdtBlock = descriptorBlock(geo, Math.floor(g / geo.descPerBlock));
  if (gdtBlock >= geo.blocksCount) throw bad('group descriptor outside the filesystem', ino);
  const gdt = await readBlock(device, geo, gdtBlock);
  const off = (g % geo.descPerBlock) * geo.descSize;
  const raw = gdt.subarray(off, off + geo.descSize);
  verifyGroupDesc(raw, g, geo.descSize, geo.gdCsum);
  const gd = decodeGroupDesc(raw, geo.descSize);
  const blk = gd.inodeTable + Math.floor(idx / geo.inodesPerBlock);
  if (gd.inodeTable === 0 || blk >= geo.blocksCount) throw bad('inode table outside the filesystem', ino);
  const table = await readBlock(device, geo, blk);
  const at = (idx % geo.inodesPerBlock) * geo.inodeSize;
  return decodeInode(table.subarray(at, at + geo.inodeSize), {
    ino, inodeSize: geo.inodeSize, fsCsumSeed: geo.metadataCsum ? geo.csumSeed : undefined,
    hugeFile: (sb.featureRoCompat & RO_COMPAT.huge_file) !== 0, blockSize: geo.blockSize,
    has64bit: (sb.featureIncompat & INCOMPAT['64bit']) !== 0,
  });
}

/** Reads and maps the internal journal of the filesystem described by `sb`. */
export async function mapJournalInode(device: BlockDevice, sb: Superblock, geo: Geometry): Promise<JournalMap> {
  const ino = sb.journalInum;
  if (ino === 0) throw unsupported('jbd2-external', 'the journal is on an external device, which ext4kit does not support (use e2fsck or a kernel mount)');
  const inode = await readJournalInode(device, sb, geo, ino);
  if ((inode.mode & S_IFMT) !== S_IFREG) throw bad(`not a regular file (mode 0${inode.mode.toString(8)})`, ino);
  if (inode.linksCount === 0) throw bad('not linked', ino);
  if (inode.flags & (ENCRYPT_FL | INLINE_DATA_FL)) throw bad('encrypted or inline', ino);
  const countBlocks = Math.floor(inode.sizeBytes / geo.blockSize);
  if (countBlocks < JBD2_MIN_JOURNAL_BLOCKS || countBlocks > MAX_JOURNAL_BLOCKS || countBlocks > geo.blocksCount) {
    throw bad(`size of ${countBlocks} blocks is outside ${JBD2_MIN_JOURNAL_BLOCKS}..${Math.min(MAX_JOURNAL_BLOCKS, geo.blocksCount)}`, ino);
  }
  const map: JournalMap = { ino, countBlocks, fsBlockOf: new Float64Array(countBlocks).fill(-1), owned: new Set() };
  const place = (j: number, b: number) => {
    if (b <= geo.firstDataBlock && b !== 0 || b === 0 || b >= geo.blocksCount) throw bad(`block ${b} outside the filesystem`, ino);
    if (j < countBlocks) {
      if (map.fsBlockOf[j] !== -1) throw bad(`journal block ${j} mapped twice`, ino);
      map.fsBlockOf[j] = b;
      map.owned.add(b);
    }
  };
  if (inode.flags & EXTENTS_FL) await mapExtents(device, geo, inode, ino, map, place);
  else await mapBlockMap(device, geo, inode, ino, map, place);
  for (let j = 0; j < countBlocks; j++) if (map.fsBlockOf[j] === -1) throw bad(`journal block ${j} is not mapped`, ino);
  return map;
}

type Place = (journalBlock: number, fsBlock: number) => void;

async function mapExtents(device: BlockDevice, geo: Geometry, inode: Inode, ino: number, map: JournalMap, place: Place): Promise<void> {
  const inodeSeed = geo.metadataCsum ? inodeCsumSeed(geo.csumSeed, ino, inode.generation) : undefined;
  let nodes = 0;
  const visit = async (bytes: Uint8Array, isRoot: boolean, depthLeft: number): Promise<void> => {
    if (++nodes > map.countBlocks + 64) throw bad('extent tree has too many nodes', ino);
    const node = decodeExtentNode(bytes, { isRoot, blockSize: geo.blockSize, inodeSeed: isRoot ? undefined : inodeSeed, where: { inode: ino } });
    if (node.depth > depthLeft) throw bad('extent tree too deep', ino);
    if (node.kind === 'leaf') {
      for (const e of node.extents) {
        if (e.unwritten) throw bad('unwritten extent', ino);
        if (e.fileBlock >= map.countBlocks) continue;
        if (e.fsBlock + e.countBlocks > geo.blocksCount) throw bad(`extent at ${e.fsBlock} runs past the filesystem`, ino);
        const n = Math.min(e.countBlocks, map.countBlocks - e.fileBlock);
        for (let k = 0; k < n; k++) place(e.fileBlock + k, e.fsBlock + k);
      }
      return;
    }
    for (const ix of node.indexes) {
      if (ix.child <= geo.firstDataBlock || ix.child >= geo.blocksCount) throw bad(`extent index points to block ${ix.child}`, ino);
      map.owned.add(ix.child);
      await visit(await readBlock(device, geo, ix.child), false, node.depth - 1);
    }
  };
  await visit(inode.iBlock, true, EXT4_MAX_EXTENT_DEPTH);
}

async function mapBlockMap(device: BlockDevice, geo: Geometry, inode: Inode, ino: number, map: JournalMap, place: Place): Promise<void> {
  const per = geo.blockSize / 4;
  let next = 0;
  // Walks one pointer at `level` (0 = data block) covering per^level logical blocks from `next`.
  const walk = async (ptr: number, level: number): Promise<void> => {
    const span = per ** level;
    if (next >= map.countBlocks) return;
    if (ptr === 0) throw bad(`journal block ${next} is a hole`, ino);
    if (level === 0) { place(next++, ptr); return; }
    if (ptr <= geo.firstDataBlock || ptr >= geo.blocksCount) throw bad(`indirect block ${ptr} outside the filesystem`, ino);
    map.owned.add(ptr);
    const b = await readBlock(device, geo, ptr);
    for (let i = 0; i < per && next < map.countBlocks; i++) await walk(u32(b, i * 4), level - 1);
    void span;
  };
  for (let i = 0; i < 12; i++) await walk(u32(inode.iBlock, i * 4), 0);
  for (let level = 1; level <= 3; level++) await walk(u32(inode.iBlock, (11 + level) * 4), level);
}
