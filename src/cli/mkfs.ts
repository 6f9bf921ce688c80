// `ext4kit mkfs`: mke2fs-like options → MkfsOptions; creates (or truncates) the image as a sparse
// file of SIZE bytes, formats it and prints a short summary.
import { open, stat, unlink } from 'node:fs/promises';
import { Ext4 } from '../node.ts';
import type { MkfsOptions } from '../mkfs/options.ts';
import { intOption, optionValue, parseArgs, parseSize, UsageError, type ParsedArgs } from './args.ts';
import { formatBytes } from './progress.ts';
import { applyXattrs, hasXattrsFor, hostIdentity, populateFromDir } from './copy-in.ts';
import { buildFromHostDir, type HostTreeBuild } from './mkfs-tree.ts';
import { mkfs } from '../mkfs/mkfs.ts';
import { ThreadedWriteDevice } from './threaded-write-device.ts';
import { IMAGE_OPTIONS, imageRef } from './image.ts';
import { infoJson } from './info.ts';
import type { BlockDevice } from '../device/block-device.ts';
import { NodeFileDevice } from '../device/node-file-device.ts';
import { OffsetDevice } from '../device/offset-device.ts';
import { posixError } from '../errors/ext4-error.ts';
import { planLayout } from '../mkfs/layout.ts';
import { resolveMkfsOptions } from '../mkfs/options.ts';

export const MKFS_USAGE = `usage: ext4kit mkfs [options] IMAGE [SIZE]
  SIZE             as mke2fs reads it: with a unit k, m, g, t (powers of 1024) or s (512-byte
                   sectors); a plain number counts blocks (of -b, or of 1 KiB without -b).
                   Also accepted (mke2fs refuses them): KiB/MiB/GiB/TiB, p, fractions (1.5G).
                   Without SIZE, an existing IMAGE keeps its size.
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
  -q               print nothing on success
  --json           print the summary as a JSON object
  --offset N       make the filesystem N bytes into an existing IMAGE (a partition; IMAGE is
                   not truncated; IMAGE?offset=N says the same)
Every option is checked before IMAGE is opened: a refused option leaves IMAGE untouched.
example:
  ext4kit mkfs -L data -O ^has_journal disk.img 512M
  ext4kit mkfs -q -d ./rootfs -T 0 rootfs.img 1G`;

/** One warning line per distinct message on stderr, as the copy-in prints them. */
function copyInWarn(): (msg: string) => void {
  const seen = new Set<string>();
  return (msg) => {
    if (seen.has(msg)) return;
    seen.add(msg);
    process.stderr.write(`ext4kit: warning: ${msg}\n`);
  };
}

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

/** SIZE as mke2fs reads it (see MKFS_USAGE); undefined when malformed. */
export function parseFsSize(text: string, blockSize: number | undefined): number | undefined {
  const m = /^(\d+)$/.exec(text.trim());
  if (m) {
    const n = Number(m[1]) * (blockSize ?? 1024);
    return Number.isSafeInteger(n) && n > 0 ? n : undefined;
  }
  const s = /^(\d+)s$/i.exec(text.trim());
  if (s) {
    const n = Number(s[1]) * 512;
    return Number.isSafeInteger(n) && n > 0 ? n : undefined;
  }
  return parseSize(text);
}

/** The image's size and whether mkfs may create/truncate it; nothing is opened. */
async function plannedSize(image: string, sizeBytes: number | undefined, offsetBytes: number | undefined): Promise<{ sizeBytes: number; create: boolean; blockDevice: boolean }> {
  const st = await stat(image).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return undefined;
    throw e;
  });
  if (st?.isDirectory()) throw posixError('EISDIR', 'open', image);
  if (st && !st.isFile() && !st.isBlockDevice()) throw new UsageError(`'${image}' is neither a regular file nor a block device`, MKFS_USAGE);
  if (st?.isBlockDevice()) {
    // st_size of a block device is 0 and Node has no lseek(SEEK_END): the size must be given.
    if (sizeBytes === undefined) throw new UsageError(`SIZE is needed for block device '${image}'`, MKFS_USAGE);
    return { sizeBytes, create: false, blockDevice: true };
  }
  if (offsetBytes !== undefined) {
    // A partition inside an existing disk image: the file stays as it is.
    if (!st) throw posixError('ENOENT', 'open', image);
    const room = st.size - offsetBytes;
    const size = sizeBytes ?? room;
    if (size <= 0 || size > room) throw new UsageError(`${size} bytes at offset ${offsetBytes} do not fit in '${image}' (${st.size} bytes)`, MKFS_USAGE);
    return { sizeBytes: size, create: false, blockDevice: false };
  }
  const size = sizeBytes ?? st?.size;
  if (size === undefined || size === 0) throw new UsageError(`SIZE is needed to create '${image}'`, MKFS_USAGE);
  return { sizeBytes: size, create: true, blockDevice: false };
}

