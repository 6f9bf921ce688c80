// The recovery passes on synthetic logs built with the codecs: every tag format and checksum
// version, escaping, revokes across transactions, wrap-around at the log end, stale blocks of an
// older log, failed commits (sync and async), bad tag checksums, and hostile logs that must end in
// an Ext4Error rather than a loop.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Ext4Error } from '../src/errors/ext4-error.ts';
import {
  makeEmptyJournalSuperblock, JBD2_FEATURE_COMPAT_CHECKSUM, JBD2_FEATURE_INCOMPAT_64BIT, JBD2_FEATURE_INCOMPAT_CSUM_V2,
  JBD2_FEATURE_INCOMPAT_CSUM_V3, JBD2_FEATURE_INCOMPAT_ASYNC_COMMIT, JBD2_CRC32C_CHKSUM, type JournalSuperblock,
} from '../src/format/jbd2/superblock.ts';
import { journalFormat, encodeBlockHeader, JBD2_BLOCKTYPE, type JournalFormat } from '../src/format/jbd2/header.ts';
import { encodeDescriptor, descriptorCapacity, TAG_FLAG } from '../src/format/jbd2/descriptor.ts';
import { encodeRevokeBlocks } from '../src/format/jbd2/revoke.ts';
import { encodeCommit } from '../src/format/jbd2/commit.ts';
import { tagBlockChecksum, crc32BeUpdate, CRC32_BE_INIT } from '../src/format/jbd2/checksum.ts';
import { escapeBlock } from '../src/format/jbd2/escape.ts';
import { scanLog, collectRevokes, planReplay, replayTestHooks, type ReplayPlan, type ScanResult } from '../src/journal/replay/passes.ts';

const BS = 1024;
const LOG_BLOCKS = 1100;

interface Tx { writes?: Array<[fsBlock: number, fill: number | Uint8Array]>; revokes?: number[]; time?: number; corruptCommit?: boolean; badTag?: number; noCommit?: boolean }

class LogBuilder {
  readonly blocks: Uint8Array[] = Array.from({ length: LOG_BLOCKS }, () => new Uint8Array(BS));
  readonly jsb: JournalSuperblock;
  readonly fmt: JournalFormat;
  pos: number;
  tid: number;
  constructor(opts: { compat?: number; incompat?: number; start?: number; sequence?: number }) {
    this.jsb = makeEmptyJournalSuperblock({ blockSize: BS, journalBlocks: LOG_BLOCKS, uuid: Uint8Array.from({ length: 16 }, (_, i) => i + 1) });
    this.jsb.featureCompat = opts.compat ?? 0;
    this.jsb.featureIncompat = opts.incompat ?? 0;
    if (this.jsb.featureIncompat & (JBD2_FEATURE_INCOMPAT_CSUM_V2 | JBD2_FEATURE_INCOMPAT_CSUM_V3)) this.jsb.checksumType = JBD2_CRC32C_CHKSUM;
    this.jsb.start = opts.start ?? 1;
    this.jsb.sequence = opts.sequence ?? 10;
    this.fmt = journalFormat(this.jsb);
    this.pos = this.jsb.start;
    this.tid = this.jsb.sequence;
  }
  private put(b: Uint8Array): void {
    this.blocks[this.pos] = b;
    this.pos = this.pos + 1 >= LOG_BLOCKS ? this.jsb.first : this.pos + 1;
  }
  add(tx: Tx): this {
    const f = this.fmt;
    let v1 = CRC32_BE_INIT;
    for (const r of tx.revokes?.length ? encodeRevokeBlocks(f, this.tid, tx.revokes) : []) this.put(r);
    const writes = tx.writes ?? [];
    const cap = descriptorCapacity(f);
    for (let i = 0; i < writes.length; i += cap) {
      const group = writes.slice(i, i + cap).map(([b, fill]) => {
        const data = typeof fill === 'number' ? new Uint8Array(BS).fill(fill) : fill;
        const { logged, escaped } = escapeBlock(data);
        let checksum = tagBlockChecksum(f.csumSeed, this.tid, logged);
        if (tx.badTag === b) checksum ^= 1;
        return { tag: { fsBlock: b, flags: escaped ? TAG_FLAG.escape : 0, checksum }, logged };
      });
      const d = encodeDescriptor(f, this.tid, group.map((g) => g.tag));
      v1 = crc32BeUpdate(v1, d);
      this.put(d);
      for (const g of group) { v1 = crc32BeUpdate(v1, g.logged); this.put(g.logged); }
    }
    if (!tx.noCommit) {
      const c = encodeCommit(f, this.tid, { sec: tx.time ?? 1000 + this.tid, nsec: 0, v1Crc: v1 });
      if (tx.corruptCommit) c[200]! ^= 1;
      if (tx.corruptCommit && f.csumVersion === 0) throw new Error('no checksum to corrupt');
      this.put(c);
    }
    this.tid++;
    return this;
  }
  read = async (j: number) => this.blocks[j]!;
  async run(): Promise<{ scan: ScanResult; plan: ReplayPlan }> {
    const scan = await scanLog(this.read, this.jsb, this.fmt);
    const revoked = await collectRevokes(this.read, scan, this.fmt);
    const plan = await planReplay(this.read, scan, this.fmt, revoked, (b) => b < 1_000_000 || this.fmt.bit64);
    return { scan, plan };
  }
}

