// The log writer makes a transaction's home writes durable with the next commit's first flush
// (two flushes per commit). Until then the log superblock must keep pointing at that
// transaction. One deterministic power cut shows it: everything up to the flush before the next
// commit's log-superblock write, plus that write, but none of the home writes in between. The
// acknowledged file must come back through recovery; the deliberately broken variant (log
// superblock moved past the pending transaction) must lose it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ext4 } from '../src/api/ext4.ts';
import { MemoryDevice } from '../src/device/memory-device.ts';
import type { Jbd2Log } from '../src/journal/jbd2-log.ts';
import { RecordingDevice } from './support/recording-device.ts';

const SIZE_BYTES = 16 << 20;
const BLOCK_BYTES = 4096;
const A = new TextEncoder().encode('acknowledged by sync\n');

/** The image a power cut leaves right after the second commit's log-superblock write. */
async function cutAfterNextLogSuperblock(hook: Jbd2Log['brokenForTest']): Promise<{ image: Uint8Array; homeWritesLost: number }> {
  const mem = new MemoryDevice(SIZE_BYTES);
  await Ext4.mkfs(mem, { sizeBytes: SIZE_BYTES, blockSize: BLOCK_BYTES });
  const rec = new RecordingDevice(mem);
  const fs = await Ext4.open(rec);
  const log = (fs as unknown as { fs: { log: Jbd2Log } }).fs.log;
  log.brokenForTest = hook;
  await fs.writeFile('/a', A);
  await fs.sync();
  const mark = rec.events.length;
  await fs.writeFile('/b', 'not acknowledged\n');
  await fs.sync();
  await fs.close();
  const jsbOffset = (log as unknown as { map: Float64Array }).map[0]! * BLOCK_BYTES;
  const jsb = rec.events.findIndex((e, i) => i >= mark && e.kind === 'write' && e.offsetBytes === jsbOffset);
  assert.ok(jsb > 0, 'the second commit writes the log superblock');
  let lastFlush = -1;
  for (let i = 0; i < jsb; i++) if (rec.events[i]!.kind === 'flush') lastFlush = i;
  const image = rec.base.slice();
  const put = (e: { offsetBytes: number; data: Uint8Array }) => image.set(e.data, e.offsetBytes);
  for (let i = 0; i < lastFlush; i++) {
    const e = rec.events[i]!;
    if (e.kind === 'write') put(e);
  }
  const jsbWrite = rec.events[jsb]!;
  if (jsbWrite.kind === 'write') put(jsbWrite);
  const homeWritesLost = rec.events.slice(lastFlush + 1, jsb).filter((e) => e.kind === 'write').length;
  return { image, homeWritesLost };
}

async function readAfterRecovery(image: Uint8Array): Promise<Uint8Array | string> {
  const fs = await Ext4.open(new MemoryDevice(image));
  try {
    return await fs.readFile('/a');
  } catch (e) {
    return (e as Error).message;
  } finally {
    await fs.close();
  }
}

test('a commit whose home writes are not yet flushed stays in the log until they are', async () => {
  const { image, homeWritesLost } = await cutAfterNextLogSuperblock(undefined);
  assert.ok(homeWritesLost > 0, 'the cut drops the previous commit\'s unflushed home writes');
  assert.deepEqual(await readAfterRecovery(image), A);
});

test('the broken variant (log superblock skips the pending transaction) loses the acknowledged file', async () => {
  const { image, homeWritesLost } = await cutAfterNextLogSuperblock('jsb-skips-pending');
  assert.ok(homeWritesLost > 0);
  assert.notDeepEqual(await readAfterRecovery(image), A);
});
