// Hostile fast-commit areas (issue 8): a kernel image whose fast-commit area holds creates,
// a mkdir, a hard link and an unlink is mutated in two ways — raw bytes anywhere in the used
// fast-commit blocks and the journal superblock's fast-commit fields (most then fail the TAIL
// crc), and record values with every TAIL crc recomputed (so the replay applies hostile records).
// Every case: a read-only open succeeds or throws an Ext4Error, never anything else, never hangs,
// and writes nothing; a writable open that throws leaves the bytes untouched.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Ext4 } from '../src/node.ts';
import { Ext4Error } from '../src/errors/ext4-error.ts';
import { MemoryDevice } from '../src/device/memory-device.ts';
import { decodeSuperblock, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE } from '../src/format/superblock.ts';
import { geometryOf } from '../src/layout/geometry.ts';
import { mapJournalInode, journalBlockToFs } from '../src/journal/replay/journal-inode.ts';
import { decodeJournalSuperblock } from '../src/format/jbd2/superblock.ts';
import { logEndOf } from '../src/journal/replay/passes.ts';
import { crc32cUpdate } from '../src/util/crc.ts';
import { cleanupTemp } from './support/images.ts';
import { haveE2fsprogs, loopMountSupport } from './support/oracles.ts';
import { kernelFastCommitMixedImage } from './support/journal-images.ts';

const CASES = Number(process.env.FUZZ_FC_CASES ?? 100);
const CASE_TIMEOUT_MS = 20_000;
const skipTools = haveE2fsprogs() ? false : 'e2fsprogs (Debian package e2fsprogs) not installed';
if (skipTools) console.log(`journal-replay-fc-fuzz.test.ts: skipped: ${skipTools}`);

let base: Uint8Array | undefined;
/** Byte offsets of the used fast-commit blocks, the journal superblock, and the block size. */
let where: { fcBlocks: number[]; jsb: number; blockSize: number } | undefined;
let skipReason: string | undefined;

before(async () => {
  if (skipTools) return;
  const loop = await loopMountSupport();
  if (!loop.ok) { skipReason = loop.reason; console.log(`journal-replay-fc-fuzz.test.ts: skipped: ${loop.reason}`); return; }
  base = new Uint8Array(await readFile(await kernelFastCommitMixedImage()));
  const dev = new MemoryDevice(base, { readOnly: true });
  const sb = decodeSuperblock(await dev.read(SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE));
  const geo = geometryOf(sb);
  const jmap = await mapJournalInode(dev, sb, geo);
  const at = (j: number) => journalBlockToFs(jmap, j) * geo.blockSize;
  const jsb = decodeJournalSuperblock(await dev.read(at(0), geo.blockSize), { journalBlocks: jmap.countBlocks, blockSize: geo.blockSize, where: { inode: jmap.ino } });
  const first = logEndOf(jsb) + 1;
  const fcBlocks: number[] = [];
  for (let j = first; j < jsb.maxLen && fcBlocks.length < 8; j++) fcBlocks.push(at(j));
  where = { fcBlocks, jsb: at(0), blockSize: geo.blockSize };
});
after(async () => { await cleanupTemp(); });

/** xorshift32 */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; };
}

/** Recomputes every TAIL crc of the fast-commit stream (so mutated records pass validation). */
function fixTails(img: Uint8Array, blocks: number[], bs: number): void {
  let crc = 0;
  for (const off of blocks) {
    let pos = 0;
    while (pos + 4 <= bs) {
      const tag = img[off + pos]! | (img[off + pos + 1]! << 8);
      const len = img[off + pos + 2]! | (img[off + pos + 3]! << 8);
      if (pos + 4 + len > bs || tag === 0 || tag > 9) return;
      if (tag === 8 && len >= 8) {
        crc = crc32cUpdate(crc, img, off + pos, off + pos + 8);
        const v = new DataView(img.buffer, img.byteOffset + off + pos + 8, 4);
        v.setUint32(0, crc, true);
        crc = 0;
      } else {
        crc = crc32cUpdate(crc, img, off + pos, off + pos + 4 + len);
      }
      pos += 4 + len;
    }
  }
}

