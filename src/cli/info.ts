// `ext4kit info [--json] IMAGE`: the superblock summary, laid out like `dumpe2fs -h` (same labels,
// so the two can be compared line by line; times in UTC).
import type { Ext4Info } from '../api/types.ts';
import { parseArgs } from './args.ts';
import { IMAGE_OPTIONS, IMAGE_USAGE, openImage } from './image.ts';
import { printJournalWarnings } from './print.ts';

export const INFO_USAGE = `usage: ext4kit info [--json] IMAGE
  --json  print the summary as a JSON object
${IMAGE_USAGE}
example:
  ext4kit info --json disk.img`;

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** ctime(3) layout in UTC, as dumpe2fs prints times with TZ=UTC. */
export function ctimeUtc(d: Date): string {
  if (Number.isNaN(d.getTime())) return 'n/a';
  const p = (n: number) => String(n).padStart(2, '0');
  return `${DAYS[d.getUTCDay()]} ${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2)} ` +
    `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} ${d.getUTCFullYear()}`;
}

/** The info object as plain JSON (dates as ISO strings, undefined as null). */
export function infoJson(info: Ext4Info): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(info)) {
    out[k] = v instanceof Date ? (Number.isNaN(v.getTime()) ? null : v.toISOString()) : v === undefined ? null : v;
  }
  return out;
}

export function formatInfo(info: Ext4Info): string {
  const rows: Array<[string, string | number]> = [
    ['Filesystem volume name', info.label === '' ? '<none>' : info.label],
    ['Filesystem UUID', info.uuid],
    ['Filesystem magic number', '0xEF53'],
    ['Filesystem features', info.features.join(' ') || '(none)'],
    ['Filesystem state', info.state],
    ['Inode count', info.inodesCount],
    ['Block count', info.blocksCount],
    ['Reserved block count', info.reservedBlocks],
    ['Free blocks', info.freeBlocks],
    ['Free inodes', info.freeInodes],
    ['First block', info.firstDataBlock],
    ['Block size', info.blockSize],
    [info.clusterSize !== info.blockSize ? 'Cluster size' : 'Fragment size', info.clusterSize],
  ];
  if (info.descSize > 32) rows.push(['Group descriptor size', info.descSize]);
  if (info.reservedGdtBlocks > 0) rows.push(['Reserved GDT blocks', info.reservedGdtBlocks]);
  rows.push(['Blocks per group', info.blocksPerGroup]);
  rows.push([info.clusterSize !== info.blockSize ? 'Clusters per group' : 'Fragments per group', info.clustersPerGroup]);
  rows.push(['Inodes per group', info.inodesPerGroup]);
  rows.push(['Group count', info.groupCount]);
  if (info.flexBgSize > 0) rows.push(['Flex block group size', info.flexBgSize]);
  rows.push(['Filesystem created', ctimeUtc(info.created)]);
  rows.push(['Last mount time', info.lastMounted ? ctimeUtc(info.lastMounted) : 'n/a']);
  rows.push(['Last write time', ctimeUtc(info.lastWritten)]);
  rows.push(['Mount count', info.mountCount]);
  rows.push(['Inode size', info.inodeSize]);
  rows.push(['Default directory hash', info.defaultHashVersion]);
  rows.push(['Directory Hash Seed', info.hashSeed]);
  if (info.checksumType !== undefined) rows.push(['Checksum type', info.checksumType]);
  if (info.checksumSeed !== undefined) rows.push(['Checksum seed', `0x${info.checksumSeed.toString(16).padStart(8, '0')}`]);
  if (info.orphanFileInode > 0) rows.push(['Orphan file inode', info.orphanFileInode]);
  if (info.forcedReadOnly !== undefined) rows.push(['Forced read-only', info.forcedReadOnly]);
  rows.push(...journalRows(info));
  return rows.map(([k, v]) => `${(k + ':').padEnd(26)}${v}`).join('\n') + '\n';
}

// ---- journal section (dumpe2fs -h labels, then a logdump-like summary of the log) ----------

function journalRows(info: Ext4Info): Array<[string, string | number]> {
  const rows: Array<[string, string | number]> = [];
  if (info.journalInode > 0) rows.push(['Journal inode', info.journalInode]);
  const j = info.journal;
  const s = j?.summary;
  if (!j || !s) {
    if (j?.error) rows.push(['Journal', j.error]);
    return rows;
  }
  const hex = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;
  rows.push(['Journal features', s.features.join(' ') || '(none)']);
  rows.push(['Total journal size', `${s.sizeBytes / 1024}k`]);
  rows.push(['Total journal blocks', s.countBlocks]);
  rows.push(['Journal sequence', hex(s.sequence)]);
  rows.push(['Journal start', s.start]);
  if (s.checksum !== 'none') rows.push(['Journal checksum type', s.checksum]);
  if (s.errno !== 0) rows.push(['Journal errno', s.errno]);
  if (s.fastCommitBlocks > 0) rows.push(['Journal fast-commit blocks', `${s.fastCommitBlocks} (${s.fastCommitBlocksUsed} in use)`]);
  const tids = j.transactions > 0 ? ` (tids ${j.startTid}..${(j.endTid! - 1) >>> 0})` : '';
  rows.push(['Journal transactions', `${j.transactions}${tids}`]);
  const applied = j.applied === 'in-memory' ? 'replayed in memory, image not written'
    : j.applied === 'on-disk' ? 'replayed to the image' : 'not replayed';
  rows.push(['Journal needs recovery', j.needsRecovery
    ? `yes (${applied}: ${j.replayedBlocks} block(s), ${j.revokedCopies} revoked cop${j.revokedCopies === 1 ? 'y' : 'ies'})`
    : 'no']);
  if (j.fastCommitNotApplied) rows.push(['Journal fast commits', 'NOT applied (replay with e2fsck or a kernel mount)']);
  else if (j.fastCommits > 0) rows.push(['Journal fast commits', `${j.fastCommits} applied after the log`]);
  if (j.error) rows.push(['Journal error', j.error]);
  return rows;
}

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { options: [...IMAGE_OPTIONS], flags: ['json'], minPositionals: 1, maxPositionals: 1, usage: INFO_USAGE });
  // info prints the warnings itself, once, after describing the journal (which may add some).
  const fs = await openImage(args.positionals[0]!, args, { readOnly: true }, { journalWarnings: false });
  try {
    const info = { ...(await fs.info()), journal: await fs.journalInfo() };
    printJournalWarnings(info, args.positionals[0]!);
    process.stdout.write(args.flags.has('json') ? JSON.stringify(infoJson(info), null, 2) + '\n' : formatInfo(info));
  } finally {
    await fs.close();
  }
  return 0;
}
