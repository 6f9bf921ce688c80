// Structure-aware mutation of ext4 images for the fuzz test: where the metadata lives (found with
// dumpe2fs and debugfs, not with ext4kit), seeded mutations of it (bit flips, byte and field
// overwrites with extreme values), and optional re-signing of metadata_csum checksums so that
// mutations reach the decoders behind the checksum gates.
import { readFile } from 'node:fs/promises';
import { debugfsRaw, runTool, toolPath } from './oracles.ts';
import { mulberry32 } from './fixture-tree.ts';
import { decodeSuperblock, superblockChecksum } from '../../src/format/superblock.ts';
import { geometryOf } from '../../src/layout/geometry.ts';
import { setGroupDescChecksum, type GdCsumMode } from '../../src/format/group-desc.ts';
import { inodeChecksum } from '../../src/format/inode.ts';
import { inodeCsumSeed } from '../../src/format/checksum.ts';
import { setDirBlockTail } from '../../src/format/dirent.ts';
import { setDxTail } from '../../src/format/htree.ts';
import { extentBlockChecksum } from '../../src/format/extent.ts';
import { xattrBlockChecksum } from '../../src/format/xattr.ts';
import { journalSuperblockChecksum } from '../../src/format/jbd2/superblock.ts';
import { journalCsumSeed, setBlockTail } from '../../src/format/jbd2/checksum.ts';
import { commitBlockChecksum } from '../../src/format/jbd2/commit.ts';

export type RegionKind = 'sb' | 'gdt' | 'inode' | 'dir' | 'dxroot' | 'extent' | 'ind' | 'xattr' | 'symlink' | 'head' | 'jsb' | 'jlog';

export interface Region {
  kind: RegionKind;
  start: number;
  len: number;
  label: string;
  ino?: number;
  generation?: number;
  block?: number;
}

export interface FuzzBase {
  name: string;
  bytes: Uint8Array;
  blockSize: number;
  blocksCount: number;
  inodesCount: number;
  inodeSize: number;
  descSize: number;
  groupCount: number;
  gdtStart: number;
  gdCsum: GdCsumMode;
  metadataCsum: boolean;
  fsSeed: number;
  regions: Region[];
  /** Byte offset of the journal superblock, for bases whose journal needs recovery. */
  journalSbStart?: number;
}

export interface Mutation {
  region: string;
  op: string;
  offset: number;
  before: string;
  after: string;
}

/** Relative weights of the region kinds when picking where to mutate. */
const WEIGHTS: Record<RegionKind, number> = {
  sb: 3, gdt: 3, inode: 7, dir: 4, dxroot: 2, extent: 2, ind: 1, xattr: 2, symlink: 1, head: 1,
  // Bases with a journal needing recovery: most mutations go to the log and its superblock.
  jsb: 12, jlog: 24,
};

// jbd2 superblock fields (big-endian; widths as stored): blocksize, maxlen, first, sequence,
// start, errno, features, nr_users, checksum type, num_fc_blks, head.
const JSB_FIELDS: Array<[number, number]> = [
  [4, 4], [8, 4], [12, 4], [16, 4], [20, 4], [24, 4], [28, 4], [32, 4], [36, 4], [40, 4], [44, 4], [64, 4], [80, 1], [84, 4], [88, 4],
];
// Log block fields: header type and sequence, first tags (block, flags), revoke r_count,
// commit checksum type/size and time.
const JLOG_FIELDS: Array<[number, number]> = [
  [4, 4], [8, 4], [12, 4], [16, 4], [18, 2], [20, 4], [24, 4], [28, 4], [44, 4], [48, 4], [52, 4], [56, 4],
];

