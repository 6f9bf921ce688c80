// Bulk build of a tree into a filesystem being made (mkfs -d): inodes numbered in the order
// they come, data laid out one file after another from the build's allocator and written in
// large sequential device writes, each directory's leaf blocks built once by appending (linear,
// as mke2fs -d makes them). A finished inode is encoded into its inode-table block at once and
// dropped (blocks whose inodes are all encoded are written as they fill), so memory does not
// grow with the tree; bitmaps, descriptors, quota and the superblock are written by the mkfs
// steps that follow, from what was counted here. No mounted filesystem, no journal.
import { type BlockDevice } from '../device/block-device.ts';
import { Ext4Error } from '../errors/ext4-error.ts';
import { encodeDeviceNumber } from '../format/device-number.ts';
import {
  DIRENT_HEADER_LEN, encodeDirBlock, EXT4_NAME_LEN, FT_BLKDEV, FT_CHRDEV, FT_DIR, FT_FIFO, FT_REG_FILE, FT_SOCK,
  FT_SYMLINK, type DirEntry,
} from '../format/dirent.ts';
import { INCOMPAT, RO_COMPAT } from '../format/features.ts';
import {
  EXTENTS_FL, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK, type Inode, type Timestamp,
} from '../format/inode.ts';
import { type Run } from '../mapping/extent-build.ts';
import { ceilDiv } from '../util/checked-math.ts';
import { type MkfsBuild } from './build.ts';
import { encodeInodeInto, zeroInodeTable } from './groups.ts';
import { LPF_INO, ROOT_INO } from './inodes.ts';

/** What a built entry takes from its source besides contents. */
export interface TreeAttrs {
  /** Permission bits with set-id and sticky bits (the type comes from the call). */
  perm: number;
  uid: number;
  gid: number;
  atime: Timestamp;
  mtime: Timestamp;
}

/** Reads up to `into.length` bytes of a file at `posBytes` into `into`; fewer only at the end. */
export type ReadAt = (into: Uint8Array, posBytes: number) => number | Promise<number>;

/** Bytes read per call when a file's contents are read (a multiple of any cluster size). */
const READ_CHUNK_BYTES = 1 << 20;
/** Staging buffers (a ring) that gather consecutive data blocks into one device write. */
const STAGE_COUNT = 3;
const STAGE_BYTES = 4 << 20;
/**
 * The same for inode-table blocks. These come out of order (a block is written once all its
 * inodes are encoded, and a directory's inode only when the directory is closed), so most runs
 * are short, and their writes queue behind the data's 4 MiB pwrites to the same file: with two
 * buffers (and even with a ring of 8) the build waited for nearly every one (about 150 waits,
 * 0.8-1.2 s in all on the loaded host, 20,000-file tree). The ring grows instead, to 8 MiB.
 */
const ITABLE_STAGE_COUNT = 4;
const ITABLE_STAGE_BYTES = 256 << 10;
const ITABLE_STAGE_MAX = 32;
/** A file is read into the staging buffer only where at least this much of it is free. */
const MIN_TAIL_BYTES = 64 << 10;
/** The largest i_links_count; a directory with more subdirectories counts 1 (dir_nlink). */
const MAX_LINKS = 65000;

const DOT = new Uint8Array([0x2e]);
const DOTDOT = new Uint8Array([0x2e, 0x2e]);

type PendingEntry = { ino: number; name: Uint8Array; fileType: number };

interface PendingDir { parent: number; entries: PendingEntry[]; subdirs: number }

const FT_BY_TYPE = new Map<number, number>([
  [S_IFREG, FT_REG_FILE], [S_IFDIR, FT_DIR], [S_IFLNK, FT_SYMLINK], [S_IFCHR, FT_CHRDEV], [S_IFBLK, FT_BLKDEV],
  [S_IFIFO, FT_FIFO], [S_IFSOCK, FT_SOCK],
]);

/**
 * Consecutive block writes gathered into large device writes, in a ring of buffers: a full (or
 * interrupted) run is written from its buffer while the next free buffer fills. When every
 * buffer's write is still running, the ring grows up to `maxCount` buffers before the oldest
 * write is waited for.
 */
