// The decoded-node cache of readChildNode: a buffer whose bytes are unchanged returns the node
// decoding would give, any change in place (entries, unused slots, tail) is decoded and checked
// again, callers that change nodes get their own copy, and a node is re-checked against each new
// key range its parent gives it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileBlock, fsBlock } from '../util/brand.ts';
import { xorU8 } from '../util/bytes.ts';
import { decodeExtentNode, encodeExtentNode, extentNodeCapacity, type Extent, type ExtentNode } from '../format/extent.ts';
import { readChildNode, rememberEncodedNode, type ExtentNodeSource } from './extent-node.ts';

const BS = 1024;
const SEED = 0x1234_5678;
const BLOCK = 500;

const ext = (l: number, n: number, p: number, unwritten = false): Extent =>
  ({ fileBlock: fileBlock(l), countBlocks: n, fsBlock: fsBlock(p), unwritten });

function leafBytes(extents: Extent[], seed: number | undefined): Uint8Array {
  const bytes = new Uint8Array(BS);
  const node: ExtentNode = { kind: 'leaf', depth: 0, max: extentNodeCapacity(false, BS), generation: 0, extents };
  encodeExtentNode(node, bytes, { isRoot: false, blockSize: BS, inodeSeed: seed });
  return bytes;
}

function source(bytes: Uint8Array, seed: number | undefined): ExtentNodeSource & { reads: number } {
  const src = {
    blockSize: BS, blocksCount: 100_000, ino: 12, inodeSeed: seed, reads: 0,
    readBlock: async (b: number): Promise<Uint8Array> => {
      assert.equal(b, BLOCK);
      src.reads++;
      return bytes;
    },
  };
  return src;
}

const read = (src: ExtentNodeSource, shared = false, lo = 0, hi = 1 << 20): Promise<ExtentNode> =>
  readChildNode(src, BLOCK, 1, lo, hi, undefined, shared);

const extentsOf = (n: ExtentNode): Extent[] => (n.kind === 'leaf' ? n.extents : []);

test('shared reads return the cached node, owned reads a copy that can change freely', async () => {
  const bytes = leafBytes([ext(0, 4, 1000), ext(10, 2, 2000, true)], SEED);
  const src = source(bytes, SEED);
  const a = await read(src, true);
  const b = await read(src, true);
  assert.equal(a, b, 'an unchanged buffer is not decoded again');
  const own = await read(src);
  assert.notEqual(own, a);
  assert.deepEqual(own, a);
  // Its entry list is its own; the extents in it are shared with the cache and frozen.
  assert.throws(() => { extentsOf(own)[0]!.countBlocks = 99; }, TypeError);
  extentsOf(own)[0] = ext(0, 99, 1000);
  extentsOf(own).pop();
  assert.deepEqual(extentsOf(await read(src, true)), [ext(0, 4, 1000), ext(10, 2, 2000, true)]);
  assert.equal(src.reads, 4);
});

test('a change in place after caching is decoded and checked again (entries, unused slots, tail)', async () => {
  const bytes = leafBytes([ext(0, 4, 1000), ext(10, 2, 2000)], SEED);
  const src = source(bytes, SEED);
  await read(src, true);
  // An entry byte: the checksum no longer matches.
  xorU8(bytes, 12 + 8, 1);
  await assert.rejects(read(src, true), { code: 'EBADMSG' });
  xorU8(bytes, 12 + 8, 1);
  await read(src, true);
  // A byte of an unused slot, which decoding ignores but the checksum covers.
  xorU8(bytes, BS - 100, 0x40);
  await assert.rejects(read(src, true), { code: 'EBADMSG' });
  xorU8(bytes, BS - 100, 0x40);
  await read(src, true);
  // The tail itself.
  xorU8(bytes, BS - 1, 0x80);
  await assert.rejects(read(src, true), { code: 'EBADMSG' });
  xorU8(bytes, BS - 1, 0x80);
  // A valid rewrite in place (new entries, new checksum): the new node, not the cached one.
  encodeExtentNode({ kind: 'leaf', depth: 0, max: extentNodeCapacity(false, BS), generation: 0, extents: [ext(5, 1, 3000)] },
    bytes, { isRoot: false, blockSize: BS, inodeSeed: SEED });
  assert.deepEqual(extentsOf(await read(src, true)), [ext(5, 1, 3000)]);
});

test('without metadata_csum a changed entry is seen at once', async () => {
  const bytes = leafBytes([ext(0, 4, 1000), ext(10, 2, 2000)], undefined);
  const src = source(bytes, undefined);
  assert.deepEqual(extentsOf(await read(src, true)), [ext(0, 4, 1000), ext(10, 2, 2000)]);
  bytes[12 + 4] = 7; // ee_len of the first extent
  assert.deepEqual(extentsOf(await read(src, true)), [ext(0, 7, 1000), ext(10, 2, 2000)]);
  bytes[12 + 4] = 0; // a zero length is corrupt
  await assert.rejects(read(src, true), { code: 'EUCLEAN' });
});

test('the cached node is checked again against every new key range and depth', async () => {
  const bytes = leafBytes([ext(0, 4, 1000), ext(10, 2, 2000)], SEED);
  const src = source(bytes, SEED);
  await read(src, true, 0, 100);
  await assert.rejects(read(src, true, 0, 11), { code: 'EUCLEAN' }); // extent 10+2 ends past 11
  await assert.rejects(read(src, true, 1, 100), { code: 'EUCLEAN' }); // extent 0 starts below 1
  await assert.rejects(readChildNode(src, BLOCK, 2, 0, 100, undefined, true), { code: 'EUCLEAN' }); // depth
  await read(src, true, 0, 100);
  const small = { ...src, blocksCount: 2001 }; // extent 10+2 maps blocks 2000..2001
  await assert.rejects(read(small, true, 0, 100), { code: 'EUCLEAN' });
});

test('a node the writer remembers is returned as encoded; a later change still shows', async () => {
  const bytes = new Uint8Array(BS);
  const node: ExtentNode = { kind: 'leaf', depth: 0, max: extentNodeCapacity(false, BS), generation: 0, extents: [ext(3, 1, 700)] };
  encodeExtentNode(node, bytes, { isRoot: false, blockSize: BS, inodeSeed: SEED });
  rememberEncodedNode(bytes, SEED, BS, node);
  const src = source(bytes, SEED);
  assert.equal(await read(src, true), node);
  assert.deepEqual(await read(src), decodeExtentNode(bytes, { isRoot: false, blockSize: BS, inodeSeed: SEED, where: {} }));
  xorU8(bytes, 12, 1);
  await assert.rejects(read(src, true), { code: 'EBADMSG' });
});
