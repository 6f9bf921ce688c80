// The inodes mkfs creates, one step each: the reserved inodes, root and lost+found, the resize
// inode, the journal, the orphan file and the quota files. Each step allocates its data from
// the build's allocator (the order of the steps decides where things land) and queues writes.
import { COMPAT, RO_COMPAT } from '../format/features.ts';
import { IMMUTABLE_FL, S_IFDIR, S_IFREG } from '../format/inode.ts';
import { FT_DIR } from '../format/dirent.ts';
import { encodeQuotaFile, type QuotaUsage } from '../format/quota.ts';
import { makeEmptyJournalSuperblock, encodeJournalSuperblock } from '../format/jbd2/superblock.ts';
import { setU32, setU64, u32 } from '../util/bytes.ts';
import { crc32cUpdate } from '../util/crc.ts';
import { ceilDiv } from '../util/checked-math.ts';
import { groupFirstBlock, groupHasSuper, superBlockOfGroup } from '../layout/geometry.ts';
import { firstRun, lastRun, type MkfsBuild } from './build.ts';

export const ROOT_INO = 2;
const USR_QUOTA_INO = 3, GRP_QUOTA_INO = 4, RESIZE_INO = 7, JOURNAL_INO = 8;
export const LPF_INO = 11;
export const ORPHAN_INO = 12;
const ORPHAN_BLOCK_MAGIC = 0x0b10ca04;

/** mke2fs's default orphan file size in blocks. */
function defaultOrphanBlocks(blocks: number, blockSize: number): number {
  const n = blocks < 128 * 1024 ? 32 : blocks < 2 * 1024 * 1024 ? Math.floor(blocks / 4096) : 512;
  return Math.min(n, 512, Math.floor((8 << 20) / blockSize));
}

/** lost+found grows block by block until it reaches 16 KiB (and two blocks), at most 12 blocks. */
function lostFoundBlocks(blockSize: number): number {
  let n = 1;
  for (let i = 1; i < 12; i++) {
    const size = i * blockSize;
    if (size >= 16384 && size >= 2 * blockSize) break;
    n++;
  }
  return n;
}

/** Reserved inodes 1..10 exist (and are checksummed) even when unused. */
export function createReservedInodes(b: MkfsBuild): void {
  for (let ino = 1; ino < 11; ino++) {
    const inode = b.newInode(ino, 0, 0);
    inode.linksCount = 0;
    if (ino !== 1) { inode.atime = inode.ctime = inode.mtime = { sec: 0, nsec: 0 }; }
  }
}

/**
 * Root directory and lost+found, right after group 0's metadata. Returns lost+found's last
 * block. With `rootFilledLater` the root's block is allocated but written by the tree build.
 */
export function createRootAndLostFound(b: MkfsBuild, rootFilledLater = false): number {
  const { bs } = b;
  const root = b.newInode(ROOT_INO, S_IFDIR | 0o755);
  root.linksCount = 3;
  root.sizeBytes = bs;
  const rootBlock = firstRun(b.mapFile(ROOT_INO, root, 1, b.superAreaEnd())).fsBlock;
  const lpf = b.newInode(LPF_INO, S_IFDIR | 0o700);
  lpf.linksCount = 2;
  const lpfBlocks = lostFoundBlocks(bs);
  lpf.sizeBytes = lpfBlocks * bs;
  const lpfRuns = b.mapFile(LPF_INO, lpf, lpfBlocks, rootBlock + 1);
  if (!rootFilledLater) b.writes.block(rootBlock, b.dirBlock(ROOT_INO, [[ROOT_INO, '.', FT_DIR], [ROOT_INO, '..', FT_DIR], [LPF_INO, 'lost+found', FT_DIR]]));
  for (const r of lpfRuns) {
    for (let k = 0; k < r.countBlocks; k++) {
      const first = r.fileBlock + k === 0;
      b.writes.block(r.fsBlock + k, b.dirBlock(LPF_INO, first ? [[LPF_INO, '.', FT_DIR], [ROOT_INO, '..', FT_DIR]] : []));
    }
  }
  return lastRun(lpfRuns).fsBlock;
}

/**
 * Resize inode: a block-mapped file whose double-indirect block lists the primary reserved GDT
 * blocks, each of which lists its backups (the layout e2fsck checks).
 */
export function createResizeInode(b: MkfsBuild, goal: number): void {
  if (!b.has('compat', COMPAT.resize_inode)) return;
  const { bs, geo } = b;
  const resize = b.newInode(RESIZE_INO, S_IFREG | 0o600);
  const apb = bs / 4;
  const dind = b.alloc.one(goal);
  const dindBytes = new Uint8Array(bs);
  const backups: number[] = [];
  for (let g = 1; g < geo.groupCount; g++) if (groupHasSuper(geo, g)) backups.push(g);
  const primaryStart = superBlockOfGroup(geo, 0) + 1 + geo.gdtBlocks;
  for (let i = 0; i < geo.reservedGdtBlocks; i++) {
    const pblk = primaryStart + i;
    setU32(dindBytes, 4 * ((geo.gdtBlocks + i) % apb), pblk);
    const ind = new Uint8Array(bs);
    backups.forEach((g, j) => { if (j < apb) setU32(ind, 4 * j, superBlockOfGroup(geo, g) + 1 + geo.gdtBlocks + i); });
    b.writes.block(pblk, ind);
  }
  b.writes.block(dind, dindBytes);
  setU32(resize.iBlock, 4 * 13, dind);
  resize.sizeBytes = (apb * apb + apb + 12) * bs;
  // e2fsck charges every block the resize inode references as a whole cluster.
  resize.blocks512 = (1 + geo.reservedGdtBlocks * (1 + Math.min(backups.length, apb))) * b.blocks512PerCluster;
}