class StagedWriter {
  private readonly bufs: Uint8Array[] = [];
  private readonly words: Int32Array[] = [];
  private readonly inflight: Array<Promise<void> | undefined> = [];
  /** Whether buffer i's write is started and not known to be done (a failed one stays busy). */
  private readonly busy: boolean[] = [];
  private cur = 0;
  private startOff = 0;
  private lenBytes = 0;
  constructor(private readonly device: BlockDevice, count: number, private readonly stageBytes: number, private readonly maxCount = count) {
    for (let i = 0; i < count; i++) this.addBuffer();
  }

  private addBuffer(): number {
    const b = new Uint8Array(this.stageBytes);
    this.bufs.push(b);
    this.words.push(new Int32Array(b.buffer));
    this.inflight.push(undefined);
    this.busy.push(false);
    return this.bufs.length - 1;
  }

  async put(offBytes: number, bytes: Uint8Array): Promise<void> {
    if (this.lenBytes > 0 && (offBytes !== this.startOff + this.lenBytes || this.lenBytes + bytes.length > this.stageBytes)) await this.flush();
    if (bytes.length >= this.stageBytes) {
      await this.settle();
      await this.device.write(offBytes, bytes);
      return;
    }
    if (this.lenBytes === 0) this.startOff = offBytes;
    this.bufs[this.cur]!.set(bytes, this.lenBytes);
    this.lenBytes += bytes.length;
  }

  /**
   * The free end of the staging buffer for bytes going to `offBytes`, so that a caller can read
   * them straight into place (no copy): a whole number of `unitBytes`, at most `maxBytes`, at
   * least `unitBytes` (writes what is staged first when it does not continue there or the
   * buffer is nearly full). `commit` then takes what was filled. `words` views the buffer.
   */
  async tail(offBytes: number, maxBytes: number, unitBytes: number): Promise<{ view: Uint8Array; words: Int32Array }> {
    if (this.lenBytes > 0 && (offBytes !== this.startOff + this.lenBytes || this.stageBytes - this.lenBytes < Math.max(unitBytes, MIN_TAIL_BYTES))) await this.flush();
    if (this.lenBytes === 0) this.startOff = offBytes;
    const room = Math.floor((this.stageBytes - this.lenBytes) / unitBytes) * unitBytes;
    return { view: this.bufs[this.cur]!.subarray(this.lenBytes, this.lenBytes + Math.min(maxBytes, room)), words: this.words[this.cur]! };
  }

  /** Byte offset the next staged byte goes to (meaningful right after tail()). */
  get endOff(): number { return this.startOff + this.lenBytes; }

  /** Takes `lenBytes` filled in place at the start of the view tail() gave. */
  commit(lenBytes: number): void {
    this.lenBytes += lenBytes;
  }

  /** Zeros up to `lenBytes` (the padding after a file's last byte in its last block). */
  async zeros(offBytes: number, lenBytes: number): Promise<void> {
    if (lenBytes === 0) return;
    if (this.lenBytes > 0 && (offBytes !== this.startOff + this.lenBytes || this.lenBytes + lenBytes > this.stageBytes)) await this.flush();
    if (this.lenBytes === 0) this.startOff = offBytes;
    this.bufs[this.cur]!.fill(0, this.lenBytes, this.lenBytes + lenBytes);
    this.lenBytes += lenBytes;
  }

  /** Starts writing the staged bytes; the next free buffer takes the next ones. */
  async flush(): Promise<void> {
    if (this.lenBytes === 0) return;
    const i = this.cur;
    const w = this.device.write(this.startOff, this.bufs[i]!.subarray(0, this.lenBytes));
    this.inflight[i] = w;
    this.busy[i] = true;
    void w.then(() => { if (this.inflight[i] === w) this.busy[i] = false; }, () => undefined);
    this.lenBytes = 0;
    for (let k = 1; k < this.bufs.length; k++) {
      const j = (i + k) % this.bufs.length;
      if (!this.busy[j]) { this.cur = j; return; }
    }
    if (this.bufs.length < this.maxCount) { this.cur = this.addBuffer(); return; }
    const j = (i + 1) % this.bufs.length;
    await this.inflight[j];
    this.busy[j] = false;
    this.cur = j;
  }