/** Creates or truncates `image` as a sparse file of `sizeBytes`. */
async function createSparse(image: string, sizeBytes: number): Promise<void> {
  const fh = await open(image, 'w');
  try {
    await fh.truncate(sizeBytes);
  } finally {
    await fh.close();
  }
}

async function openTarget(image: string, offsetBytes: number | undefined, sizeBytes: number): Promise<BlockDevice> {
  const file = await NodeFileDevice.open(image);
  if (offsetBytes === undefined) return file;
  try {
    return new OffsetDevice(file, offsetBytes, sizeBytes);
  } catch (e) {
    await file.close();
    throw e;
  }
}

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, {
    flags: ['q', 'F', 'json'],
    options: ['t', 'b', 'C', 'O', 'I', 'N', 'i', 'L', 'U', 'E', 'm', 'T', 'd', ...IMAGE_OPTIONS],
    minPositionals: 1,
    maxPositionals: 2,
    usage: MKFS_USAGE,
  });
  const [imageArg, sizeText] = args.positionals as [string, string | undefined];
  const { path: image, offsetBytes } = imageRef(imageArg, args);
  const opts = mkfsOptionsFromArgs(args);
  let sizeBytes: number | undefined;
  if (sizeText !== undefined) {
    sizeBytes = parseFsSize(sizeText, opts.blockSize);
    if (sizeBytes === undefined) usage(args, `invalid size '${sizeText}'`);
  }
  const populate = optionValue(args, 'd');
  if (populate !== undefined) {
    // Check the source before the image is touched (mke2fs -d checks it only after formatting).
    const st = await stat(populate);
    if (!st.isDirectory()) throw new UsageError(`'${populate}' is not a directory`, MKFS_USAGE);
  }
  const planned = await plannedSize(image, sizeBytes, offsetBytes || undefined);
  // Every option against the size, before anything is opened for writing: the layout is pure.
  planLayout(resolveMkfsOptions({ ...opts, sizeBytes: planned.sizeBytes }, planned.sizeBytes));
  const existed = await stat(image).then(() => true, () => false);
  if (planned.create) await createSparse(image, planned.sizeBytes);
  // Populating the fresh image skips the journal: the image stays marked not clean until the
  // build's close, so an interrupted build never looks like a clean filesystem.
  const openFs = async (readOnly: boolean) => {
    // copies keep their source's modes
    if (!offsetBytes) return Ext4.open(image, { readOnly, umask: 0, journal: 'bypass' });
    const dev = await openTarget(image, offsetBytes, planned.sizeBytes);
    return Ext4.open(dev, { readOnly, umask: 0, journal: 'bypass' });
  };
  try {
    const dev = await openTarget(image, offsetBytes || undefined, planned.sizeBytes);
    const mkfsOpts = { ...opts, sizeBytes: planned.sizeBytes, deviceZeroed: planned.create };
    // The bulk build (mkfs/bulk-tree.ts) unless the general copy-in is asked for.
    const bulk = populate !== undefined && process.env.EXT4KIT_MKFS_D !== 'engine';
    let built: HostTreeBuild | undefined;
    let target: BlockDevice = dev;
    try {
      if (bulk) {
        const exclude = await hostIdentity(image);
        target = new ThreadedWriteDevice(dev, image, offsetBytes || 0);
        await mkfs(target, mkfsOpts, async (tree) => { built = await buildFromHostDir(tree, populate, { warn: copyInWarn(), exclude }); });
      } else {
        await Ext4.mkfs(dev, mkfsOpts);
      }
    } finally {
      await target.close();
    }
    if (built?.xattrs && await hasXattrsFor(built.xattrs, built.destOf)) {
      const fs = await openFs(false);
      const warn = copyInWarn();
      try {
        await applyXattrs(fs, built.xattrs, built.destOf, (_k, m) => warn(m), warn);
      } finally {
        await fs.close();
      }
    }
    if (populate !== undefined && !bulk) {
      const self = await hostIdentity(image);
      const fs = await openFs(false);
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
  if (args.flags.has('json') || !args.flags.has('q')) {
    const fs = await openFs(true);
    try {
      const info = await fs.info();
      if (args.flags.has('json')) {
        process.stdout.write(JSON.stringify({ image, ...(offsetBytes ? { offsetBytes } : {}), type: opts.type ?? 'ext4', ...infoJson(info) }, null, 2) + '\n');
        return 0;
      }
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
