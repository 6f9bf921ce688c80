// SETATTR, GETATTR, GETXATTR and RELEASE of an inode in memory are answered synchronously
// (FuseSession.handle returns nothing: no promise, no await), which is most of tar x's requests.
// The synchronous replies must be the very bytes the awaited path gives (the same request on an
// inode that had to be read back), and the "no xattrs" shortcut must still find xattrs stored
// in the inode body and in an xattr block. No kernel mount: raw requests go to the session.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ext4, MemoryDevice } from '../src/node.ts';
import type { Filesystem } from '../src/fs/filesystem.ts';
import { Ext4Backend } from '../src/fuse/ext4-backend.ts';
import { FuseSession } from '../src/fuse/session.ts';
import { OP, FATTR, ERRNO } from '../src/fuse/protocol.ts';

const caller = { uid: 0, gid: 0, pid: 1 };
const enc = (s: string) => new TextEncoder().encode(s);

async function setup(): Promise<{ fs: Filesystem; backend: Ext4Backend; session: FuseSession; replies: Uint8Array[] }> {
  const dev = new MemoryDevice(new Uint8Array(32 << 20));
  await Ext4.mkfs(dev, { sizeBytes: 32 << 20, blockSize: 4096, timeSec: 1_700_000_000 });
  const ext4 = await Ext4.open(dev);
  const fs = (ext4 as unknown as { fs: Filesystem }).fs;
  const backend = new Ext4Backend(ext4);
  const replies: Uint8Array[] = [];
  // sendConsumesBytes: replies are built in a reused buffer, so each is copied as it is sent.
  const session = new FuseSession(backend, (r, p) => { replies.push(p ? new Uint8Array([...r, ...p]) : r.slice()); }, { sendConsumesBytes: true });
  return { fs, backend, session, replies };
}

let unique = 100;
/** A raw request: fuse_in_header then `body`. */
function request(opcode: number, nodeId: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(40 + body.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, out.length, true);
  v.setUint32(4, opcode, true);
  v.setBigUint64(8, BigInt(unique++), true);
  v.setBigUint64(16, BigInt(nodeId), true);
  out.set(body, 40);
  return out;
}

/** fuse_setattr_in (88 bytes): valid @0, atime @32, mtime @40, their ns @56/@60, mode @68, uid @76, gid @80. */
function setattrBody(mode: number, uid: number, gid: number, mtimeSec: number): Uint8Array {
  const b = new Uint8Array(88);
  const v = new DataView(b.buffer);
  v.setUint32(0, FATTR.MODE | FATTR.UID | FATTR.GID | FATTR.ATIME | FATTR.MTIME, true);
  v.setBigInt64(32, BigInt(mtimeSec - 1), true);
  v.setBigInt64(40, BigInt(mtimeSec), true);
  v.setUint32(56, 5, true);
  v.setUint32(60, 7, true);
  v.setUint32(68, mode, true);
  v.setUint32(76, uid, true);
  v.setUint32(80, gid, true);
  return b;
}

function getxattrBody(name: string, sizeBytes: number): Uint8Array {
  const n = enc(name);
  const b = new Uint8Array(8 + n.length + 1);
  new DataView(b.buffer).setUint32(0, sizeBytes, true);
  b.set(n, 8);
  return b;
}

/** The reply's errno and payload, unique aside. */
function parse(r: Uint8Array): { errno: number; payload: Uint8Array } {
  const v = new DataView(r.buffer, r.byteOffset, r.byteLength);
  assert.equal(v.getUint32(0, true), r.length, 'reply length field');
  return { errno: -v.getInt32(4, true) + 0, payload: r.subarray(16) };
}

/** Sends one request; says whether it was answered synchronously, and returns its reply. */
async function send(s: { session: FuseSession; replies: Uint8Array[] }, raw: Uint8Array): Promise<{ sync: boolean; errno: number; payload: Uint8Array }> {
  const before = s.replies.length;
  const p = s.session.handle(raw);
  const sync = p === undefined;
  if (sync) assert.equal(s.replies.length, before + 1, 'a synchronous answer has replied when handle returns');
  else await p;
  assert.equal(s.replies.length, before + 1, 'one reply');
  return { sync, ...parse(s.replies[before]!) };
}

/**
 * Drops every clean, unheld inode from memory (the next request has to read it back). The
 * cache would hand back an evicted object the garbage collector has not taken yet: the test
 * hook forgets them, as a collection would.
 */
async function evictAll(fs: Filesystem): Promise<void> {
  await fs.sync();
  fs.icache.shrink(() => false);
  fs.icache.collectEvictedForTest();
}