  /** Waits for every write started (and throws the first failure). */
  async settle(): Promise<void> {
    for (let i = 0; i < this.inflight.length; i++) {
      const w = this.inflight[i];
      this.inflight[i] = undefined;
      this.busy[i] = false;
      if (w) await w;
    }
  }
}

/** Whether bytes [from, to) of `bytes` are all zero; `words` views the same memory from byte 0 of its buffer. */
function isZero(bytes: Uint8Array, words: Int32Array, from: number, to: number): boolean {
  let i = from;
  if (((bytes.byteOffset + i) & 3) === 0) {
    const w0 = (bytes.byteOffset + i) >> 2;
    const wEnd = w0 + ((to - i) >> 2);
    for (let k = w0; k < wEnd; k++) if (words[k] !== 0) return false;
    i += (wEnd - w0) * 4;
  }
  for (; i < to; i++) if (bytes[i] !== 0) return false;
  return true;
}

export class TreeBuilder {
  private nextIno: number;
  private readonly dirs = new Map<number, PendingDir>();
  private readonly out: StagedWriter;
  /** Inode-table blocks, written as they fill (consecutive ones in one write). */
  private readonly itableOut: StagedWriter;
  /** Inodes encoded so far into each inode-table block still in b.itable. */
  private readonly encodedIn = new Map<number, number>();
  private readonly quota: boolean;
  private readonly scratch: Uint8Array;
  private readonly scratchWords: Int32Array;
  private goal: number;
  private readonly filetype: boolean;
  private readonly extents: boolean;
  private readonly dirNlink: boolean;
  /** Entries made, by kind (directories include the root's own metadata only). */
  readonly counts = { files: 0, dirs: 0, symlinks: 0, specials: 0, hardLinks: 0, bytes: 0 };

  constructor(private readonly b: MkfsBuild, private readonly device: BlockDevice) {
    this.out = new StagedWriter(device, STAGE_COUNT, STAGE_BYTES);
    this.itableOut = new StagedWriter(device, ITABLE_STAGE_COUNT, ITABLE_STAGE_BYTES, ITABLE_STAGE_MAX);
    this.quota = b.has('roCompat', RO_COMPAT.quota);
    this.scratch = new Uint8Array(Math.max(READ_CHUNK_BYTES, b.bs * b.R));
    this.scratchWords = new Int32Array(this.scratch.buffer);
    let highest = LPF_INO;
    for (const ino of b.inodes.keys()) highest = Math.max(highest, ino);
    this.nextIno = highest + 1;
    b.built.first = this.nextIno;
    b.built.last = this.nextIno - 1;
    this.goal = b.superAreaEnd();
    this.filetype = b.has('incompat', INCOMPAT.filetype);
    this.extents = b.has('incompat', INCOMPAT.extent);
    this.dirNlink = b.has('roCompat', RO_COMPAT.dir_nlink);
    const root = this.inode(ROOT_INO);
    // lost+found is the root's first entry after . and ..; the root's block is written by closeDir.
    this.dirs.set(ROOT_INO, { parent: ROOT_INO, entries: [{ ino: LPF_INO, name: new TextEncoder().encode('lost+found'), fileType: FT_DIR }], subdirs: 1 });
    root.linksCount = 3;
  }

  private inode(ino: number): Inode {
    const inode = this.b.inodes.get(ino);
    if (inode === undefined) throw new Error(`mkfs: inode ${ino} was not made`);
    return inode;
  }

  /** The root directory takes these attributes (mkfs -d: those of the source directory). */
  setRoot(attrs: TreeAttrs): void {
    this.setAttrs(this.inode(ROOT_INO), S_IFDIR, attrs);
  }

