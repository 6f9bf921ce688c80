import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NodeFileDevice } from './node-file-device.ts';
import { Ext4Error } from '../errors/ext4-error.ts';

test('read and readInto return the same bytes; a host file shrunk under the device reads zeros past its end', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'nfd-'));
  try {
    const path = join(dir, 'img');
    const content = new Uint8Array(8192).map((_, i) => (i * 7 + 3) & 0xff);
    writeFileSync(path, content);
    const dev = await NodeFileDevice.open(path, { readOnly: true });
    assert.deepEqual(await dev.read(1000, 5000), content.subarray(1000, 6000));
    const into = new Uint8Array(5000).fill(0xee);
    dev.readInto(1000, into);
    assert.deepEqual(into, content.subarray(1000, 6000));
    // The device keeps its size; the file behind it is now 4096 bytes: the rest reads as zeros,
    // not as whatever the (unzeroed) buffer held before.
    truncateSync(path, 4096);
    const tail = new Uint8Array(4096).fill(0xee);
    dev.readInto(2048, tail);
    assert.deepEqual(tail.subarray(0, 2048), content.subarray(2048, 4096));
    assert.ok(tail.subarray(2048).every((b) => b === 0));
    const fresh = await dev.read(4096, 4096);
    assert.ok(fresh.every((b) => b === 0));
    assert.throws(() => dev.readInto(8000, new Uint8Array(500)), (e: unknown) => e instanceof Ext4Error && e.code === 'EIO');
    await dev.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
