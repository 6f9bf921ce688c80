// mkfs options as a user gives them (mke2fs-like) and their resolution into a complete,
// validated parameter set: defaults follow mke2fs 1.47's upstream ext4 profile.
import { Ext4Error } from '../errors/ext4-error.ts';
import { featureKind, COMPAT, INCOMPAT, RO_COMPAT, type FeatureSet } from '../format/features.ts';
import { uuidFromString } from '../util/bytes.ts';
import { crc32cUpdate } from '../util/crc.ts';

export interface MkfsOptions {
  /** Bytes of the filesystem; defaults to the device size. */
  sizeBytes?: number;
  /** -b: 1024, 2048, 4096 (also 8192..65536). Default as mke2fs: 1024 below 512 MiB, else 4096. */
  blockSize?: number;
  /** -C: cluster size in bytes (needs the bigalloc feature). Default 16 × block size with bigalloc. */
  clusterBytes?: number;
  /** -I */
  inodeSize?: number;
  /** -N */
  inodesCount?: number;
  /** -i: bytes per inode. */
  inodeRatio?: number;
  /** -L */
  label?: string;
  /** -U */
  uuid?: string | Uint8Array;
  /** -E hash_seed= */
  hashSeed?: string | Uint8Array;
  /** -m: percentage of blocks reserved for root (default 5). */
  reservedPercent?: number;
  /** -O: comma-separated list relative to the defaults, `^name` removes (e.g. 'bigalloc,^has_journal'). */
  features?: string;
  /** -t */
  type?: 'ext2' | 'ext3' | 'ext4';
  /** Seconds since the epoch used for every timestamp; with it, uuid and hash seed default to values derived from the options, so the output is reproducible. */
  timeSec?: number;
  /** -J size=: journal size in blocks. */
  journalBlocks?: number;
  /** The device is known to read as zeros (a new sparse file): skip zeroing inode tables. */
  deviceZeroed?: boolean;
}

const BASE: FeatureSet = {
  compat: COMPAT.resize_inode | COMPAT.dir_index | COMPAT.ext_attr,
  incompat: INCOMPAT.filetype,
  roCompat: RO_COMPAT.sparse_super | RO_COMPAT.large_file,
};
const EXT4: FeatureSet = {
  compat: COMPAT.has_journal | COMPAT.orphan_file,
  incompat: INCOMPAT.extent | INCOMPAT.flex_bg | INCOMPAT['64bit'] | INCOMPAT.metadata_csum_seed,
  roCompat: RO_COMPAT.huge_file | RO_COMPAT.metadata_csum | RO_COMPAT.dir_nlink | RO_COMPAT.extra_isize,
};

/** Features ext4kit's mkfs knows how to lay out. */
const MKFS_SUPPORTED: FeatureSet = {
  compat: COMPAT.has_journal | COMPAT.ext_attr | COMPAT.resize_inode | COMPAT.dir_index | COMPAT.orphan_file | COMPAT.sparse_super2 * 0,
  incompat: INCOMPAT.filetype | INCOMPAT.extent | INCOMPAT['64bit'] | INCOMPAT.flex_bg | INCOMPAT.metadata_csum_seed |
    INCOMPAT.meta_bg | INCOMPAT.large_dir | INCOMPAT.inline_data | INCOMPAT.ea_inode,
  roCompat: RO_COMPAT.sparse_super | RO_COMPAT.large_file | RO_COMPAT.huge_file | RO_COMPAT.uninit_bg |
    RO_COMPAT.dir_nlink | RO_COMPAT.extra_isize | RO_COMPAT.quota | RO_COMPAT.bigalloc | RO_COMPAT.metadata_csum,
};

export interface MkfsParams {
  blockSize: number;
  clusterRatio: number;
  blocksCount: number;
  inodeSize: number;
  inodesCountWanted: number;
  features: FeatureSet;
  label: string;
  uuid: Uint8Array;
  hashSeed: Uint8Array;
  reservedPercent: number;
  timeSec: number;
  journalBlocks: number;
  deviceZeroed: boolean;
}

const usage = (msg: string) => new Ext4Error('EINVAL', `mkfs: ${msg}`, { detail: 'mkfs-option' });