  private setAttrs(inode: Inode, type: number, a: TreeAttrs): void {
    inode.mode = type | (a.perm & 0o7777);
    inode.uid = a.uid;
    inode.gid = a.gid;
    inode.atime = { ...a.atime };
    inode.mtime = { ...a.mtime };
  }

  private newInode(type: number, attrs: TreeAttrs): { ino: number; inode: Inode } {
    const ino = this.nextIno;
    if (ino > this.b.geo.inodesCount) {
      throw new Ext4Error('ENOSPC', `mkfs: the tree needs more than the filesystem's ${this.b.geo.inodesCount} inodes`, { detail: 'mkfs-too-small' });
    }
    this.nextIno++;
    this.b.built.last = ino;
    const inode = this.b.newBulkInode(ino, type);
    this.setAttrs(inode, type, attrs);
    return { ino, inode };
  }

  private addEntry(parent: number, name: Uint8Array, ino: number, type: number): void {
    const dir = this.dirs.get(parent);
    if (dir === undefined) throw new Error(`mkfs: directory ${parent} is not open`);
    if (name.length === 0 || name.length > EXT4_NAME_LEN) {
      throw new Ext4Error('ENAMETOOLONG', `mkfs: a name of ${name.length} bytes cannot be stored`, { where: { inode: parent } });
    }
    dir.entries.push({ ino, name, fileType: this.filetype ? FT_BY_TYPE.get(type) ?? 0 : 0 });
  }

  /** A new directory in `parent`; filled by further calls and closed by closeDir. */
  mkdir(parent: number, name: Uint8Array, attrs: TreeAttrs): number {
    const { ino, inode } = this.newInode(S_IFDIR, attrs);
    inode.linksCount = 2;
    this.addEntry(parent, name, ino, S_IFDIR);
    const p = this.dirs.get(parent)!;
    p.subdirs++;
    this.dirs.set(ino, { parent, entries: [], subdirs: 0 });
    this.counts.dirs++;
    return ino;
  }

  /**
   * Encodes finished inode `ino` into its inode-table block and drops it; writes the block once
   * every inode in it is encoded. Counts what the later mkfs steps need (directories, usage).
   */
  private async done(ino: number): Promise<void> {
    const { b } = this;
    const inode = this.inode(ino);
    const g = Math.floor((ino - 1) / b.geo.inodesPerGroup);
    if (!b.params.deviceZeroed && !b.zeroedTables.has(g)) await zeroInodeTable(b, this.device, g);
    const blk = encodeInodeInto(b, b.itable, ino, inode);
    b.inodes.delete(ino);
    if ((inode.mode & S_IFMT) === S_IFDIR) b.built.dirsPerGroup.set(g, (b.built.dirsPerGroup.get(g) ?? 0) + 1);
    if (this.quota) {
      for (const [m, id] of [[b.built.byUser, inode.uid], [b.built.byGroup, inode.gid]] as const) {
        const u = m.get(id);
        if (u) { u.spaceBytes += inode.blocks512 * 512; u.inodes++; } else m.set(id, { spaceBytes: inode.blocks512 * 512, inodes: 1 });
      }
    }
    const n = (this.encodedIn.get(blk) ?? 0) + 1;
    if (n < b.geo.inodesPerBlock) {
      this.encodedIn.set(blk, n);
      return;
    }
    this.encodedIn.delete(blk);
    const bytes = b.itable.get(blk)!;
    b.itable.delete(blk);
    await this.itableOut.put(blk * b.bs, bytes);
  }

  /** Another name for inode `ino` (made earlier by this builder with `mayGainLinks`, not a directory). */
  link(parent: number, name: Uint8Array, ino: number): void {
    if (!this.b.inodes.has(ino)) throw new Error(`mkfs: inode ${ino} is finished: it was not made with mayGainLinks`);
    const inode = this.inode(ino);
    this.addEntry(parent, name, ino, inode.mode & S_IFMT);
    inode.linksCount++;
    this.counts.hardLinks++;
  }

