// `ext4kit mkfs`: mke2fs-like options → MkfsOptions; creates (or truncates) the image as a sparse
// file of SIZE bytes, formats it and prints a short summary.
import { open, stat, unlink } from 'node:fs/promises';
import { Ext4 } from '../node.ts';
import type { MkfsOptions } from '../mkfs/options.ts';
import { intOption, optionValue, parseArgs, parseSize, UsageError, type ParsedArgs } from './args.ts';
import { formatBytes } from './progress.ts';
import { hostIdentity, populateFromDir } from './copy-in.ts';

export const MKFS_USAGE = `usage: ext4kit mkfs [options] IMAGE SIZE
  SIZE             bytes, or with a binary unit: 512K, 64M, 1G, 2T
  -t ext2|ext3|ext4  filesystem type (default ext4)
  -b SIZE          block size: 1024, 2048, 4096 (default: 1024 below 512 MiB, else 4096)
  -C SIZE          cluster size in bytes (with -O bigalloc)
  -O FEATURES      comma-separated features relative to the type's defaults; ^name removes one
  -I INODE_SIZE    inode size in bytes (128, 256, ...)
  -N INODES        number of inodes
  -i BYTES         bytes per inode
  -L LABEL         volume label (at most 16 bytes)
  -U UUID          filesystem UUID
  -E hash_seed=UUID  directory hash seed
  -m PCT           percentage of blocks reserved for root (default 5)
  -d DIR          copy DIR's contents into the new filesystem (like mke2fs -d): contents,
                   holes, modes, owners, ns times, symlinks, hard links, xattrs; the root
                   directory takes DIR's own mode, owner and times
  -T SECONDS       use this time (seconds since the epoch) for every timestamp; with it the UUID
                   and hash seed default to values derived from the options (reproducible images)
  -q               print nothing on success`;

function usage(args: ParsedArgs, msg: string): never {
  throw new UsageError(msg, args.usage);
}

function sizeOption(args: ParsedArgs, name: string, what: string): number | undefined {
  const v = optionValue(args, name);
  if (v === undefined) return undefined;
  const n = parseSize(v);
  if (n === undefined) usage(args, `invalid ${what} '${v}'`);
  return n;
}

/** Translates parsed command-line options into MkfsOptions (without the size). */
export function mkfsOptionsFromArgs(args: ParsedArgs): MkfsOptions {
  const opts: MkfsOptions = {};
  const type = optionValue(args, 't');
  if (type !== undefined) {
    if (type !== 'ext2' && type !== 'ext3' && type !== 'ext4') usage(args, `unsupported filesystem type '${type}'`);
    opts.type = type;
  }
  const blockSize = sizeOption(args, 'b', 'block size');
  if (blockSize !== undefined) opts.blockSize = blockSize;
  const cluster = sizeOption(args, 'C', 'cluster size');
  if (cluster !== undefined) opts.clusterBytes = cluster;
  const features = args.options.get('O');
  if (features) opts.features = features.join(',');
  const inodeSize = intOption(args, 'I', 'inode size');
  if (inodeSize !== undefined) opts.inodeSize = inodeSize;
  const inodes = intOption(args, 'N', 'inode count');
  if (inodes !== undefined) opts.inodesCount = inodes;
  const ratio = sizeOption(args, 'i', 'bytes-per-inode ratio');
  if (ratio !== undefined) opts.inodeRatio = ratio;
  const label = optionValue(args, 'L');
  if (label !== undefined) opts.label = label;
  const uuid = optionValue(args, 'U');
  if (uuid !== undefined) opts.uuid = uuid;
  for (const ext of args.options.get('E') ?? []) {
    for (const item of ext.split(',').filter(Boolean)) {
      const eq = item.indexOf('=');
      const key = eq < 0 ? item : item.slice(0, eq);
      const value = eq < 0 ? '' : item.slice(eq + 1);
      if (key === 'hash_seed' && value !== '') opts.hashSeed = value;
      else usage(args, `unsupported extended option '${item}' (supported: hash_seed=UUID)`);
    }
  }
  const reserved = optionValue(args, 'm');
  if (reserved !== undefined) {
    if (!/^\d+(\.\d+)?$/.test(reserved)) usage(args, `invalid reserved percentage '${reserved}'`);
    opts.reservedPercent = Number(reserved);
  }
  const time = optionValue(args, 'T');
  if (time !== undefined) {
    if (!/^\d+$/.test(time) || Number(time) > 0x3_ffff_ffff) usage(args, `invalid time '${time}' (seconds since the epoch)`);
    opts.timeSec = Number(time);
  }
  return opts;
}

