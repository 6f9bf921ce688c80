// The jbd2 block codecs against real journals: the kernel's (csum v3 on metadata_csum, none
// otherwise, 1 KiB and 4 KiB blocks) and debugfs's (v1 crc32, v2 16-bit tags, v3). Each log is
// walked with the decoders; the blocks and revokes found must equal `debugfs -R 'logdump -a'`,
// every checksum must verify, and re-encoding the kernel's descriptor, revoke and commit blocks
// from their decoded fields must give the same bytes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { decodeJournalSuperblock } from '../src/format/jbd2/superblock.ts';
import { decodeBlockHeader, journalFormat, JBD2_BLOCKTYPE, type JournalFormat } from '../src/format/jbd2/header.ts';
import { decodeDescriptor, encodeDescriptor, tagChecksumMatches, TAG_FLAG, descriptorCapacity } from '../src/format/jbd2/descriptor.ts';
import { decodeRevoke, encodeRevokeBlocks } from '../src/format/jbd2/revoke.ts';
import { decodeCommit, encodeCommit, verifyCommitChecksum, JBD2_CRC32_CHKSUM } from '../src/format/jbd2/commit.ts';
import { tagBlockChecksum, crc32BeUpdate, CRC32_BE_INIT } from '../src/format/jbd2/checksum.ts';
import { escapeBlock, unescapeBlock } from '../src/format/jbd2/escape.ts';
import { JBD2_MAGIC } from '../src/format/jbd2/superblock.ts';
import { cleanupTemp, makeImage } from './support/images.ts';
import { debugfs, haveE2fsprogs, loopMountSupport } from './support/oracles.ts';
import { kernelCrashImage, dumpJournal, debugfsWrite } from './support/journal-images.ts';

const skipTools = haveE2fsprogs() ? false : 'e2fsprogs (Debian package e2fsprogs) not installed';
if (skipTools) console.log(`journal-replay-codecs.test.ts: skipped: ${skipTools}`);

interface Walked {
  fmt: JournalFormat;
  logged: string[];
  revoked: string[];
  transactions: number;
  /** Whether every re-encoded block equalled the original. */
  reencodeMismatches: string[];
  badChecksums: string[];
}

/** Walks the log of a dumped journal file from s_start with the codecs only. */
function walk(journal: Uint8Array, opts: { reencode: boolean }): Walked {
  const jsb = decodeJournalSuperblock(journal.subarray(0, 1024));
  const fmt = journalFormat(jsb);
  const bs = jsb.blockSize;
  const logEnd = jsb.maxLen;
  const block = (j: number) => journal.subarray(j * bs, (j + 1) * bs);
  const out: Walked = { fmt, logged: [], revoked: [], transactions: 0, reencodeMismatches: [], badChecksums: [] };
  let pos = jsb.start;
  let tid = jsb.sequence;
  let v1 = CRC32_BE_INIT;
  const next = (p: number) => (p + 1 >= logEnd ? jsb.first : p + 1);
  for (let steps = 0; pos !== 0 && steps < logEnd; steps++) {
    const b = block(pos);
    const h = decodeBlockHeader(b);
    if (h.magic !== JBD2_MAGIC || h.sequence !== tid) break;
    if (h.blockType === JBD2_BLOCKTYPE.descriptor) {
      const d = decodeDescriptor(b, fmt);
      if (d.tailOk === false) out.badChecksums.push(`descriptor@${pos}`);
      if (opts.reencode) {
        const again = encodeDescriptor(fmt, d.sequence, d.tags);
        if (!Buffer.from(again).equals(Buffer.from(b))) out.reencodeMismatches.push(`descriptor@${pos}`);
      }
      if (fmt.csumVersion === 1) v1 = crc32BeUpdate(v1, b);
      let p = pos;
      for (const t of d.tags) {
        p = next(p);
        const data = block(p);
        out.logged.push(`${t.fsBlock}@${p}`);
        if (fmt.csumVersion >= 2 && !tagChecksumMatches(fmt, t, tagBlockChecksum(fmt.csumSeed, tid, data))) out.badChecksums.push(`tag@${p}`);
        if (fmt.csumVersion === 1) v1 = crc32BeUpdate(v1, data);
      }
      pos = next(p);
    } else if (h.blockType === JBD2_BLOCKTYPE.revoke) {
      const r = decodeRevoke(b, fmt);
      if (r.tailOk === false) out.badChecksums.push(`revoke@${pos}`);
      for (const x of r.fsBlocks) out.revoked.push(String(x));
      if (opts.reencode) {
        const again = encodeRevokeBlocks(fmt, r.sequence, r.fsBlocks);
        if (again.length !== 1 || !Buffer.from(again[0]!).equals(Buffer.from(b))) out.reencodeMismatches.push(`revoke@${pos}`);
      }
      pos = next(pos);
    } else if (h.blockType === JBD2_BLOCKTYPE.commit) {
      const c = decodeCommit(b);
      if (fmt.csumVersion >= 2 && !verifyCommitChecksum(fmt, b)) out.badChecksums.push(`commit@${pos}`);
      if (fmt.csumVersion === 1 && c.chksumType === JBD2_CRC32_CHKSUM && c.chksum !== v1) out.badChecksums.push(`commit-v1@${pos}`);
      if (opts.reencode) {
        const again = encodeCommit(fmt, c.sequence, { sec: c.commitSec, nsec: c.commitNsec, v1Crc: v1 });
        if (!Buffer.from(again).equals(Buffer.from(b))) out.reencodeMismatches.push(`commit@${pos}`);
      }
      v1 = CRC32_BE_INIT;
      out.transactions++;
      tid = (tid + 1) >>> 0;
      pos = next(pos);
    } else break;
  }
  return out;
}