function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<T>((_, reject) => { timer = setTimeout(() => reject(new Error(`HANG: ${what}`)), CASE_TIMEOUT_MS); })])
    .finally(() => clearTimeout(timer));
}

test(`fast-commit fuzz: ${CASES} raw and ${CASES} crc-fixed mutations`, { skip: skipTools || undefined, timeout: 900_000 }, async (t) => {
  if (!base || !where) return t.skip(skipReason ?? 'no base image');
  const hash = (b: Uint8Array) => createHash('sha1').update(b).digest('hex');
  const failures: string[] = [];
  const outcomes = new Map<string, number>();
  const bump = (k: string) => outcomes.set(k, (outcomes.get(k) ?? 0) + 1);
  const { fcBlocks, jsb, blockSize } = where;
  // The unmutated image replays 4 fast commits: the fuzz must start from a replaying base.
  const clean = await Ext4.open(new MemoryDevice(base.slice(), { readOnly: true }), { readOnly: true });
  assert.ok(clean.info().journal!.fastCommits >= 3, JSON.stringify(clean.info().journal));
  await clean.close();
  for (let i = 0; i < 2 * CASES; i++) {
    const crcFixed = i >= CASES;
    const next = rng(0xfc00 + i);
    const img = base.slice();
    const n = 1 + (next() % 6);
    const changes: string[] = [];
    for (let k = 0; k < n; k++) {
      // Raw cases also hit the journal superblock's fast-commit fields (incompat 0x28, s_num_fc_blks 0x54).
      const inJsb = !crcFixed && next() % 5 === 0;
      const off = inJsb ? jsb + [0x28, 0x29, 0x2a, 0x2b, 0x54, 0x55, 0x56, 0x57][next() % 8]! : fcBlocks[next() % Math.min(fcBlocks.length, 4)]! + (next() % Math.min(blockSize, 1024));
      const v = next() % 4 === 0 ? [0, 0xff, 0x7f, 0x80][next() % 4]! : next() & 0xff;
      changes.push(`${off}=${v}`);
      img[off] = v;
    }
    if (crcFixed) fixTails(img, fcBlocks, blockSize);
    const what = `case ${i} (${crcFixed ? 'crc fixed' : 'raw'}): ${changes.join(' ')}`;
    const before = hash(img);
    try {
      const fs = await withTimeout(Ext4.open(new MemoryDevice(img, { readOnly: true }), { readOnly: true }), what);
      const j = fs.info().journal!;
      bump(j.fastCommits > 0 ? 'ro: replayed' : j.fastCommitNotApplied ? 'ro: not applied' : 'ro: nothing to replay');
      await withTimeout(fs.readdir('/', { recursive: true }), what).catch((e: unknown) => { if (!(e instanceof Ext4Error)) throw e; });
      await fs.close();
    } catch (e) {
      if (!(e instanceof Ext4Error)) { failures.push(`${what}: read-only open: ${(e as Error)?.stack}`); continue; }
      bump(`ro: ${e.code}`);
    }
    if (hash(img) !== before) failures.push(`${what}: the read-only open changed the bytes`);
    const rw = img.slice();
    try {
      const fs = await withTimeout(Ext4.open(new MemoryDevice(rw)), what);
      await fs.close();
      bump('rw: opened');
    } catch (e) {
      if (!(e instanceof Ext4Error)) { failures.push(`${what}: writable open: ${(e as Error)?.stack}`); continue; }
      bump(`rw: ${e.code}`);
      if (hash(rw) !== before) failures.push(`${what}: a refused writable open wrote to the image (${e.message})`);
    }
  }
  console.log(`fast-commit fuzz: ${2 * CASES} cases: ${[...outcomes].sort().map(([k, v]) => `${k} ${v}`).join(', ')}`);
  assert.deepEqual(failures, []);
});
