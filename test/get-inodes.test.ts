// `ext4kit get -r` reads inodes through its own reader (src/cli/get-inode.ts: the inode table in
// runs of blocks, records decoded in place). Every inode of every corpus image, and of images
// with never-initialised table space, must decode exactly as Volume.readInode decodes it (the
// same fields and bytes, or the same error); the comparison is shown to catch a reader that
// decodes the wrong record. A record with a bad checksum stops the copy with EBADMSG.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { Ext4, NodeFileDevice } from '../src/node.ts';
import { Ext4Error } from '../src/errors/ext4-error.ts';
import { getFromImage } from '../src/cli/get.ts';
import { InodeReader, mountOf } from '../src/cli/get-inode.ts';
import type { Mount, Node } from '../src/fs/mount.ts';
import { rootLeafMappings } from '../src/fs/readpage.ts';
import { iterateMappings, type Mapping } from '../src/mapping/read-map.ts';
import { corpusAvailable, extractCorpusImage, listCorpus } from './support/corpus.ts';
import { cleanupTemp, tmpDirPath, tmpImagePath } from './support/images.ts';

after(cleanupTemp);

/** Inodes compared per image at most (the corpus's images hold a few thousand at most). */
const MAX_INODES = 1 << 14;

type Outcome = { inode: unknown } | { error: string };

async function outcome(get: () => Node | Promise<Node>): Promise<Outcome> {
  try {
    const n = await get();
    const { raw, iBlock, ...rest } = n.inode;
    return { inode: { ...rest, raw: Array.from(raw), iBlock: Array.from(iBlock) } };
  } catch (e) {
    if (!(e instanceof Ext4Error)) throw e;
    return { error: `${e.code} ${e.detail ?? ''}` };
  }
}

/** Inode numbers where `iget` differs from the volume's own decode. */
async function mismatches(mount: Mount, iget: (ino: number) => Node | Promise<Node>): Promise<number[]> {
  const bad: number[] = [];
  const count = Math.min(mount.vol.geo.inodesCount, MAX_INODES);
  for (let ino = 1; ino <= count + 1; ino++) {
    const want = await outcome(async () => ({ ino, inode: await mount.vol.readInode(ino) }));
    const got = await outcome(() => iget(ino));
    try {
      assert.deepStrictEqual(got, want);
    } catch {
      bad.push(ino);
    }
  }
  return bad;
}

async function withMount<T>(img: string, f: (m: Mount) => Promise<T>): Promise<T | undefined> {
  let fs: Ext4;
  try {
    fs = await Ext4.open(img, { readOnly: true });
  } catch (e) {
    if (e instanceof Ext4Error) return undefined;
    throw e;
  }
  try {
    return await f(mountOf(fs));
  } finally {
    await fs.close();
  }
}

/** An image with lazily initialised inode tables (most of every group's table unused). */
async function freshImage(): Promise<string> {
  const img = tmpImagePath('get-inodes');
  await Ext4.mkfs(img, { sizeBytes: 32 * 1024 * 1024 });
  const fs = await Ext4.open(img);
  await fs.mkdir('/d');
  for (let i = 0; i < 200; i++) await fs.writeFile(`/d/f${i}`, new Uint8Array(i * 13).fill(i));
  await fs.close();
  return img;
}