/** Creates or truncates `image` as a sparse file of `sizeBytes` (block devices are left as they are). */
async function prepareImage(image: string, sizeBytes: number | undefined): Promise<{ sizeBytes: number; zeroed: boolean }> {
  const st = await stat(image).catch(() => undefined);
  if (st?.isBlockDevice()) {
    // st_size of a block device is 0 and Node has no lseek(SEEK_END): the size must be given.
    if (sizeBytes === undefined) throw new UsageError(`SIZE is needed for block device '${image}'`, MKFS_USAGE);
    return { sizeBytes, zeroed: false };
  }
  if (st && !st.isFile()) throw new UsageError(`'${image}' is neither a regular file nor a block device`, MKFS_USAGE);
  const size = sizeBytes ?? st?.size;
  if (size === undefined || size === 0) throw new UsageError(`SIZE is needed to create '${image}'`, MKFS_USAGE);
  const fh = await open(image, 'w');
  try {
    await fh.truncate(size);
  } finally {
    await fh.close();
  }
  return { sizeBytes: size, zeroed: true };
}

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, {
    flags: ['q', 'F'],
    options: ['t', 'b', 'C', 'O', 'I', 'N', 'i', 'L', 'U', 'E', 'm', 'T', 'd'],
    minPositionals: 1,
    maxPositionals: 2,
    usage: MKFS_USAGE,
  });
  const [image, sizeText] = args.positionals as [string, string | undefined];
  let sizeBytes: number | undefined;
  if (sizeText !== undefined) {
    sizeBytes = parseSize(sizeText);
    if (sizeBytes === undefined) usage(args, `invalid size '${sizeText}'`);
  }
  const opts = mkfsOptionsFromArgs(args);
  const populate = optionValue(args, 'd');
  if (populate !== undefined) {
    // Check the source before the image is touched (mke2fs -d checks it only after formatting).
    const st = await stat(populate);
    if (!st.isDirectory()) throw new UsageError(`'${populate}' is not a directory`, MKFS_USAGE);
  }
  const existed = await stat(image).then(() => true, () => false);
  const prepared = await prepareImage(image, sizeBytes);
  try {
    await Ext4.mkfs(image, { ...opts, sizeBytes: prepared.sizeBytes, deviceZeroed: prepared.zeroed });
    if (populate !== undefined) {
      const self = await hostIdentity(image);
      const fs = await Ext4.open(image, { umask: 0 }); // copies keep their source modes
      try {
        await populateFromDir(fs, populate, { progressLabel: 'mkfs', ...(self ? { exclude: self } : {}) });
      } finally {
        await fs.close();
      }
    }
  } catch (e) {
    // Leave no half-made image behind when the file is ours.
    if (!existed) await unlink(image).catch(() => undefined);
    throw e;
  }
  if (!args.flags.has('q')) {
    const fs = await Ext4.open(image, { readOnly: true });
    try {
      const info = await fs.info();
      const lines = [
        `${image}: ${opts.type ?? 'ext4'} filesystem, ${formatBytes(info.blocksCount * info.blockSize)}`,
        `  ${info.blocksCount} blocks of ${info.blockSize} bytes` +
          (info.clusterSize !== info.blockSize ? `, clusters of ${info.clusterSize} bytes` : '') +
          `, ${info.groupCount} group${info.groupCount === 1 ? '' : 's'}`,
        `  ${info.inodesCount} inodes of ${info.inodeSize} bytes, ${info.reservedBlocks} blocks reserved for root`,
        `  UUID ${info.uuid}${info.label ? `, label '${info.label}'` : ''}`,
        `  features: ${info.features.join(' ')}`,
      ];
      process.stdout.write(lines.join('\n') + '\n');
    } finally {
      await fs.close();
    }
  }
  return 0;
}
