import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DirBlockMapHint, withMapHint } from './block-map-hint.ts';
import type { DirWriteEnv } from './dir-write.ts';

/** A depth-0 extent root: magic, one entry, max 4, depth `depth`, then one extent (0 → phys, `len` blocks). */
function root(phys: number, len: number, depth = 0): Uint8Array {
  const r = new Uint8Array(60);
  const v = new DataView(r.buffer);
  v.setUint16(0, 0xf30a, true);
  v.setUint16(2, 1, true);
  v.setUint16(4, 4, true);
  v.setUint16(6, depth, true);
  v.setUint32(12, 0, true);
  v.setUint16(16, len, true);
  v.setUint32(20, phys, true);
  return r;
}

function envWith(r: { bytes: Uint8Array }, lookups: number[]): DirWriteEnv {
  const env = {
    mapBlock: async (fb: number) => {
      lookups.push(fb);
      const v = new DataView(r.bytes.buffer);
      const len = v.getUint16(16, true);
      return fb < len ? v.getUint32(20, true) + fb : undefined;
    },
  } as unknown as DirWriteEnv;
  return env;
}

test('a remembered directory block is used only while the extent root is unchanged', async () => {
  const r = { bytes: root(1000, 2) };
  const hint = new DirBlockMapHint();
  const lookups: number[] = [];
  const env = () => withMapHint(envWith(r, lookups), hint, () => r.bytes);
  assert.equal(await env().mapBlock(0), 1000);
  assert.equal(await env().mapBlock(1), 1001);
  assert.equal(env().mapBlock(0), 1000, 'a hit answers at once');
  assert.equal(env().mapBlock(1), 1001);
  assert.deepEqual(lookups, [0, 1]);
  assert.equal(hint.hits, 2);
  // The root changes in place (the directory grew, or its extent moved): everything is looked up again.
  r.bytes.set(root(5000, 3));
  assert.equal(await env().mapBlock(0), 5000);
  assert.equal(await env().mapBlock(2), 5002);
  assert.deepEqual(lookups, [0, 1, 0, 2]);
  assert.equal(env().mapBlock(0), 5000);
  // A hole is never remembered.
  assert.equal(await env().mapBlock(7), undefined);
  assert.equal(await env().mapBlock(7), undefined);
  assert.deepEqual(lookups, [0, 1, 0, 2, 7, 7]);
});

test('a root of depth > 0 (extents in tree blocks that may change) is never remembered', async () => {
  const r = { bytes: root(1000, 2, 1) };
  const hint = new DirBlockMapHint();
  const lookups: number[] = [];
  const env = () => withMapHint(envWith(r, lookups), hint, () => r.bytes);
  await env().mapBlock(0);
  await env().mapBlock(0);
  assert.deepEqual(lookups, [0, 0]);
  assert.equal(hint.hits, 0);
});
