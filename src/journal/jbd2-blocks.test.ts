// The log writer's block encoders against the replay side's decoders (format/jbd2/), for the
// formats ext4kit writes: CSUM_V3 with 64-bit tags, and no checksums with 32- or 64-bit tags.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeCommit, encodeDescriptor, encodeRevoke, escapeBlock, tagsPerDescriptor, recordsPerRevoke, type LogFormat } from './jbd2-blocks.ts';
import { decodeDescriptor, TAG_FLAG } from '../format/jbd2/descriptor.ts';
import { decodeRevoke } from '../format/jbd2/revoke.ts';
import { decodeCommit, verifyCommitChecksum } from '../format/jbd2/commit.ts';
import { journalCsumSeed, tagBlockChecksum } from '../format/jbd2/checksum.ts';
import { unescapeBlock } from '../format/jbd2/escape.ts';
import type { JournalFormat } from '../format/jbd2/header.ts';

const uuid = Uint8Array.from({ length: 16 }, (_, i) => i * 17 + 3);

for (const [name, csumV3, bit64, bs] of [['v3, 64bit, 4 KiB', true, true, 4096], ['none, 32-bit, 1 KiB', false, false, 1024], ['none, 64bit, 1 KiB', false, true, 1024]] as const) {
  test(`jbd2 block encoders decode with the replay codecs: ${name}`, () => {
    const fmt: LogFormat = { blockSize: bs, csumV3, bit64, uuid };
    const f: JournalFormat = { blockSize: bs, bit64, csumVersion: csumV3 ? 3 : 0, csumSeed: journalCsumSeed(uuid) };
    const n = tagsPerDescriptor(fmt);
    const blocks = Array.from({ length: n }, (_, i) => {
      const b = new Uint8Array(bs).fill(i & 0xff);
      if (i === 1) b.set([0xc0, 0x3b, 0x39, 0x98]); // starts with the jbd2 magic: must be escaped
      return { fsBlock: bit64 ? 0x1_0000_0000 + i * 3 : 1000 + i * 3, ...escapeBlock(b), original: b };
    });
    const desc = encodeDescriptor(fmt, 0xfffffff0, blocks);
    const d = decodeDescriptor(desc, f);
    assert.equal(d.sequence, 0xfffffff0);
    assert.equal(d.tags.length, n, 'every tag fits and LAST_TAG ends the walk');
    if (csumV3) assert.equal(d.tailOk, true);
    d.tags.forEach((t, i) => {
      assert.equal(t.fsBlock, blocks[i]!.fsBlock);
      assert.equal((t.flags & TAG_FLAG.escape) !== 0, i === 1);
      assert.equal((t.flags & TAG_FLAG.sameUuid) !== 0, i > 0);
      assert.equal((t.flags & TAG_FLAG.lastTag) !== 0, i === n - 1);
      if (csumV3) assert.equal(t.checksum, tagBlockChecksum(f.csumSeed, 0xfffffff0, blocks[i]!.logged));
      assert.deepEqual(unescapeBlock(blocks[i]!.logged, (t.flags & TAG_FLAG.escape) !== 0), blocks[i]!.original);
    });
    const recs = Array.from({ length: recordsPerRevoke(fmt) }, (_, i) => (bit64 ? 0x2_0000_0000 : 5) + i);
    const r = decodeRevoke(encodeRevoke(fmt, 7, recs), f);
    assert.deepEqual(r.fsBlocks, recs);
    if (csumV3) assert.equal(r.tailOk, true);
    const c = encodeCommit(fmt, 7, 1_700_000_000_123);
    const cd = decodeCommit(c);
    assert.equal(cd.sequence, 7);
    assert.equal(cd.commitSec, 1_700_000_000);
    assert.equal(cd.commitNsec, 123_000_000);
    if (csumV3) assert.equal(verifyCommitChecksum(f, c), true);
    else assert.equal(cd.chksumType, 0);
    assert.ok(c.subarray(0x3c).every((x) => x === 0), 'commit block zero-padded');
    // A broken encoder is noticed: one flipped byte of a logged copy fails its tag checksum.
    if (csumV3) {
      const bad = blocks[0]!.logged.slice(); bad[100]! ^= 1;
      assert.notEqual(tagBlockChecksum(f.csumSeed, 0xfffffff0, bad), d.tags[0]!.checksum);
    }
  });
}