describe('get -r inode reader', () => {
  test('decodes every inode of a fresh image as the volume does', async () => {
    const img = await freshImage();
    const bad = await withMount(img, (m) => {
      const r = new InodeReader(m);
      return mismatches(m, (ino) => r.iget(ino));
    });
    assert.deepEqual(bad, []);
  });

  test('the comparison catches a reader that decodes the wrong record', async () => {
    const img = await freshImage();
    const bad = await withMount(img, (m) => {
      const r = new InodeReader(m);
      // Broken on purpose: the record after the one asked for.
      return mismatches(m, async (ino) => {
        const n = await r.iget(ino < m.vol.geo.inodesCount ? ino + 1 : ino);
        return { ino, inode: n.inode };
      });
    });
    assert.ok(bad !== undefined && bad.length > 100, `${bad?.length} mismatches`);
  });

  test('a bad inode checksum stops the copy with EBADMSG naming the inode', async () => {
    const img = await freshImage();
    const ino = await withMount(img, async (m) => {
      const d = await m.lookup(await m.root(), new TextEncoder().encode('d'));
      const f = await m.lookup(d!, new TextEncoder().encode('f50'));
      const { geo, groups } = m.vol;
      const idx = (f!.ino - 1) % geo.inodesPerGroup;
      const g = Math.floor((f!.ino - 1) / geo.inodesPerGroup);
      return { ino: f!.ino, at: groups[g]!.inodeTable * geo.blockSize + idx * geo.inodeSize };
    });
    assert.ok(ino);
    const bytes = readFileSync(img);
    bytes[ino.at + 0x20]! ^= 0x01;  // i_flags: no longer matches the checksum
    writeFileSync(img, bytes);
    const fs = await Ext4.open(img, { readOnly: true });
    const raw = await NodeFileDevice.open(img, { readOnly: true });
    try {
      await assert.rejects(
        getFromImage(fs, '/d', tmpDirPath('get-inodes-out'), {
          recursive: true, warn: () => undefined,
          data: { readInto: (at, t) => raw.readInto(at, t), hostFd: raw.hostFd, baseBytes: 0 },
          writers: { workers: 0, inlineFiles: 0 },
        }),
        (e: unknown) => e instanceof Ext4Error && e.code === 'EBADMSG' && e.detail === 'inode-checksum' && e.where?.inode === ino.ino,
      );
    } finally {
      await raw.close();
      await fs.close();
    }
  });

  const avail = corpusAvailable();
  test('decodes every inode of every corpus image as the volume does', { skip: avail.ok ? false : avail.reason }, async () => {
    let compared = 0;
    const failures: string[] = [];
    for (const e of listCorpus()) {
      const img = await extractCorpusImage(e.id);
      const bad = await withMount(img, (m) => {
        const r = new InodeReader(m);
        return mismatches(m, (ino) => r.iget(ino));
      });
      if (bad === undefined) continue;
      compared++;
      if (bad.length > 0) failures.push(`${e.id}: inodes ${bad.slice(0, 10).join(', ')}`);
    }
    assert.ok(compared >= 20, `${compared} corpus images opened`);
    assert.deepEqual(failures, []);
  });

  // InodeData.mappings and get -r take extents straight from i_block when the tree is only its
  // root: the same list as the tree walk, or the same error.
  test('root-leaf extents: the same mappings as the tree walk for every corpus inode', { skip: avail.ok ? false : avail.reason }, async () => {
    let leaves = 0;
    const failures: string[] = [];
    const walk = async (m: Mount, ino: number, n: Node): Promise<Mapping[]> => {
      const out: Mapping[] = [];
      for await (const x of iterateMappings(n.inode, m.vol.mapContext(ino, n.inode))) out.push(x);
      return out;
    };
    for (const e of listCorpus()) {
      const img = await extractCorpusImage(e.id);
      await withMount(img, async (m) => {
        for (let ino = 1; ino <= Math.min(m.vol.geo.inodesCount, MAX_INODES); ino++) {
          const n = await m.iget(ino).catch(() => undefined);
          if (!n) continue;
          let fast: Mapping[] | undefined | string;
          try {
            fast = rootLeafMappings(m.vol, ino, n.inode);
          } catch (err) {
            fast = err instanceof Ext4Error ? `${err.code} ${err.detail}` : String(err);
          }
          if (fast === undefined) continue;
          leaves++;
          const slow = await walk(m, ino, n).then((x) => x.map((y) => ({ ...y })), (err: unknown) => (err instanceof Ext4Error ? `${err.code} ${err.detail}` : String(err)));
          const got = typeof fast === 'string' ? fast : fast.map((y) => ({ ...y }));
          try {
            assert.deepStrictEqual(got, slow);
          } catch {
            failures.push(`${e.id} inode ${ino}`);
          }
        }
      });
    }
    assert.ok(leaves >= 100, `${leaves} root-leaf inodes`);
    assert.deepEqual(failures.slice(0, 20), []);
  });

  // Revision 0 superblocks leave s_inode_size 0: the records are 128 bytes, and a table block
  // holds blockSize / 128 of them (the geometry divided by zero: only the first block was read).
  test('revision 0 images: every record of the inode table is read', { skip: avail.ok ? false : avail.reason }, async () => {
    let rev0 = 0;
    for (const e of listCorpus()) {
      const img = await extractCorpusImage(e.id);
      const checked = await withMount(img, async (m) => {
        if (m.vol.sb.revLevel !== 0) return false;
        const { geo } = m.vol;
        assert.equal(geo.inodesPerBlock, geo.blockSize / 128, e.id);
        assert.equal(geo.inodeTableBlocks, Math.ceil(geo.inodesPerGroup / geo.inodesPerBlock), e.id);
        for (let ino = 1; ino <= Math.min(geo.inodesCount, MAX_INODES); ino++) {
          await m.vol.readInode(ino).catch((err: unknown) => {
            if (err instanceof Ext4Error && err.detail === 'inode-truncated') assert.fail(`${e.id}: inode ${ino}: ${err.message}`);
          });
        }
        return true;
      });
      if (checked) rev0++;
    }
    assert.ok(rev0 >= 3, `${rev0} revision 0 images`);
  });
});