/** `logdump -a`'s logged blocks ("fs@journal") and revokes, in log order. */
async function logdump(img: string): Promise<{ logged: string[]; revoked: string[] }> {
  const text = await debugfs(img, 'logdump -a');
  const logged = [...text.matchAll(/FS block (\d+) logged at journal block (\d+)/g)].map((m) => `${m[1]}@${m[2]}`);
  const revoked = [...text.matchAll(/Revoke FS block (\d+)/g)].map((m) => m[1]!);
  return { logged, revoked };
}

async function checkImage(img: string, expect: { csumVersion: number; bit64?: boolean; reencode: boolean }): Promise<Walked> {
  const journal = new Uint8Array(await readFile(await dumpJournal(img)));
  const w = walk(journal, { reencode: expect.reencode });
  const oracle = await logdump(img);
  assert.equal(w.fmt.csumVersion, expect.csumVersion, 'checksum version');
  if (expect.bit64 !== undefined) assert.equal(w.fmt.bit64, expect.bit64, '64bit');
  assert.ok(w.transactions >= 1, 'at least one committed transaction');
  // logdump also prints the blocks of the trailing uncommitted transaction; our walk lists them too.
  assert.deepEqual(w.logged, oracle.logged.slice(0, w.logged.length));
  assert.deepEqual(w.revoked, oracle.revoked.slice(0, w.revoked.length));
  assert.deepEqual(w.badChecksums, []);
  assert.deepEqual(w.reencodeMismatches, []);
  return w;
}

describe('jbd2 codecs on real journals', { skip: skipTools }, () => {
  let loop: { ok: boolean; reason?: string } = { ok: false };
  before(async () => { loop = await loopMountSupport(); if (!loop.ok) console.log(`kernel journals skipped: ${loop.reason}`); });
  after(cleanupTemp);

  for (const [bs, features, csum, bit64] of [[1024, 'metadata_csum,64bit', 3, true], [4096, '^metadata_csum,^64bit', 0, false]] as const) {
    test(`kernel log, ${bs}-byte blocks, ${features}`, async (t) => {
      if (!loop.ok) return t.skip(loop.reason);
      const img = await kernelCrashImage({ blockSize: bs, features });
      const w = await checkImage(img, { csumVersion: csum, bit64, reencode: true });
      assert.ok(w.logged.length > 10 && w.revoked.length > 0, `logged ${w.logged.length} revoked ${w.revoked.length}`);
    });
  }

  test('debugfs logs: v1 crc32, v2 16-bit tags, v3, revokes', async () => {
    for (const [features, jo, csum] of [['^metadata_csum,^64bit', 'jo -c', 1], ['metadata_csum', 'jo -c -v 2', 2], ['metadata_csum,^64bit', 'jo -c', 3], ['^metadata_csum', 'jo', 0]] as const) {
      const img = await makeImage({ blockSize: 1024, sizeBytes: 8 << 20, features, type: 'ext4' });
      // v1 folds revoke blocks into the crc (a debugfs quirk e2fsck rejects), so revokes only without v1.
      const cmds = [jo, 'jw -b 300,301,302 /dev/zero', 'jc', jo, csum === 1 ? 'jw -b 303 /dev/zero' : 'jw -r 301', 'jc'];
      await debugfsWrite(img, cmds);
      const w = await checkImage(img, { csumVersion: csum, reencode: false });
      assert.equal(w.transactions, 2);
      assert.deepEqual(w.logged.map((s) => s.split('@')[0]), csum === 1 ? ['300', '301', '302', '303'] : ['300', '301', '302']);
    }
  });
});

