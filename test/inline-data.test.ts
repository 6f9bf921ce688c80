// Inline data: files and directories stored in the inode (i_block + the system.data xattr)
// read correctly, as mke2fs -O inline_data -d writes them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ext4 } from '../src/node.ts';
import { haveE2fsprogs, debugfs } from './support/oracles.ts';

test('inline-data files and directories read as mke2fs wrote them', { skip: haveE2fsprogs() ? false : 'e2fsprogs not installed' }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ext4kit-inline-'));
  const src = join(dir, 'src');
  mkdirSync(join(src, 'small-dir'), { recursive: true });
  const files: Record<string, Buffer> = {
    'tiny.txt': Buffer.from('hi\n'),
    'fits-iblock.bin': Buffer.alloc(58, 7),              // inside the 60-byte i_block
    'spills-to-xattr.bin': Buffer.from(Array.from({ length: 120 }, (_, i) => i)), // i_block + system.data
    'small-dir/a': Buffer.from('a\n'),
    'small-dir/b': Buffer.from('bb\n'),
  };
  for (const [p, d] of Object.entries(files)) writeFileSync(join(src, p), d);
  symlinkSync('tiny.txt', join(src, 'link'));
  const img = join(dir, 'img');
  execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-I', '256', '-O', 'inline_data', '-d', src, img, '8M']);
  // The fixture really uses inline data (else this test would prove nothing).
  assert.match(await debugfs(img, 'stat /spills-to-xattr.bin'), /Size of inline data: 120/);
  assert.match(await debugfs(img, 'stat /small-dir'), /Size of inline data/);
  const fs = await Ext4.open(img, { readOnly: true });
  for (const [p, d] of Object.entries(files)) assert.deepEqual(Buffer.from(await fs.readFile('/' + p)), d, p);
  assert.deepEqual((await fs.readdir('/small-dir')).sort(), ['a', 'b']);
  assert.equal(await fs.readlink('/link'), 'tiny.txt');
  assert.equal((await fs.stat('/spills-to-xattr.bin')).size, 120);
  // Writes to inline data are not supported yet: the mount is read-only with the reason.
  const rw = await Ext4.open(img);
  assert.equal(rw.readOnly, true);
  await assert.rejects(rw.writeFile('/new', 'x'), { code: 'EROFS' });
  await rw.close();
  await fs.close();
  assert.ok(readFileSync(img).length > 0);
});