function toUuid(v: string | Uint8Array | undefined, what: string): Uint8Array | undefined {
  if (v === undefined) return undefined;
  if (v instanceof Uint8Array) {
    if (v.length !== 16) throw usage(`${what} must be 16 bytes`);
    return v.slice();
  }
  const u = uuidFromString(v);
  if (!u) throw usage(`invalid ${what} '${v}'`);
  return u;
}

/** Deterministic 16 bytes from a string (for reproducible images when the time is fixed). */
function derivedBytes(text: string): Uint8Array {
  const out = new Uint8Array(16);
  const data = new TextEncoder().encode(text);
  for (let i = 0; i < 4; i++) {
    const c = crc32cUpdate(0xffffffff ^ (i * 0x9e3779b9), data);
    out[i * 4] = c & 0xff; out[i * 4 + 1] = (c >>> 8) & 0xff; out[i * 4 + 2] = (c >>> 16) & 0xff; out[i * 4 + 3] = c >>> 24;
  }
  out[6] = (out[6]! & 0x0f) | 0x40; // RFC 4122 version 4 layout
  out[8] = (out[8]! & 0x3f) | 0x80;
  return out;
}

function randomUuid(): Uint8Array {
  const out = new Uint8Array(16);
  globalThis.crypto.getRandomValues(out);
  out[6] = (out[6]! & 0x0f) | 0x40;
  out[8] = (out[8]! & 0x3f) | 0x80;
  return out;
}

/** mke2fs's default journal size in blocks for a filesystem of `blocks` blocks (0: too small for one). */
export function defaultJournalBlocks(blocks: number): number {
  if (blocks < 2048) return 0;
  if (blocks < 32768) return 1024;
  if (blocks < 256 * 1024) return 4096;
  if (blocks < 512 * 1024) return 8192;
  if (blocks < 4096 * 1024) return 16384;
  if (blocks < 8192 * 1024) return 32768;
  if (blocks < 16384 * 1024) return 65536;
  if (blocks < 32768 * 1024) return 131072;
  return 262144;
}