describe('jbd2 codecs round-trip', () => {
  const uuid = Uint8Array.from({ length: 16 }, (_, i) => i * 7);
  const fmts: JournalFormat[] = [];
  for (const csumVersion of [0, 1, 2, 3] as const) for (const bit64 of [false, true]) fmts.push({ blockSize: 1024, bit64, csumVersion, csumSeed: 0x1234567 });

  test('descriptors hold descriptorCapacity tags of every format and decode back', () => {
    for (const f of fmts) {
      const n = descriptorCapacity(f);
      const tags = Array.from({ length: n }, (_, i) => ({ fsBlock: f.bit64 ? 0x1_0000_0000 * (i % 3) + i : i * 1000, flags: i % 2 ? TAG_FLAG.escape : 0, checksum: f.csumVersion === 2 ? i & 0xffff : f.csumVersion === 3 ? (i * 0x10001) >>> 0 : 0 }));
      const block = encodeDescriptor(f, 77, tags, uuid);
      const d = decodeDescriptor(block, f);
      assert.equal(d.sequence, 77);
      assert.equal(d.tags.length, n, `v${f.csumVersion} 64bit=${f.bit64}`);
      assert.deepEqual(d.tags.map((t) => [t.fsBlock, t.flags & TAG_FLAG.escape, t.checksum]), tags.map((t) => [t.fsBlock, t.flags, t.checksum]));
      assert.equal(d.tags.at(-1)!.flags & TAG_FLAG.lastTag, TAG_FLAG.lastTag);
      if (f.csumVersion >= 2) {
        assert.equal(d.tailOk, true);
        block[40]! ^= 1;
        assert.equal(decodeDescriptor(block, f).tailOk, false, 'a flipped bit fails the tail checksum');
      }
    }
  });

  test('revokes split across blocks and bound r_count', () => {
    for (const f of fmts) {
      const blocks = Array.from({ length: 600 }, (_, i) => (f.bit64 ? 0x2_0000_0000 : 0) + i * 3);
      const enc = encodeRevokeBlocks(f, 9, blocks);
      assert.ok(enc.length >= 2);
      assert.deepEqual(enc.flatMap((b) => decodeRevoke(b, f).fsBlocks), blocks);
      const bad = enc[0]!.slice();
      bad.set([0, 0, 0x04, 0x01], 12); // r_count 1025 > 1024
      assert.throws(() => decodeRevoke(bad, f), (e: Error & { code?: string; detail?: string }) => e.code === 'EUCLEAN' && e.detail === 'jbd2-revoke-count');
    }
  });

  test('commit checksums and escaping', () => {
    for (const f of fmts.filter((x) => x.csumVersion >= 2)) {
      const c = encodeCommit(f, 5, { sec: 1_700_000_000, nsec: 5 });
      assert.equal(verifyCommitChecksum(f, c), true);
      const d = decodeCommit(c);
      assert.deepEqual([d.sequence, d.commitSec, d.commitNsec], [5, 1_700_000_000, 5]);
      c[100]! ^= 1;
      assert.equal(verifyCommitChecksum(f, c), false);
    }
    const b = new Uint8Array(1024).fill(7);
    b.set([0xc0, 0x3b, 0x39, 0x98]);
    const { logged, escaped } = escapeBlock(b);
    assert.equal(escaped, true);
    assert.deepEqual([...logged.subarray(0, 4)], [0, 0, 0, 0]);
    assert.deepEqual(unescapeBlock(logged, true), b);
    assert.equal(escapeBlock(new Uint8Array(1024)).escaped, false);
    // crc32_be check value ("123456789", init ~0, no final xor) = 0x0376E6E7.
    assert.equal(crc32BeUpdate(CRC32_BE_INIT, new TextEncoder().encode('123456789')), 0x0376e6e7);
  });
});