const fills = (plan: ReplayPlan) => Object.fromEntries([...plan.blocks].map(([b, d]) => [b, d[5]!]));
const FORMATS: Array<[string, { compat?: number; incompat?: number }]> = [
  ['no checksums, 32-bit', {}],
  ['no checksums, 64bit', { incompat: JBD2_FEATURE_INCOMPAT_64BIT }],
  ['v1 crc32', { compat: JBD2_FEATURE_COMPAT_CHECKSUM }],
  ['v2, 32-bit (10-byte tags)', { incompat: JBD2_FEATURE_INCOMPAT_CSUM_V2 }],
  ['v2, 64bit (14-byte tags)', { incompat: JBD2_FEATURE_INCOMPAT_CSUM_V2 | JBD2_FEATURE_INCOMPAT_64BIT }],
  ['v3, 32-bit', { incompat: JBD2_FEATURE_INCOMPAT_CSUM_V3 }],
  ['v3, 64bit', { incompat: JBD2_FEATURE_INCOMPAT_CSUM_V3 | JBD2_FEATURE_INCOMPAT_64BIT }],
];

describe('recovery passes on synthetic logs', () => {
  for (const [name, feat] of FORMATS) {
    test(`${name}: newest copy wins, revokes hide older copies only, escaping, wrap-around`, async () => {
      const magic = new Uint8Array(BS).fill(0x77);
      magic.set([0xc0, 0x3b, 0x39, 0x98]);
      // Start 3 blocks before the log end so the first transaction wraps.
      const big = feat.incompat && feat.incompat & JBD2_FEATURE_INCOMPAT_64BIT ? 0x1_2345_6789 : 600;
      const log = new LogBuilder({ ...feat, start: LOG_BLOCKS - 3 })
        .add({ writes: [[100, 1], [101, 1], [102, 1], [103, 1], [big, 9]] })
        .add({ revokes: [101, 102], writes: [[104, magic]] })
        .add({ writes: [[102, 3]] })
        .add({ writes: Array.from({ length: 300 }, (_, i): [number, number] => [1000 + i, 4]) }) // several descriptors
        .add({ writes: [[100, 5]], noCommit: true }); // incomplete: ignored
      const { scan, plan } = await log.run();
      assert.deepEqual([scan.startTid, scan.endTid, scan.transactions.length, scan.failedCommitTid], [10, 14, 4, undefined]);
      const f = fills(plan);
      assert.equal(f[100], 1);
      assert.equal(f[101], undefined, 'revoked in a later transaction');
      assert.equal(f[102], 3, 'a copy after the revoke is replayed');
      assert.equal(f[103], 1);
      assert.equal(f[big], 9);
      assert.deepEqual([...plan.blocks.get(104)!.subarray(0, 4)], [0xc0, 0x3b, 0x39, 0x98], 'escaped magic restored');
      assert.equal(plan.blocks.size, 4 + 1 + 300);
      assert.equal(plan.revokedCopies, 2);
      replayTestHooks.ignoreRevokes = true;
      try {
        const broken = await log.run();
        assert.equal(fills(broken.plan)[101], 1, 'the broken variant replays the revoked copy');
      } finally { replayTestHooks.ignoreRevokes = false; }
    });
  }

  test('stale transactions of an older log end the scan quietly', async () => {
    const log = new LogBuilder({ incompat: JBD2_FEATURE_INCOMPAT_CSUM_V3 }).add({ writes: [[5, 1]], time: 2000 });
    // An old transaction with the next tid but an older time and a bad commit checksum.
    log.add({ writes: [[6, 2]], time: 100, corruptCommit: true });
    const { scan, plan } = await log.run();
    assert.deepEqual([scan.transactions.length, scan.failedCommitTid, plan.blocks.size], [1, undefined, 1]);
  });

  test('a corrupt commit stops the replay and is reported; async commit only ends the log', async () => {
    for (const [incompat, failed] of [[JBD2_FEATURE_INCOMPAT_CSUM_V3, 11], [JBD2_FEATURE_INCOMPAT_CSUM_V3 | JBD2_FEATURE_INCOMPAT_ASYNC_COMMIT, undefined]] as const) {
      const log = new LogBuilder({ incompat }).add({ writes: [[5, 1]] }).add({ writes: [[6, 2]], corruptCommit: true }).add({ writes: [[7, 3]] });
      const { scan, plan } = await log.run();
      assert.deepEqual([scan.transactions.length, scan.endTid, scan.failedCommitTid, [...plan.blocks.keys()]], [1, 11, failed, [5]]);
    }
    const v1 = new LogBuilder({ compat: JBD2_FEATURE_COMPAT_CHECKSUM }).add({ writes: [[5, 1]] }).add({ writes: [[6, 2]], corruptCommit: true });
    // v1: the commit block's crc field is not what was flipped, so corrupt the logged data instead.
    const dataAt = (await v1.run()).scan.transactions[1]!.groups[0]!.dataAt[0]!;
    v1.blocks[dataAt]![0]! ^= 1;
    const r = await v1.run();
    assert.deepEqual([r.scan.transactions.length, r.scan.failedCommitTid], [1, 11]);
  });

  test('a bad tag checksum skips that block only', async () => {
    const log = new LogBuilder({ incompat: JBD2_FEATURE_INCOMPAT_CSUM_V2 }).add({ writes: [[5, 1], [6, 1]], badTag: 6 });
    const { plan } = await log.run();
    assert.deepEqual([[...plan.blocks.keys()], plan.tagChecksumErrors], [[5], [6]]);
  });

  test('a bad descriptor checksum in a transaction newer than the last is an error', async () => {
    const log = new LogBuilder({ incompat: JBD2_FEATURE_INCOMPAT_CSUM_V3 }).add({ writes: [[5, 1]] }).add({ writes: [[6, 2]] });
    log.blocks[log.jsb.start + 3]![100]! ^= 1; // the second descriptor
    await assert.rejects(log.run(), (e: unknown) => e instanceof Ext4Error && e.code === 'EBADMSG' && e.detail === 'jbd2-stale-or-corrupt');
  });

  test('a log filled to its last block replays every transaction', async () => {
    // 365 transactions of 3 blocks and one of 4 fill the 1,099 blocks after the superblock.
    const full = new LogBuilder({ incompat: JBD2_FEATURE_INCOMPAT_CSUM_V3 });
    for (let i = 0; i < 365; i++) full.add({ writes: [[100 + i, i & 0xff]] });
    full.add({ writes: [[50, 1], [51, 2]] });
    const { scan, plan } = await full.run();
    assert.deepEqual([scan.transactions.length, scan.endTid], [366, 10 + 366]);
    assert.equal(plan.blocks.size, 367);
  });

  test('hostile logs end in an Ext4Error: a log that never ends, tags past the log, r_count past the block', async () => {
    const endless = new LogBuilder({});
    for (let j = 1; j < LOG_BLOCKS; j++) { const b = new Uint8Array(BS); encodeBlockHeader(b, JBD2_BLOCKTYPE.revoke, 10); b.set([0, 0, 0, 16], 12); endless.blocks[j] = b; }
    await assert.rejects(endless.run(), (e: unknown) => e instanceof Ext4Error && e.detail === 'jbd2-log-loop');

    const manyTags = new LogBuilder({});
    for (let j = 1; j < LOG_BLOCKS; j += 1 + descriptorCapacity(manyTags.fmt)) {
      manyTags.blocks[j] = encodeDescriptor(manyTags.fmt, 10, Array.from({ length: descriptorCapacity(manyTags.fmt) }, () => ({ fsBlock: 1, flags: 0, checksum: 0 })));
    }
    await assert.rejects(manyTags.run(), (e: unknown) => e instanceof Ext4Error && e.detail === 'jbd2-log-loop');

    const rcount = new LogBuilder({}).add({ revokes: [5] });
    rcount.blocks[1]!.set([0, 0, 0x10, 0], 12);
    await assert.rejects(rcount.run(), (e: unknown) => e instanceof Ext4Error && e.detail === 'jbd2-revoke-count');

    const range = new LogBuilder({}).add({ writes: [[2_000_000, 1]] });
    await assert.rejects(range.run(), (e: unknown) => e instanceof Ext4Error && e.detail === 'jbd2-tag-range');
  });
});