export function resolveMkfsOptions(opts: MkfsOptions, deviceSizeBytes: number): MkfsParams {
  const sizeBytes = opts.sizeBytes ?? deviceSizeBytes;
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) throw usage(`invalid size ${sizeBytes}`);
  if (sizeBytes > deviceSizeBytes) throw usage(`size ${sizeBytes} exceeds the device (${deviceSizeBytes} bytes)`);
  const type = opts.type ?? 'ext4';
  const f: FeatureSet = { ...BASE };
  if (type !== 'ext2') f.compat |= COMPAT.has_journal;
  if (type === 'ext4') { f.compat |= EXT4.compat; f.incompat |= EXT4.incompat; f.roCompat |= EXT4.roCompat; }
  for (const raw of (opts.features ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
    const off = raw.startsWith('^');
    const name = off ? raw.slice(1) : raw;
    if (name === 'none') { f.compat = 0; f.incompat = 0; f.roCompat = 0; continue; }
    const k = featureKind(name);
    if (!k) throw usage(`unknown feature '${name}'`);
    const key = k.kind === 'compat' ? 'compat' : k.kind === 'incompat' ? 'incompat' : 'roCompat';
    const supported = MKFS_SUPPORTED[key] & k.bit;
    if (!off && !supported) throw new Ext4Error('ENOTSUP', `mkfs: feature '${name}' is not supported by ext4kit's mkfs`, { detail: 'mkfs-feature' });
    f[key] = off ? f[key] & ~k.bit : f[key] | k.bit;
  }
  const has = (key: keyof FeatureSet, bit: number) => (f[key] & bit) !== 0;
  // Dependencies, as mke2fs resolves them.
  if (has('roCompat', RO_COMPAT.metadata_csum)) f.roCompat &= ~RO_COMPAT.uninit_bg;
  if (!has('roCompat', RO_COMPAT.metadata_csum)) f.incompat &= ~INCOMPAT.metadata_csum_seed;
  if (!has('compat', COMPAT.has_journal)) f.compat &= ~COMPAT.orphan_file;
  if (has('incompat', INCOMPAT.meta_bg)) f.compat &= ~COMPAT.resize_inode;
  if (has('roCompat', RO_COMPAT.bigalloc) && !has('incompat', INCOMPAT.extent)) throw usage('bigalloc requires the extent feature');
  if (has('incompat', INCOMPAT.inline_data) && !has('compat', COMPAT.ext_attr)) throw usage('inline_data requires ext_attr');

  const blockSize = opts.blockSize ?? (sizeBytes < 512 * 1024 * 1024 ? 1024 : 4096);
  if (![1024, 2048, 4096, 8192, 16384, 32768, 65536].includes(blockSize)) throw usage(`invalid block size ${blockSize}`);
  let clusterRatio = 1;
  if (has('roCompat', RO_COMPAT.bigalloc)) {
    const clusterBytes = opts.clusterBytes ?? blockSize * 16;
    clusterRatio = clusterBytes / blockSize;
    if (!Number.isInteger(clusterRatio) || clusterRatio < 2 || (clusterRatio & (clusterRatio - 1)) !== 0 || clusterRatio > 65536) {
      throw usage(`invalid cluster size ${clusterBytes} for block size ${blockSize}`);
    }
  } else if (opts.clusterBytes !== undefined && opts.clusterBytes !== blockSize) {
    throw usage('a cluster size needs the bigalloc feature');
  }
  let blocksCount = Math.floor(sizeBytes / blockSize);
  blocksCount -= blocksCount % clusterRatio;
  if (blocksCount > 0xffffffff && !has('incompat', INCOMPAT['64bit'])) {
    throw usage(`${blocksCount} blocks need the 64bit feature`);
  }
  if (blocksCount >= 2 ** 48) throw usage('filesystem too large');

  const inodeSize = opts.inodeSize ?? (type === 'ext2' && sizeBytes < 512 * 1024 * 1024 ? 128 : 256);
  if (inodeSize < 128 || inodeSize > blockSize || (inodeSize & (inodeSize - 1)) !== 0) throw usage(`invalid inode size ${inodeSize}`);
  const sizeType = sizeBytes < 3 * 1024 * 1024 ? 'floppy' : sizeBytes < 512 * 1024 * 1024 ? 'small'
    : sizeBytes < 4 * 2 ** 40 ? 'default' : sizeBytes < 16 * 2 ** 40 ? 'big' : 'huge';
  const defaultRatio = { floppy: 8192, small: 4096, default: 16384, big: 32768, huge: 65536 }[sizeType];
  let inodeRatio = opts.inodeRatio ?? defaultRatio;
  if (inodeRatio < 1024 || inodeRatio > 67108864) throw usage(`invalid inode ratio ${inodeRatio}`);
  inodeRatio = Math.max(inodeRatio, blockSize * clusterRatio);
  const inodesCountWanted = opts.inodesCount ?? Math.floor((blocksCount * blockSize) / inodeRatio);

  const reservedPercent = opts.reservedPercent ?? 5;
  if (!(reservedPercent >= 0 && reservedPercent <= 50)) throw usage(`invalid reserved percentage ${reservedPercent}`);
  const timeSec = opts.timeSec ?? Math.floor(Date.now() / 1000);
  const fingerprint = JSON.stringify({ ...opts, uuid: undefined, hashSeed: undefined, sizeBytes, timeSec });
  const uuid = toUuid(opts.uuid, 'UUID') ?? (opts.timeSec !== undefined ? derivedBytes(`uuid ${fingerprint}`) : randomUuid());
  const hashSeed = toUuid(opts.hashSeed, 'hash seed') ?? (opts.timeSec !== undefined ? derivedBytes(`hash ${fingerprint}`) : randomUuid());
  if (opts.label !== undefined && new TextEncoder().encode(opts.label).length > 16) throw usage('label longer than 16 bytes');
  const journalBlocks = has('compat', COMPAT.has_journal) ? (opts.journalBlocks ?? defaultJournalBlocks(blocksCount)) : 0;
  if (has('compat', COMPAT.has_journal) && (journalBlocks < 1024 || journalBlocks > 10_240_000)) {
    if (opts.journalBlocks === undefined) f.compat &= ~(COMPAT.has_journal | COMPAT.orphan_file);
    else throw usage(`journal size ${journalBlocks} blocks out of range (1024..10240000)`);
  }
  return {
    blockSize, clusterRatio, blocksCount, inodeSize, inodesCountWanted, features: f,
    label: opts.label ?? '', uuid, hashSeed, reservedPercent, timeSec,
    journalBlocks: f.compat & COMPAT.has_journal ? journalBlocks : 0,
    deviceZeroed: opts.deviceZeroed ?? false,
  };
}