test('SETATTR, GETATTR and GETXATTR of an inode in memory are answered synchronously, with the bytes of the awaited path', async () => {
  const s = await setup();
  const a = await s.backend.create(2, enc('a'), 0o644, 0o1, caller);
  await s.backend.release(a.fh);
  const b = await s.backend.create(2, enc('b'), 0o644, 0o1, caller);
  await s.backend.release(b.fh);
  await s.fs.sync();
  // Make both inodes' on-disk state equal, then evict b only.
  const set = (ino: number) => request(OP.SETATTR, ino, setattrBody(0o4755, 1000, 100, 1_600_000_000));
  await evictAll(s.fs);
  assert.equal(s.fs.icache.open.has(b.attr.ino), false, 'b was evicted');
  await s.backend.getattr(a.attr.ino);
  assert.equal(s.fs.icache.open.has(a.attr.ino), true, 'a is in memory');

  const ra = await send(s, set(a.attr.ino));
  const rb = await send(s, set(b.attr.ino));
  assert.equal(ra.sync, true, 'SETATTR of an inode in memory: no promise');
  assert.equal(rb.sync, false, 'SETATTR of an evicted inode: read back first');
  assert.equal(ra.errno, 0);
  assert.equal(rb.errno, 0);
  const va = new DataView(ra.payload.buffer, ra.payload.byteOffset);
  // fuse_attr_out: valid (16 bytes), then fuse_attr: ino, size, blocks, atime, mtime, ctime, ns x3, mode @60+16, nlink, uid, gid.
  assert.equal(va.getUint32(16 + 60, true), 0o104755, 'mode');
  assert.equal(va.getUint32(16 + 68, true), 1000, 'uid');
  assert.equal(va.getUint32(16 + 72, true), 100, 'gid');
  assert.equal(Number(va.getBigInt64(16 + 32, true)), 1_600_000_000, 'mtime');
  // Same reply bytes but for the inode number and ctime (set to now by each change).
  const strip = (p: Uint8Array) => { const c = p.slice(); c.fill(0, 16, 24); c.fill(0, 16 + 40, 16 + 48); c.fill(0, 16 + 56, 16 + 60); return c; };
  assert.deepEqual(strip(ra.payload), strip(rb.payload), 'synchronous and awaited SETATTR replies agree');

  const ga = await send(s, request(OP.GETATTR, a.attr.ino, new Uint8Array(16)));
  await evictAll(s.fs);
  const gb = await send(s, request(OP.GETATTR, a.attr.ino, new Uint8Array(16)));
  assert.equal(ga.sync, true);
  assert.equal(gb.sync, false);
  assert.deepEqual(ga.payload, gb.payload, 'GETATTR: the attributes read back equal those in memory');

  // RELEASE of a file with nothing to free: no promise either.
  const o = await s.backend.open(a.attr.ino, 0, caller);
  const fh = new Uint8Array(24);
  new DataView(fh.buffer).setBigUint64(0, BigInt(o), true);
  const rel = await send(s, request(OP.RELEASE, a.attr.ino, fh));
  assert.equal(rel.sync, true);
  assert.equal(rel.errno, 0);
  await s.backend.close();
});

test('the "no xattrs" shortcut still finds xattrs in the inode body and in an xattr block', async () => {
  const s = await setup();
  const f = await s.backend.create(2, enc('f'), 0o644, 0o1, caller);
  await s.backend.release(f.fh);
  const ino = f.attr.ino;
  const ask = (name: string, size = 4096) => send(s, request(OP.GETXATTR, ino, getxattrBody(name, size)));

  const none = await ask('security.capability');
  assert.equal(none.sync, true, 'absent xattr of an inode without any: no promise');
  assert.equal(none.errno, ERRNO.ENODATA);

  // A small value: stored in the inode body (256-byte inodes).
  await s.backend.setxattr(ino, 'user.small', enc('v1'), 0);
  assert.equal(s.fs.icache.open.get(ino)!.inode.fileAcl, 0, 'the small value is in the inode body');
  const small = await ask('user.small');
  assert.equal(small.errno, 0, 'in-body xattr found');
  assert.deepEqual(small.payload, enc('v1'));
  assert.equal((await ask('security.capability')).errno, ERRNO.ENODATA);

  // A large value: only an xattr block holds it.
  const big = new Uint8Array(1000).fill(0x5a);
  await s.backend.setxattr(ino, 'user.big', big, 0);
  assert.notEqual(s.fs.icache.open.get(ino)!.inode.fileAcl, 0, 'the large value is in an xattr block');
  const got = await ask('user.big');
  assert.equal(got.errno, 0, 'block xattr found');
  assert.deepEqual(got.payload, big);

  // Both gone again: the shortcut answers ENODATA without reading.
  await s.backend.removexattr(ino, 'user.small');
  await s.backend.removexattr(ino, 'user.big');
  assert.equal((await ask('user.big')).errno, ERRNO.ENODATA);
  assert.equal((await ask('user.small')).errno, ERRNO.ENODATA);
  await s.backend.close();
});

test('Jbd2.runNow runs synchronously once the mount is marked dirty, and through a promise before', async () => {
  const s = await setup();
  const jbd = s.fs.jbd;
  const first = jbd.runNow(1, () => 41);
  if (!jbd.markedDirty) assert.ok(first instanceof Promise, 'the first write marks the superblock first (awaits)');
  assert.equal(await first, 41);
  const again = jbd.runNow(1, () => 42);
  assert.equal(again, 42, 'a free handle: the value itself, no promise');
  assert.equal(s.fs.journal.dirtyBlocks >= 0, true);
  await s.backend.close();
});
