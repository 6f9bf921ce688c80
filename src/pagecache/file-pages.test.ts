import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DirtyCounter, FilePages, RUN_BUFFER_BYTES } from './file-pages.ts';

const BS = 4096;
const RUN = RUN_BUFFER_BYTES / BS;

function fillRun(pages: FilePages, first: number, byte: number, from = 0, to = RUN_BUFFER_BYTES): void {
  pages.installDirty(first, RUN, from, to, (b) => b.fill(byte, from, to));
}

test('pages of one run are separate windows of one buffer', () => {
  const pages = new FilePages(BS);
  pages.installDirty(10, 3, 0, 3 * BS, (b) => { b.fill(1, 0, BS); b.fill(2, BS, 2 * BS); b.fill(3, 2 * BS); });
  assert.deepEqual([10, 11, 12].map((n) => pages.get(n)!.data[0]), [1, 2, 3]);
  assert.equal(pages.get(11)!.data.length, BS);
  pages.write(11, 5, new Uint8Array([9, 9]));
  assert.deepEqual([...pages.get(11)!.data.subarray(4, 8)], [2, 9, 9, 2]);
  assert.equal(pages.get(10)!.data[BS - 1], 1);
  assert.equal(pages.get(12)!.data[0], 3);
  assert.equal(pages.get(11)!.version, 2);
  assert.deepEqual(pages.dirtyBlocks(), [10, 11, 12]);
  assert.throws(() => pages.installDirty(12, 1, 0, BS, () => {}), /installed twice/);
});

test('a recycled run buffer reads as zeros outside what the new write covers', () => {
  const shared = new DirtyCounter();
  const a = new FilePages(BS, shared);
  fillRun(a, 0, 0xee);
  for (let b = 0; b < RUN; b++) a.cleaned(b, 1);
  assert.equal(shared.idleBuffers, 1);
  const b = new FilePages(BS, shared);
  fillRun(b, 0, 0x11, 100, RUN_BUFFER_BYTES - 100);
  assert.equal(shared.idleBuffers, 0, 'the idle buffer was reused');
  assert.equal(b.get(0)!.data[99], 0);
  assert.equal(b.get(0)!.data[100], 0x11);
  assert.equal(b.get(RUN - 1)!.data[BS - 101], 0x11);
  assert.equal(b.get(RUN - 1)!.data[BS - 100], 0);
});

test('a run buffer is recycled only when no page and no hold uses it', () => {
  const shared = new DirtyCounter();
  const pages = new FilePages(BS, shared);
  fillRun(pages, 0, 7);
  const store = pages.get(0)!.store;
  pages.drop(1);
  assert.equal(shared.idleBuffers, 0, 'page 0 still uses the buffer');
  shared.hold(store);
  pages.cleaned(0, 0);
  assert.equal(pages.get(0)?.dirty, true, 'a stale version does not clean the page');
  pages.cleaned(0, 1);
  assert.equal(pages.size, 0);
  assert.equal(shared.idleBuffers, 0, 'an in-flight write still reads the buffer');
  assert.equal(store.bytes[0], 7);
  shared.release(store);
  assert.equal(shared.idleBuffers, 1);
  assert.equal(shared.pages, 0);
});

test('short runs get their own exact-size buffer, never a pooled one', () => {
  const shared = new DirtyCounter();
  const pages = new FilePages(BS, shared);
  pages.installDirty(0, 2, 0, 2 * BS, () => {});
  assert.equal(pages.get(0)!.buf.length, 2 * BS);
  pages.drop(0);
  assert.equal(shared.idleBuffers, 0);
});

test('a page dropped and written again is not cleaned by a writeback of the old page', () => {
  const pages = new FilePages(BS);
  pages.installDirty(0, 1, 0, BS, (b) => b.fill(1));
  const mapped = pages.get(0)!.version;
  pages.drop(0);
  pages.installDirty(0, 1, 0, BS, (b) => b.fill(2));
  pages.cleaned(0, mapped);
  assert.equal(pages.get(0)?.dirty, true, 'the new page is still dirty');
  assert.equal(pages.dirtyCount, 1);
  pages.write(0, 0, new Uint8Array([3]));
  pages.cleaned(0, mapped);
  assert.equal(pages.get(0)?.data[0], 3);
});