  /**
   * A FIFO, socket or device node (`rdev`: Linux's dev_t). With `mayGainLinks` (here and for
   * files and symlinks) the inode stays open for link() until finish().
   */
  async special(parent: number, name: Uint8Array, type: number, attrs: TreeAttrs, rdev: number, mayGainLinks = false): Promise<number> {
    const { ino, inode } = this.newInode(type, attrs);
    if (type === S_IFCHR || type === S_IFBLK) encodeDeviceNumber(inode.iBlock, rdev);
    this.addEntry(parent, name, ino, type);
    this.counts.specials++;
    if (!mayGainLinks) await this.done(ino);
    return ino;
  }

  /** A symlink: the target in i_block when shorter than 60 bytes, else in one data block. */
  async symlink(parent: number, name: Uint8Array, attrs: TreeAttrs, target: Uint8Array, mayGainLinks = false): Promise<number> {
    const { ino, inode } = this.newInode(S_IFLNK, attrs);
    inode.sizeBytes = target.length;
    if (target.length < inode.iBlock.length) {
      inode.iBlock.set(target);
    } else {
      if (target.length > this.b.bs) throw new Ext4Error('ENAMETOOLONG', `mkfs: a symlink target of ${target.length} bytes does not fit a block`);
      await this.placeData(ino, inode, [{ data: target, fileBlock: 0 }], target.length);
    }
    this.addEntry(parent, name, ino, S_IFLNK);
    this.counts.symlinks++;
    if (!mayGainLinks) await this.done(ino);
    return ino;
  }

  /**
   * A regular file whose contents `read` returns from position 0 until it returns 0. Clusters
   * holding only zeros become holes (as mke2fs -d and cp --sparse make them) where the file is
   * mapped by extents; a block map (ext2/ext3) is built for a file without holes.
   */
  async file(parent: number, name: Uint8Array, attrs: TreeAttrs, read: ReadAt, mayGainLinks = false): Promise<number> {
    const { ino, inode } = this.newInode(S_IFREG, attrs);
    const runs: Run[] = [];
    let pos = 0;
    if (this.b.bs * this.b.R <= MIN_TAIL_BYTES) {
      for (;;) {
        // Read straight into the staging buffer where the data goes when it continues the
        // previous file's (nearly always): no copy between the host's bytes and the image write.
        const { bs, R } = this.b;
        const { view, words } = await this.out.tail(ceilDiv(this.goal, R) * R * bs, READ_CHUNK_BYTES, bs * R);
        const n = await read(view, pos);
        if (n === 0) break;
        await this.placeStaged(view, words, n, pos, runs);
        pos += n;
        if (n < view.length) break; // a regular file's short read is its end
      }
    } else {
      for (;;) {
        const n = await read(this.scratch, pos);
        if (n === 0) break;
        await this.placeChunk(this.scratch.subarray(0, n), this.scratchWords, pos, runs);
        pos += n;
        if (n < this.scratch.length) break; // a regular file's short read is its end
      }
    }
    inode.sizeBytes = pos;
    this.mapRuns(ino, inode, runs);
    this.addEntry(parent, name, ino, S_IFREG);
    this.counts.files++;
    this.counts.bytes += pos;
    if (!mayGainLinks) await this.done(ino);
    return ino;
  }

  /**
   * Writes `chunk` (file bytes from `posBytes`, a multiple of the cluster size) where it holds
   * data, leaving clusters of zeros as holes; appends the runs. `words` views chunk's buffer.
   */
  private async placeChunk(chunk: Uint8Array, words: Int32Array, posBytes: number, runs: Run[]): Promise<void> {
    const { bs, R } = this.b;
    const clusterBytes = bs * R;
    const n = chunk.length;
    const hole = (k: number): boolean => this.extents && isZero(chunk, words, k * clusterBytes, Math.min(n, (k + 1) * clusterBytes));
    // Runs of clusters with data, in file blocks, the last one cut at the chunk's end.
    for (let c = 0; c * clusterBytes < n;) {
      if (hole(c)) { c++; continue; }
      let e = c + 1;
      while (e * clusterBytes < n && !hole(e)) e++;
      const fromBytes = c * clusterBytes;
      const toBytes = Math.min(n, e * clusterBytes);
      for (const r of await this.writeRun(chunk.subarray(fromBytes, toBytes), (posBytes + fromBytes) / bs)) runs.push(r);
      c = e;
    }
  }