// Interesting fields (offset, width) of each structure, with the kernel's names in comments.
const SB_FIELDS: Array<[number, number]> = [
  [0, 4], [4, 4], [8, 4], [12, 4], [16, 4], [20, 4], [24, 4], [28, 4], [32, 4], [36, 4], [40, 4], // counts, log sizes, per-group
  [56, 2], [58, 2], [76, 4], [84, 4], [88, 2], [92, 4], [96, 4], [100, 4], // magic, state, rev, first_ino, inode_size, features
  [206, 2], [224, 4], [236, 4], [252, 1], [254, 2], [260, 4], [336, 4], [348, 2], [350, 2], [352, 4], // ..., desc_size, first_meta_bg, blocks_hi
  [372, 1], [373, 1], [592, 4], [620, 4], [624, 4], [636, 2],
];
const GD_FIELDS: Array<[number, number]> = [
  [0, 4], [4, 4], [8, 4], [12, 2], [14, 2], [16, 2], [18, 2], [28, 2], [30, 2],
  [32, 4], [36, 4], [40, 4], [44, 2], [46, 2], [48, 2], [50, 2],
];
const INODE_FIELDS: Array<[number, number]> = [
  [0, 2], [4, 4], [26, 2], [28, 4], [32, 4], // mode, size_lo, links, blocks_lo, flags
  [40, 2], [42, 2], [44, 2], [46, 2], // i_block: extent header magic, entries, max, depth
  [52, 4], [56, 2], [58, 2], [60, 4], [64, 4], [68, 2], [70, 2], [72, 4], // first extents / block pointers
  [100, 4], [104, 4], [108, 4], [116, 2], [118, 2], [128, 2], // generation, file_acl, size_high, blocks_hi, file_acl_hi, extra_isize
  [160, 4], [164, 1], [165, 1], [166, 2], [168, 4], [172, 4], // in-inode xattr header and first entry
];
const EXTENT_FIELDS: Array<[number, number]> = [
  [0, 2], [2, 2], [4, 2], [6, 2], [12, 4], [16, 2], [18, 2], [20, 4], [24, 4], [28, 2], [30, 2], [32, 4],
];
const DXROOT_FIELDS: Array<[number, number]> = [
  [0, 4], [4, 2], [12, 4], [16, 2], [24, 4], [28, 1], [29, 1], [30, 1], [31, 1], [32, 2], [34, 2], [36, 4], [40, 4], [44, 4],
];
const XATTR_FIELDS: Array<[number, number]> = [
  [0, 4], [4, 4], [8, 4], [12, 4], [16, 4], [32, 1], [33, 1], [34, 2], [36, 4], [40, 4], [44, 4],
];

export class Rng {
  private readonly next: () => number;
  constructor(seed: number) { this.next = mulberry32(seed); }
  u32(): number { return this.next(); }
  int(n: number): number { return Math.floor((this.next() / 0x1_0000_0000) * n); }
  pick<T>(a: readonly T[]): T { return a[this.int(a.length)]!; }
}

