// `ext4kit stat [--json] IMAGE PATH`: one inode's metadata like stat(1) / debugfs stat, with
// nanosecond times (UTC) and the ext4 inode flags by name.
import type { Ext4Stats } from '../api/types.ts';
import { parseArgs } from './args.ts';
import { devMajorMinor, fileTypeName, formatTimeNs, modeString, normalizeImagePath, printablePath, printableName } from './ls.ts';
import { IMAGE_OPTIONS, IMAGE_USAGE, openImage } from './image.ts';

export const STAT_USAGE = `usage: ext4kit stat [--json] IMAGE PATH
  --json  print the fields as a JSON object (nanosecond times as decimal strings)
${IMAGE_USAGE}
example:
  ext4kit stat --json disk.img /etc/passwd`;

/** i_flags bits by the names chattr/lsattr and the kernel use. */
const FLAG_NAMES: Array<[number, string]> = [
  [0x1, 'secrm'], [0x2, 'unrm'], [0x4, 'compr'], [0x8, 'sync'], [0x10, 'immutable'], [0x20, 'append'],
  [0x40, 'nodump'], [0x80, 'noatime'], [0x100, 'dirty'], [0x200, 'comprblk'], [0x400, 'nocompr'],
  [0x800, 'encrypt'], [0x1000, 'index'], [0x2000, 'imagic'], [0x4000, 'journal_data'], [0x8000, 'notail'],
  [0x10000, 'dirsync'], [0x20000, 'topdir'], [0x40000, 'huge_file'], [0x80000, 'extents'], [0x100000, 'verity'],
  [0x200000, 'ea_inode'], [0x400000, 'eofblocks'], [0x2000000, 'dax'], [0x10000000, 'inline_data'],
  [0x20000000, 'projinherit'], [0x40000000, 'casefold'], [0x80000000, 'reserved'],
];

export function flagNames(flags: number): string[] {
  const out: string[] = [];
  let rest = flags >>> 0;
  for (const [bit, name] of FLAG_NAMES) {
    if (rest & bit) {
      out.push(name);
      rest = (rest & ~bit) >>> 0;
    }
  }
  if (rest) out.push(`0x${rest.toString(16)}`);
  return out;
}

export function statJson(path: string, st: Ext4Stats, target: Uint8Array | undefined): Record<string, unknown> {
  const [major, minor] = devMajorMinor(st.rdev);
  return {
    path, ino: st.ino, type: fileTypeName(st.mode), mode: st.mode, modeOctal: (st.mode & 0o7777).toString(8).padStart(4, '0'),
    modeString: modeString(st.mode), nlink: st.nlink, uid: st.uid, gid: st.gid, size: st.size, blocks: st.blocks,
    blksize: st.blksize, rdev: st.rdev, rdevMajor: major, rdevMinor: minor,
    atimeNs: st.atimeNs.toString(), mtimeNs: st.mtimeNs.toString(), ctimeNs: st.ctimeNs.toString(), birthtimeNs: st.birthtimeNs.toString(),
    flags: st.flags, flagNames: flagNames(st.flags), generation: st.generation,
    ...(target ? { target: Buffer.from(target).toString('utf8'), targetHex: Buffer.from(target).toString('hex') } : {}),
  };
}

export function formatStat(path: string, st: Ext4Stats, target: Uint8Array | undefined): string {
  const [major, minor] = devMajorMinor(st.rdev);
  const dev = st.isBlockDevice() || st.isCharacterDevice() ? `  Device type: ${major},${minor}` : '';
  const lines = [
    `  File: ${printablePath(path)}${target ? ` -> ${printableName(target)}` : ''}`,
    `  Size: ${String(st.size).padEnd(15)} Blocks: ${String(st.blocks).padEnd(10)} IO Block: ${String(st.blksize).padEnd(6)} ${fileTypeName(st.mode)}`,
    `Inode: ${String(st.ino).padEnd(15)} Links: ${st.nlink}${dev}`,
    `Access: (${(st.mode & 0o7777).toString(8).padStart(4, '0')}/${modeString(st.mode)})  Uid: (${String(st.uid).padStart(5)})   Gid: (${String(st.gid).padStart(5)})`,
    `Access: ${formatTimeNs(st.atimeNs)} +0000`,
    `Modify: ${formatTimeNs(st.mtimeNs)} +0000`,
    `Change: ${formatTimeNs(st.ctimeNs)} +0000`,
    ` Birth: ${st.birthtimeNs === 0n ? '-' : `${formatTimeNs(st.birthtimeNs)} +0000`}`,
    ` Flags: 0x${(st.flags >>> 0).toString(16)}${st.flags ? ` (${flagNames(st.flags).join(' ')})` : ''}   Generation: ${st.generation}`,
  ];
  return lines.join('\n') + '\n';
}

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { options: [...IMAGE_OPTIONS], flags: ['json'], minPositionals: 2, maxPositionals: 2, usage: STAT_USAGE });
  const [image, rawPath] = args.positionals as [string, string];
  const path = normalizeImagePath(rawPath);
  const fs = await openImage(image, args, { readOnly: true });
  try {
    const st = await fs.lstat(path);
    const target = st.isSymbolicLink() ? await fs.readlinkBytes(path) : undefined;
    process.stdout.write(args.flags.has('json') ? JSON.stringify(statJson(path, st, target), null, 2) + '\n' : formatStat(path, st, target));
  } finally {
    await fs.close();
  }
  return 0;
}