/** Journal: an empty, valid jbd2 journal in the middle of the filesystem; the superblock keeps a copy of its map. */
export function createJournal(b: MkfsBuild): void {
  if (!b.has('compat', COMPAT.has_journal)) return;
  const { bs, geo, sb, params } = b;
  const journal = b.newInode(JOURNAL_INO, S_IFREG | 0o600);
  journal.sizeBytes = params.journalBlocks * bs;
  const goal = groupFirstBlock(geo, Math.floor(geo.groupCount / 2));
  const runs = b.mapFile(JOURNAL_INO, journal, params.journalBlocks, goal);
  const jsb = new Uint8Array(bs);
  encodeJournalSuperblock(makeEmptyJournalSuperblock({ blockSize: bs, journalBlocks: params.journalBlocks, uuid: sb.uuid }), jsb);
  b.writes.block(firstRun(runs).fsBlock, jsb);
  sb.journalInum = JOURNAL_INO;
  sb.jnlBackupType = 1;
  for (let i = 0; i < 15; i++) sb.jnlBlocks[i] = u32(journal.iBlock, 4 * i);
  sb.jnlBlocks[15] = Math.floor(journal.sizeBytes / 0x1_0000_0000);
  sb.jnlBlocks[16] = journal.sizeBytes % 0x1_0000_0000;
}

/** Orphan file: blocks of empty slots, each ending in magic + checksum. */
export function createOrphanFile(b: MkfsBuild): void {
  if (!b.has('compat', COMPAT.orphan_file)) return;
  const { bs, csum } = b;
  const orphan = b.newInode(ORPHAN_INO, S_IFREG | 0o600);
  const n = defaultOrphanBlocks(b.geo.blocksCount, bs);
  orphan.sizeBytes = n * bs;
  const runs = b.mapFile(ORPHAN_INO, orphan, n, b.superAreaEnd());
  const seed = b.inodeSeed(ORPHAN_INO) ?? 0;
  const data = new Uint8Array(n * bs);
  // Each block's checksum covers its physical block number (le64) and its slots.
  for (const r of runs) {
    for (let k = 0; k < r.countBlocks; k++) {
      const block = data.subarray((r.fileBlock + k) * bs, (r.fileBlock + k + 1) * bs);
      setU32(block, bs - 8, ORPHAN_BLOCK_MAGIC);
      if (!csum) continue;
      const where = new Uint8Array(8);
      setU64(where, 0, r.fsBlock + k);
      setU32(block, bs - 4, crc32cUpdate(crc32cUpdate(seed, where), block, 0, bs - 8));
    }
  }
  b.writeFileData(ORPHAN_INO, data);
  b.sb.orphanFileInum = ORPHAN_INO;
}

/**
 * Quota files: user and group usage of the files mkfs made, per owner. Their size follows from
 * the ids, known before the usage is final; quota inodes are not charged.
 */
export function createQuotaFiles(b: MkfsBuild): void {
  if (!b.has('roCompat', RO_COMPAT.quota)) return;
  const byUser = new Map<number, QuotaUsage>();
  const byGroup = new Map<number, QuotaUsage>();
  const charge = (m: Map<number, QuotaUsage>, id: number, spaceBytes: number): void => {
    const u = m.get(id);
    if (u) { u.spaceBytes += spaceBytes; u.inodes++; } else m.set(id, { spaceBytes, inodes: 1 });
  };
  for (const [ino, inode] of b.inodes) {
    // e2fsck charges root and ordinary inodes; reserved, quota and orphan-file inodes are not counted.
    if ((ino !== ROOT_INO && ino < 11) || ino === ORPHAN_INO) continue;
    charge(byUser, inode.uid, inode.blocks512 * 512);
    charge(byGroup, inode.gid, inode.blocks512 * 512);
  }
  // Inodes a bulk build encoded already.
  for (const [from, to] of [[b.built.byUser, byUser], [b.built.byGroup, byGroup]] as const) {
    for (const [id, u] of from) {
      const t = to.get(id);
      if (t) { t.spaceBytes += u.spaceBytes; t.inodes += u.inodes; } else to.set(id, { ...u });
    }
  }
  const quotaInodes = [[USR_QUOTA_INO, 'user', byUser], [GRP_QUOTA_INO, 'group', byGroup]] as const;
  for (const [ino, type, usage] of quotaInodes) {
    const inode = b.newInode(ino, S_IFREG | 0o600);
    inode.flags |= IMMUTABLE_FL;
    const bytes = encodeQuotaFile(type, usage);
    inode.sizeBytes = bytes.length;
    b.mapFile(ino, inode, ceilDiv(bytes.length, b.bs), b.superAreaEnd());
    b.writeFileData(ino, bytes);
  }
  b.sb.usrQuotaInum = USR_QUOTA_INO;
  b.sb.grpQuotaInum = GRP_QUOTA_INO;
}