/** The seed of case `i` of a run seeded with `seed`: each case replays on its own. */
export function caseSeed(seed: number, i: number): number {
  return (seed ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0;
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

async function dumpe2fsGroups(image: string): Promise<Array<{ gdt?: [number, number]; itable: number }>> {
  const r = await runTool(toolPath('dumpe2fs'), [image]);
  if (r.exitCode !== 0) throw new Error(`dumpe2fs ${image}: exit ${r.exitCode}\n${r.stderr}`);
  const groups: Array<{ gdt?: [number, number]; itable: number }> = [];
  let cur: { gdt?: [number, number]; itable: number } | undefined;
  for (const line of r.stdout.split('\n')) {
    if (/^Group \d+:/.test(line)) { cur = { itable: -1 }; groups.push(cur); }
    if (!cur) continue;
    const gd = /Group descriptors at (\d+)-(\d+)/.exec(line);
    if (gd && !/Backup/.test(line)) cur.gdt = [Number(gd[1]), Number(gd[2])];
    const it = /Inode table at (\d+)-/.exec(line);
    if (it) cur.itable = Number(it[1]);
  }
  return groups;
}

interface StatInfo { ino: number; type: string; flags: number; generation: number; fileAcl: number; tokens: Array<{ label: string; blocks: number[] }> }

function parseStats(out: string): StatInfo[] {
  const res: StatInfo[] = [];
  for (const chunk of out.split(/(?=^Inode: \d+)/m)) {
    const head = /^Inode: (\d+)\s+Type: (\S+).*?Flags: (0x[0-9a-f]+)/m.exec(chunk);
    if (!head) continue;
    const gen = /Generation: (\d+)/.exec(chunk);
    const acl = /File ACL: (\d+)/.exec(chunk);
    const tokens: StatInfo['tokens'] = [];
    const list = /^(?:EXTENTS|BLOCKS):\n(.*)$/m.exec(chunk);
    if (list) {
      for (const t of list[1]!.split(', ')) {
        const m = /^\(([^)]*)\):(\d+)(?:-(\d+))?/.exec(t.trim());
        if (!m) continue;
        const a = Number(m[2]);
        const b = m[3] ? Number(m[3]) : a;
        const blocks: number[] = [];
        for (let x = a; x <= b && blocks.length < 64; x++) blocks.push(x);
        tokens.push({ label: m[1]!, blocks });
      }
    }
    res.push({
      ino: Number(head[1]), type: head[2]!, flags: Number(head[3]),
      generation: gen ? Number(gen[1]) : 0, fileAcl: acl ? Number(acl[1]) : 0, tokens,
    });
  }
  return res;
}

/**
 * Reads `image` into memory and finds its metadata: superblock, the primary group descriptors,
 * the inode records of `inodes` (debugfs specs: '/path' or '<ino>'), their directory, extent-tree,
 * indirect, xattr and slow-symlink blocks, and the first 64 KiB.
 */
export async function discoverBase(name: string, image: string, inodes: string[], opts: { journalLogBlocks?: number } = {}): Promise<FuzzBase> {
  const bytes = new Uint8Array(await readFile(image));
  const sb = decodeSuperblock(bytes.subarray(1024, 2048));
  const geo = geometryOf(sb);
  const bs = geo.blockSize;
  const groups = await dumpe2fsGroups(image);
  const gdt = groups[0]?.gdt;
  if (!gdt) throw new Error(`dumpe2fs ${image}: no group descriptor location for group 0`);
  const regions: Region[] = [
    { kind: 'sb', start: 1024, len: 1024, label: 'superblock' },
    { kind: 'gdt', start: gdt[0] * bs, len: geo.groupCount * geo.descSize, label: `gdt@${gdt[0]}` },
    { kind: 'head', start: 0, len: Math.min(65536, bytes.length), label: 'first 64 KiB' },
  ];
  const out = (await debugfsRaw(image, inodes.map((p) => `stat "${p}"`).join('\n'))).stdout;
  const stats = parseStats(out);
  const seen = new Set<number>();
  for (const s of stats) {
    if (seen.has(s.ino)) continue;
    seen.add(s.ino);
    const g = Math.floor((s.ino - 1) / geo.inodesPerGroup);
    const idx = (s.ino - 1) % geo.inodesPerGroup;
    const it = groups[g]?.itable;
    if (it === undefined || it < 0) continue;
    const common = { ino: s.ino, generation: s.generation };
    regions.push({ kind: 'inode', start: it * bs + idx * geo.inodeSize, len: geo.inodeSize, label: `inode ${s.ino} (${s.type})`, ...common });
    if (s.fileAcl) regions.push({ kind: 'xattr', start: s.fileAcl * bs, len: bs, label: `xattr block ${s.fileAcl} of inode ${s.ino}`, block: s.fileAcl, ...common });
    for (const t of s.tokens) {
      const meta = /^ETB\d+$/.test(t.label) ? 'extent' : /^[DT]?IND$/.test(t.label) ? 'ind' : undefined;
      if (meta) {
        // Inode 7's indirect blocks are the reserved GDT area, not file metadata worth fuzzing.
        if (s.ino === 7 && meta === 'ind' && t.label === 'IND') continue;
        for (const b of t.blocks) regions.push({ kind: meta, start: b * bs, len: bs, label: `${t.label} block ${b} of inode ${s.ino}`, block: b, ...common });
        continue;
      }
      const first = Number(t.label.split('-')[0]);
      if (s.type === 'directory') {
        t.blocks.forEach((b, k) => {
          const kind: RegionKind = first + k === 0 && s.flags & 0x1000 ? 'dxroot' : 'dir';
          regions.push({ kind, start: b * bs, len: bs, label: `${kind} block ${b} (file block ${first + k}) of inode ${s.ino}`, block: b, ...common });
        });
      } else if (s.type === 'symlink') {
        for (const b of t.blocks) regions.push({ kind: 'symlink', start: b * bs, len: bs, label: `symlink block ${b} of inode ${s.ino}`, block: b, ...common });
      }
    }
  }
  let journalSbStart: number | undefined;
  if (opts.journalLogBlocks) {
    // The journal superblock and the first log blocks (descriptors, copies, revokes, commits).
    const n = opts.journalLogBlocks;
    const bmap = (await debugfsRaw(image, Array.from({ length: n + 1 }, (_, j) => `bmap <8> ${j}`).join('\n'))).stdout;
    const blocks = [...bmap.matchAll(/^(\d+)$/gm)].map((m) => Number(m[1]));
    if (blocks.length !== n + 1) throw new Error(`${name}: bmap of the journal gave ${blocks.length} of ${n + 1} blocks`);
    journalSbStart = blocks[0]! * bs;
    regions.push({ kind: 'jsb', start: journalSbStart, len: 1024, label: `journal superblock (block ${blocks[0]})` });
    blocks.slice(1).forEach((b, k) => regions.push({ kind: 'jlog', start: b * bs, len: bs, label: `journal block ${k + 1} (fs block ${b})`, block: b }));
  }
  return {
    name, bytes, blockSize: bs, blocksCount: geo.blocksCount, inodesCount: geo.inodesCount, inodeSize: geo.inodeSize,
    descSize: geo.descSize, groupCount: geo.groupCount, gdtStart: gdt[0] * bs, gdCsum: geo.gdCsum,
    metadataCsum: geo.metadataCsum, fsSeed: geo.csumSeed, regions: regions.filter((r) => r.start + r.len <= bytes.length),
    ...(journalSbStart !== undefined ? { journalSbStart } : {}),
  };
}

function pickRegion(rng: Rng, base: FuzzBase): Region {
  const kinds = [...new Set(base.regions.map((r) => r.kind))];
  const total = kinds.reduce((n, k) => n + WEIGHTS[k], 0);
  let x = rng.int(total);
  let kind = kinds[0]!;
  for (const k of kinds) {
    if (x < WEIGHTS[k]) { kind = k; break; }
    x -= WEIGHTS[k];
  }
  return rng.pick(base.regions.filter((r) => r.kind === kind));
}

function extremeValue(rng: Rng, width: number, base: FuzzBase): number {
  const bc = base.blocksCount, ic = base.inodesCount, bs = base.blockSize;
  const lists: Record<number, number[]> = {
    1: [0, 1, 2, 3, 7, 0x7f, 0x80, 0xfe, 0xff, rng.int(256)],
    2: [0, 1, 2, 0x7fff, 0x8000, 0xfffe, 0xffff, bs & 0xffff, (bs - 1) & 0xffff, rng.int(65536)],
    4: [0, 1, 2, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, bc - 1, bc, bc + 1, ic, ic + 1, bs, rng.u32()],
  };
  return rng.pick(lists[width]!) >>> 0;
}

function fieldsFor(region: Region, base: FuzzBase): Array<[number, number]> | undefined {
  switch (region.kind) {
    case 'sb': return SB_FIELDS;
    case 'inode': return INODE_FIELDS.filter(([o, w]) => o + w <= region.len);
    case 'extent': return EXTENT_FIELDS;
    case 'dxroot': return DXROOT_FIELDS;
    case 'xattr': return XATTR_FIELDS;
    case 'jsb': return JSB_FIELDS;
    case 'jlog': return JLOG_FIELDS;
    case 'gdt': {
      const fields: Array<[number, number]> = [];
      for (let g = 0; g < Math.min(base.groupCount, 4); g++) {
        for (const [o, w] of GD_FIELDS) if (o + w <= base.descSize) fields.push([g * base.descSize + o, w]);
      }
      return fields;
    }
    default: return undefined;
  }
}

/** Applies one random mutation inside a random region of `bytes`. */
export function mutateOnce(rng: Rng, base: FuzzBase, bytes: Uint8Array): { mutation: Mutation; region: Region } {
  const region = pickRegion(rng, base);
  const op = rng.int(10);
  let offset: number;
  let width: number;
  let label: string;
  const before = (o: number, w: number) => hex(bytes.subarray(o, o + w));
  if (op < 4) {
    // 1-4 bit flips close together (one field or its neighbours).
    offset = region.start + rng.int(region.len);
    width = Math.min(4, region.start + region.len - offset);
    const b0 = before(offset, width);
    const flips = 1 + rng.int(4);
    for (let k = 0; k < flips; k++) bytes[offset + rng.int(width)]! ^= 1 << rng.int(8);
    return { region, mutation: { region: region.label, op: `flip ${flips} bit(s)`, offset, before: b0, after: before(offset, width) } };
  }
  if (op < 5) {
    offset = region.start + rng.int(region.len);
    width = 1;
    const b0 = before(offset, 1);
    bytes[offset] = rng.int(256);
    return { region, mutation: { region: region.label, op: 'random byte', offset, before: b0, after: before(offset, 1) } };
  }
  const fields = fieldsFor(region, base);
  if (fields && op < 8) {
    const [o, w] = rng.pick(fields);
    offset = region.start + o;
    width = w;
    label = `field +${o} u${w * 8}`;
  } else {
    width = rng.pick([2, 4]);
    offset = region.start + Math.floor(rng.int(region.len - width + 1) / width) * width;
    label = `aligned +${offset - region.start} u${width * 8}`;
  }
  const b0 = before(offset, width);
  const v = extremeValue(rng, width, base);
  for (let k = 0; k < width; k++) bytes[offset + k] = Math.floor(v / 2 ** (8 * k)) & 0xff;
  return { region, mutation: { region: region.label, op: `${label} = 0x${v.toString(16)}`, offset, before: b0, after: before(offset, width) } };
}

const setU32 = (b: Uint8Array, o: number, v: number) => { for (let k = 0; k < 4; k++) b[o + k] = (v >>> (8 * k)) & 0xff; };
const setU16 = (b: Uint8Array, o: number, v: number) => { b[o] = v & 0xff; b[o + 1] = (v >>> 8) & 0xff; };
const getU16 = (b: Uint8Array, o: number) => b[o]! | (b[o + 1]! << 8);

/** Recomputes the checksums of the structures in `regions` (with the base's seed), where it can. */
export function resign(base: FuzzBase, bytes: Uint8Array, regions: Region[]): void {
  const bs = base.blockSize;
  const seedOf = (r: Region) => inodeCsumSeed(base.fsSeed, r.ino ?? 0, r.generation ?? 0);
  for (const r of regions) {
    try {
      const blk = bytes.subarray(r.start, r.start + r.len);
      switch (r.kind) {
        case 'sb':
          if (base.metadataCsum) setU32(bytes, 1024 + 1020, superblockChecksum(bytes.subarray(1024, 2048)));
          break;
        case 'gdt':
          for (let g = 0; g < base.groupCount; g++) {
            setGroupDescChecksum(bytes.subarray(base.gdtStart + g * base.descSize, base.gdtStart + (g + 1) * base.descSize), g, base.descSize, base.gdCsum);
          }
          break;
        case 'inode':
          if (base.metadataCsum) {
            const c = inodeChecksum(blk, { ino: r.ino!, inodeSize: base.inodeSize, fsCsumSeed: base.fsSeed });
            setU16(blk, 0x7c, c & 0xffff);
            if (base.inodeSize > 128 && getU16(blk, 0x80) >= 4) setU16(blk, 0x82, c >>> 16);
          }
          break;
        case 'dir':
          if (base.metadataCsum && getU16(blk, bs - 8) === 12 && blk[bs - 5] === 0xde) setDirBlockTail(blk, seedOf(r), bs);
          else if (base.metadataCsum && getU16(blk, 4) === bs && getU16(blk, 0) === 0) setDxTail(blk, 'node', seedOf(r));
          break;
        case 'dxroot':
          if (base.metadataCsum) setDxTail(blk, 'root', seedOf(r));
          break;
        case 'extent': {
          const max = getU16(blk, 4);
          const tail = 12 + 12 * max;
          if (base.metadataCsum && tail + 4 <= bs) setU32(blk, tail, extentBlockChecksum(blk, max, seedOf(r)));
          break;
        }
        case 'xattr':
          if (base.metadataCsum) setU32(blk, 16, xattrBlockChecksum(blk, r.block!, base.fsSeed));
          break;
        case 'jsb':
        case 'jlog':
          resignJournal(base, bytes, r);
          break;
        default:
          break;
      }
    } catch {
      // The mutation made the structure impossible to re-sign (a count past its limit): leave it.
    }
  }
}

const getU32be = (b: Uint8Array, o: number) => ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
const setU32be = (b: Uint8Array, o: number, v: number) => { for (let k = 0; k < 4; k++) b[o + k] = (v >>> (24 - 8 * k)) & 0xff; };

/** jbd2 checksums (v2/v3 only): the journal superblock's, or a descriptor/revoke tail or commit block's. */
function resignJournal(base: FuzzBase, bytes: Uint8Array, r: Region): void {
  if (base.journalSbStart === undefined) return;
  const jsb = bytes.subarray(base.journalSbStart, base.journalSbStart + 1024);
  const csum23 = getU32be(jsb, 4) === 4 && (getU32be(jsb, 0x28) & 0x18) !== 0;
  if (!csum23) return;
  if (r.kind === 'jsb') { setU32be(jsb, 0xfc, journalSuperblockChecksum(jsb)); return; }
  const blk = bytes.subarray(r.start, r.start + r.len);
  if (getU32be(blk, 0) !== 0xc03b3998) return;
  const seed = journalCsumSeed(jsb.subarray(0x30, 0x40));
  const type = getU32be(blk, 4);
  if (type === 1 || type === 5) setBlockTail(seed, blk);
  else if (type === 2) setU32be(blk, 0x10, commitBlockChecksum(seed, blk));
}

export interface FuzzCase {
  index: number;
  seed: number;
  base: FuzzBase;
  bytes: Uint8Array;
  mutations: Mutation[];
  resigned: boolean;
}

/** Case `index` of the run seeded with `seed`: 1-3 mutations of one base, re-signed 3 times in 4. */
export function makeCase(seed: number, index: number, bases: readonly FuzzBase[]): FuzzCase {
  const rng = new Rng(caseSeed(seed, index));
  const base = bases[index % bases.length]!;
  const bytes = base.bytes.slice();
  const n = 1 + rng.int(3);
  const mutations: Mutation[] = [];
  const touched: Region[] = [];
  for (let k = 0; k < n; k++) {
    const { mutation, region } = mutateOnce(rng, base, bytes);
    mutations.push(mutation);
    touched.push(region);
  }
  const resigned = base.gdCsum.kind !== 'none' && rng.int(4) !== 0;
  if (resigned) {
    resign(base, bytes, touched);
    // Re-signing changes checksum bytes outside the mutated field too; the mutation list records the fields.
  }
  return { index, seed, base, bytes, mutations, resigned };
}

export function describeCase(c: FuzzCase): string {
  const lines = [`case ${c.index} of seed ${c.seed} on base '${c.base.name}'${c.resigned ? ' (checksums re-signed)' : ''}:`];
  for (const m of c.mutations) lines.push(`  ${m.region}: ${m.op} at byte ${m.offset}: ${m.before} -> ${m.after}`);
  lines.push(`  replay: FUZZ_SEED=${c.seed} FUZZ_ONLY=${c.index} node --import tsx --test test/fuzz.test.ts`);
  return lines.join('\n');
}