  /**
   * `n` bytes of a file from `posBytes`, read into `view` (from out.tail()): kept in place when
   * they hold no cluster of zeros and their blocks are allocated exactly there; else copied out
   * and placed as any other chunk (holes, or the allocator went elsewhere). Appends the runs.
   */
  private async placeStaged(view: Uint8Array, words: Int32Array, n: number, posBytes: number, runs: Run[]): Promise<void> {
    const { bs, R } = this.b;
    const clusterBytes = bs * R;
    const data = view.subarray(0, n);
    let holes = false;
    if (this.extents) for (let k = 0; k * clusterBytes < n && !holes; k++) holes = isZero(data, words, k * clusterBytes, Math.min(n, (k + 1) * clusterBytes));
    if (!holes) {
      const countBlocks = ceilDiv(n, bs);
      const at = this.out.endOff;
      const got = this.b.alloc.alloc(countBlocks, this.goal);
      const r = got[0]!;
      if (got.length === 1 && r.fsBlock * bs === at) {
        view.fill(0, n, countBlocks * bs);
        this.out.commit(countBlocks * bs);
        r.fileBlock += posBytes / bs;
        this.goal = r.fsBlock + r.countBlocks;
        runs.push(r);
        return;
      }
      // Allocated elsewhere: copy out (the staged bytes' place is taken by what comes next).
      this.scratch.set(data);
      for (const x of await this.writeAllocated(this.scratch.subarray(0, n), got, posBytes / bs)) runs.push(x);
      return;
    }
    this.scratch.set(data);
    await this.placeChunk(this.scratch.subarray(0, n), this.scratchWords, posBytes, runs);
  }

  /** Allocates blocks for `bytes` at file block `firstBlock` (cluster-aligned), writes them, returns the runs. */
  private async writeRun(bytes: Uint8Array, firstBlock: number): Promise<Run[]> {
    return this.writeAllocated(bytes, this.b.alloc.alloc(ceilDiv(bytes.length, this.b.bs), this.goal), firstBlock);
  }

  /** Writes `bytes` to `runs` (allocated for them, file blocks from 0) and moves the runs to `firstBlock`. */
  private async writeAllocated(bytes: Uint8Array, runs: Run[], firstBlock: number): Promise<Run[]> {
    const { bs } = this.b;
    for (const r of runs) {
      const from = r.fileBlock * bs;
      const to = Math.min(bytes.length, (r.fileBlock + r.countBlocks) * bs);
      await this.out.put(r.fsBlock * bs, bytes.subarray(from, to));
      await this.out.zeros(r.fsBlock * bs + (to - from), r.countBlocks * bs - (to - from));
      r.fileBlock += firstBlock;
      this.goal = r.fsBlock + r.countBlocks;
    }
    return runs;
  }

  /** Writes whole pieces of a file at their file blocks and maps them. */
  private async placeData(ino: number, inode: Inode, pieces: Array<{ data: Uint8Array; fileBlock: number }>, sizeBytes: number): Promise<Run[]> {
    const runs: Run[] = [];
    for (const p of pieces) for (const r of await this.writeRun(p.data, p.fileBlock)) runs.push(r);
    inode.sizeBytes = sizeBytes;
    this.mapRuns(ino, inode, runs);
    return runs;
  }

  /** Extent tree (or block map) over `runs`, merged where they continue each other; sets i_blocks. */
  private mapRuns(ino: number, inode: Inode, runs: Run[]): void {
    const merged: Run[] = [];
    for (const r of runs) {
      const last = merged[merged.length - 1];
      if (last && last.fileBlock + last.countBlocks === r.fileBlock && last.fsBlock + last.countBlocks === r.fsBlock) last.countBlocks += r.countBlocks;
      else merged.push({ ...r });
    }
    if (this.extents) inode.flags |= EXTENTS_FL;
    const clusters = new Set<number>();
    for (const r of merged) for (let c = Math.floor(r.fsBlock / this.b.R); c <= Math.floor((r.fsBlock + r.countBlocks - 1) / this.b.R); c++) clusters.add(c);
    this.b.mapRuns(ino, inode, merged, clusters.size, this.goal);
  }

  /**
   * Writes directory `ino`'s entries (. and .. first) into leaf blocks, packed in order, and
   * sets its size and link count. Every entry must have been added.
   */
  async closeDir(ino: number): Promise<void> {
    const dir = this.dirs.get(ino);
    if (dir === undefined) throw new Error(`mkfs: directory ${ino} is not open`);
    this.dirs.delete(ino);
    const all: PendingEntry[] = [
      { ino, name: DOT, fileType: this.filetype ? FT_DIR : 0 },
      { ino: dir.parent, name: DOTDOT, fileType: this.filetype ? FT_DIR : 0 },
      ...dir.entries,
    ];
    const blocks = this.packDir(ino, all);
    const inode = this.inode(ino);
    const links = 2 + dir.subdirs;
    inode.linksCount = links >= MAX_LINKS && this.dirNlink ? 1 : links;
    if (links >= MAX_LINKS && !this.dirNlink) throw new Ext4Error('EMLINK', `mkfs: a directory with ${dir.subdirs} subdirectories needs dir_nlink`);
    const data = new Uint8Array(blocks.length * this.b.bs);
    for (let i = 0; i < blocks.length; i++) data.set(blocks[i]!, i * this.b.bs);
    if (ino === ROOT_INO) {
      await this.rewriteRoot(inode, data);
      return;
    }
    await this.placeData(ino, inode, [{ data, fileBlock: 0 }], data.length);
    await this.done(ino);
  }

  /** The root keeps the block mkfs gave it (and the rest of that cluster); more blocks come after. */
  private async rewriteRoot(inode: Inode, data: Uint8Array): Promise<void> {
    const { bs, R } = this.b;
    const first = this.b.runsOf(ROOT_INO)[0];
    if (first === undefined) throw new Error('mkfs: the root has no block');
    const inFirst = Math.min(R, data.length / bs);
    await this.out.put(first.fsBlock * bs, data.subarray(0, inFirst * bs));
    const runs: Run[] = [{ fileBlock: 0, fsBlock: first.fsBlock, countBlocks: inFirst }];
    if (data.length > inFirst * bs) for (const r of await this.writeRun(data.subarray(inFirst * bs), inFirst)) runs.push(r);
    inode.sizeBytes = data.length;
    this.mapRuns(ROOT_INO, inode, runs);
  }

  /** Leaf blocks holding `entries` in order, each record as short as its name allows but the last. */
  private packDir(ino: number, entries: readonly PendingEntry[]): Uint8Array[] {
    const { bs, csum } = this.b;
    const end = csum ? bs - 12 : bs;
    const out: Uint8Array[] = [];
    let list: DirEntry[] = [];
    let off = 0;
    const emit = (): void => {
      const last = list[list.length - 1];
      if (last) last.recLen = end - last.offset;
      const block = new Uint8Array(bs);
      encodeDirBlock(list, block, { blockSize: bs, filetype: this.filetype, metadataCsum: csum, csumInodeSeed: this.b.inodeSeed(ino) });
      out.push(block);
      list = [];
      off = 0;
    };
    for (const e of entries) {
      const recLen = DIRENT_HEADER_LEN + ((e.name.length + 3) & ~3);
      if (off + recLen > end) emit();
      list.push({ inode: e.ino, recLen, nameLen: e.name.length, fileType: e.fileType, name: e.name, offset: off });
      off += recLen;
    }
    if (list.length > 0) emit();
    return out;
  }

  /** Closes what is still open and waits for every data write. */
  async finish(): Promise<void> {
    if (this.dirs.size > 0) throw new Error(`mkfs: ${this.dirs.size} directories were not closed`);
    await this.out.flush();
    await this.out.settle();
    await this.itableOut.flush();
    await this.itableOut.settle();
  }
}
